"""Reading unlearning runs: means with intervals over seeds, the best fixed rate by a rule stated in
advance, runs compared at equal forgetting, and the "descent" rate that gives the same step direction as
a "gls" rate."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from sga import theory


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean with its Student-t interval over independent runs (seeds).

    One value gives a NaN interval; NaN values are dropped.
    """
    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if data.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(data.mean())
    if data.size == 1:
        return mean, math.nan, math.nan
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return mean, mean - half, mean + half


def seed_table(runs: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str], confidence: float = 0.95) -> pd.DataFrame:
    """One row per label: for each summary key, the mean over its runs with a ``confidence`` interval, and
    the number of completed runs (a diverged run has no summary and is counted apart)."""
    rows = {}
    for label, results in runs.items():
        done = [r for r in results if r["status"] == "completed"]
        row: dict[str, Any] = {"runs": len(done), "diverged": len(results) - len(done)}
        for key in keys:
            row[key], row[f"{key} lo"], row[f"{key} hi"] = mean_interval([r["summary"][key] for r in done], confidence)
        rows[label] = row
    return pd.DataFrame(rows).T


def best_rate(results: Mapping[float, Mapping[str, Any]]) -> float:
    """The rate whose completed run has the highest forget quality; ties go to the higher model utility.

    Runs that did not complete (diverged) are out; raises if none completed.
    """
    completed = {rate: r for rate, r in results.items() if r["status"] == "completed"}
    if not completed:
        raise ValueError("No run completed; there is no best rate to pick.")
    return max(completed, key=lambda rate: (completed[rate]["summary"]["forget_quality"], completed[rate]["summary"]["model_utility"]))


def per_epoch_losses(log: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("forget_nll", "normal_nll")) -> pd.DataFrame:
    """The mean of each logged batch loss per epoch of a run's step log."""
    return pd.DataFrame(log).groupby("epoch")[list(keys)].mean()


def value_at_forget_level(curve: pd.DataFrame, level: float, column: str = "normal_nll") -> float:
    """``column`` where ``curve["forget_nll"]`` reaches ``level``, by log-log interpolation.

    NaN when the curve never reaches the level or its forget NLL is not strictly increasing (then an
    interpolation would be meaningless).
    """
    forget, other = np.log(curve["forget_nll"].to_numpy()), np.log(curve[column].to_numpy())
    if not (np.diff(forget) > 0).all() or not forget[0] <= math.log(level) <= forget[-1]:
        return math.nan
    return float(np.exp(np.interp(math.log(level), forget, other)))


def descent_equivalent_rate(rate: float, k: int) -> float:
    """The "descent" rate s whose step direction is a positive multiple of the "gls" step at ``rate``.

    The gls direction (1 - rc) g_f + rc ḡ equals (1 - 2rc) times the descent direction (1 - sc) g_f - sc ḡ
    with s = r / (2rc - 1), c = (K-1)/K; a positive multiple needs rc < 1/2.
    """
    c = theory.normal_mass(k)
    if rate * c >= 0.5:
        raise ValueError(f"A gls rate with r (K-1)/K >= 1/2 (here {rate * c:.3f}) has no descent equivalent.")
    return rate / (2 * rate * c - 1)


def epoch_budget(trajectory: Sequence[Mapping[str, Any]], key: str, threshold: float) -> int | None:
    """The first epoch whose reading ``key`` is at or below ``threshold`` (e.g. GA's forget ROUGE-L reaching
    the retain model's), or None if no epoch does."""
    for point in trajectory:
        if point[key] <= threshold:
            return int(point["epoch"])
    return None
