"""The papermill batch runner: one folder per parameter file, failures reported, the rest still run."""

import nbformat

from sga.batch import main, run_batch


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
