"""What a mini unlearning run costs, per benchmark and method, under a reading protocol, measured in one process.

    HF_HUB_OFFLINE=1 python perf/run_cost.py [--benchmarks tofu ...] [--methods ga sga graddiff] [--repeats 2]
                                             [--protocol epoch-readings] [--out cost.json]

Each run goes through ``experiment.run_method`` with fresh results (seed 0 unless ``--seed``), its time split into
training steps (the run's ``train_seconds``), the per-epoch readings (``benchmark.evaluate_along``, timed here: the
run's ``train_seconds`` leaves them out), the final evaluation (``benchmark.evaluate``) and setup (the rest: loading
the model, adding LoRA, choosing normal samples, saving the adapter and the JSON). The reference model's row is
read (or computed) once before any timing.

Protocols (``--protocol``): how a run reads its model along training. ``epoch-readings``: today's, as the preset
has it (``trajectory``: a reading after every epoch, then the final evaluation; MUSE-News's mini preset has no
readings). ``located``: notebook 05's (:mod:`sga.design`): the crossing located to 2 steps (:mod:`sga.crossing`),
read in full there and at step S, no final evaluation, stopped 5 steps after the crossing but not before S, or at 2 S;
S is the step at which GA (seed 0, located, one untimed run per benchmark) reaches the level. ``--protocol both``
measures the two side by side, one benchmark at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCHMARKS = ("tofu", "harry_potter", "muse_news")
PARTS = ("train", "readings", "final", "setup")


@dataclasses.dataclass
class Cost:
    """Wall seconds of one run and of its parts; ``n_readings`` per-epoch readings."""

    total: float
    train: float
    readings: float
    final: float
    n_readings: int

    @property
    def setup(self) -> float:
        return self.total - self.train - self.readings - self.final


def measured_run(world, method: str, seed: int, **overrides: Any) -> Cost:
    """One fresh run of ``method`` through ``experiment.run_method`` (``overrides`` as it takes them), timed."""
    from sga import experiment

    spent = {"readings": 0.0, "final": 0.0, "n_readings": 0}

    def timer(fn: Callable, part: str) -> Callable:
        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - began
                spent["n_" + part] = spent.get("n_" + part, 0) + 1

        return timed

    benchmark = world.benchmark
    world.benchmark = dataclasses.replace(benchmark, evaluate_along=timer(benchmark.evaluate_along, "readings"),
                                          evaluate=timer(benchmark.evaluate, "final"))
    try:
        began = time.perf_counter()
        result = experiment.run_method(world, method, overwrite=True, seed=seed, **overrides)
        total = time.perf_counter() - began
    finally:
        world.benchmark = benchmark
    if result["status"] != "completed":
        raise RuntimeError(f"{method} on {benchmark.name}: {result['status']} ({result.get('message')})")
    if "crossing" in result:  # located: the crossing's readings (and bisection), the end's, each timed by the run itself
        return Cost(total, result["train_seconds"], result["readings_seconds"], spent["final"], len(result["crossing"]["readings"]))
    return Cost(total, result["train_seconds"], spent["readings"], spent["final"], spent["n_readings"])


def epoch_readings(world, method: str, seed: int) -> Cost:
    """Today's protocol: the preset's trajectory (a reading after every epoch) and the final evaluation."""
    return measured_run(world, method, seed)


_GA_STEPS: dict[str, int] = {}  # per benchmark: S, GA's steps to the level (seed 0)


def ga_steps(world) -> int:
    """S on ``world``: the step at which GA (seed 0) reaches the level, from one located run (untimed, kept)."""
    from sga import design, experiment

    name = world.benchmark.name
    if name not in _GA_STEPS:
        [point] = design.pilot({(name, 0): world.settings}, design.study("mini", pilot_seeds=[0]))
        result = experiment.execute(world, point.run)
        _GA_STEPS[name] = max(1, result["crossing"]["step"] or len(result["log"]))
    return _GA_STEPS[name]


def located(world, method: str, seed: int) -> Cost:
    """Notebook 05's protocol: located to 2 steps, read at the crossing and at S, stopped 5 steps after the crossing
    (not before S) or at 2 S; its readings are the crossing's and the end's, the run's own ``readings_seconds``."""
    from sga import design

    overrides = design.study_overrides(world.settings, design.study("mini"), ga_steps(world), len(world.forget))
    return measured_run(world, method, seed, **overrides)


