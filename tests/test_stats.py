"""The statistics of notebook 05's verdicts: paired comparisons, multiplicity, worlds, ratios, power, rankings,
reaching the level, the learning-rate ladder. Every expected value is computed by hand or by an independent
scipy routine, never by the function under test."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import scipy.stats

from sga import analysis, comparison, stats
from sga.stats import Comparison

NAN = float("nan")


def rows_of(values, benchmark="tofu", world="w1", column="u"):
    """A rows table from {label: [value per seed]}, in shuffled order (pairing must go by seed)."""
    rows = [{"benchmark": benchmark, "world": world, "label": label, "seed": seed, column: v}
            for label, vs in values.items() for seed, v in enumerate(vs)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


# A: [0.5, 0.7, 0.4, 0.9, 0.8], B: [0.3, 0.6, 0.5, 0.4, NaN (never reached)]; differences 0.2, 0.1, -0.1, 0.5
HAND = rows_of({"A": [0.5, 0.7, 0.4, 0.9, 0.8], "B": [0.3, 0.6, 0.5, 0.4, NAN], "C": [0.1, 0.2, 0.3, 0.4, 0.5]})


def test_paired_difference_equals_a_hand_computation():
    got = stats.compare(HAND, [Comparison("tofu", "A", "B", "u")]).iloc[0]
    # mean 0.175; deviations 0.025, -0.075, -0.275, 0.325: sum of squares 0.1875, sd sqrt(0.1875 / 3) = 0.25
    assert got["n"] == 4 and got["mean"] == pytest.approx(0.175) and got["sd"] == pytest.approx(0.25)
    assert got["d_z"] == pytest.approx(0.7) and got["t"] == pytest.approx(1.4) and got["df"] == 3
    half = scipy.stats.t.ppf(0.975, 3) * 0.25 / math.sqrt(4)  # 3.182446 * 0.125
    assert (got["lo"], got["hi"]) == pytest.approx((0.175 - half, 0.175 + half))
    assert got["p"] == pytest.approx(scipy.stats.ttest_rel([0.5, 0.7, 0.4, 0.9], [0.3, 0.6, 0.5, 0.4]).pvalue)
    assert got["world"] == stats.POOLED and got["scale"] == "difference" and got["note"] == ""
    # sga.comparison's paired difference is the same computation
    old = comparison.paired_difference(HAND.drop(columns="world"), "u", "A", "B").loc["tofu"]
    assert (old["difference"], old["lo"], old["hi"], old["pairs"]) == pytest.approx((0.175, 0.175 - half, 0.175 + half, 4))


def test_one_implementation_of_the_t_interval():
    assert analysis.mean_interval is stats.mean_interval
    s = stats.t_summary([0.2, 0.1, -0.1, 0.5, NAN, None], confidence=0.9)
    assert (s["lo"], s["hi"]) == pytest.approx(stats.mean_interval([0.2, 0.1, -0.1, 0.5], 0.9)[1:])


def test_fewer_than_two_pairs_is_nan_and_said():
    rows = rows_of({"A": [0.5, NAN, NAN], "B": [0.3, 0.2, NAN], "D": [NAN, NAN, NAN]})
    got = stats.compare(rows, [Comparison("tofu", "A", "B", "u"), Comparison("tofu", "D", "B", "u"), Comparison("tofu", "Z", "B", "u")])
    one, none, absent = got.iloc[0], got.iloc[1], got.iloc[2]
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.2) and one["note"] == "n=1: no test"
    assert none["n"] == 0 and absent["n"] == 0 and none["note"] == "n=0: no test"
    for column in ("sd", "d_z", "p", "lo", "hi", "p_holm", "lo_adj", "hi_adj", "q_bh"):
        assert got[column].isna().all(), column
    assert math.isnan(none["mean"])


def test_holm_and_benjamini_hochberg_on_known_p_values():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005 = 0.02, 3*0.01 = 0.03, 2*0.03 = 0.06, max(1*0.04, 0.06) = 0.06
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: m p_(j) / j = 0.02, 0.02, 0.04, 0.04, then the running minimum from the top
    assert stats.benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # BH's running minimum at work: 4*0.04/3 = 0.0533 > 4*0.045/4 = 0.045, so both take 0.045
    assert stats.benjamini_hochberg([0.001, 0.02, 0.04, 0.045]) == pytest.approx([0.004, 0.04, 0.045, 0.045])
    assert stats.holm([0.3, 0.5]) == pytest.approx([0.6, 0.6]) and stats.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])
    # an untested member stays NaN; counted in the family (m = 3), Holm multiplies by 3 then 2
    assert stats.holm([0.01, NAN, 0.02], m=3) == pytest.approx([0.03, NAN, 0.04], nan_ok=True)
    assert stats.holm([0.01, NAN, 0.02]) == pytest.approx([0.02, NAN, 0.02], nan_ok=True)
    with pytest.raises(ValueError, match="cannot hold"):
        stats.holm([0.01, 0.02, 0.03], m=2)


def test_family_adjustment_bonferroni_intervals_and_named_correction():
    rows = pd.concat([rows_of({"A": [0.5, 0.7, 0.4, 0.9], "B": [0.3, 0.6, 0.5, 0.4], "C": [0.2, 0.1, 0.3, 0.35]}),
                      rows_of({"A": [2.0, 3.5, 2.5], "B": [1.0, 2.0, 2.2], "C": [1.5, 1.6, 2.4]}, benchmark="hp")])
    family = [Comparison(b, a, "B", "u") for b in ("tofu", "hp") for a in ("A", "C")]
    got = stats.compare(rows, family)
    m = 4
    assert (got["m"] == m).all() and got.attrs["m"] == m and "Holm" in got.attrs["correction"]
    assert "Bonferroni" in got["correction"].iloc[0] and "m=4" in got["correction"].iloc[0]
    assert got["p_holm"].to_numpy() == pytest.approx(stats.holm(got["p"].to_numpy()))
    for _, r in got.iterrows():
        diff = stats.paired_differences(rows, "u", r["label"], "B", r["benchmark"])
        n = len(diff)
        half = scipy.stats.t.ppf(1 - 0.05 / m / 2, n - 1) * diff.std(ddof=1) / math.sqrt(n)  # level 1 - 0.05/4
        assert (r["lo_adj"], r["hi_adj"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
        assert r["lo_adj"] < r["lo"] < r["hi"] < r["hi_adj"]
        assert r["p_holm"] >= r["p"] and r["q_bh"] >= r["p"]
    assert got.iloc[0]["mean"] == pytest.approx(0.175)  # the hand table's comparison, unchanged by the family


def test_log_scale_is_the_ratio_of_geometric_means():
    rows = rows_of({"A": [10.0, 90.0, 40.0], "B": [20.0, 30.0, 40.0]}, column="ppl")
    got = stats.compare(rows, [Comparison("tofu", "A", "B", "ppl", log=True)]).iloc[0]
    gm_a, gm_b = (10 * 90 * 40) ** (1 / 3), (20 * 30 * 40) ** (1 / 3)
    assert got["ratio"] == pytest.approx(gm_a / gm_b) and got["ratio"] == pytest.approx(1.5 ** (1 / 3))
    logs = np.log([0.5, 3.0, 1.0])
    half = scipy.stats.t.ppf(0.975, 2) * logs.std(ddof=1) / math.sqrt(3)
    assert (got["ratio_lo"], got["ratio_hi"]) == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))
    assert got["ratio_lo"] < 1 < got["ratio_hi"] and got["scale"] == "log ratio"
    assert got["ratio_lo_adj"] == pytest.approx(math.exp(got["lo_adj"]))
    with pytest.raises(ValueError, match="positive"):
        stats.paired_differences(rows_of({"A": [1.0, 0.0], "B": [1.0, 2.0]}), "u", "A", "B", "tofu", log=True)


def test_repeated_rows_count_once_and_conflicting_ones_raise():
    doubled = pd.concat([HAND, HAND[HAND.label == "A"]])
    assert len(stats.paired_differences(doubled, "u", "A", "B", "tofu")) == 4
    clash = pd.concat([HAND, HAND[HAND.label == "A"].assign(u=0.0)])
    with pytest.raises(ValueError, match="two different values"):
        stats.paired_differences(clash, "u", "A", "B", "tofu")


def test_worlds_are_reported_apart_pooled_and_tested_against_each_other():
    w1 = rows_of({"A": [0.5, 0.7, 0.4, 0.9], "B": [0.3, 0.6, 0.5, 0.4]}, world="w1")  # differences 0.2, 0.1, -0.1, 0.5
    w2 = rows_of({"A": [0.9, 0.8, 1.0], "B": [0.1, 0.2, 0.1]}, world="w2")  # differences 0.8, 0.6, 0.9 (same seeds 0-2)
    rows = pd.concat([w1, w2])
    got = stats.by_world(rows, "u", "A", "B", "tofu")
    assert got.index.tolist() == ["w1", "w2", "pooled"]
    assert got.loc["w1", "mean"] == pytest.approx(0.175) and got.loc["w2", "mean"] == pytest.approx(2.3 / 3)
    pooled = [0.2, 0.1, -0.1, 0.5, 0.8, 0.6, 0.9]
    assert got.loc["pooled", "n"] == 7 and got.loc["pooled", "mean"] == pytest.approx(np.mean(pooled))
    assert got.loc["pooled", "p"] == pytest.approx(scipy.stats.ttest_1samp(pooled, 0).pvalue)
    welch = scipy.stats.ttest_ind([0.2, 0.1, -0.1, 0.5], [0.8, 0.6, 0.9], equal_var=False)
    assert got.loc["pooled", "worlds_p"] == pytest.approx(welch.pvalue) and got.loc["pooled", "worlds_test"] == "Welch t"
    assert math.isnan(got.loc["w1", "worlds_p"])
    test = stats.worlds_differ(rows, "u", "A", "B", "tofu")
    assert test["statistic"] == pytest.approx(welch.statistic) and test["df"] == pytest.approx(welch.df)
    # in a family: one world, and pooled (world=None), the same numbers
    fam = stats.compare(rows, [Comparison("tofu", "A", "B", "u", world="w2"), Comparison("tofu", "A", "B", "u")])
    assert fam["n"].tolist() == [3, 7] and fam["world"].tolist() == ["w2", "pooled"]


def _power_by_quadrature(n, d, alpha):
    """Independent of scipy's nct: T = (Z + d sqrt(n)) / sqrt(V / df), V ~ chi2(df); integrate P(|T| > c | V)."""
    df, delta, c = n - 1, d * math.sqrt(n), scipy.stats.t.ppf(1 - alpha / 2, n - 1)
    def given(v):
        s = c * math.sqrt(v / df)
        return (scipy.stats.norm.sf(s - delta) + scipy.stats.norm.cdf(-s - delta)) * scipy.stats.chi2.pdf(v, df)
    return scipy.integrate.quad(given, 0, np.inf)[0]


