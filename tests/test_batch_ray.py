"""sga.batch's executors: the same outputs and failure report whether tasks run here, in worker processes or as Ray tasks."""

from pathlib import Path

import nbformat
import pytest
import ray

from sga.batch import Task, _ray_session, main, run_tasks


def write(path: str, text: str) -> None:
    Path(path).write_text(text)


def explode(path: str, text: str) -> None:
    raise ValueError("boom")


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module, started as the ray executor starts it (these tests' functions
    live in a test module, so this also checks that workers get this process's import path)."""
    with _ray_session(None) as (_, started):
        assert started
        yield
    assert not ray.is_initialized()


@pytest.mark.parametrize("executor", ["local", pytest.param("processes", marks=pytest.mark.slow), pytest.param("ray", marks=pytest.mark.slow)])
def test_run_tasks_reports_the_failure_and_runs_the_rest(executor, request, tmp_path):
    if executor == "ray":
        request.getfixturevalue("ray_instance")
    tasks = [Task(name, fn, {"path": str(tmp_path / f"{name}.txt"), "text": name}) for name, fn in (("t1", write), ("t2", explode), ("t3", write))]
    assert run_tasks(tasks, executor) == [("t2", "ValueError: boom")]
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["t1.txt", "t3.txt"] and (tmp_path / "t3.txt").read_text() == "t3"
    assert ray.is_initialized() == (executor == "ray")  # run_tasks leaves a session it did not start running
    with pytest.raises(ValueError, match="'local', 'processes', 'ray'"):
        run_tasks(tasks, "dask")


def make_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("value = 1\noutput_dir = None")
    params.metadata["tags"] = ["parameters"]
    body = "from pathlib import Path\nif value < 0:\n    raise ValueError(f'negative value {value}')\n"
    body += "Path(output_dir).mkdir(parents=True)\n(Path(output_dir) / 'result.txt').write_text(str(10 * value))"
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_ray_sweep_of_a_notebook(ray_instance, tmp_path, capsys):
    make_notebook(tmp_path / "nb.ipynb")
    for name, text in (("one", "value: 1"), ("minus", "value: -1"), ("three", "value: 3"), ("typo", "valu: 2")):
        (tmp_path / f"{name}.yaml").write_text(text + "\n")
    files = [str(tmp_path / f"{n}.yaml") for n in ("one", "minus", "typo", "three")]
    assert main(["--executor", "ray", str(tmp_path / "nb.ipynb"), *files, "--out", str(tmp_path / "out")]) == 1
    runs = tmp_path / "out" / "nb"
    for name, result in (("one", "10"), ("three", "30")):
        executed = nbformat.read(runs / name / "nb.ipynb", as_version=4)
        assert executed.metadata.papermill.exception is None and all(c.execution_count for c in executed.cells if c.cell_type == "code")
        assert (runs / name / "runs" / "result.txt").read_text() == result
    assert nbformat.read(runs / "minus" / "nb.ipynb", as_version=4).metadata.papermill.exception  # keeps the traceback
    assert not (runs / "typo").exists()  # refused before anything ran
    report = capsys.readouterr().out.splitlines()
    assert report[-3:] == [
        "[batch] 2 of 4 runs succeeded",
        f"[batch] FAILED {files[1]}: ValueError: negative value -1",
        f"[batch] FAILED {files[2]}: ValueError: unknown parameters ['valu']; nb.ipynb declares ['output_dir', 'value']",
    ]
