"""What the JupyterLab browser test (tests/browser/test_lab.py) reads from a rendered notebook, and how it judges it.

Kept free of selenium so that its rules are unit-tested in `make test` (tests/browser/test_labchecks.py) on
snapshots written by hand, while test_lab.py takes the snapshots from the real page with ``SNAPSHOT_JS``.

A snapshot is a list of cells, each a dict:
    index     position in the notebook (0-based)
    type      "code" | "markdown" | "raw"
    prompt    a code cell's input prompt as rendered, e.g. "[3]:", "[*]:", "[ ]:" ("" for other cells)
    outputs   the rendered outputs of a code cell, each {"mime": data-mime-type ("" on a widget's output), "text":
              visible text, "imgs": <img> elements, "widgets": rendered widget elements (.jupyter-widgets),
              "progress": rendered progress bars (.widget-hprogress, ipywidgets 8; .widget-progress)}
    math_errors  MathJax's errors in the cell: mjx-merror elements, [data-mjx-error] attributes, and an undefined
              command, which MathJax 3 (its noundefined extension) draws as a red mjx-mtext ({"error": what,
              "text": the characters shown, "formula": the whole formula as text})
    math      typeset formulas (mjx-container elements)
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

STDERR_MIME = "application/vnd.jupyter.stderr"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

CHECKS = ("executed", "errors", "stderr", "figures", "progress", "math")
CHECK_DOC = {
    "executed": "every code cell has an execution count ([n]: in its input prompt)",
    "errors": "no error output (a traceback, rendered with data-mime-type application/vnd.jupyter.stderr)",
    "stderr": "no stderr box besides errors (.jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'])",
    "figures": "at least one <img> in the outputs of a notebook that saves figures",
    "progress": "no progress bar as raw text (tqdm's '0%|', 'it/s]', an ipywidgets repr); widget bars render",
    "math": "no MathJax error (mjx-merror, [data-mjx-error], or an undefined command drawn as red mjx-mtext)",
}

# Into the page: one entry per cell of the notebook panel in view (all cells are attached: windowingMode none).
SNAPSHOT_JS = r"""
const panel = [...document.querySelectorAll('.jp-NotebookPanel')].find(p => !p.classList.contains('lm-mod-hidden'));
if (!panel) { return null; }
// CHTML draws characters with CSS (<mjx-c class="mjx-c5C">): read them back from the class names
const chars = node => [...node.querySelectorAll('mjx-c')].map(c => {
  const m = /mjx-c([0-9A-F]+)/.exec(c.className); return m ? String.fromCodePoint(parseInt(m[1], 16)) : '';
}).join('') || (node.textContent || '');
const formula = node => {
  const container = node.closest('mjx-container');
  const mml = container && container.querySelector('mjx-assistive-mml');
  return mml ? mml.textContent : (container ? chars(container) : '');
};
const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
return cells.map((cell, index) => {
  const type = cell.classList.contains('jp-CodeCell') ? 'code'
             : cell.classList.contains('jp-MarkdownCell') ? 'markdown' : 'raw';
  const promptNode = cell.querySelector('.jp-InputArea-prompt');
  const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
    mime: o.getAttribute('data-mime-type') || '',
    text: (o.innerText || o.textContent || '').slice(0, 4000),
    imgs: o.querySelectorAll('img').length,
    widgets: o.querySelectorAll('.jupyter-widgets').length,
    progress: o.querySelectorAll('.widget-hprogress, .widget-vprogress, .widget-progress').length,
  }));
  // MathJax 3: mjx-merror / data-mjx-error for errors, and (noundefined) an undefined command as red text
  const math_errors = [...cell.querySelectorAll('mjx-merror, [data-mjx-error]')].map(e => ({
    error: e.getAttribute('data-mjx-error') || 'mjx-merror', text: chars(e), formula: formula(e),
  })).concat([...cell.querySelectorAll('mjx-mtext')]
    .filter(t => (t.getAttribute('style') || '').replace(/\s/g, '').includes('color:red') && !t.closest('mjx-merror'))
    .map(t => ({error: 'undefined command, drawn in red', text: chars(t), formula: formula(t)})));
  const math = cell.querySelectorAll('mjx-container').length;
  return {index, type, prompt: type === 'code' && promptNode ? promptNode.textContent.trim() : '',
          outputs, math_errors, math};
});
"""

_EXECUTED = re.compile(r"^\[\d+\]:?$")
_RUNNING = re.compile(r"^\[\*\]:?$")
# tqdm's text bar ("  0%|          | 0/5 [00:00<?, ?it/s]") and what ipywidgets prints where no widget renders
_RAW_PROGRESS = (
    re.compile(r"\d+%\|"),
    re.compile(r"\d+/\d+ \[\d+:\d+<"),
    re.compile(r"[\d.?]+ ?(it|s)/(s|it)\]"),
    re.compile(r"\b(HBox|FloatProgress|IntProgress)\(children=|\b(FloatProgress|IntProgress)\(value="),
)
_WIDGET_FAILURES = ("Error displaying widget", "Loading widget...", "Failed to load model class")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w+(Error|Exception|Interrupt)\b", re.M)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_executed(prompt: str) -> bool:
    return bool(_EXECUTED.match(prompt.strip()))


def is_running(prompt: str) -> bool:
    return bool(_RUNNING.match(prompt.strip()))


def raw_progress(text: str) -> str | None:
    """The first tqdm / ipywidgets text that stands where a widget bar should be, or None."""
    for line in text.splitlines():
        if any(pattern.search(line) for pattern in _RAW_PROGRESS):
            return _short(line, 200)
    return None


def is_error_output(output: Mapping[str, Any]) -> bool:
    return output.get("mime") == STDERR_MIME and bool(_TRACEBACK.search(output.get("text", "")))


def find_problems(cells: Sequence[Mapping[str, Any]], expect_figures: bool) -> dict[str, list[str]]:
    """Each check's findings (an empty list: the check passed), every finding naming its cell."""
    found: dict[str, list[str]] = {check: [] for check in CHECKS}
    code = [c for c in cells if c["type"] == "code"]
    if not cells:
        found["executed"].append("no cells rendered")
    for cell in code:
        if not is_executed(cell["prompt"]):
            found["executed"].append(f"cell {cell['index']}: prompt {cell['prompt'] or '(none)'}")
    images = 0
    for cell in cells:
        where = f"cell {cell['index']}"
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            images += output.get("imgs", 0)
            if is_error_output(output):
                found["errors"].append(f"{where}: {_short(text)}")
            elif output.get("mime") == STDERR_MIME:
                found["stderr"].append(f"{where}: {_short(text)}")
            widget = output.get("widgets", 0) > 0
            failure = next((f for f in _WIDGET_FAILURES if f in text), None)
            if failure or (output.get("mime") == WIDGET_MIME and not widget):
                found["progress"].append(f"{where}: widget not rendered: {_short(text) or '(empty)'}")
            elif not widget:
                raw = raw_progress(text)
                if raw:
                    found["progress"].append(f"{where}: progress bar as text: {raw}")
        for error in cell.get("math_errors", []):
            formula = f" in ${_short(error['formula'], 80)}$" if error.get("formula") else ""
            found["math"].append(f"{where}: {error.get('error') or 'math error'}: {_short(error.get('text', ''), 80)}{formula}")
    if expect_figures and images == 0:
        found["figures"].append("no <img> in any output")
    return found


