"""The papermill batch runner: one folder per parameter file, failures reported, the rest still run."""

import os
from pathlib import Path

import nbformat
import pytest

from sga.batch import Task, default_executor, main, run_batch, run_tasks, workers_for


def make_notebook(path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1\noutput_dir = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("assert x != 2, 'x = 2 is refused'\nprint(x * 10, output_dir)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_batch_runs_every_file_and_reports_failures(tmp_path, capsys):
    make_notebook(tmp_path / "nb.ipynb")
    for name, x in (("good", 1), ("bad", 2), ("also-good", 3)):
        (tmp_path / f"{name}.yaml").write_text(f"x: {x}\n")
    files = [tmp_path / f"{n}.yaml" for n in ("good", "bad", "also-good")]
    failures = run_batch(tmp_path / "nb.ipynb", files, tmp_path / "out")
    assert [f.name for f, _ in failures] == ["bad.yaml"] and "x = 2 is refused" in failures[0][1]
    executed = nbformat.read(tmp_path / "out" / "nb" / "also-good" / "nb.ipynb", as_version=4)
    printed = executed.cells[-1].outputs[0]["text"]
    assert printed.startswith("30 ") and str(tmp_path / "out" / "nb" / "also-good" / "runs") in printed  # output_dir injected
    assert (tmp_path / "out" / "nb" / "bad" / "nb.ipynb").exists()  # the failed run keeps its traceback notebook
    assert main([str(tmp_path / "nb.ipynb"), str(files[0]), "--out", str(tmp_path / "out2")]) == 0
    assert main([str(tmp_path / "nb.ipynb"), *map(str, files), "--out", str(tmp_path / "out3")]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_unknown_parameters_fail_before_running(tmp_path):
    make_notebook(tmp_path / "nb.ipynb")
    (tmp_path / "typo.yaml").write_text("x: 1\ny: 2\n")
    failures = run_batch(tmp_path / "nb.ipynb", [tmp_path / "typo.yaml"], tmp_path / "out")
    assert failures[0][1].startswith("ValueError: unknown parameters ['y']") and "['output_dir', 'x']" in failures[0][1]
    assert not (tmp_path / "out" / "nb" / "typo" / "nb.ipynb").exists()


def test_a_benchmark_notebooks_bad_values_fail_before_running(tmp_path):
    """A parameter file the benchmark's settings refuse (a wrong type, a value out of range) never starts a run."""
    from pathlib import Path

    notebook = Path(__file__).parents[1] / "notebooks" / "02_tofu_unlearning.ipynb"
    for name, text in (("typed", "k: four\n"), ("range", "rate: 5.0\nreading: gls\n")):
        (tmp_path / f"{name}.yaml").write_text(text)
    failures = dict(run_batch(notebook, [tmp_path / "typed.yaml", tmp_path / "range.yaml"], tmp_path / "out"))
    assert "k (sga: K: the forget sample plus K-1 normal samples) must be an integer >= 1, got 'four'" in failures[tmp_path / "typed.yaml"]
    assert "Parameter rate: Smoothing rate 5.0 is outside" in failures[tmp_path / "range.yaml"]
    assert not (tmp_path / "out" / "02_tofu_unlearning").exists()


def threads_seen(path: str, text: str) -> None:
    """A task that records the threads torch and OpenMP get in the process it runs in."""
    import torch

    Path(path).write_text(f"{text} torch={torch.get_num_threads()} omp={os.environ.get('OMP_NUM_THREADS')}")


def explode(path: str, text: str) -> None:
    raise ValueError("boom")


def die(path: str, text: str) -> None:
    os._exit(3)  # the worker process dies, as on a segfault or an out-of-memory kill


@pytest.mark.slow
def test_processes_pin_threads_and_report_a_failure(tmp_path, capsys):
    tasks = [Task(name, fn, {"path": str(tmp_path / f"{name}.txt"), "text": name}) for name, fn in (("t1", threads_seen), ("t2", explode), ("t3", threads_seen))]
    seen = []
    assert run_tasks(tasks, "processes", cpu_threads=1, max_parallel=2, on_done=lambda task, error, s: seen.append((task.name, error))) == [("t2", "ValueError: boom")]
    assert sorted(seen) == [("t1", None), ("t2", "ValueError: boom"), ("t3", None)]
    # torch would take both cores here without the pin (its default is the core count)
    assert [(tmp_path / f"t{i}.txt").read_text() for i in (1, 3)] == ["t1 torch=1 omp=1", "t3 torch=1 omp=1"]
    assert capsys.readouterr().out == ""  # on_done replaces the "[batch]" lines


def test_a_dead_worker_fails_its_task_and_a_new_pool_runs_the_rest(tmp_path):
    tasks = [Task(name, fn, {"path": str(tmp_path / f"{name}.txt"), "text": name}) for name, fn in (("t1", write), ("t2", die), ("t3", write))]
    failures = run_tasks(tasks, "processes", max_parallel=1)
    assert [name for name, _ in failures] == ["t2"] and failures[0][1].startswith("BrokenProcessPool")
    assert (tmp_path / "t1.txt").read_text() == "t1" and (tmp_path / "t3.txt").read_text() == "t3"


def write(path: str, text: str) -> None:
    Path(path).write_text(text)


def test_default_executor_fits_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert (workers_for(2), default_executor(2), workers_for(8), default_executor(8), workers_for(16)) == (4, "processes", 1, "local", 1)
