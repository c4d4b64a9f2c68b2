"""The notebooks where readers use them: JupyterLab in headless Chromium, every cell run through the UI.

Run by `make lab-test` (which installs chromium, chromium-driver and selenium and sets SGA_LAB_TEST=1); skipped
otherwise, so `make test` does not start a browser. For each notebook in notebooks/ it

1. prepares a copy under build/lab/ with the smoke preset (papermill --prepare-only, output_dir / cache_dir /
   figures_dir pointed into build/lab/, committed outputs cleared),
2. opens it in JupyterLab (started here on 127.0.0.1, a free port, a random token, a kernel running this
   interpreter and this checkout's `sga`), clicks Run > Run All Cells, and waits until the kernel is idle and no
   cell is queued,
3. reads the rendered page and judges it with tests/browser/labchecks.py: every code cell executed, no error
   output, no stderr box, figures rendered as images, no progress bar as raw text, no MathJax error,
4. saves a tall screenshot, build/lab/<notebook>.png, and the findings to build/lab/report.md / report.json.

A canary notebook, written here, runs first: it must trip every check (and show that the kernel runs this
interpreter and this checkout's sga), so a check that cannot see its failure in the real page fails the test.

Environment: SGA_LAB_TIMEOUT (seconds per notebook, default 1800), SGA_LAB_NOTEBOOKS (comma-separated name
prefixes, e.g. "01,05"), CHROMIUM / CHROMEDRIVER (paths).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from labchecks import CHECK_DOC, CHECKS, SNAPSHOT_JS, find_problems, format_findings, run_finished, summary

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "build" / "lab"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
# notebook 02 first, as `make run` does: it trains the TOFU models that notebook 01's part 4 reuses
RUN_ORDER = [nb for nb in NOTEBOOKS if nb.name.startswith("02_")] + [nb for nb in NOTEBOOKS if not nb.name.startswith("02_")]
if os.environ.get("SGA_LAB_NOTEBOOKS"):
    _wanted = [p.strip() for p in os.environ["SGA_LAB_NOTEBOOKS"].split(",") if p.strip()]
    RUN_ORDER = [nb for nb in RUN_ORDER if any(nb.name.startswith(p) for p in _wanted)]
TIMEOUT = float(os.environ.get("SGA_LAB_TIMEOUT", "1800"))
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
# Paths the notebooks' parameters point into build/lab/, so that committed runs/ and figures/ stay untouched.
FILE_PARAMETERS = {"output_dir": LAB / "runs", "cache_dir": LAB / "cache", "figures_dir": LAB / "figures"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(os.environ.get("SGA_LAB_TEST") != "1", reason="browser test: set SGA_LAB_TEST=1 (make lab-test)"),
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="browser test: needs chromium and chromedriver"),
]

# Settings of a fresh JupyterLab user: all cells attached to the page (the checks read every cell), no news or
# update checks (no network here), no toasts over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}
REPORT: dict[str, dict[str, Any]] = {}
CANARY = "00_canary.ipynb"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server on 127.0.0.1 with the repository as its root and this interpreter as its kernel."""

    def __init__(self) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        prefix = LAB / "jupyter"
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3",
                        "--display-name", "Python 3 (ipykernel)"], check=True, capture_output=True)
        settings = LAB / "lab-settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        env.update({
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(LAB / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(LAB / "jupyter-runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(LAB / "lab-workspaces"),
            "IPYTHONDIR": str(LAB / "ipython"),
        })
        self.log_path = LAB / "jupyterlab.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.open_browser=False",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={ROOT}",
             "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--LabApp.extension_manager=readonly"] + (["--allow-root"] if os.geteuid() == 0 else []),
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, 120, f"JupyterLab to answer on {self.base} (log: {self.log_path})")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {self.process.returncode}: {self.log_path.read_text()[-3000:]}")
        try:
            return self.api("GET", "/api/status") is not None
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.base + path, method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else {}

    def url(self, path: str, workspace: str) -> str:
        return f"{self.base}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.token}"

    def session(self, path: str) -> dict | None:
        return next((s for s in self.api("GET", "/api/sessions") if s.get("path") == path), None)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", "--hide-scrollbars",
                 f"--user-data-dir={LAB / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, log_output=str(LAB / "chromedriver.log")),
                              options=options)
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(60)
    return driver


