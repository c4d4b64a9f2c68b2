"""The rules of the JupyterLab browser test on hand-written page snapshots (no browser needed: runs in `make test`)."""

from __future__ import annotations

from labchecks import STDERR_MIME, WIDGET_MIME, find_problems, format_findings, raw_progress, run_finished, summary

STDOUT_MIME = "application/vnd.jupyter.stdout"


def cell(index, type="code", prompt="[1]:", outputs=(), math_errors=(), math=0):
    return {"index": index, "type": type, "prompt": prompt if type == "code" else "", "outputs": list(outputs),
            "math_errors": list(math_errors), "math": math}


def out(mime, text="", imgs=0, widgets=0, progress=0):
    return {"mime": mime, "text": text, "imgs": imgs, "widgets": widgets, "progress": progress}


def failed(found):
    return {check for check, items in found.items() if items}


def test_a_clean_executed_notebook_passes():
    cells = [cell(0, "markdown", math=3), cell(1, prompt="[1]:", outputs=[out("image/png", imgs=1)]),
             cell(2, prompt="[2]:", outputs=[out(WIDGET_MIME, "100% 5/5", widgets=3, progress=1)])]
    assert failed(find_problems(cells, expect_figures=True)) == set()
    assert summary(cells) == {"cells": 3, "code_cells": 2, "executed": 2, "images": 1, "widget_progress_bars": 1,
                              "formulas": 3}


def test_unexecuted_and_queued_cells_fail_executed():
    found = find_problems([cell(0, prompt="[1]:"), cell(1, prompt="[ ]:"), cell(2, prompt="[*]:")], expect_figures=False)
    assert failed(found) == {"executed"}
    assert found["executed"] == ["cell 1: prompt [ ]:", "cell 2: prompt [*]:"]


def test_a_traceback_is_an_error():
    tb = "---------\nValueError                                Traceback (most recent call last)\nValueError: boom"
    found = find_problems([cell(0, outputs=[out(STDERR_MIME, tb)])], expect_figures=False)
    assert failed(found) == {"errors"}
    assert "ValueError" in found["errors"][0]


def test_a_warning_on_stderr_fails_stderr_only():
    text = "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because ..."
    found = find_problems([cell(3, outputs=[out(STDERR_MIME, text)])], expect_figures=False)
    assert failed(found) == {"stderr"}
    assert found["stderr"][0].startswith("cell 3: Skipping publisher trust check")


def test_missing_figures_fail_only_where_figures_are_expected():
    cells = [cell(0, outputs=[out(STDOUT_MIME, "done")])]
    assert failed(find_problems(cells, expect_figures=True)) == {"figures"}
    assert failed(find_problems(cells, expect_figures=False)) == set()


def test_tqdm_text_bars_fail_progress_wherever_they_are():
    bars = ["  0%|          | 0/5 [00:00<?, ?it/s]", "100%|██████████| 5/5 [00:01<00:00,  4.10it/s]",
            "HBox(children=(HTML(value=''), FloatProgress(value=0.0, max=5.0)))"]
    for mime in (STDERR_MIME, STDOUT_MIME, "text/plain"):
        for bar in bars:
            found = find_problems([cell(0, outputs=[out(mime, "epoch 1\n" + bar)])], expect_figures=False)
            assert "progress" in failed(found), (mime, bar)
            assert bar.strip()[:4] in found["progress"][0]


def test_widget_bars_pass_and_unrendered_widgets_fail():
    # as JupyterLab renders tqdm.notebook's bar: no data-mime-type on the widget's output node, the bar's text beside it
    for mime in (WIDGET_MIME, ""):
        good = out(mime, "100%\n 3/3 [00:00<00:00, 103.69it/s]", widgets=4, progress=1)
        assert failed(find_problems([cell(0, outputs=[good])], expect_figures=False)) == set()
    for text in ("Error displaying widget: model not found", "Loading widget...", ""):
        found = find_problems([cell(0, outputs=[out(WIDGET_MIME, text, widgets=0)])], expect_figures=False)
        assert failed(found) == {"progress"}


def test_plain_numbers_are_not_progress_bars():
    for text in ("utility 0.439 vs 0.297", "50% of the authors", "runs: 72/72 cached", "1.3-1.9x a step [s]"):
        assert raw_progress(text) is None, text


def test_mathjax_errors_fail_math():
    errors = [{"error": "undefined command, drawn in red", "text": "\\*", "formula": "r\\*"},
              {"error": "Missing close brace", "text": "Missing close brace"}]
    found = find_problems([cell(4, "markdown", math_errors=errors)], expect_figures=False)
    assert failed(found) == {"math"}
    assert found["math"] == ["cell 4: undefined command, drawn in red: \\* in $r\\*$",
                             "cell 4: Missing close brace: Missing close brace"]
    assert "math FAILED" in format_findings("01", found)


def test_run_finished_needs_a_count_and_nothing_queued():
    assert not run_finished([cell(0, prompt="[ ]:"), cell(1, prompt="[ ]:")])  # not started
    assert not run_finished([cell(0, prompt="[1]:"), cell(1, prompt="[*]:")])  # running
    assert run_finished([cell(0, prompt="[1]:"), cell(1, prompt="[ ]:")])  # stopped at an error
    assert not run_finished([cell(0, "markdown")])