def summary(cells: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Counts for the report: cells, executed code cells, images, widget bars, typeset formulas."""
    outputs = [o for c in cells for o in c.get("outputs", [])]
    return {
        "cells": len(cells),
        "code_cells": sum(c["type"] == "code" for c in cells),
        "executed": sum(c["type"] == "code" and is_executed(c["prompt"]) for c in cells),
        "images": sum(o.get("imgs", 0) for o in outputs),
        "widget_progress_bars": sum(o.get("progress", 0) for o in outputs),
        "formulas": sum(c.get("math", 0) for c in cells),
    }


def run_finished(cells: Sequence[Mapping[str, Any]]) -> bool:
    """The page shows a finished run: some code cell has a count and none is queued or running ([*])."""
    code = [c for c in cells if c["type"] == "code"]
    return bool(code) and not any(is_running(c["prompt"]) for c in code) and any(is_executed(c["prompt"]) for c in code)


def format_findings(name: str, found: Mapping[str, Iterable[str]], limit: int = 8) -> str:
    lines = []
    for check in CHECKS:
        items = list(found.get(check, []))
        if items:
            lines.append(f"{name}: {check} FAILED ({CHECK_DOC[check]}), {len(items)} found:")
            lines.extend(f"    {item}" for item in items[:limit])
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit} more")
    return "\n".join(lines)