def parameter_names(notebook: dict) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    cell = next(c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
    return {line.split("=")[0].strip() for line in "".join(cell["source"]).splitlines()
            if "=" in line and not line.startswith((" ", "#"))}


def prepare(source: Path) -> tuple[Path, bool]:
    """build/lab/<notebook>: smoke preset, files into build/lab/, outputs cleared. Returns it and whether it saves figures."""
    names = parameter_names(json.loads(source.read_text(encoding="utf-8")))
    target = LAB / source.name
    args = [sys.executable, "-m", "papermill", "--prepare-only", str(source), str(target), "-p", "preset", "smoke",
            "-k", "python3", "--log-level", "WARNING"]
    for name, path in FILE_PARAMETERS.items():
        if name in names:
            args += ["-p", name, str(path)]
    subprocess.run(args, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    clear_outputs(target)
    return target, "figures_dir" in names


def clear_outputs(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False), encoding="utf-8")


def write_canary() -> Path:
    """A notebook that trips every check, and prints the kernel's interpreter and the sga it imports."""
    def code(source: str) -> dict:
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}

    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "Canary: $r^\\*$ is an undefined command, $r^*$ is not."},
        code("import json, sys, sga\nprint('KERNEL=' + json.dumps({'python': sys.executable, 'sga': sga.__file__}))"),
        code("from tqdm import tqdm\nfor _ in tqdm(range(3), file=sys.stdout, ascii=False): pass"),
        code("from tqdm.notebook import tqdm as widget_tqdm\nfor _ in widget_tqdm(range(3)): pass"),
        code("import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]); plt.show()"),
        code("print('to stderr', file=sys.stderr)"),
        code("raise ValueError('canary error')"),
        code("print('never runs: the error above stops Run All')"),
    ]
    for cell in cells:
        cell["id"] = secrets.token_hex(4)
    notebook = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                                            "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    path = LAB / CANARY
    path.write_text(json.dumps(notebook, indent=1))
    return path


@pytest.fixture(scope="module")
def lab():
    if LAB.exists():
        shutil.rmtree(LAB)
    LAB.mkdir(parents=True)
    server = Lab()
    spec = server.api("GET", "/api/kernelspecs")["kernelspecs"]["python3"]["spec"]
    assert spec["argv"][0] == sys.executable, f"the python3 kernel would run {spec['argv'][0]}, not {sys.executable}"
    yield server
    server.close()
    write_report()


@pytest.fixture(scope="module")
def browser(lab):
    driver = chrome()
    yield driver
    driver.quit()


def open_notebook(driver, lab: Lab, path: Path, n_cells: int) -> str:
    relative = path.relative_to(ROOT).as_posix()
    driver.get(lab.url(relative, workspace=path.stem.replace("_", "-")))
    wait_for(lambda: len(driver.execute_script(SNAPSHOT_JS) or []) == n_cells, 180,
             f"{path.name}: {n_cells} cells in the page")
    session = wait_for(lambda: lab.session(relative), 120, f"{path.name}: a kernel session")
    wait_for(lambda: (lab.session(relative) or {}).get("kernel", {}).get("execution_state") == "idle", 180,
             f"{path.name}: the kernel to start")
    return session["id"]


def click_menu(driver, menu: str, item: str) -> None:
    """Open a main-menu bar entry and click one of its items, as a reader does."""
    from selenium.webdriver.common.by import By

    bar = driver.find_element(By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')][.//div[contains(@class,"
                                        f"'lm-MenuBar-itemLabel') and normalize-space(text())='{menu}']]")
    bar.click()
    entry = wait_for(lambda: driver.find_elements(
        By.XPATH, f"//ul[contains(@class,'lm-Menu-content')]/li[contains(@class,'lm-Menu-item')]"
                  f"[.//div[contains(@class,'lm-Menu-itemLabel') and normalize-space(text())='{item}']]"),
        10, f"the {menu} menu's '{item}' item")[0]
    assert "lm-mod-disabled" not in (entry.get_attribute("class") or ""), f"{menu} > {item} is disabled"
    entry.click()