PROTOCOLS: dict[str, Callable[..., Cost]] = {"epoch-readings": epoch_readings, "located": located}


def mean_cost(costs: list[Cost]) -> dict[str, float]:
    values = {part: statistics.mean(getattr(c, part) for c in costs) for part in ("total", *PARTS)}
    return {**values, "n_readings": costs[0].n_readings, "runs": len(costs), "total_min": min(c.total for c in costs)}


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'benchmark':<14}{'method':<10}{'runs':>5}{'mean s':>8}{'min s':>7}" + "".join(f"{p:>15}" for p in PARTS)
    lines = [head, "-" * len(head)]
    for row in rows:
        parts = "".join(f"{row[p]:>7.1f} ({row[p] / row['total']:>4.0%})" for p in PARTS)
        lines.append(f"{row['benchmark']:<14}{row['method']:<10}{row['runs']:>5}{row['total']:>8.1f}{row['total_min']:>7.1f}{parts}")
    return "\n".join(lines) + "\n(readings: " + ", ".join(f"{r['benchmark']} {r['method']} {r['n_readings']}" for r in rows) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--methods", nargs="+", default=["ga", "sga", "graddiff"])
    parser.add_argument("--protocol", choices=[*sorted(PROTOCOLS), "both"], default="epoch-readings")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each method, averaged")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--cache-dir", default="/tmp/base/.cache", help="cached data and tiny models (read only)")
    parser.add_argument("--out-dir", default=None, help="the runs' results (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="write the costs as JSON here")
    args = parser.parse_args()

    from sga import experiment, presets
    from sga.results import environment_info, write_json_atomic

    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="sga-cost-"))
    protocols = sorted(PROTOCOLS, reverse=True) if args.protocol == "both" else [args.protocol]
    rows, runs = [], []
    for name in args.benchmarks:
        world = experiment.prepare(presets.resolve(name, args.preset, progress=False), args.cache_dir, out_dir)
        experiment.reference_statistic(world)  # the reference row, once, before any timing
        for protocol in protocols:
            if protocol == "located":
                print(f"{name}: S = {ga_steps(world)} steps (GA, seed 0, located)", flush=True)
            for method in args.methods:
                costs = [PROTOCOLS[protocol](world, method, args.seed) for _ in range(args.repeats)]
                runs += [{"benchmark": name, "method": method, "protocol": protocol, **dataclasses.asdict(c), "setup": c.setup} for c in costs]
                rows.append({"benchmark": name, "method": method, "protocol": protocol, **mean_cost(costs)})
                print(table(rows[-1:]).splitlines()[-2], flush=True)
    for protocol in protocols:
        mine = [r for r in rows if r["protocol"] == protocol]
        print(f"\nprotocol {protocol}, preset {args.preset}, mean wall seconds per run (share of the run)\n{table(mine)}")
    if len(protocols) == 2:
        print("\nmean run, located / epoch-readings:")
        for name in args.benchmarks:
            mean = {p: statistics.mean(r["total"] for r in rows if r["benchmark"] == name and r["protocol"] == p) for p in protocols}
            print(f"  {name:<14}{mean['epoch-readings']:>7.1f} s -> {mean['located']:>6.1f} s  ({mean['located'] / mean['epoch-readings']:.2f}x)")
    if args.out:
        write_json_atomic(args.out, {"protocols": protocols, "preset": args.preset, "seed": args.seed, "repeats": args.repeats,
                                     "means": rows, "runs": runs, "environment": environment_info()})


if __name__ == "__main__":
    main()
