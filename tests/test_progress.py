"""Progress: plain lines with done/total and the time left outside an interactive Jupyter session, and nothing of a
bar in a notebook executed by papermill (only the widgets a person's JupyterLab would render, when asked for)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from sga import progress
from sga.progress import Lines

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
from labchecks import raw_progress  # noqa: E402  (the browser test's rule for a bar left as text)


class Clock:
    """A stand-in for time.monotonic that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    monkeypatch.delenv("SGA_PROGRESS", raising=False)
    monkeypatch.delenv("SGA_PROGRESS_LABEL", raising=False)
    return fake


def test_lines_give_done_total_and_the_time_left(clock, capsys):
    with progress.bar(total=4, desc="train", unit="step", interval=10) as bar:
        for _ in range(4):
            clock.now += 6
            bar.set_postfix(loss="1.25")
            bar.update()
    assert capsys.readouterr().err.splitlines() == [
        "[sga] train: 2/4 steps (50%), 00:12 elapsed, ~00:12 left, loss=1.25",  # 6 s per step so far, 2 to go
        "[sga] train: 4/4 steps in 00:24, loss=1.25",  # the 4th update leaves the last line to close()
    ]


def test_an_iterated_bar_resumed_or_stopped_says_so(clock, capsys, monkeypatch):
    monkeypatch.setenv("SGA_PROGRESS_LABEL", "02_tofu")
    for step in progress.bar(range(3, 10), desc="unlearn[ga]", initial=3, total=10, unit="step", interval=0):
        clock.now += 2
        if step == 5:
            break  # a diverged run leaves its loop early
    lines = capsys.readouterr().err.splitlines()
    # the rate counts the steps done here (not the 3 resumed from a checkpoint): 2 s each, 6 left
    assert lines == ["[02_tofu] unlearn[ga]: 4/10 steps (40%), 00:02 elapsed, ~00:12 left",
                     "[02_tofu] unlearn[ga]: 5/10 steps (50%), 00:04 elapsed, ~00:10 left",
                     "[02_tofu] unlearn[ga]: 5/10 steps in 00:06 (stopped early)"]
    assert list(progress.bar(range(3), disable=True)) == [0, 1, 2] and capsys.readouterr().err == ""


def test_mode_follows_the_environment(monkeypatch):
    monkeypatch.delenv("SGA_PROGRESS", raising=False)
    assert progress.mode() == "lines"  # no kernel here
    assert isinstance(progress.bar(total=1), Lines)
    monkeypatch.setenv("SGA_PROGRESS", "widgets")
    assert progress.mode() == "widgets"
    monkeypatch.setenv("SGA_PROGRESS", "bars")
    with pytest.raises(ValueError, match="choose one of"):
        progress.mode()


NOTEBOOK = """\
from sga.progress import bar, mode
print(mode())
for _ in bar(range(3), desc="loop", interval=0):
    pass
"""


def run_papermill(tmp_path: Path, env: dict[str, str]) -> tuple[nbformat.NotebookNode, str]:
    """A notebook with a bar, executed by the papermill command line; returns the saved notebook and papermill's stderr."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    command = [sys.executable, "-m", "papermill", "in.ipynb", "out.ipynb", "-k", "python3", "--log-level", "WARNING", "--no-progress-bar"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={**env, "PYTHONPATH": str(ROOT)})
    return nbformat.read(tmp_path / "out.ipynb", as_version=4), done.stderr


def output_texts(nb: nbformat.NotebookNode) -> list[str]:
    return [o.get("text") or o.get("data", {}).get("text/plain", "") for cell in nb.cells for o in cell.get("outputs", [])]


@pytest.mark.slow
def test_papermill_keeps_bars_out_of_the_saved_notebook(tmp_path):
    """Run by papermill (found as the kernel's parent), the bar writes lines to papermill's stderr and nothing to
    the notebook; asked for widgets instead, the saved notebook holds the frozen text bar the checks exist for."""
    env = {k: v for k, v in os.environ.items() if k != "SGA_PROGRESS"}
    nb, stderr = run_papermill(tmp_path, env)
    assert output_texts(nb) == ["lines\n"] and "widgets" not in nb.metadata
    assert "[sga] loop: 1/3 its (33%)" in stderr and "left" in stderr and "[sga] loop: 3/3 its in 00:00" in stderr
    nb, _ = run_papermill(tmp_path, {**env, "SGA_PROGRESS": "widgets"})
    assert any(raw_progress(text) for text in output_texts(nb))  # tqdm's widget, saved as "  0%|          | 0/3 ..."


@pytest.mark.slow
def test_a_smoke_notebook_run_by_papermill_holds_no_bar(tmp_path):
    """Notebook 02 as `make run` runs it (papermill, progress on by default), `smoke` with cold caches: its tiny models
    are trained and its runs made, each bar a line in papermill's log, none in the saved notebook."""
    files = {name: str(tmp_path / name) for name in ("cache_dir", "output_dir", "figures_dir")}
    command = [sys.executable, "-m", "papermill", "02_tofu_unlearning.ipynb", str(tmp_path / "02.ipynb"), "-k", "python3",
               "--log-level", "WARNING", "--no-progress-bar", "-p", "preset", "smoke", *(a for kv in files.items() for a in ("-p", *kv))]
    env = {**{k: v for k, v in os.environ.items() if k != "SGA_PROGRESS"}, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    stderr = subprocess.run(command, cwd=ROOT / "notebooks", capture_output=True, text=True, check=True, env=env).stderr
    nb = nbformat.read(tmp_path / "02.ipynb", as_version=4)
    assert "\nprogress = True " in next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert not [text for text in output_texts(nb) if raw_progress(text)]
    assert not [o for c in nb.cells for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert re.search(r"^\[sga\] train: (\d+)/\1 steps in \d\d:\d\d, loss=", stderr, re.MULTILINE), stderr
    assert re.search(r"^\[sga\] unlearn\[sga\]: (\d+)/\1 steps in \d\d:\d\d, loss=", stderr, re.MULTILINE), stderr
