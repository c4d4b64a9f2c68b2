"""Sweeps through the one run path: notebook 05's configurations as typed points, runs computed once, reuse,
failures, costs."""

import gc
import re

import pytest

from sga import comparison, presets, sweep
from sga.results import compare_results
from sga.sweep import Point

MINI = presets.resolve("tofu", "mini")


def test_configurations_exact():
    core = sweep.configurations(MINI, "core")
    labels = [p.label for p in core]
    assert labels == ["GA", "SGA r=-0.4", "SGA r=+0.4", "SGA r=-1", "SGA r=+1", "SGA adaptive",
                      "GradDiff, SGA r=-0.4's weights", "KL", "NPO", "SimNPO", "FLAT", "GA, 3x lr, unclipped", "SGA r=-0.4, 3x lr, unclipped"]
    assert [p.method for p in core if p.group == "baselines"] == ["kl", "npo", "simnpo", "flat"]
    control = core[labels.index("GradDiff, SGA r=-0.4's weights")].run.options
    assert (control.graddiff_forget_weight, control.graddiff_retain_weight) == pytest.approx((1.3, 0.3))  # 1 - r (K-1)/K, -r (K-1)/K
    fast = core[labels.index("GA, 3x lr, unclipped")].run
    assert fast.method == "ga" and fast.training.lr == pytest.approx(3 * MINI.training.lr) and fast.training.max_grad_norm is None
    full = sweep.configurations(MINI, "full")
    assert set(labels) < {p.label for p in full} and len(full) == len(core) + 15
    by_label = {p.label: p for p in full}
    # the same total normal weight r (K-1)/K = -0.3 as r = -0.4 at K = 4
    assert (by_label["SGA K=2, same normal weight"].run.options.rate, by_label["SGA K=2, same normal weight"].run.options.k) == (pytest.approx(-0.6), 2)
    assert by_label["SGA K=8, same normal weight"].run.options.rate == pytest.approx(-0.3 * 8 / 7)
    assert list(dict.fromkeys(p.group for p in full)) == ["GA and SGA r0", "gls rate", "adaptive", "reweighting control", "baselines", "learning rate",
                                                          "descent rate", "K", "normal data"]
    assert (by_label["SGA descent r=1"].run.options.reading, by_label["SGA descent r=1"].run.options.rate) == ("descent", 1.0)
    assert sweep.select(full, "normal data") == ["SGA r=-0.4, tfidf", "SGA r=-0.4, embedding"]
    assert "K" not in {p.group for p in core}
    with pytest.raises(ValueError, match=r"choose one of \['core', 'full'\]"):
        sweep.configurations(MINI, "huge")
    smoke = [presets.resolve(b, "smoke") for b in ("tofu", "muse_news")]
    points = sweep.points(smoke, [0, 1], "core", trajectory=True)
    assert len(points) == 2 * len(core) * 2 and all(p.run.evaluation.trajectory for p in points)
    assert [p.seed for p in points[:2]] == [0, 1] and {p.benchmark for p in points} == {"tofu", "muse_news"}


def test_select_by_group_method_and_spec():
    full = sweep.configurations(MINI, "full")
    unclipped = lambda run: run.training.max_grad_norm is None  # noqa: E731
    assert sweep.select(full, "learning rate", where=unclipped) == ["GA, 3x lr, unclipped", "SGA r=-0.4, 3x lr, unclipped", "SGA adaptive, 3x lr, unclipped"]
    assert sweep.only(sweep.select(full, "learning rate", "sga", where=unclipped)) == "SGA r=-0.4, 3x lr, unclipped"
    with pytest.raises(ValueError, match="Expected one configuration"):
        sweep.only(sweep.select(full, "learning rate"))
    table = sweep.configuration_table(full)
    assert table.loc[("GA and SGA r0", "GA"), "rate"] == "" and table.loc[("GA and SGA r0", "SGA r=-0.4"), "rate"] == -0.4
    assert table.loc[("learning rate", "GA, 3x lr, unclipped"), "max_grad_norm"] == "none" and "trajectory" not in table


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return root / "cache", root / "runs"


SMOKE = presets.resolve("tofu", "smoke")
SETTINGS = {"tofu": SMOKE}


def point(label, method, seed, **overrides):
    return Point("group", label, SMOKE.run(method, seed=seed, **overrides))