def run_all(driver, lab: Lab, path: Path, timeout: float) -> list[dict]:
    """Run > Run All Cells; wait until no cell is queued and the kernel is idle (twice in a row). The final snapshot."""
    relative = path.relative_to(ROOT).as_posix()
    click_menu(driver, "Run", "Run All Cells")
    wait_for(lambda: any(c["type"] == "code" and c["prompt"] not in ("[ ]:", "") for c in driver.execute_script(SNAPSHOT_JS)),
             60, f"{path.name}: Run All Cells to start")
    settled = {"n": 0}

    def finished() -> list[dict] | None:
        cells = driver.execute_script(SNAPSHOT_JS)
        idle = (lab.session(relative) or {}).get("kernel", {}).get("execution_state") == "idle"
        settled["n"] = settled["n"] + 1 if idle and run_finished(cells) else 0
        return cells if settled["n"] >= 2 else None

    wait_for(finished, timeout, f"{path.name}: every cell to run (kernel idle, no [*] prompt)", interval=2.0)
    # MathJax typesets markdown asynchronously: wait until the count of formulas stops changing
    counts: list[int] = []

    def typeset() -> list[dict] | None:
        cells = driver.execute_script(SNAPSHOT_JS)
        counts.append(sum(c["math"] for c in cells))
        return cells if len(counts) >= 2 and counts[-1] == counts[-2] else None

    return wait_for(typeset, 60, f"{path.name}: MathJax to finish")


# `s`: the element that scrolls the notebook in view
FIND_SCROLLER = """
const panel = [...document.querySelectorAll('.jp-NotebookPanel')].find(p => !p.classList.contains('lm-mod-hidden'));
const s = panel.querySelector('.jp-WindowedPanel-outer') || panel.querySelector('.jp-Notebook');
"""


def screenshot(driver, path: Path) -> Path:
    """The whole notebook in one tall PNG: left sidebar closed, the notebook scrolled to its top and the window grown
    to its height (rendered at a smaller scale past 16000 px, Chromium's limit for one capture)."""
    from selenium.webdriver.common.by import By

    for tab in driver.find_elements(By.CSS_SELECTOR, ".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current"):
        tab.click()  # the open file browser's tab: closes the left panel, as a reader would for room
    wait_for(lambda: not driver.find_elements(By.CSS_SELECTOR, ".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current"),
             10, "the left sidebar to close")
    heights: list[int] = []  # the notebook reflows into the room the sidebar left: measure until it holds still

    def measured() -> int | None:
        heights.append(int(driver.execute_script(FIND_SCROLLER + "return s.getBoundingClientRect().top + s.scrollHeight + 40;")))
        return heights[-1] if len(heights) >= 2 and heights[-1] == heights[-2] else None

    height = max(1000, wait_for(measured, 30, "the notebook's height", interval=0.5))
    scale = min(1.0, 16000 / height)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1400, "height": height, "deviceScaleFactor": scale, "mobile": False})
    try:
        wait_for(lambda: driver.execute_script("return window.innerHeight") == height, 30, "the tall window")
        wait_for(lambda: driver.execute_script(FIND_SCROLLER + "s.scrollTop = 0; return s.scrollTop === 0;"), 30,
                 "the notebook scrolled to its top")
        target = LAB / f"{path.stem}.png"
        driver.save_screenshot(str(target))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return target


