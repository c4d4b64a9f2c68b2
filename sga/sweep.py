"""Sweeps: many runs of the benchmarks' one run path, launched through :mod:`sga.batch`'s executors.

A sweep is a list of :class:`Point` (the question's group, a label for the configuration, and the run's
:class:`~sga.specs.RunSpec`, made from a benchmark's settings and so checked before any run). Each point is one
:func:`sga.experiment.execute` in its world, so its result JSON is the one a notebook writes for the same run, under
the same name: identical runs are never recomputed, whether a notebook or an earlier sweep made them.

    settings = {b: presets.resolve(b, "mini") for b in ("tofu", "muse_news")}
    points = sweep.points(settings.values(), seeds=(0, 1, 2), grid="core", trajectory=True)
    report = run_sweep(points, settings, cache_dir, output_dir, executor="processes")  # only the missing runs
    results = collect(points, settings, cache_dir, output_dir)                          # {point: result}
"""

from __future__ import annotations

import functools
import gc
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from sga import theory
from sga.batch import Task, run_tasks
from sga.experiment import execute, prepare, result_path
from sga.presets import Settings
from sga.progress import bar as progress_bar
from sga.results import read_json
from sga.specs import RunSpec
from sga.world import World

GRIDS = ("core", "full")


@dataclass(frozen=True)
class Point:
    """One run of a sweep: the question it answers (``group``), its configuration's ``label`` and its spec."""

    group: str
    label: str
    run: RunSpec

    @property
    def benchmark(self) -> str:
        return self.run.benchmark

    @property
    def method(self) -> str:
        return self.run.method

    @property
    def seed(self) -> int:
        return self.run.seed


def configurations(settings: Settings, grid: str = "core", **common: Any) -> list[Point]:
    """Notebook 05's configurations on ``settings``' benchmark at its seed, in order, each in the group of the
    question it answers; ``common`` overrides apply to every run (e.g. ``trajectory=True``).

    ``core``: GA and SGA (gls) at the notebooks' rate r0 (``rate``); the gls rates -1, +0.4, +1 (the range the
    measured r*(t) of notebook 01 spans); adaptive SGA; GradDiff with SGA r0's weights (the reweighting control);
    the paper's other baselines KL, NPO, SimNPO and FLAT at their defaults;
    GA and SGA r0 at 3x the learning rate without gradient clipping (stability). ``full`` adds the gls rate +1.2
    (over-smoothing), the descent rates 0.25, 0.5, 0.75, 1 (the measured descent r*(t) spans 0.15 to 1.29, clipped
    to [0, 1]), K = 2 and 8 at r0 and at r0's total normal weight r (K-1)/K, the TF-IDF and embedding normal
    sources, 3x the learning rate with clipping, and adaptive SGA under the descent reading and unclipped at 3x.
    """
    if grid not in GRIDS:
        raise ValueError(f"Unknown grid {grid!r}; choose one of {list(GRIDS)}.")
    full = grid == "full"
    sga = settings.options_of("sga")
    r0, k, lr = sga.rate, sga.k, settings.training.lr
    gamma, alpha = theory.graddiff_weights(r0, k, "gls")
    fast = {"lr": 3 * lr, "max_grad_norm": "none"}
    total = r0 * (k - 1) / k  # the summed weight of the K-1 normal samples
    groups: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
        "GA and SGA r0": {"GA": ("ga", {}), f"SGA r={r0:+g}": ("sga", {"rate": r0})},
        "gls rate": {f"SGA r={r:+g}": ("sga", {"rate": r}) for r in (0.4, -1.0, 1.0, *((1.2,) if full else ()))},
        "adaptive": {"SGA adaptive": ("sga_adaptive", {}), **({"SGA adaptive, descent": ("sga_adaptive", {"reading": "descent"})} if full else {})},
        "reweighting control": {f"GradDiff, SGA r={r0:+g}'s weights": ("graddiff", {"graddiff_forget_weight": gamma, "graddiff_retain_weight": alpha})},
        "baselines": {"KL": ("kl", {}), "NPO": ("npo", {}), "SimNPO": ("simnpo", {}), "FLAT": ("flat", {})},
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
    return [Point(group, label, settings.run(method, **{**common, **overrides}))
            for group, by_label in groups.items() for label, (method, overrides) in by_label.items()]


def points(settings: Iterable[Settings], seeds: Sequence[int], grid: str = "core", **common: Any) -> list[Point]:
    """The sweep of notebook 05: every configuration of ``grid`` on every benchmark's settings and seed."""
    return [replace(point, run=replace(point.run, seed=int(seed)))
            for each in settings for point in configurations(each, grid, **common) for seed in seeds]


def configuration_table(points: Sequence[Point]) -> pd.DataFrame:
    """One row per (group, label): the method and the run parameters that differ between the configurations
    ("" where a parameter is not the method's; "none" for None)."""
    def flat(run: RunSpec) -> dict[str, Any]:
        values = {**run.options.to_dict(), **run.training.to_dict(), **run.evaluation.to_dict()}
        return {key: "none" if value is None else value for key, value in values.items()}

    frame = pd.DataFrame([{"group": p.group, "label": p.label, "method": p.method, **flat(p.run)} for p in points])
    frame = frame.drop_duplicates(["group", "label"]).set_index(["group", "label"])
    varying = [c for c in frame.columns if c == "method" or frame[c].astype(str).nunique() > 1]
    return frame[varying].astype(object).fillna("")