def test_a_sweep_runs_each_missing_point_once_and_reads_it_back(dirs, capsys, monkeypatch):
    cache, runs = dirs
    monkeypatch.delenv("SGA_PROGRESS", raising=False)
    common = {"trajectory": True, "final_evaluation": False}
    points = [point("GA", "ga", 0, **common), point("adaptive", "sga_adaptive", 0, **common)]
    report = sweep.run_sweep(points + points[:1], SETTINGS, cache, runs)
    assert (report["points"], report["reused"], report["run"], report["tasks"], report["failures"]) == (2, 0, 2, 2, [])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[sga] sweep")]
    assert len(lines) == 2  # one line per finished run with the time left at the mean so far, then the total
    assert re.fullmatch(r"\[sga\] sweep: 1/2 runs \(50%\), \d\d:\d\d elapsed, ~\d\d:\d\d left, last=tofu-1-of-2 in \d+ s", lines[0]), lines
    assert re.fullmatch(r"\[sga\] sweep: 2/2 runs in \d\d:\d\d, last=tofu-2-of-2 in \d+ s", lines[1]), lines
    again = sweep.run_sweep(points, SETTINGS, cache, runs)
    assert (again["reused"], again["run"], again["tasks"]) == (2, 0, 0)
    results = sweep.collect(points, SETTINGS, cache, runs)
    ga, adaptive = results[points[0]], results[points[1]]
    assert "metrics" not in ga and ga["trajectory"] and ga["params"]["evaluation"]["final_evaluation"] is False
    assert all("rate" in step and "safe" in step for step in adaptive["log"])


def test_a_run_with_a_full_evaluation_answers_the_point_without_one(dirs):
    cache, runs = dirs
    world = sweep.world(SMOKE, cache, runs)
    full = sweep.execute(world, SMOKE.run("ga", seed=1, trajectory=True))
    short = point("GA", "ga", 1, trajectory=True, final_evaluation=False)
    assert sweep.result_path(world, short.run).name == f"{full['name']}.json"
    assert sweep.run_sweep([short], SETTINGS, cache, runs)["run"] == 0


def test_invalid_points_are_refused_before_any_run():
    with pytest.raises(ValueError, match="outside"):
        point("bad", "sga", 2, rate=5.0)  # outside the gls range r < K/(K-1): the spec cannot be made


def test_a_run_that_fails_is_reported_and_the_others_complete(dirs, monkeypatch):
    cache, runs = dirs
    real = sweep.execute

    def flaky(world, run):
        if run.seed == 4:
            raise FloatingPointError("boom")
        return real(world, run)

    monkeypatch.setattr(sweep, "execute", flaky)
    points = [point("GA", "ga", seed, trajectory=True, final_evaluation=False) for seed in (4, 5)]
    report = sweep.run_sweep(points, SETTINGS, cache, runs)
    assert report["run"] == 2 and report["failures"] == [("tofu-1-of-2", "RuntimeError: 1 of 1 runs failed: GA (seed 4): FloatingPointError: boom")]
    both = sweep.run_sweep(points, SETTINGS, cache, runs, runs_per_task=2)  # one task, its other run still made
    assert both["failures"] == [("tofu-1-of-1", "RuntimeError: 1 of 1 runs failed: GA (seed 4): FloatingPointError: boom")]
    assert set(sweep.collect(points, SETTINGS, cache, runs)) == {points[1]}
    assert gc.get_freeze_count() == 0  # the objects frozen for the task's runs are handed back, a failure or not


def test_axes_and_step_cost_on_a_world(dirs):
    cache, runs = dirs
    world = sweep.world(SMOKE, cache, runs)
    ax = comparison.axes(world)
    assert (ax.forget, ax.utility, ax.reference) == ("forget_rouge_l", "model_utility", "retain")
    before = sorted(p.name for p in world.out_dir.iterdir())
    assert comparison.step_seconds(world, "sga_adaptive", steps=2) > 0
    assert sorted(p.name for p in world.out_dir.iterdir()) == before  # a cost measurement leaves no result


@pytest.mark.slow
def test_a_sweep_over_worker_processes_gives_the_serial_results(dirs, tmp_path):
    """The same points run here one after another and in two worker processes: every metric and per-step log
    identical (each worker prepares its world from the cache and pins the preset's threads)."""
    cache, _ = dirs
    points = [point("GA", "ga", 7), point("SGA", "sga", 7), point("adaptive", "sga_adaptive", 7, trajectory=True),
              point("GradDiff", "graddiff", 8)]
    serial = sweep.run_sweep(points, SETTINGS, cache, tmp_path / "serial", progress=False)
    parallel = sweep.run_sweep(points, SETTINGS, cache, tmp_path / "parallel", executor="processes", max_parallel=2, progress=False)
    assert (serial["run"], serial["failures"], parallel["run"], parallel["tasks"], parallel["failures"]) == (4, [], 4, 4, [])
    table = compare_results(tmp_path / "serial", tmp_path / "parallel")
    assert len(table) == 5 and table.all(axis=None), table  # the four runs and the retain model's row their metrics read
    results = sweep.collect(points, SETTINGS, cache, tmp_path / "parallel")
    assert all(r["metrics"] and r["log"] for r in results.values()) and results[points[2]]["trajectory"]
    assert results[points[2]]["trajectory"] == sweep.collect(points, SETTINGS, cache, tmp_path / "serial")[points[2]]["trajectory"]
