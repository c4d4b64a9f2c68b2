"""Where a run first reaches a forgetting level, located to within two optimizer steps, and the stopping rule.

Along a run (:func:`sga.unlearn.unlearn`'s ``on_step_end``), :class:`Crossing` keeps the trainable weights of every
step since its last reading of the forgetting axis (the benchmark's own reading, e.g. TOFU's forget ROUGE-L, read
the same way as after an epoch), and reads the axis every ``check_every`` steps. When a reading is at or below the
level, it bisects between the last reading above the level and this one, reading the axis on the kept weights,
until the two are at most two steps apart: the first reading at or below the level at that resolution is the
crossing, where the run is read in full (forgetting and utility). The run then stops ``stop_after`` steps later
(to show what follows; None: it runs its budget), but not before the last of the ``read_at`` steps, where it is read
in full too (e.g. every run at the same step count); a step read in full once (the crossing at a ``read_at`` step) is
not read again. The caller reads its end.

Bisection finds a step where the axis passes the level between two readings; if the axis rises and falls again
within one interval of ``check_every`` steps it may not be the first such step. The interval is the world's epoch by
default; the resolution of every located crossing is recorded (at most 2 steps, unless a run resumed from a
checkpoint lost the weights of the steps before it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

RESOLUTION = 2  # steps: the crossing lies in (last step above the level, crossing step], at most this wide


@dataclass
class Crossing:
    """The state of one run's search for its forgetting level (see the module docstring).

    ``read_forget()`` reads the forgetting axis of the model as it is; ``read_full()`` its full reading (a dict with
    the forgetting and utility axes); ``start`` is the axis at step 0 (the target's reading).
    """

    model: torch.nn.Module
    level: float
    start: float
    check_every: int
    stop_after: int | None
    read_forget: Callable[[], float]
    read_full: Callable[[], dict[str, Any]]
    read_at: tuple[int, ...] = ()  # steps also read in full (e.g. equal steps); the run goes on at least to the last
    readings: list[tuple[int, float]] = field(default_factory=list)  # (step, forgetting) of every reading
    at_steps: dict[int, dict[str, Any]] = field(default_factory=dict)  # the full readings at read_at
    step: int | None = None  # the crossing step, once found
    resolution: int | None = None
    at_crossing: dict[str, Any] | None = None
    seconds: float = 0.0
    _kept: dict[int, list[torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.start <= self.level:  # the model already forgets as much as the level asks: crossed at step 0
            self.step, self.resolution, self.at_crossing = 0, 0, self.read_full()

    def on_step_end(self, step: int) -> bool:
        """After ``step``: keep its weights, read the axis every ``check_every`` steps, locate the crossing once the
        level is reached; True when the run should stop."""
        began = time.perf_counter()
        if self.step is None:
            self._kept[step] = [p.detach().to("cpu", copy=True) for p in self._trainable()]
            if step % self.check_every == 0:
                self._check(step)
        if step in self.read_at:
            self.at_steps[step] = self.at_crossing if step == self.step else self.read_full()
        self.seconds += time.perf_counter() - began
        return (self.step is not None and self.stop_after is not None and step >= self.step + self.stop_after
                and step >= max(self.read_at, default=0))

    def forgetting_at_end(self, step: int) -> float:
        """The forgetting axis of the model as it is after its last step, ``step`` (a reading made there, if any)."""
        made = dict(self.readings)
        return made[step] if step in made else float(self.read_forget())

    def record(self) -> dict[str, Any]:
        """What the result keeps: the level, the crossing step and its resolution (None: not reached), the full
        reading there, every forgetting reading, and the seconds spent reading."""
        return {"level": self.level, "start": self.start, "step": self.step, "resolution": self.resolution,
                "reading": self.at_crossing, "readings": [list(r) for r in self.readings], "seconds": self.seconds,
                "at_steps": {str(step): reading for step, reading in sorted(self.at_steps.items())}}

    # ------------------------------------------------------------------ the search
    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _check(self, step: int) -> None:
        value = self._read(step, self.read_forget)
        if value > self.level:
            self._kept = {step: self._kept[step]}  # the next bracket starts here
            return
        above = max((s for s, v in self.readings if v > self.level), default=0)
        below = step
        while below - above > RESOLUTION:
            middle = (above + below) // 2
            if middle not in self._kept:  # weights lost (a resumed run): stop at the resolution the kept ones allow
                kept = [s for s in self._kept if above < s < below]
                if not kept:
                    break
                middle = min(kept, key=lambda s: abs(s - middle))
            if self._read(middle, self.read_forget) > self.level:
                above = middle
            else:
                below = middle
        self.step, self.resolution = below, below - above
        # the same weights already read in full at a read_at step: the same reading, not made twice
        self.at_crossing = self.at_steps[below] if below in self.at_steps else self._read(below, self.read_full)
        self._kept.clear()

    def _read(self, step: int, read: Callable[[], Any]) -> Any:
        """``read()`` of the model with the weights it had after ``step`` (the current ones restored after)."""
        params = self._trainable()
        current = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, kept in zip(params, self._kept[step]):
                p.copy_(kept.to(p.device))
        try:
            value = read()
        finally:
            with torch.no_grad():
                for p, now in zip(params, current):
                    p.copy_(now)
        if read is self.read_forget:
            self.readings.append((step, float(value)))
            self.readings.sort()
        return value
