"""Where the time of one unlearning run goes: training steps, per-epoch readings, final evaluation, and inside
the readings and the evaluation, teacher-forced scoring, generation, tokenisation, metrics and the rest.

    HF_HUB_OFFLINE=1 python perf/profile_run.py --benchmarks tofu harry_potter muse_news --methods ga sga

Each run goes through ``experiment.run_method`` as a notebook's would (its preset's trajectory setting, a fresh
result), once with light timers around the functions below (the table), then once more under cProfile (the top
functions by cumulative time; ``--top 0`` skips that pass, whose overhead inflates Python-heavy parts).

A timed function's time counts once, for its own part, minus the time of the timed functions it calls: the time
``generate`` spends tokenising is tokenisation, not generation. "other" is what a phase spends outside every timed
function (reading the data, building lists); "setup" is the run's time outside training and evaluation (loading the
model, adding LoRA, choosing normal samples, saving the adapter and the JSON).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import functools
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCHMARKS = ("tofu", "harry_potter", "muse_news")
PARTS = ("scoring", "generation", "tokenisation", "metrics", "other")
# (module, function) -> part; every module of sga that imported the function by name gets the timed one too
TIMED = {
    ("sga.inference", "example_nll"): "scoring",
    ("sga.inference", "token_logprobs"): "scoring",
    ("sga.metrics.perplexity", "rolling_loglikelihood"): "scoring",
    ("sga.inference", "generate"): "generation",
    ("sga.prompts", "encode"): "tokenisation",
    ("sga.prompts", "encode_prompt"): "tokenisation",
    ("sga.prompts", "collate"): "tokenisation",
    ("sga.metrics.text", "rouge_l_recall"): "metrics",
    ("sga.metrics.text", "rouge_l_f1"): "metrics",
    ("sga.metrics.text", "sentence_bleu"): "metrics",
    ("sga.metrics.tofu", "ks_test"): "metrics",
    ("sga.metrics.tofu", "truth_ratio"): "metrics",
    ("sga.metrics.muse_news", "bootstrap_ci"): "metrics",
    ("sga.metrics.mia", "mia_auc"): "metrics",
    ("sga.metrics.mia", "min_k_score"): "metrics",
}


class Clock:
    """Exclusive wall seconds per (phase, part): a timed call's time minus that of the timed calls inside it."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.phase = "outside"
        self._stack: list[list] = []  # [part, start, seconds of timed calls inside]

    def timed(self, fn, part: str, phase: str | None = None):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            outer = self.phase
            if phase is not None:
                self.phase = phase
                self.calls[phase] += 1
            self._stack.append([part, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                _, start, inner = self._stack.pop()
                elapsed = time.perf_counter() - start
                self.seconds[self.phase, part] += elapsed - inner
                if self._stack:
                    self._stack[-1][2] += elapsed
                self.phase = outer

        return wrapper


@contextmanager
def timers(clock: Clock, tokenizer):
    """Replace every TIMED function (in each sga module that holds it) and the tokenizer's encode / decode by timed
    ones; restore them afterwards."""
    undo = []

    def patch(owner, name, value):
        undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    for (module, name), part in TIMED.items():
        fn = getattr(sys.modules[module], name)
        wrapped = clock.timed(fn, part)
        for mod in [m for key, m in list(sys.modules.items()) if key.startswith("sga") and m is not None]:
            for attr, value in list(vars(mod).items()):
                if value is fn:
                    patch(mod, attr, wrapped)
    cls = type(tokenizer)
    for name in ("__call__", "decode"):
        patch(cls, name, clock.timed(getattr(cls, name), "tokenisation"))
    try:
        yield
    finally:
        for owner, name, value in reversed(undo):
            setattr(owner, name, value)


def profiled_run(world, method: str, clock: Clock | None):
    """``experiment.run_method`` with fresh results; with a clock, the readings and the final evaluation timed."""
    from sga import experiment

    benchmark = world.benchmark
    if clock is not None:
        world.benchmark = dataclasses.replace(benchmark, evaluate_along=clock.timed(benchmark.evaluate_along, "other", "readings"),
                                              evaluate=clock.timed(benchmark.evaluate, "other", "final evaluation"))
    try:
        began = time.perf_counter()
        result = experiment.run_method(world, method, overwrite=True, seed=0)
        return result, time.perf_counter() - began
    finally:
        world.benchmark = benchmark


def table(name: str, clock: Clock, result: dict, total: float) -> str:
    evaluated = {phase: sum(clock.seconds.get((phase, part), 0.0) for part in PARTS) for phase in ("readings", "final evaluation")}
    train = result.get("train_seconds", 0.0)
    phases = {"training steps": train, **evaluated, "setup": total - train - sum(evaluated.values())}
    rows = [f"== {name}: {total:.1f} s, {len(result.get('log', []))} steps, status {result['status']}",
            f"{'phase / part':<30}{'per call':>9}{'seconds':>9}{'share':>8}"]
    for phase, seconds in phases.items():
        calls = clock.calls[phase] if phase in evaluated else 1
        label = f"{phase} ({calls})" if phase == "readings" else phase
        rows.append(f"{label:<30}{seconds / max(calls, 1):>9.2f}{seconds:>9.2f}{seconds / total:>8.1%}")
        if phase in evaluated and seconds:
            for part in PARTS:
                value = clock.seconds.get((phase, part), 0.0)
                rows.append(f"    {part:<26}{value / calls:>9.2f}{value:>9.2f}{value / total:>8.1%}")
    return "\n".join(rows)


def top_functions(profile: cProfile.Profile, n: int) -> str:
    """The ``n`` functions of most cumulative time below the run's own call chain (those that hold nearly all of
    it), then the ``n`` of most own time."""
    entries = list(pstats.Stats(profile).stats.items())
    run = max(cumulative for _, (_, _, _, cumulative, _) in entries)

    def rows(key: int, skip_chain: bool) -> list[str]:
        chosen = sorted((e for e in entries if not (skip_chain and e[1][3] > 0.9 * run)), key=lambda e: -e[1][key])[:n]
        return [f"{ct:>10.2f}{tt:>9.2f}{calls:>9}  {func} ({'/'.join(Path(path).parts[-2:])}:{line})"
                for (path, line, func), (_, calls, tt, ct, _) in chosen]

    head = f"{'cumulative':>10}{'own':>9}{'calls':>9}  function"
    return "\n".join([f"by cumulative time (run: {run:.2f} s)", head, *rows(3, True), "by own time", head, *rows(2, False)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--methods", nargs="+", default=["ga", "sga"])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--cache-dir", default="/tmp/base/.cache", help="cached data and tiny models (read only)")
    parser.add_argument("--out-dir", default=None, help="results (default: a temporary folder)")
    parser.add_argument("--top", type=int, default=20, help="functions shown by cumulative time (0: no cProfile pass)")
    args = parser.parse_args()

    from sga import experiment, presets

    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="sga-profile-"))
    for name in args.benchmarks:
        world = experiment.prepare(presets.resolve(name, args.preset, progress=False), args.cache_dir, out_dir)
        experiment.reference_statistic(world)  # the reference row, once, before any timing
        for method in args.methods:
            clock = Clock()
            with timers(clock, world.tokenizer):
                result, total = profiled_run(world, method, clock)
            print(table(f"{name} / {method}", clock, result, total), flush=True)
            if args.top:
                profile = cProfile.Profile()
                profile.enable()
                profiled_run(world, method, None)
                profile.disable()
                print(f"-- top {args.top} functions by cumulative time (cProfile pass)\n{top_functions(profile, args.top)}\n", flush=True)


if __name__ == "__main__":
    main()
