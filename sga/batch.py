"""Rerun a notebook over a set of papermill parameter files, one output folder per run.

    python -m sga.batch notebooks/02_tofu_unlearning.ipynb notebooks/params/tofu/*.yaml --out outputs

Each run gets ``OUT/<notebook>/<params file stem>/`` holding the executed notebook; the notebook's
``output_dir`` and ``figures_dir`` parameters (when it has them) point inside that folder, so its
result JSONs and figures land there too. A failed run does not stop the others; failures are
listed at the end and the exit status is 1. Runs go one after another in this process
(``--executor local``), side by side in worker processes (``--executor processes``: as many as the cores hold
runs of their thread count, the default where that is more than one), or as Ray tasks (``--executor ray``: a
local Ray instance, or an existing cluster with ``--address``); the folders and the failure report are the same.
Each run's kernel writes its progress as plain lines to this command's stderr (``SGA_PROGRESS=lines``).
"""

from __future__ import annotations

import argparse
import ast
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import nbformat
import papermill as pm
import yaml

if TYPE_CHECKING:
    from sga.presets import Settings

EXECUTORS = ("local", "processes", "ray")


@dataclass(frozen=True)
class Task:
    """One unit of a batch: ``fn(**kwargs)`` run once; it raises on failure."""

    name: str  # shown in progress lines and the failure report (e.g. the params file name)
    fn: Callable[..., Any]  # a module-level (picklable) function
    kwargs: dict[str, Any]


def _describe(error: BaseException) -> str:
    """``"ErrName: message"``; a papermill error gives the notebook's exception, not its own."""
    detail = getattr(error, "evalue", None) or (str(error).strip().splitlines() or [""])[0]
    return f"{getattr(error, 'ename', type(error).__name__)}: {detail}"


def _pin_threads(threads: int) -> None:
    """Cap CPU threads (torch, OpenMP, MKL) at ``threads``: in the environment, read when torch is first imported and
    inherited by subprocesses such as a papermill kernel, and in torch if it is already loaded."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _run_task(fn: Callable[..., Any], kwargs: dict[str, Any], threads: int | None) -> tuple[str | None, float]:
    """Run one task; return (error or None, seconds). With ``threads``, cap CPU threads first (:func:`_pin_threads`)."""
    began = time.perf_counter()
    if threads is not None:
        _pin_threads(threads)
    try:
        fn(**kwargs)
        return None, time.perf_counter() - began
    except Exception as error:  # a failed task must not stop the batch
        return _describe(error), time.perf_counter() - began


Report = Callable[[Task, str | None, float], None]


def _report(task: Task, error: str | None, seconds: float) -> None:
    outcome = f"FAILED after {seconds:.0f} s: {error}" if error else f"done in {seconds:.0f} s"
    print(f"[batch] {task.name}: {outcome}", flush=True)


def workers_for(cpu_threads: int) -> int:
    """How many tasks of ``cpu_threads`` threads this machine's cores hold side by side (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, cpu_threads))


def default_executor(cpu_threads: int) -> str:
    """``processes`` where the cores hold more than one task of ``cpu_threads`` threads, else ``local``."""
    return "processes" if workers_for(cpu_threads) > 1 else "local"


