"""Reading unlearning runs: the best fixed rate by a rule stated in advance, runs compared at equal
forgetting, and the "descent" rate that gives the same step direction as a "gls" rate."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sga import theory


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
