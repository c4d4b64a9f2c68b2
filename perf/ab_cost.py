"""This branch's exact speed-ups on and off, alternating in one process: the cost of the same mini runs either way.

    HF_HUB_OFFLINE=1 python perf/ab_cost.py [--benchmarks tofu ...] [--methods ga sga] [--repeats 3]

``off`` runs bitsandbytes' own 4-bit path (the weight dequantised on every forward and backward) and the tokenizer
on every encoding; ``on`` is the code as it is (``sga.models.cache_dequantized_weights``, ``sga.prompts.token_ids``).
The variants alternate run by run, so a busy machine slows both alike; the table gives each one's mean and the
median of the per-pair ratios. Both give the same numbers (``perf/parity_runs.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from run_cost import BENCHMARKS, measured_run, mean_cost, table  # noqa: E402


@contextmanager
def speedups_off():
    """The dequantised-weight cache and the token-id memo replaced by the plain calls in every sga module."""
    import sga.models
    import sga.prompts

    plain = {
        sga.models.cache_dequantized_weights: lambda model, max_bytes=0: 0,
        sga.prompts.token_ids: lambda tokenizer, text, special_tokens=False: tokenizer(text, add_special_tokens=special_tokens)["input_ids"],
    }
    undo = []
    for name, module in list(sys.modules.items()):
        if name.startswith("sga") and module is not None:
            for attr, value in list(vars(module).items()):
                if callable(value) and value in plain:
                    undo.append((module, attr, value))
                    setattr(module, attr, plain[value])
    try:
        yield
    finally:
        for module, attr, value in undo:
            setattr(module, attr, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--methods", nargs="+", default=["ga", "sga", "graddiff"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cache-dir", default="/tmp/base/.cache")
    args = parser.parse_args()

    from sga import experiment, presets

    out_dir = Path(tempfile.mkdtemp(prefix="sga-ab-"))
    rows, ratios = [], []
    for name in args.benchmarks:
        world = experiment.prepare(presets.resolve(name, "mini", progress=False), args.cache_dir, out_dir)
        experiment.reference_statistic(world)
        for method in args.methods:
            costs = {"off": [], "on": []}
            for _ in range(args.repeats):
                with speedups_off():
                    costs["off"].append(measured_run(world, method, 0))
                costs["on"].append(measured_run(world, method, 0))
                print(f"{name} {method}: off {costs['off'][-1].total:.1f} s, on {costs['on'][-1].total:.1f} s", flush=True)
            for variant, runs in costs.items():
                rows.append({"benchmark": name, "method": f"{method}:{variant}", **mean_cost(runs)})
            pairs = {part: statistics.median(getattr(b, part) / getattr(a, part) for a, b in zip(costs["off"], costs["on"]))
                     for part in ("total", "train", "readings", "final") if getattr(costs["off"][0], part) > 0}
            ratios.append(f"{name} {method}: on/off " + ", ".join(f"{k} {v:.2f}" for k, v in pairs.items()))
    print(f"\nmean wall seconds per run (share of the run), speed-ups off and on, {args.repeats} alternating repeats\n{table(rows)}")
    print("median per-pair ratios\n" + "\n".join(ratios))


if __name__ == "__main__":
    main()