@pytest.mark.parametrize("d, n", [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_sample_size_matches_published_values(d, n):
    # G*Power 3.1 (t tests, means: difference from constant / matched pairs, two tails, alpha 0.05, power 0.8)
    # gives 34, 15 and 10 pairs for d_z 0.5, 0.8 and 1.0; this implementation gives the same.
    assert stats.paired_t_sample_size(d, alpha=0.05, power=0.8) == n
    assert stats.paired_t_power(n, d) >= 0.8 > stats.paired_t_power(n - 1, d)
    assert stats.paired_t_sample_size(-d) == n  # the sign of the effect does not matter


def test_power_is_exact():
    assert stats.paired_t_power(34, 0.5) == pytest.approx(0.8077775, abs=1e-6)  # G*Power's "actual power" at 34
    for n, d, alpha in [(34, 0.5, 0.05), (10, 1.0, 0.05), (3, 1.74, 0.05), (24, 0.8, 0.05 / 8)]:
        assert stats.paired_t_power(n, d, alpha) == pytest.approx(_power_by_quadrature(n, d, alpha), abs=1e-7)
    assert stats.paired_t_power(5, 0.0) == pytest.approx(0.05)  # no effect: the test's level
    # exact values of this implementation at alpha 0.05 and at Bonferroni's 0.05/8 and 0.05/16, power 0.8
    expected = {0.05: [34, 19, 15, 15, 10, 5], 0.05 / 8: [55, 32, 25, 24, 17, 8], 0.05 / 16: [63, 36, 29, 27, 19, 10]}
    for alpha, ns in expected.items():
        assert [stats.paired_t_sample_size(d, alpha) for d in (0.5, 0.68, 0.78, 0.8, 1.0, 1.74)] == ns
    with pytest.raises(ValueError):
        stats.paired_t_sample_size(0.0)
    with pytest.raises(ValueError):
        stats.paired_t_power(1, 1.0)


def test_ranking_leaves_out_configurations_that_did_not_always_reach():
    rows = pd.concat([
        rows_of({"GA": [0.30, 0.32, 0.34], "SGA": [0.50, NAN, 0.60], "GD": [0.40, 0.41, 0.42], "KL": [0.20, 0.21, 0.22],
                 "NPO": [NAN, NAN, NAN]}, column="eq_utility"),
        rows_of({"GA": [80.0, 70.0, 75.0], "SGA": [60.0, 66.0, 63.0], "GD": [90.0, 95.0, 85.0]}, benchmark="hp", column="eq_utility"),
    ]).drop(columns="world")
    summary = comparison.interval_table(rows, ["eq_utility"])
    got = stats.ranking(summary, "eq_utility", {"tofu": True, "hp": False})
    tofu, hp = got.loc["tofu"], got.loc["hp"]
    # SGA has the best TOFU mean (0.55) but one seed never reached: not ranked
    assert tofu.loc["SGA", "verdict"] == "reached 2 of 3" and tofu.loc["SGA", "rank"] == 0 and not tofu.loc["SGA", "ranked"]
    assert tofu.loc["NPO", "verdict"] == "reached 0 of 3"
    assert tofu.loc["GD", "verdict"] == "best" and tofu.loc["GA", "verdict"] == "second" and tofu.loc["KL", "verdict"] == ""
    assert tofu["rank"].to_dict() == {"GA": 2, "SGA": 0, "GD": 1, "KL": 0, "NPO": 0}
    # perplexity: lower is better
    assert hp["verdict"].to_dict() == {"GA": "second", "SGA": "best", "GD": ""}
    # ties for best share rank 1 and leave no second (as comparison.top_two)
    tie = pd.DataFrame({"v": [1.0, 1.0, 0.5], "v n": [2, 2, 2], "runs": [2, 2, 2]},
                       index=pd.MultiIndex.from_tuples([("b", "x"), ("b", "y"), ("b", "z")]))
    assert stats.ranking(tie, "v", True)["rank"].tolist() == [1, 1, 0]


def test_clopper_pearson_exact_bounds_and_reach_table():
    lo, hi = stats.clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.3085, abs=1e-4) and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = stats.clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.6915, abs=1e-4) and lo == pytest.approx(0.025 ** (1 / 10))
    ci = scipy.stats.binomtest(3, 10).proportion_ci(0.95, method="exact")
    assert stats.clopper_pearson(3, 10) == pytest.approx((ci.low, ci.high))
    assert all(math.isnan(v) for v in stats.clopper_pearson(0, 0))
    rows = pd.concat([rows_of({"A": [1.0, NAN, 2.0], "B": [NAN] * 3}), rows_of({"A": [1.0, 1.0, 1.0]}, world="w2")])
    table = stats.reach_table(rows, "u")
    assert table.index.names == ["benchmark", "world", "label"]
    a1 = table.loc[("tofu", "w1", "A")]
    ci = scipy.stats.binomtest(2, 3).proportion_ci(0.95, method="exact")
    assert (a1["reached"], a1["runs"], a1["share"]) == (2, 3, pytest.approx(2 / 3)) and (a1["lo"], a1["hi"]) == pytest.approx((ci.low, ci.high))
    assert table.loc[("tofu", "w1", "B"), "reached"] == 0 and table.loc[("tofu", "w2", "A"), "hi"] == 1.0