def run_tasks(
    tasks: Sequence[Task],
    executor: str = "local",
    address: str | None = None,
    cpu_threads: int = 1,
    gpus_per_task: float = 0.0,
    max_parallel: int | None = None,
    on_done: Report | None = None,
) -> list[tuple[str, str]]:
    """Run every task; return (task name, "ErrName: message") for each failed one, in task order. A failure never stops the others.

    ``local`` runs them in this process, one after another (``address``, ``cpu_threads``, ``gpus_per_task``
    and ``max_parallel`` are ignored). ``processes`` runs them in ``max_parallel`` worker processes (default: as
    many as the cores hold tasks of ``cpu_threads`` threads, :func:`workers_for`), started with "spawn", each
    capped at ``cpu_threads`` threads before it imports anything (``address`` and ``gpus_per_task`` are ignored);
    a worker that dies fails the tasks then in flight, and a new pool runs the rest. ``ray`` makes each a Ray task
    asking for ``cpu_threads`` CPUs and ``gpus_per_task`` GPUs; on CPU (``gpus_per_task == 0``) it also caps the
    task's threads at ``cpu_threads``. It uses the Ray session already open in this process if any, else connects
    to the cluster at ``address`` ("auto", "ray://host:10001"), else starts a local instance (shut down at the
    end); ``max_parallel`` bounds the tasks in flight (default: all). ``on_done(task, error, seconds)`` is called
    here as each task ends (default: a "[batch]" line on stdout).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if not tasks:
        return []
    report = on_done or _report
    if executor == "local":
        errors: dict[int, str] = {}
        for index, task in enumerate(tasks):
            if on_done is None:
                print(f"[batch] {task.name}: started", flush=True)
            error, seconds = _run_task(task.fn, task.kwargs, None)
            report(task, error, seconds)
            if error:
                errors[index] = error
    elif executor == "processes":
        errors = _run_in_processes(tasks, cpu_threads, max_parallel or workers_for(cpu_threads), report)
    else:
        errors = _run_on_ray(tasks, address, cpu_threads, gpus_per_task, max_parallel, report)
    return [(tasks[index].name, errors[index]) for index in sorted(errors)]


def _run_in_processes(tasks: Sequence[Task], threads: int, workers: int, report: Report) -> dict[int, str]:
    """The ``processes`` executor: at most ``workers`` tasks in flight; a pool whose worker died is replaced."""
    pending, errors = list(range(len(tasks))), {}
    while pending:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_pin_threads,
                                 initargs=(threads,)) as pool:
            in_flight: dict[Any, tuple[int, float]] = {}
            broken = False
            while (pending and not broken) or in_flight:
                while pending and not broken and len(in_flight) < workers:
                    try:
                        future = pool.submit(_run_task, tasks[pending[0]].fn, tasks[pending[0]].kwargs, threads)
                    except BrokenProcessPool:  # a worker died since the last wait: the next pool takes this task
                        broken = True
                        break
                    in_flight[future] = pending.pop(0), time.perf_counter()
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    index, submitted = in_flight.pop(future)
                    try:
                        error, seconds = future.result()
                    except Exception as failure:  # the worker died (BrokenProcessPool), or the task could not be pickled
                        broken = broken or isinstance(failure, BrokenProcessPool)
                        error, seconds = _describe(failure), time.perf_counter() - submitted
                    report(tasks[index], error, seconds)
                    if error:
                        errors[index] = error
    return errors


@contextmanager
def _ray_session(address: str | None) -> Iterator[tuple[Any, bool]]:
    """Yield (the ``ray`` module, whether this call started Ray): the running session if any, else a connection
    to ``address``, else a new local instance. Shut down at the end only what this call started."""
    try:
        import ray
    except ImportError as error:
        raise ImportError('the ray executor needs Ray: pip install -e ".[ray]"') from error
    if ray.is_initialized():
        yield ray, False
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:  # workers see this process's import path (a test module, a script's folder), not only the cwd
        path = os.pathsep.join(p for p in sys.path if p and not p.startswith((sys.prefix, sys.base_prefix)))
        ray.init(include_dashboard=False, logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        yield ray, True
    finally:
        ray.shutdown()


def _run_on_ray(tasks: Sequence[Task], address: str | None, cpu_threads: int, gpus_per_task: float, max_parallel: int | None,
                report: Report) -> dict[int, str]:
    with _ray_session(address) as (ray, started):
        if started and not address:  # a local instance never grows: refuse a task that could never be scheduled
            total = ray.cluster_resources()
            if cpu_threads > total.get("CPU", 0) or gpus_per_task > total.get("GPU", 0):
                raise ValueError(f"each task asks for {cpu_threads} CPUs and {gpus_per_task:g} GPUs; this machine has {total.get('CPU', 0):g} and {total.get('GPU', 0):g}")
        remote = ray.remote(num_cpus=cpu_threads, num_gpus=gpus_per_task, max_retries=0)(_run_task)
        threads = cpu_threads if gpus_per_task == 0 else None
        print(f"[batch] {len(tasks)} tasks on Ray ({cpu_threads} CPUs, {gpus_per_task:g} GPUs each)", flush=True)
        pending, in_flight, errors = list(enumerate(tasks)), {}, {}
        while pending or in_flight:
            while pending and len(in_flight) < (max_parallel or len(tasks)):
                index, task = pending.pop(0)
                in_flight[remote.remote(task.fn, task.kwargs, threads)] = index, time.perf_counter()
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            index, submitted = in_flight.pop(ref)
            try:
                error, seconds = ray.get(ref)
            except Exception as failure:  # the worker died, or could not unpickle the task
                error, seconds = _describe(getattr(failure, "cause", None) or failure), time.perf_counter() - submitted
            report(tasks[index], error, seconds)
            if error:
                errors[index] = error
        return errors


def _run_notebook(notebook: str, output: str, parameters: dict[str, Any], kernel: str) -> None:
    """One papermill run (a batch task); the executed notebook keeps the traceback of a failure. Its kernel writes
    progress as plain lines to this process's stderr, not into the notebook (unless ``SGA_PROGRESS`` says otherwise)."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with mock.patch.dict(os.environ, {"SGA_PROGRESS": os.environ.get("SGA_PROGRESS") or "lines"}):
        pm.execute_notebook(notebook, output, parameters=parameters, kernel_name=kernel, cwd=str(Path(notebook).parent), progress_bar=False)