def select(points: Iterable[Point], group: str | None = None, method: str | None = None,
           where: Callable[[RunSpec], bool] = lambda run: True) -> list[str]:
    """The labels, in order and once each, of the points in ``group`` of ``method`` whose run satisfies ``where``."""
    return list(dict.fromkeys(p.label for p in points if (group is None or p.group == group)
                              and (method is None or p.method == method) and where(p.run)))


def only(labels: Sequence[str]) -> str:
    """The one label of a :func:`select` that must find exactly one."""
    if len(labels) != 1:
        raise ValueError(f"Expected one configuration, found {list(labels)}.")
    return labels[0]


@functools.lru_cache(maxsize=None)
def world(settings: Settings, cache_dir: str | Path, output_dir: str | Path) -> World:
    """The world of ``settings`` with progress bars off, prepared once per process (``run_sweep``, ``collect`` and a
    notebook share it)."""
    return prepare(replace(settings, plan=replace(settings.plan, progress=False)), cache_dir, output_dir)


def run_points(settings: Settings, cache_dir: str, output_dir: str, runs: Sequence[tuple[str, RunSpec]]) -> None:
    """Run each (label, spec) that has no result yet in ``settings``' world; the task of a sweep. A failing run is
    reported (a RuntimeError naming each) after the others ran."""
    here = world(settings, cache_dir, output_dir)
    failed = []
    gc.collect()
    gc.freeze()  # each run's gc.collect (experiment.free) then skips the objects already here: 0.4 s a run, not 0
    try:
        for label, run in runs:
            try:
                if not result_path(here, run).exists():
                    execute(here, run)
            except Exception as error:  # one bad run must not cost the others their runs
                failed.append(f"{label} (seed {run.seed}): {type(error).__name__}: {error}")
    finally:
        gc.unfreeze()
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(runs)} runs failed: " + "; ".join(failed))


def run_sweep(
    points: Sequence[Point],
    settings: Mapping[str, Settings],
    cache_dir: str | Path,
    output_dir: str | Path,
    executor: str = "local",
    address: str | None = None,
    runs_per_task: int = 1,
    gpus_per_task: float = 0.0,
    max_parallel: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Compute the points whose result is missing, in tasks of up to ``runs_per_task`` runs of one benchmark on
    ``executor`` (:func:`sga.batch.run_tasks`; ``max_parallel`` workers or tasks in flight); ``settings`` holds each
    benchmark's settings (its world), and each task's threads are pinned to the settings' ``cpu_threads``.

    Each task prepares its world (data and models come from ``cache_dir``; they are built here first, so
    parallel tasks never build the same cache; a worker process keeps the worlds it prepared) and runs its points.
    ``progress``: a bar of the runs done, with the time left at the mean time per finished run (a widget in
    JupyterLab, else a line per finished task on stderr, :mod:`sga.progress`). Returns a report: how many points
    were already there, how many were run, the failures as (task, error) and the wall time.
    """
    began = time.perf_counter()
    missing: dict[str, list[Point]] = {}
    for benchmark in dict.fromkeys(p.benchmark for p in points):
        here = world(settings[benchmark], cache_dir, output_dir)
        todo = list(dict.fromkeys(p for p in points if p.benchmark == benchmark and not result_path(here, p.run).exists()))
        if todo:
            missing[benchmark] = todo
    tasks = [Task(name, run_points, {"settings": settings[benchmark], "cache_dir": str(cache_dir), "output_dir": str(output_dir),
                                     "runs": [(p.label, p.run) for p in part]})
             for benchmark, todo in missing.items() for name, part in split(benchmark, todo, runs_per_task)]
    threads = max((settings[b].world.cpu_threads or 1 for b in missing), default=1)
    n_run = sum(len(t) for t in missing.values())
    with progress_bar(total=n_run, desc="sweep", unit="run", disable=not (progress and tasks), interval=0) as bar:
        failed = 0

        def done(task: Task, error: str | None, seconds: float) -> None:
            nonlocal failed
            failed += error is not None
            shown = {"failed": failed} if failed else {}
            bar.set_postfix(**shown, last=f"{task.name} in {seconds:.0f} s{' (FAILED)' if error else ''}")
            bar.update(len(task.kwargs["runs"]))

        failures = run_tasks(tasks, executor, address, threads, gpus_per_task, max_parallel, on_done=done) if tasks else []
    return {"points": len(set(points)), "reused": len(set(points)) - n_run, "run": n_run, "tasks": len(tasks),
            "failures": failures, "seconds": time.perf_counter() - began}


def split(benchmark: str, todo: Sequence[Point], runs_per_task: int) -> list[tuple[str, list[Point]]]:
    """``todo`` in tasks of at most ``runs_per_task`` points, each task's spread over the list: (name, points)."""
    if runs_per_task < 1:
        raise ValueError(f"runs_per_task must be >= 1, got {runs_per_task}")
    parts = -(-len(todo) // runs_per_task)
    return [(f"{benchmark}-{i + 1}-of-{parts}", list(todo[i::parts])) for i in range(parts)]


def collect(points: Iterable[Point], settings: Mapping[str, Settings], cache_dir: str | Path, output_dir: str | Path) -> dict[Point, dict[str, Any]]:
    """The result of each point that has one (a point whose run failed or is missing is left out)."""
    results = {}
    for point in points:
        path = result_path(world(settings[point.benchmark], cache_dir, output_dir), point.run)
        if path.exists():
            results[point] = read_json(path)
    return results
