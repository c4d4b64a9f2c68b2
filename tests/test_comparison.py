"""Reading runs on common axes: paths, equal forgetting, Pareto fronts, stability, top-two marks."""

import math

import pandas as pd
import pytest

from sga import comparison
from sga.world import Axes

AX = Axes("f", "forget", "u", "utility", True, lambda world, result: result["summary"], "retain")


def curve(forget, utility):
    return pd.DataFrame({"forget": forget, "utility": utility}, index=pd.Index(range(len(forget)), name="epoch"))


def test_path_starts_at_the_target_and_follows_the_epochs():
    result = {"trajectory": [{"epoch": 1, "f": 0.5, "u": 0.9, "other": 3}, {"epoch": 2, "f": 0.2, "u": 0.7}]}
    got = comparison.path(result, {"f": 0.8, "u": 1.0}, AX)
    assert got.index.tolist() == [0, 1, 2] and got["forget"].tolist() == [0.8, 0.5, 0.2] and got["utility"].tolist() == [1.0, 0.9, 0.7]


def test_at_forget_level_interpolates_at_the_first_crossing():
    c = curve([0.8, 0.6, 0.2, 0.1], [1.0, 0.9, 0.5, 0.1])
    epoch, utility = comparison.at_forget_level(c, 0.4)  # halfway between epochs 1 and 2
    assert epoch == pytest.approx(1.5) and utility == pytest.approx(0.7)
    assert comparison.at_forget_level(c, 0.9) == (0.0, 1.0)  # the start is already there
    assert all(math.isnan(v) for v in comparison.at_forget_level(c, 0.05))  # never reached
    # a path that goes back up after the crossing is read at its first crossing
    assert comparison.at_forget_level(curve([0.8, 0.3, 0.9], [1.0, 0.5, 0.2]), 0.3) == (1.0, 0.5)


def test_at_forget_level_in_log_space_for_perplexity():
    _, ppl = comparison.at_forget_level(curve([0.8, 0.4], [10.0, 1000.0]), 0.6, log_utility=True)
    assert ppl == pytest.approx(100.0)  # the geometric midpoint


def test_pareto_front_exact():
    forget = [0.1, 0.2, 0.3, 0.2, float("nan"), 0.1]
    utility = [0.2, 0.6, 0.5, 0.6, 0.9, 0.1]
    assert comparison.pareto_front(forget, utility).tolist() == [True, True, False, True, False, False]
    # utility lower-is-better (perplexity): the order flips
    assert comparison.pareto_front([0.1, 0.2, 0.3], [50.0, 10.0, 20.0], utility_higher=False).tolist() == [True, True, False]


def test_stability_reads_the_step_log():
    log = [{"grad_norm": g, "loss": l} for g, l in [(1.0, -1.0), (1.2, -2.0), (30.0, -1.0), (0.8, -4.0), (1.1, -3.0)]]
    got = comparison.stability({"status": "completed", "log": log})
    changes = [-1.0, 1.0, -3.0, 1.0]
    mean = sum(changes) / 4
    assert got["diverged"] is False and got["max_grad_norm"] == 30.0 and got["spikes"] == 1
    assert got["loss_oscillation"] == pytest.approx(math.sqrt(sum((c - mean) ** 2 for c in changes) / 4))
    diverged = comparison.stability({"status": "diverged", "log": log[:2] + [{"grad_norm": float("nan"), "loss": float("nan")}]})
    assert diverged["diverged"] is True and diverged["max_grad_norm"] == 1.2


def test_top_two_ranks_each_column_in_its_direction():
    table = pd.DataFrame({"fq": [0.1, 0.5, 0.3, 0.5], "ppl": [10.0, 30.0, 20.0, 5.0]}, index=list("abcd"))
    ranks = comparison.top_two(table, {"fq": True, "ppl": False})
    assert ranks["fq"].tolist() == [0, 1, 0, 1]  # a tie for best: both first, none second
    assert ranks["ppl"].tolist() == [2, 0, 0, 1]


def _result(status, forgets, utilities, rates=None):
    log = [{"grad_norm": 1.0, "loss": -1.0 - i, **({"rate": r, "safe": 1.0} if rates else {})} for i, r in enumerate(rates or [0, 0])]
    trajectory = [{"epoch": i + 1, "f": f, "u": u} for i, (f, u) in enumerate(zip(forgets, utilities))]
    return {"status": status, "log": log, "trajectory": trajectory, "train_seconds": 2.0}


