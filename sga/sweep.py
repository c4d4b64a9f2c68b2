"""Sweeps: many runs of the benchmarks' one run path, launched through :mod:`sga.batch`'s executors.

A sweep is a list of :class:`Point` (benchmark, a label for the configuration, method, seed, per-run
overrides). Each point is one :func:`sga.experiment.run_method` call in the benchmark's world of the given
preset, so its result JSON is the one a notebook would write for the same parameters, under the same
name: identical runs are never recomputed, whether a notebook or an earlier sweep made them.

    points = [Point("tofu", "GA", "ga", seed) for seed in (0, 1, 2)]
    report = run_sweep(points, "mini", cache_dir, output_dir, executor="ray")  # only the missing runs
    results = collect(points, "mini", cache_dir, output_dir)                    # {point: result}
"""

from __future__ import annotations

import functools
import gc
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from sga import presets, theory
from sga.batch import Task, run_tasks
from sga.experiment import World, run_method, run_params
from sga.results import read_json, run_name

BENCHMARK_MODULES = {"tofu": "sga.pipelines.tofu", "harry_potter": "sga.pipelines.harry_potter", "muse_news": "sga.pipelines.muse_news"}


@dataclass(frozen=True)
class Point:
    """One run of a sweep: ``method`` on ``benchmark`` at ``seed`` with ``overrides`` (a label names the configuration)."""

    benchmark: str
    label: str
    method: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = field(default=())

    @classmethod
    def of(cls, benchmark: str, label: str, method: str, seed: int, **overrides: Any) -> "Point":
        return cls(benchmark, label, method, int(seed), tuple(sorted(overrides.items())))

    def run_overrides(self) -> dict[str, Any]:
        """The keyword overrides of :func:`sga.experiment.run_method`, the seed included."""
        return {**dict(self.overrides), "seed": self.seed}


GRIDS = ("core", "full")


def configuration_groups(params: Mapping[str, Any], grid: str = "core") -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
    """Notebook 05's configurations for a benchmark with parameters ``params``, grouped by the question each answers:
    group -> label -> (method, overrides).

    ``core``: GA and SGA (gls) at the notebooks' rate r0 (``rate``); the gls rates -1, +0.4, +1 (the range the
    measured r*(t) of notebook 01 spans); adaptive SGA; GradDiff with SGA r0's weights (the reweighting control);
    GA and SGA r0 at 3x the learning rate without gradient clipping (stability). ``full`` adds the gls rate +1.2
    (over-smoothing), the descent rates 0.25, 0.5, 0.75, 1 (the measured descent r*(t) spans 0.15 to 1.29, clipped
    to [0, 1]), K = 2 and 8 at r0 and at r0's total normal weight r (K-1)/K, the TF-IDF and embedding normal
    sources, 3x the learning rate with clipping, and adaptive SGA under the descent reading and unclipped at 3x.
    """
    if grid not in GRIDS:
        raise ValueError(f"Unknown grid {grid!r}; choose one of {list(GRIDS)}.")
    full = grid == "full"
    r0, k, lr = params["rate"], params["k"], params["lr"]
    gamma, alpha = theory.graddiff_weights(r0, k, "gls")
    fast = {"lr": 3 * lr, "max_grad_norm": "none"}
    total = r0 * (k - 1) / k  # the summed weight of the K-1 normal samples
    groups: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
        "GA and SGA r0": {"GA": ("ga", {}), f"SGA r={r0:+g}": ("sga", {"rate": r0})},
        "gls rate": {f"SGA r={r:+g}": ("sga", {"rate": r}) for r in (0.4, -1.0, 1.0, *((1.2,) if full else ()))},
        "adaptive": {"SGA adaptive": ("sga_adaptive", {}), **({"SGA adaptive, descent": ("sga_adaptive", {"reading": "descent"})} if full else {})},
        "reweighting control": {f"GradDiff, SGA r={r0:+g}'s weights": ("graddiff", {"graddiff_forget_weight": gamma, "graddiff_retain_weight": alpha})},
        "learning rate": {"GA, 3x lr, unclipped": ("ga", fast), f"SGA r={r0:+g}, 3x lr, unclipped": ("sga", {"rate": r0, **fast})},
    }
    if full:
        groups["learning rate"].update({"GA, 3x lr": ("ga", {"lr": 3 * lr}), f"SGA r={r0:+g}, 3x lr": ("sga", {"rate": r0, "lr": 3 * lr}),
                                        "SGA adaptive, 3x lr, unclipped": ("sga_adaptive", fast)})
        groups["descent rate"] = {f"SGA descent r={r:g}": ("sga", {"reading": "descent", "rate": r}) for r in (0.25, 0.5, 0.75, 1.0)}
        groups["K"] = {label: config for kk in (2, 8) for label, config in (
            (f"SGA r={r0:+g}, K={kk}", ("sga", {"rate": r0, "k": kk})),
            (f"SGA K={kk}, same normal weight", ("sga", {"rate": total * kk / (kk - 1), "k": kk})))}
        groups["normal data"] = {f"SGA r={r0:+g}, {source}": ("sga", {"rate": r0, "normal_source": source}) for source in ("tfidf", "embedding")}
    return groups


def configurations(params: Mapping[str, Any], grid: str = "core") -> dict[str, tuple[str, dict[str, Any]]]:
    """The configurations of :func:`configuration_groups`, ungrouped: label -> (method, overrides)."""
    return {label: config for group in configuration_groups(params, grid).values() for label, config in group.items()}


