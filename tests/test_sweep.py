"""Sweeps through the one run path: notebook 05's configurations, runs computed once, reuse, failures, costs."""

import gc

import pytest

from sga import comparison, presets, sweep
from sga.sweep import Point


def test_configurations_exact():
    params = presets.resolve("tofu", "mini")
    core = sweep.configurations(params, "core")
    assert list(core) == ["GA", "SGA r=-0.4", "SGA r=+0.4", "SGA r=-1", "SGA r=+1", "SGA adaptive",
                          "GradDiff, SGA r=-0.4's weights", "GA, 3x lr, unclipped", "SGA r=-0.4, 3x lr, unclipped"]
    gamma, alpha = core["GradDiff, SGA r=-0.4's weights"][1].values()
    assert (gamma, alpha) == pytest.approx((1.3, 0.3))  # 1 - r (K-1)/K and -r (K-1)/K at r = -0.4, K = 4
    assert core["GA, 3x lr, unclipped"] == ("ga", {"lr": pytest.approx(3 * params["lr"]), "max_grad_norm": "none"})
    full = sweep.configurations(params, "full")
    assert set(core) < set(full) and len(full) == len(core) + 15
    # the same total normal weight r (K-1)/K = -0.3 as r = -0.4 at K = 4
    assert full["SGA K=2, same normal weight"] == ("sga", {"rate": pytest.approx(-0.6), "k": 2})
    assert full["SGA K=8, same normal weight"] == ("sga", {"rate": pytest.approx(-0.3 * 8 / 7), "k": 8})
    groups = sweep.configuration_groups(params, "full")
    assert list(groups) == ["GA and SGA r0", "gls rate", "adaptive", "reweighting control", "learning rate", "descent rate", "K", "normal data"]
    assert sum(len(g) for g in groups.values()) == len(full)  # each configuration in exactly one group
    assert groups["descent rate"]["SGA descent r=1"] == ("sga", {"reading": "descent", "rate": 1.0})
    assert list(groups["normal data"]) == ["SGA r=-0.4, tfidf", "SGA r=-0.4, embedding"]
    assert "K" not in sweep.configuration_groups(params, "core")
    with pytest.raises(ValueError, match=r"choose one of \['core', 'full'\]"):
        sweep.configurations(params, "huge")
    points = sweep.points(["tofu", "muse_news"], "smoke", [0, 1], "core", trajectory=True)
    assert len(points) == 2 * len(core) * 2 and all(dict(p.overrides)["trajectory"] for p in points)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return root / "cache", root / "runs"


def test_a_sweep_runs_each_missing_point_once_and_reads_it_back(dirs):
    cache, runs = dirs
    common = {"trajectory": True, "final_evaluation": False}
    points = [Point.of("tofu", "GA", "ga", 0, **common), Point.of("tofu", "adaptive", "sga_adaptive", 0, **common)]
    report = sweep.run_sweep(points + points[:1], "smoke", cache, runs)
    assert (report["points"], report["reused"], report["run"], report["failures"]) == (2, 0, 2, [])
    again = sweep.run_sweep(points, "smoke", cache, runs)
    assert (again["reused"], again["run"], again["tasks"]) == (2, 0, 0)
    results = sweep.collect(points, "smoke", cache, runs)
    ga, adaptive = results[points[0]], results[points[1]]
    assert "metrics" not in ga and ga["trajectory"] and ga["params"]["final_evaluation"] is False
    assert all("rate" in step and "safe" in step for step in adaptive["log"])


def test_a_run_with_a_full_evaluation_answers_the_point_without_one(dirs):
    cache, runs = dirs
    world = sweep.world("tofu", "smoke", cache, runs)
    full = sweep.run_method(world, "ga", seed=1, trajectory=True)
    point = Point.of("tofu", "GA", "ga", 1, trajectory=True, final_evaluation=False)
    assert sweep.result_path(world, point).name == f"{full['name']}.json"
    assert sweep.run_sweep([point], "smoke", cache, runs)["run"] == 0


def test_invalid_points_are_refused_before_any_run(dirs):
    cache, runs = dirs
    bad = Point.of("tofu", "bad", "sga", 2, rate=5.0)  # outside the gls range r < K/(K-1)
    with pytest.raises(ValueError, match="outside"):
        sweep.run_sweep([Point.of("tofu", "GA", "ga", 3, trajectory=True), bad], "smoke", cache, runs)
    assert not list(runs.glob("tofu/*seed3*"))


def test_a_run_that_fails_is_reported_and_the_others_complete(dirs, monkeypatch):
    cache, runs = dirs
    real = sweep.run_method

    def flaky(world, method, **overrides):
        if overrides["seed"] == 4:
            raise FloatingPointError("boom")
        return real(world, method, **overrides)

    monkeypatch.setattr(sweep, "run_method", flaky)
    points = [Point.of("tofu", "GA", "ga", seed, trajectory=True, final_evaluation=False) for seed in (4, 5)]
    report = sweep.run_sweep(points, "smoke", cache, runs)
    assert report["run"] == 2 and report["failures"] == [("tofu-1-of-1", "RuntimeError: 1 of 2 runs failed: GA (seed 4): FloatingPointError: boom")]
    assert set(sweep.collect(points, "smoke", cache, runs)) == {points[1]}
    assert gc.get_freeze_count() == 0  # the objects frozen for the task's runs are handed back, a failure or not


def test_axes_and_step_cost_on_a_world(dirs):
    cache, runs = dirs
    world = sweep.world("tofu", "smoke", cache, runs)
    ax = comparison.axes(world)
    assert (ax.forget, ax.utility, ax.reference) == ("forget_rouge_l", "model_utility", "retain")
    before = sorted(p.name for p in world.out_dir.iterdir())
    assert comparison.step_seconds(world, "sga_adaptive", steps=2) > 0
    assert sorted(p.name for p in world.out_dir.iterdir()) == before  # a cost measurement leaves no result