def run_in_lab(driver, lab: Lab, path: Path, expect_figures: bool) -> dict[str, Any]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    start = time.monotonic()
    session = open_notebook(driver, lab, path, len(notebook["cells"]))
    opened = time.monotonic()
    cells = run_all(driver, lab, path, TIMEOUT)
    ran = time.monotonic()
    found = find_problems(cells, expect_figures)
    shot = screenshot(driver, path)
    lab.api("DELETE", f"/api/sessions/{session}")  # its kernel's memory back before the next notebook
    entry = {"open_s": round(opened - start, 1), "run_s": round(ran - opened, 1), "screenshot": str(shot.relative_to(ROOT)),
             "counts": summary(cells), "found": found, "cells": cells}
    REPORT[path.name] = {k: v for k, v in entry.items() if k != "cells"}
    (LAB / f"{path.stem}.cells.json").write_text(json.dumps(cells, indent=1, ensure_ascii=False))
    return entry


def write_report() -> None:
    (LAB / "report.json").write_text(json.dumps(REPORT, indent=1, ensure_ascii=False))
    lines = ["# JupyterLab browser test (make lab-test)", "",
             "| notebook | open (s) | Run All (s) | cells | executed / code | images | widget bars | formulas | "
             + " | ".join(CHECKS) + " |", "|" + " --- |" * (8 + len(CHECKS))]
    for name, entry in REPORT.items():
        c = entry["counts"]
        marks = ["ok" if not entry["found"][check] else f"FAIL ({len(entry['found'][check])})" for check in CHECKS]
        if name == CANARY:
            name += " (written to trip every check but figures)"
        lines.append(f"| {name} | {entry['open_s']} | {entry['run_s']} | {c['cells']} | {c['executed']} / {c['code_cells']} "
                     f"| {c['images']} | {c['widget_progress_bars']} | {c['formulas']} | " + " | ".join(marks) + " |")
    lines += ["", "Checks: " + "; ".join(f"**{k}**: {v}" for k, v in CHECK_DOC.items()), ""]
    lines += ["Cell numbers count from 0 in the prepared copy build/lab/<notebook>, which has papermill's "
              "injected-parameters cell right after the `parameters` cell.", ""]
    for name, entry in REPORT.items():
        if name == CANARY:
            continue
        text = format_findings(name, entry["found"], limit=20)
        if text:
            lines += ["```", text, "```", ""]
    (LAB / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_canary_trips_every_check(lab, browser):
    """The checks see, in the real page, each failure they exist for; the kernel is this venv and this checkout."""
    entry = run_in_lab(browser, lab, write_canary(), expect_figures=True)
    found, cells = entry["found"], entry["cells"]
    kernel = next(o["text"] for c in cells for o in c["outputs"] if o["text"].startswith("KERNEL="))
    kernel = json.loads(kernel.split("=", 1)[1])
    assert kernel["python"] == sys.executable
    assert Path(kernel["sga"]).resolve().is_relative_to(ROOT), kernel["sga"]
    assert [f.split(":")[0] for f in found["executed"]] == ["cell 7"]
    assert any("canary error" in f for f in found["errors"]), found["errors"]
    assert [f.split(":")[0] for f in found["stderr"]] == ["cell 5"], found["stderr"]
    assert any("100%|" in f for f in found["progress"]), found["progress"]
    assert len(found["progress"]) == 1, found["progress"]  # the widget bar is not a finding
    assert entry["counts"]["widget_progress_bars"] >= 1, "tqdm.notebook's bar did not render as a widget"
    assert entry["counts"]["images"] >= 1 and not found["figures"]
    assert len(found["math"]) == 1 and "\\*" in found["math"][0], found["math"]  # $r^\*$, not $r^*$
    assert entry["counts"]["formulas"] >= 2  # $r^*$ typeset beside the error


@pytest.mark.parametrize("source", RUN_ORDER, ids=[nb.stem for nb in RUN_ORDER])
def test_notebook_in_lab(lab, browser, source):
    path, expect_figures = prepare(source)
    entry = run_in_lab(browser, lab, path, expect_figures)
    problems = format_findings(source.name, entry["found"])
    assert not problems, problems + f"\n(screenshot: {entry['screenshot']}; report: build/lab/report.md)"
