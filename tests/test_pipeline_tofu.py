"""The TOFU spec on the generic run path, end to end on the smoke preset: one JSON per run, reused,
adapters kept, per-run overrides; clear errors before any work."""

import json
import time

import pytest

import benchmark_checks

from sga import experiment, presets
from sga.benchmarks import tofu
from sga.data.hub import DataUnavailableError


def test_hub_source_offline_names_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    began = time.perf_counter()
    with pytest.raises(DataUnavailableError, match="mini"):
        experiment.prepare(presets.resolve("tofu", "paper"), tmp_path / "cache", tmp_path / "runs")
    assert time.perf_counter() - began < 1.0 and not (tmp_path / "cache").exists()  # checked before any work


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tofu")
    settings = presets.resolve("tofu", "smoke", methods=["ga", "sga"], progress=False)
    return experiment.prepare(settings, root / "cache", root / "runs")


def test_world_holds_examples_and_models(smoke_world):
    assert len(smoke_world.forget) == len(smoke_world.data["forget"]) and smoke_world.forget[0].question
    assert len(smoke_world.pool) < len(smoke_world.data["retain"]) and set(smoke_world.models) == {"target", "retain"}
    assert "holdout" not in smoke_world.data  # only what needs the holdout configs asks for them


def test_one_result_per_run_reused_and_complete(smoke_world):
    ga = experiment.run_method(smoke_world, "ga")
    path = smoke_world.out_dir / f"{ga['name']}.json"
    stamp = path.stat().st_mtime_ns
    assert ga["status"] == "completed" and set(ga["summary"]) == {"forget_quality", "forget_ks_d", "model_utility", "forget_rouge_l", "retain_rouge_l"}
    assert json.loads(path.read_text())["params"]["method"] == "ga" and ga["params"]["options"] == {}
    assert ga["environment"]["packages"]["torch"]
    assert (smoke_world.out_dir / ga["name"] / "adapter").is_dir() and not (smoke_world.out_dir / ga["name"] / "checkpoint").exists()
    assert experiment.run_method(smoke_world, "ga") == json.loads(path.read_text()) and path.stat().st_mtime_ns == stamp
    sga_run = experiment.run_method(smoke_world, "sga")
    assert sga_run["name"] != ga["name"] and sga_run["params"]["options"]["rate"] == -0.4
    assert all("normal_nll" in step for step in sga_run["log"])
    table = experiment.results_table({"ga": ga, "sga": sga_run, "retain": experiment.reference(smoke_world, "retain")})
    assert table.loc["retain", "forget_quality"] == 1.0  # KS p-value of a sample against itself


def test_trajectory_reads_the_run_after_every_epoch(smoke_world):
    run = experiment.run_method(smoke_world, "ga", epochs=2)
    assert [point["epoch"] for point in run["trajectory"]] == [1, 2]
    assert [point["step"] for point in run["trajectory"]] == [len(run["log"]) // 2, len(run["log"])]
    assert set(run["trajectory"][0]) >= {"forget_quality", "forget_ks_d", "model_utility", "forget_rouge_l"}
    # after the last epoch the reading sees the final model: the same truth ratios as the full evaluation
    assert run["trajectory"][-1]["forget_quality"] == run["summary"]["forget_quality"]
    retain = tofu.path_summary(experiment.reference(smoke_world, "retain"), smoke_world)
    assert retain["forget_quality"] == 1.0 and 0 <= retain["forget_rouge_l"] <= 1


def test_retain_evaluation_questions_stay_out_of_the_pool(smoke_world):
    held = set(smoke_world.data["retain_perturbed"]["question"])
    assert held and not held & {e.question for e in smoke_world.pool}
    assert len(tofu.retain_pool(smoke_world.data, exclude_eval=False)) == len(smoke_world.pool) + len(held)


def test_overrides_make_their_own_run(smoke_world):
    """GradDiff with SGA's weights is one run; per-run overrides are part of its identity."""
    plain = experiment.run_method(smoke_world, "graddiff")
    matched = experiment.run_method(smoke_world, "graddiff", graddiff_forget_weight=1.3, graddiff_retain_weight=0.3)
    assert matched["name"] != plain["name"] and "fw1.3-rw0.3" in matched["name"]
    unclipped = experiment.run_method(smoke_world, "ga", max_grad_norm="none")  # the string "none" switches clipping off
    assert unclipped["params"]["training"]["max_grad_norm"] is None
    assert matched["log"][0]["loss"] == pytest.approx(-1.3 * matched["log"][0]["forget_nll"] + 0.3 * matched["log"][0]["retain_nll"], rel=1e-5)


def test_unknown_method_and_split(smoke_world):
    with pytest.raises(ValueError, match="choose one of"):
        experiment.run_method(smoke_world, "rmu")
    with pytest.raises(ValueError, match="forget01"):
        presets.resolve("tofu", "smoke", forget_split="forget20")


def test_flat_runs_on_the_smoke_world_with_template_answers_and_counts_its_tokens(smoke_world):
    benchmark_checks.flat_run(smoke_world)


def test_the_forgetting_reading_alone_equals_the_one_along_training(smoke_world):
    benchmark_checks.forgetting_reading_alone(smoke_world, "forget_rouge_l")


def test_locating_the_level_reads_without_changing_training_and_stops_by_the_rule(smoke_world, monkeypatch):
    common = {"epochs": 6, "lr": 3e-3, "final_evaluation": False}
    plain = experiment.run_method(smoke_world, "ga", trajectory=True, **common)
    monkeypatch.setattr(experiment, "forgetting_level", lambda world, which=None: -1.0 if which is None else 1.0)  # never reached
    located = experiment.run_method(smoke_world, "ga", trajectory=False, locate=True, check_every=2, **common)
    steps = lambda r: [{k: v for k, v in s.items() if k != "elapsed"} for s in r["log"]]  # noqa: E731
    assert steps(located) == steps(plain)  # reading kept weights and the current model changes no step of training
    assert located["crossing"]["step"] is None and [s for s, _ in located["crossing"]["readings"]] == [2, 4, 6]
    assert located["end"]["step"] == 6 and located["end"]["forget_rouge_l"] == plain["trajectory"][-1]["forget_rouge_l"]
    monkeypatch.setattr(experiment, "forgetting_level", lambda world, which=None: 2.0)  # the target is already below it
    stopped = experiment.run_method(smoke_world, "ga", trajectory=False, locate=True, check_every=2, stop_after_level=3, **common)
    assert (stopped["crossing"]["step"], len(stopped["log"]), stopped["end"]["step"]) == (0, 3, 3)