def test_run_rows_intervals_and_paired_differences():
    from sga.presets import resolve
    from sga.sweep import Point

    settings = resolve("tofu", "smoke")
    point = lambda label, method, seed: Point("group", label, settings.run(method, seed=seed))  # noqa: E731
    results = {
        point("GA", "ga", 0): _result("completed", [0.5, 0.1], [0.8, 0.2]),
        point("GA", "ga", 1): _result("completed", [0.5, 0.1], [0.8, 0.6]),
        point("SGA", "sga_adaptive", 0): _result("completed", [0.6, 0.3], [0.9, 0.8], rates=[-1.0, -0.5]),
        point("SGA", "sga_adaptive", 1): _result("diverged", [0.6], [0.9], rates=[-1.0, -0.5]),
    }
    rows = comparison.run_rows(results, {"tofu": {"f": 0.9, "u": 1.0}}, {"tofu": 0.3}, {"tofu": AX})
    assert rows[["benchmark", "label", "method", "seed"]].values.tolist()[2] == ["tofu", "SGA", "sga_adaptive", 0]
    ga0 = rows.iloc[0]
    assert (ga0.end_forget, ga0.end_utility) == (0.1, 0.2)
    assert ga0.eq_epoch == pytest.approx(1.5) and ga0.eq_utility == pytest.approx(0.5)  # halfway from (0.5, 0.8) to (0.1, 0.2)
    sga0, sga1 = rows.iloc[2], rows.iloc[3]
    assert (sga0.eq_epoch, sga0.eq_utility, sga0.mean_rate, sga0.safe_share) == (2.0, 0.8, -0.75, 1.0)
    assert math.isnan(sga1.end_forget) and math.isnan(sga1.eq_utility) and sga1.status == "diverged"
    table = comparison.interval_table(rows, ["eq_utility"])
    ga = table.loc[("tofu", "GA")]
    half = 12.706204736 * math.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) / 1) / math.sqrt(2)  # t(0.975, 1) * s / sqrt(n)
    assert ga["eq_utility"] == pytest.approx(0.6) and ga["eq_utility hi"] == pytest.approx(0.6 + half) and ga["runs"] == 2
    assert table.loc[("tofu", "SGA"), "eq_utility n"] == 1
    diff = comparison.paired_difference(rows, "eq_utility", "SGA", "GA")
    assert diff.loc["tofu", "difference"] == pytest.approx(0.8 - 0.5) and diff.loc["tofu", "pairs"] == 1


def test_located_rows_read_the_crossing_the_steps_and_the_end():
    from sga.presets import resolve
    from sga.sweep import Point

    settings = resolve("tofu", "smoke")
    log = [{"grad_norm": 1.0, "loss": -1.0, "forward_tokens": 10 * i, "backward_tokens": 20 * i} for i in range(1, 7)]
    reached = {"status": "completed", "log": log, "train_seconds": 1.0, "wall_seconds": 3.0,
               "crossing": {"step": 4, "resolution": 2, "reading": {"f": 0.3, "u": 0.6, "fq": 0.2},
                            "at_steps": {"5": {"f": 0.2, "u": 0.5, "fq": 0.3}}},
               "end": {"step": 6, "f": 0.1, "u": 0.4, "fq": 0.5}}
    never = {"status": "diverged", "log": log[:3], "crossing": {"step": None, "at_steps": {}}}
    results = {Point("core", "GA", settings.run("ga", seed=1)): reached, Point("core", "SGA", settings.run("sga", seed=1)): never}
    rows = comparison.located_rows(results, {"tofu": AX}, second={"tofu": "fq"})
    assert math.isnan(comparison.located_rows(results, {"tofu": AX}).iloc[0].eq_second)
    ga, sga = rows.iloc[0], rows.iloc[1]
    assert (ga.world, ga.group, ga.reached, ga.steps_to_level, ga.resolution, ga.tokens_to_level) == (0, "core", True, 4, 2, 120.0)
    assert (ga.eq_forget, ga.eq_utility, ga.eq_second, ga.steps_utility, ga.end_utility, ga.end_step, ga.tokens) == (0.3, 0.6, 0.2, 0.5, 0.4, 6, 180.0)
    assert not sga.reached and math.isnan(sga.eq_utility) and math.isnan(sga.end_utility) and sga.tokens == 90.0
