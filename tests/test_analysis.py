"""Reading runs: the best-rate rule, values at equal forgetting, the descent equivalent of a gls rate."""

import math

import numpy as np
import pandas as pd
import pytest

from sga import analysis, theory


def run(status, fq, mu):
    return {"status": status, "summary": {"forget_quality": fq, "model_utility": mu}}


def test_best_rate_takes_forget_quality_then_utility_and_skips_diverged():
    results = {-1.0: run("completed", 1e-3, 0.4), -0.4: run("completed", 3e-3, 0.1), 0.4: run("completed", 3e-3, 0.2),
               1.0: run("diverged", 1.0, 1.0)}
    assert analysis.best_rate(results) == 0.4
    with pytest.raises(ValueError, match="No run completed"):
        analysis.best_rate({0.0: run("diverged", 1, 1)})


def test_per_epoch_losses_and_value_at_forget_level():
    log = [{"epoch": e, "forget_nll": f, "normal_nll": n} for e, f, n in ((1, 0.1, 0.1), (1, 0.3, 0.1), (2, 1.0, 0.4), (2, 1.0, 0.4))]
    curve = analysis.per_epoch_losses(log)
    assert curve["forget_nll"].tolist() == pytest.approx([0.2, 1.0]) and curve["normal_nll"].tolist() == pytest.approx([0.1, 0.4])
    # log-log interpolation halfway between 0.2 and 1.0 (at sqrt(0.2)): normal is the geometric mean of 0.1 and 0.4
    assert analysis.value_at_forget_level(curve, math.sqrt(0.2)) == pytest.approx(0.2)
    assert math.isnan(analysis.value_at_forget_level(curve, 2.0))  # never reached
    flat = pd.DataFrame({"forget_nll": [0.5, 0.5], "normal_nll": [0.1, 0.2]})
    assert math.isnan(analysis.value_at_forget_level(flat, 0.5))  # not increasing: no interpolation


def test_descent_equivalent_rate_gives_the_same_direction():
    rate, k = -0.4, 4
    s = analysis.descent_equivalent_rate(rate, k)
    assert s == pytest.approx(0.25)
    g_f, g_n = np.array([1.0, 0.2, -0.3]), np.array([0.4, -1.0, 0.5])
    gls = theory.update_direction(g_f, g_n, rate, k, "gls")
    descent = theory.update_direction(g_f, g_n, s, k, "descent")
    assert gls == pytest.approx((1 - 2 * rate * theory.normal_mass(k)) * descent)
    with pytest.raises(ValueError, match="no descent equivalent"):
        analysis.descent_equivalent_rate(1.0, 4)
