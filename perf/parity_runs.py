"""Results to check that a speed-up changes no number: the same runs computed by two versions of the code.

    # once with the code before the change, once after (PYTHONPATH picks the code)
    python perf/parity_runs.py run --out /tmp/before --preset smoke --cache-dir /tmp/perf_cache
    python perf/parity_runs.py run --out /tmp/before --preset mini --cache-dir /tmp/base/.cache
    python perf/parity_runs.py compare /tmp/before /tmp/after

``run`` writes, per benchmark, the rows of the target and the reference model (evaluated as they are) and the
unlearning runs of ``--methods`` (seed 0, the preset's trajectory setting). ``compare`` prints
:func:`sga.results.compare_results` (metrics and per-step losses) and also compares what that leaves out: each
run's per-epoch ``trajectory`` and its ``summary``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCHMARKS = ("tofu", "harry_potter", "muse_news")


def run(out: Path, preset: str, cache_dir: Path, benchmarks: list[str], methods: list[str]) -> None:
    from sga import experiment, presets

    for name in benchmarks:
        settings = presets.resolve(name, preset, progress=False)
        world = experiment.prepare(settings, cache_dir, out / preset)
        for which in ("target", world.benchmark.reference_model):
            experiment.reference(world, which)
        for method in methods:
            result = experiment.run_method(world, method, seed=0)
            print(f"{preset} {name} {method}: {result['status']}, train {result.get('train_seconds', 0):.1f} s", flush=True)


def compare(before: Path, after: Path) -> bool:
    import pandas as pd

    from sga.results import compare_results, read_json

    table = compare_results(before, after)
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(table)

    def runs(directory: Path) -> dict[str, dict]:
        return {p["name"]: p for p in map(read_json, sorted(directory.rglob("*.json"))) if isinstance(p, dict) and "name" in p}

    a, b = runs(before), runs(after)
    common = sorted(set(a) & set(b))
    extra = {key: sum(a[n].get(key) == b[n].get(key) for n in common) for key in ("trajectory", "summary")}
    identical = bool(table["metrics_identical"].all() and table["steps_identical"].all())
    print(f"{len(common)} runs on both sides ({len(a)} before, {len(b)} after); metrics identical: "
          f"{int(table['metrics_identical'].sum())}, per-step logs identical: {int(table['steps_identical'].sum())}, "
          f"trajectories identical: {extra['trajectory']}, summaries identical: {extra['summary']}")
    return identical and len(common) == len(a) == len(b) and all(v == len(common) for v in extra.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("run", help="compute the parity runs")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--preset", choices=("smoke", "mini"), default="smoke")
    make.add_argument("--cache-dir", type=Path, default=Path("/tmp/perf_cache"))
    make.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    make.add_argument("--methods", nargs="+", default=["ga", "sga", "graddiff"])
    check = sub.add_parser("compare", help="compare two folders of results")
    check.add_argument("before", type=Path)
    check.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.preset, args.cache_dir, args.benchmarks, args.methods)
    else:
        raise SystemExit(0 if compare(args.before, args.after) else 1)


if __name__ == "__main__":
    main()
