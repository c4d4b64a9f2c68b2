"""Sweeps: many runs of the benchmarks' one run path, launched through :mod:`sga.batch`'s executors.

A sweep is a list of :class:`Point` (the question's group, a label for the configuration, and the run's
:class:`~sga.specs.RunSpec`, made from a benchmark's settings and so checked before any run). Each point is one
:func:`sga.experiment.execute` in its world, so its result JSON is the one a notebook writes for the same run, under
the same name: identical runs are never recomputed, whether a notebook or an earlier sweep made them.

    worlds = {("tofu", 0): presets.resolve("tofu", "mini")}
    points = [Point("core", "GA", worlds[("tofu", 0)].run("ga", seed=seed, locate=True)) for seed in (0, 1, 2)]
    report = run_sweep(points, worlds, cache_dir, output_dir, executor="processes")  # only the missing runs
    results = collect(points, worlds, cache_dir, output_dir)                          # {point: result}

Notebook 05's points come from :mod:`sga.design`.
"""

from __future__ import annotations

import functools
import gc
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from sga.batch import Task, run_tasks
from sga.experiment import execute, prepare, result_path
from sga.presets import Settings
from sga.progress import bar as progress_bar
from sga.results import read_json
from sga.specs import RunSpec
from sga.world import World

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

    @property
    def world_key(self) -> tuple[str, int]:
        """(benchmark, world seed): the key of its world's settings in a sweep."""
        return self.benchmark, self.run.world.world_seed


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
    worlds: Mapping[tuple[str, int], Settings],
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
    ``executor`` (:func:`sga.batch.run_tasks`; ``max_parallel`` workers or tasks in flight); ``worlds`` holds the settings
    of each (benchmark, world seed) (:attr:`Point.world_key`), and each task's threads are pinned to its ``cpu_threads``.

    Each task prepares its world (data and models come from ``cache_dir``; they are built here first, so
    parallel tasks never build the same cache; a worker process keeps the worlds it prepared) and runs its points.
    ``progress``: a bar of the runs done, with the time left at the mean time per finished run (a widget in
    JupyterLab, else a line per finished task on stderr, :mod:`sga.progress`). Returns a report: how many points
    were already there, how many were run, the failures as (task, error) and the wall time.
    """
    began = time.perf_counter()
    missing: dict[tuple[str, int], list[Point]] = {}
    for key in dict.fromkeys(p.world_key for p in points):
        here = world(worlds[key], cache_dir, output_dir)
        todo = list(dict.fromkeys(p for p in points if p.world_key == key and not result_path(here, p.run).exists()))
        if todo:
            missing[key] = todo
    tasks = [Task(name, run_points, {"settings": worlds[key], "cache_dir": str(cache_dir), "output_dir": str(output_dir),
                                     "runs": [(p.label, p.run) for p in part]})
             for key, todo in missing.items() for name, part in split(f"{key[0]}-world{key[1]}", todo, runs_per_task)]
    threads = max((worlds[key].world.cpu_threads or 1 for key in missing), default=1)
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


def split(name: str, todo: Sequence[Point], runs_per_task: int) -> list[tuple[str, list[Point]]]:
    """``todo`` in tasks of at most ``runs_per_task`` points, each task's spread over the list: (name, points)."""
    if runs_per_task < 1:
        raise ValueError(f"runs_per_task must be >= 1, got {runs_per_task}")
    parts = -(-len(todo) // runs_per_task)
    return [(f"{name}-{i + 1}-of-{parts}", list(todo[i::parts])) for i in range(parts)]


def collect(points: Iterable[Point], worlds: Mapping[tuple[str, int], Settings], cache_dir: str | Path,
            output_dir: str | Path) -> dict[Point, dict[str, Any]]:
    """The result of each point that has one (a point whose run failed or is missing is left out); ``worlds`` as in
    :func:`run_sweep`."""
    results = {}
    for point in points:
        path = result_path(world(worlds[point.world_key], cache_dir, output_dir), point.run)
        if path.exists():
            results[point] = read_json(path)
    return results