def points(benchmarks: Sequence[str], preset: str, seeds: Sequence[int], grid: str = "core", **common: Any) -> list[Point]:
    """The sweep of notebook 05: every configuration of ``grid`` on every benchmark and seed, with ``common``
    overrides (e.g. ``trajectory=True``)."""
    out = []
    for benchmark in benchmarks:
        params = presets.resolve(benchmark, preset)
        for label, (method, overrides) in configurations(params, grid).items():
            out += [Point.of(benchmark, label, method, seed, **{**common, **overrides}) for seed in seeds]
    return out


def _module(benchmark: str):
    if benchmark not in BENCHMARK_MODULES:
        raise ValueError(f"Unknown benchmark {benchmark!r}; choose one of {list(BENCHMARK_MODULES)}.")
    return importlib.import_module(BENCHMARK_MODULES[benchmark])


@functools.lru_cache(maxsize=None)
def world(benchmark: str, preset: str, cache_dir: str | Path, output_dir: str | Path) -> World:
    """The benchmark's world of ``preset`` with the preset's own parameters (those of its notebook at its defaults),
    progress bars off; prepared once per process (``run_sweep``, ``collect`` and a notebook share it)."""
    params = presets.resolve(benchmark, preset, progress=False)
    return _module(benchmark).prepare(params, cache_dir, output_dir)


def result_path(world_: World, point: Point) -> Path:
    """Where ``point``'s result JSON is (or will be) in ``world_``'s output folder.

    A point without a final evaluation (``final_evaluation=False``) is also answered by the same run with
    one: the same training and per-epoch readings, plus the full evaluation (e.g. a notebook's run).
    """
    overrides = point.run_overrides()
    path = lambda **extra: world_.out_dir / f"{run_name(run_params(world_, point.method, **{**overrides, **extra}), world_.benchmark.name_keys)}.json"  # noqa: E731
    own = path()
    if overrides.get("final_evaluation") is False:
        full = path(final_evaluation=True)
        if full.exists() and not own.exists():
            return full
    return own


def run_points(benchmark: str, preset: str, cache_dir: str, output_dir: str, points: Sequence[Mapping[str, Any]]) -> None:
    """Run each point (given as a dict of :class:`Point`'s fields) that has no result yet in the benchmark's
    world; the task of a sweep. A failing point is reported (a RuntimeError naming each) after the others ran."""
    here = world(benchmark, preset, cache_dir, output_dir)
    failed = []
    gc.collect()
    gc.freeze()  # each run's gc.collect (experiment.free) then skips the objects already here: 0.4 s a run, not 0
    try:
        for p in points:
            point = Point(**{**p, "overrides": tuple(tuple(item) for item in p["overrides"])})
            try:
                if not result_path(here, point).exists():
                    run_method(here, point.method, **point.run_overrides())
            except Exception as error:  # one bad point must not cost the others their runs
                failed.append(f"{point.label} (seed {point.seed}): {type(error).__name__}: {error}")
    finally:
        gc.unfreeze()
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(points)} runs failed: " + "; ".join(failed))


def run_sweep(
    points: Sequence[Point],
    preset: str,
    cache_dir: str | Path,
    output_dir: str | Path,
    executor: str = "local",
    address: str | None = None,
    tasks_per_benchmark: int = 1,
    gpus_per_task: float = 0.0,
) -> dict[str, Any]:
    """Compute the points whose result is missing, as ``tasks_per_benchmark`` tasks per benchmark on ``executor``.

    Each task prepares its world (data and models come from ``cache_dir``; they are built here first, so
    parallel tasks never build the same cache) and runs its points. Returns a report: how many points were
    already there, how many were run, the failures as (task, error) and the wall time.
    """
    began = time.perf_counter()
    missing: dict[str, list[Point]] = {}
    for benchmark in dict.fromkeys(p.benchmark for p in points):
        here = world(benchmark, preset, cache_dir, output_dir)
        todo = list(dict.fromkeys(p for p in points if p.benchmark == benchmark and not result_path(here, p).exists()))
        if todo:
            missing[benchmark] = todo
    tasks = []
    for benchmark, todo in missing.items():
        parts = max(1, min(tasks_per_benchmark, len(todo)))
        for i in range(parts):
            chunk = [{"benchmark": p.benchmark, "label": p.label, "method": p.method, "seed": p.seed,
                      "overrides": [list(item) for item in p.overrides]} for p in todo[i::parts]]
            tasks.append(Task(f"{benchmark}-{i + 1}-of-{parts}", run_points,
                              {"benchmark": benchmark, "preset": preset, "cache_dir": str(cache_dir),
                               "output_dir": str(output_dir), "points": chunk}))
    failures = run_tasks(tasks, executor=executor, address=address, gpus_per_task=gpus_per_task,
                         cpu_threads=presets.resolve(points[0].benchmark, preset)["cpu_threads"] or 1) if tasks else []
    n_run = sum(len(t) for t in missing.values())
    return {"points": len(set(points)), "reused": len(set(points)) - n_run, "run": n_run, "tasks": len(tasks),
            "failures": failures, "seconds": time.perf_counter() - began}


def collect(points: Iterable[Point], preset: str, cache_dir: str | Path, output_dir: str | Path) -> dict[Point, dict[str, Any]]:
    """The result of each point that has one (a point whose run failed or is missing is left out)."""
    results = {}
    for point in points:
        path = result_path(world(point.benchmark, preset, cache_dir, output_dir), point)
        if path.exists():
            results[point] = read_json(path)
    return results