def run_settings(benchmark: str, params: dict[str, Any], inspected: dict[str, Any]) -> Settings:
    """``benchmark``'s settings for the parameters of one run of its notebook, or the ValueError that refuses them:
    the same check the notebook makes first, before any work, done here before any run starts."""
    from sga import presets  # the benchmark registry and its specs: loaded only for a benchmark notebook

    preset = params.get("preset", ast.literal_eval(inspected["preset"]["default"]) if "preset" in inspected else "mini")
    return presets.resolve(benchmark, preset, **{k: v for k, v in params.items() if k in presets.parameter_names(benchmark)})


def run_batch(
    notebook: Path,
    param_files: list[Path],
    out: Path,
    base: Path | None = None,
    kernel: str = "python3",
    executor: str | None = None,
    address: str | None = None,
    cpu_threads: int | None = None,
    gpus_per_task: float = 0.0,
) -> list[tuple[Path, str]]:
    """Execute ``notebook`` once per parameter file; return the (file, error) pairs of failed runs, in file order.

    A file naming a parameter the notebook does not declare fails before anything runs; so does one whose values a
    benchmark notebook (``metadata.sga.benchmark``) would refuse (:func:`run_settings`). The other arguments after
    ``kernel`` go to :func:`run_tasks`; ``cpu_threads`` defaults to the most any run pins (a benchmark's
    ``cpu_threads``, else 1) and ``executor`` to :func:`default_executor` of it.
    """
    stems = [p.stem for p in param_files]
    if len(set(stems)) < len(stems):
        raise ValueError(f"parameter files share a name, so their runs would share a folder: {sorted({s for s in stems if stems.count(s) > 1})}")
    inspected = pm.inspect_notebook(str(notebook))
    declared = set(inspected)
    benchmark = nbformat.read(notebook, as_version=4).metadata.get("sga", {}).get("benchmark")
    defaults = yaml.safe_load(base.read_text()) if base else {}
    refused: dict[Path, str] = {}
    tasks: dict[Path, Task] = {}
    pinned: list[int] = []  # the thread count each run pins
    for param_file in param_files:
        run_dir = (out / notebook.stem / param_file.stem).resolve()
        params = {**(defaults or {}), **(yaml.safe_load(param_file.read_text()) or {})}
        unknown = sorted(set(params) - declared)
        if unknown:  # papermill would inject them and the notebook would silently ignore them
            refused[param_file] = f"ValueError: unknown parameters {unknown}; {notebook.name} declares {sorted(declared)}"
            print(f"[batch] {param_file}: FAILED, unknown parameters {unknown}", flush=True)
            continue
        try:
            pinned.append((run_settings(benchmark, params, inspected).world.cpu_threads or 1) if benchmark else 1)
        except ValueError as error:
            refused[param_file] = f"ValueError: {error}"
            print(f"[batch] {param_file}: FAILED, {refused[param_file]}", flush=True)
            continue
        for key, sub in (("output_dir", "runs"), ("figures_dir", "figures")):
            if key in declared:
                params.setdefault(key, str(run_dir / sub))
        run = {"notebook": str(notebook.resolve()), "output": str(run_dir / notebook.name), "parameters": params, "kernel": kernel}
        tasks[param_file] = Task(str(param_file), _run_notebook, run)
    threads = cpu_threads or max(pinned, default=1)
    executor = executor or default_executor(threads)
    print(f"[batch] {notebook.name}: {len(tasks)} runs into {(out / notebook.stem).resolve()} ({executor}, {threads} threads each)", flush=True)
    failed = dict(run_tasks(list(tasks.values()), executor, address, threads, gpus_per_task))
    errors = {**refused, **{p: failed[t.name] for p, t in tasks.items() if t.name in failed}}
    return [(p, errors[p]) for p in param_files if p in errors]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("params", type=Path, nargs="+", help="papermill parameter files (YAML)")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    parser.add_argument("--base", type=Path, help="YAML of parameters shared by every run (each file overrides it)")
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--executor", choices=EXECUTORS, help="local: one run after another here; processes: runs side by side in "
                        "worker processes, as many as the cores hold (the default where that is more than one, else local); ray: one Ray task per run")
    parser.add_argument("--address", help="ray: connect to this cluster (auto, ray://host:10001) instead of starting a local instance")
    parser.add_argument("--cpus-per-task", type=int, help="threads per run (processes, and ray on CPU) and CPUs ray reserves for it "
                        "(default: the runs' own cpu_threads, 1 for a notebook without them)")
    parser.add_argument("--gpus-per-task", type=float, default=0.0, help="ray: GPUs reserved per run (default: 0)")
    args = parser.parse_args(argv)
    try:
        failures = run_batch(args.notebook, args.params, args.out, args.base, args.kernel, args.executor, args.address, args.cpus_per_task, args.gpus_per_task)
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    print(f"[batch] {len(args.params) - len(failures)} of {len(args.params)} runs succeeded")
    for param_file, error in failures:
        print(f"[batch] FAILED {param_file}: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
