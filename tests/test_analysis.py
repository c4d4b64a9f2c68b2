"""Reading runs: means with intervals over seeds, the epoch budget, the descent equivalent of a gls rate."""

import math

import numpy as np
import pytest

from sga import analysis, theory


def run(status, fq, mu):
    return {"status": status, "summary": {"forget_quality": fq, "model_utility": mu}}


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


def test_mean_interval_is_the_student_t_interval():
    mean, lo, hi = analysis.mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert math.isnan(analysis.mean_interval([5.0])[1]) and math.isnan(analysis.mean_interval([])[0])


def test_seed_table_counts_completed_and_diverged_runs():
    runs = {"ga": [run("completed", 0.1, 0.5), run("completed", 0.3, 0.7), {"status": "diverged"}]}
    table = analysis.seed_table(runs, ["forget_quality", "model_utility"])
    assert table.loc["ga", "runs"] == 2 and table.loc["ga", "diverged"] == 1
    assert table.loc["ga", "model_utility"] == pytest.approx(0.6) and table.loc["ga", "forget_quality lo"] < 0.2


def test_graddiff_weights_match_the_sga_loss():
    assert theory.graddiff_weights(-0.4, 4, "gls") == pytest.approx((1.3, 0.3))
    assert theory.graddiff_weights(0.6, 4, "descent") == pytest.approx((0.55, 0.45))
    with pytest.raises(ValueError, match="ascends the normal samples"):
        theory.graddiff_weights(0.4, 4, "gls")


def test_epoch_budget_is_the_first_epoch_at_or_below_the_threshold():
    path = [{"epoch": 1, "forget_rouge_l": 0.8}, {"epoch": 2, "forget_rouge_l": 0.3}, {"epoch": 3, "forget_rouge_l": 0.2}]
    assert analysis.epoch_budget(path, "forget_rouge_l", 0.3) == 2
    assert analysis.epoch_budget(path, "forget_rouge_l", 0.1) is None
