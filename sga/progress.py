"""Progress bars that suit where the code runs: a widget in a Jupyter session a person drives, plain lines elsewhere.

In JupyterLab :func:`bar` is tqdm's widget (``tqdm.auto``). Anywhere else (a script, a worker process, a kernel run
by papermill, nbconvert or nbval) it is :class:`Lines`: plain lines such as

    [sga] unlearn[sga]: 30/125 steps (24%), 00:21 elapsed, ~01:07 left, loss=-2.113

written to the process's own stderr. In a kernel that is the stream the kernel was started with (papermill's, so
``make run``'s log), never the notebook: a notebook executed in batch holds no bar, frozen or not.

``SGA_PROGRESS=lines`` or ``widgets`` chooses (``make run`` and :mod:`sga.batch` set ``lines``); unset, a kernel
whose parent process is papermill, nbconvert, nbclient or pytest (nbval) writes lines, any other kernel shows
widgets. ``SGA_PROGRESS_LABEL`` replaces the ``sga`` in front of each line (``make run`` puts the notebook's name).
"""

from __future__ import annotations

import functools
import io
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

MODES = ("lines", "widgets")
BATCH_CLIENTS = ("papermill", "nbconvert", "nbclient", "jupyter-execute", "pytest")  # run a kernel without a person
INTERVAL = 30.0  # seconds between two lines of one bar (its last line comes when it closes)


def mode() -> str:
    """``lines`` or ``widgets``: ``SGA_PROGRESS`` if set, else widgets in a kernel that no batch client started."""
    chosen = os.environ.get("SGA_PROGRESS", "")
    if chosen and chosen not in MODES:
        raise ValueError(f"SGA_PROGRESS={chosen!r}; choose one of {list(MODES)}.")
    return chosen or ("widgets" if _kernel() is not None and not _batch_client() else "lines")


def bar(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, initial: int = 0, unit: str = "it",
        disable: bool = False, interval: float = INTERVAL) -> tqdm | Lines:
    """A tqdm-like bar over ``iterable`` (or updated by hand): tqdm's widget or :class:`Lines`, as :func:`mode` says."""
    if not disable and mode() == "widgets":
        from tqdm.auto import tqdm as auto

        return auto(iterable, desc=desc, total=total, initial=initial, unit=unit)
    return Lines(iterable, desc, total, initial, unit, disable, interval)


class Lines:
    """tqdm's interface (iterate, ``update``, ``set_postfix``, ``close``, ``with``) writing plain lines: done/total and
    the time left at the mean rate so far, at most one line per ``interval`` seconds (every update with 0), and a
    last line when it closes."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None, initial: int = 0,
                 unit: str = "it", disable: bool = False, interval: float = INTERVAL):
        self.iterable, self.desc, self.unit, self.disable, self.interval = iterable, desc, unit, disable, interval
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.n = self.initial = initial
        self.postfix = ""
        self.began = self.last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:  # also when the loop breaks out early
            self.close()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def set_postfix(self, **values: Any) -> None:
        """Shown after the counts, as ``key=value``."""
        self.postfix = "".join(f", {key}={value}" for key, value in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval and (self.total is None or self.n < self.total):
            self.last = now
            self._write(self.line(now))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write(self.line(time.monotonic(), final=True))

    def line(self, now: float, final: bool = False) -> str:
        """The line for this moment: counts, elapsed time, and the time left (or, when ``final``, the time taken)."""
        elapsed = now - self.began
        done = f"{self.n}/{self.total} {self.unit}s" if self.total else f"{self.n} {self.unit}s"
        if final:
            stopped = " (stopped early)" if self.total and self.n < self.total else ""
            return f"[{_label()}] {self.desc}: {done} in {tqdm.format_interval(elapsed)}{stopped}{self.postfix}"
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        left = f", ~{tqdm.format_interval((self.total - self.n) / rate)} left" if self.total and rate > 0 else ""
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        return f"[{_label()}] {self.desc}: {done}{share}, {tqdm.format_interval(elapsed)} elapsed{left}{self.postfix}"

    def _write(self, line: str) -> None:
        if not self.disable:
            stream = _stream()
            stream.write(line + "\n")
            stream.flush()


def _label() -> str:
    return os.environ.get("SGA_PROGRESS_LABEL") or "sga"


def _kernel() -> Any:
    """The IPython kernel this code runs in, or None (IPython is not imported for the question)."""
    ipython = sys.modules.get("IPython")
    return getattr(ipython.get_ipython(), "kernel", None) if ipython else None


@functools.lru_cache(maxsize=1)
def _batch_client() -> bool:
    """Whether this kernel's parent process is a batch client (papermill, nbconvert, nbclient, nbval's pytest)."""
    import psutil  # ipykernel's dependency: asked only in a kernel

    try:
        command = " ".join(psutil.Process().parent().cmdline())
    except (psutil.Error, AttributeError):  # no parent, or not ours to read
        return False
    return any(name in command for name in BATCH_CLIENTS)


def _stream() -> TextIO:
    """This process's stderr. A kernel forwards its file descriptor 2 to the notebook and keeps the stream it was
    started with as ``sys.stderr.fileno()``: lines go there."""
    if _kernel() is None:
        return sys.stderr
    try:
        return _open_fd(sys.stderr.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation: the kernel does not capture descriptor 2
        return sys.__stderr__


@functools.cache
def _open_fd(fd: int) -> io.TextIOWrapper:
    return open(fd, "w", buffering=1, closefd=False)
