"""Reading unlearning runs: means with intervals over seeds, the epoch budget, and the "descent" rate that
gives the same step direction as a "gls" rate (runs compared at equal forgetting: :mod:`sga.comparison`)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from sga import theory
from sga.stats import mean_interval  # noqa: F401  (the project's one Student-t interval, importable here)


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