def test_stability_ladder_on_a_hand_made_table():
    diverged = {  # method: {rung (learning-rate multiple): diverged per seed 0, 1, 2}
        "GA": {1: [0, 0, 0], 2: [0, 1, 0], 3: [1, 1, 1]},
        "SGA": {1: [0, 0, 0], 2: [0, 0, 0], 3: [0, 0, 0], 4: [1, 1, 0]},
        "adaptive": {1: [0, 0, 0], 2: [0, 0, 0], 4: [0, 0, 0]},
        "fragile": {1: [0, 1, 0], 2: [1, 1, 1]},
        "odd": {1: [0, 0, 0], 2: [1, 0, 0], 3: [0, 0, 0], 4: [0, 1, 1]},
    }
    runs = pd.DataFrame([{"method": m, "lr": rung, "seed": s, "diverged": bool(d)}
                         for m, ladder in diverged.items() for rung, ds in ladder.items() for s, d in enumerate(ds)])
    got = stats.stability_ladder(runs.sample(frac=1.0, random_state=0), rung="lr")
    assert set(got.index) == set(diverged) and got.index.name == "method"
    expect = pd.DataFrame({
        "stable_up_to": [1, 3, 4, NAN, 1], "next_rung": [2, 4, NAN, 1, 2], "diverged_next": [1, 2, 0, 1, 1],
        "seeds_next": [3, 3, 0, 3, 3], "diverged_above": [3, 0, 0, 3, 2], "rungs": [3, 4, 3, 2, 4],
    }, index=pd.Index(["GA", "SGA", "adaptive", "fragile", "odd"], name="method"))
    pd.testing.assert_frame_equal(got.loc[expect.index].astype(float), expect.astype(float))
