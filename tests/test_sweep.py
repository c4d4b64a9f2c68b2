"""Sweeps through the one run path: notebook 05's configurations as typed points, runs computed once, reuse,
failures, costs."""

import gc
import re

import pytest

from sga import comparison, presets, sweep
from sga.results import compare_results
from sga.sweep import Point

@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return root / "cache", root / "runs"


SMOKE = presets.resolve("tofu", "smoke")
SETTINGS = {("tofu", 0): SMOKE}


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
    assert re.fullmatch(r"\[sga\] sweep: 1/2 runs \(50%\), \d\d:\d\d elapsed, ~\d\d:\d\d left, last=tofu-world0-1-of-2 in \d+ s", lines[0]), lines
    assert re.fullmatch(r"\[sga\] sweep: 2/2 runs in \d\d:\d\d, last=tofu-world0-2-of-2 in \d+ s", lines[1]), lines
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
    assert report["run"] == 2 and report["failures"] == [("tofu-world0-1-of-2", "RuntimeError: 1 of 1 runs failed: GA (seed 4): FloatingPointError: boom")]
    both = sweep.run_sweep(points, SETTINGS, cache, runs, runs_per_task=2)  # one task, its other run still made
    assert both["failures"] == [("tofu-world0-1-of-1", "RuntimeError: 1 of 1 runs failed: GA (seed 4): FloatingPointError: boom")]
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
    readings = lambda result: [{k: v for k, v in e.items() if k != "seconds"} for e in result["trajectory"]]  # noqa: E731
    assert readings(results[points[2]]) == readings(sweep.collect(points, SETTINGS, cache, tmp_path / "serial")[points[2]])
