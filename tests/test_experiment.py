"""The generic run path: extra data per method, run parameters and their checks, cached results."""

import numpy as np
import pytest

from sga.experiment import cached_result, extra_index, run_params
from sga.methods import method
from sga.normal_data import select_normal
from sga.presets import resolve
from sga.prompts import example_text

from conftest import QA

PARAMS = resolve("tofu", "smoke", rate=-0.5, k=3, normal_source="tfidf", seed=7)


class FakeWorld:
    """Just what run_params reads of a World."""

    def __init__(self, params):
        from sga.pipelines.tofu import TOFU

        self.benchmark, self.params = TOFU, params


def test_extra_index_per_method():
    forget, pool = QA[:3], QA[3:]
    assert extra_index(method("ga").build(PARAMS), PARAMS, forget, pool) is None
    retain = extra_index(method("graddiff").build(PARAMS), PARAMS, forget, pool)
    assert retain.shape == (3, 1) and set(retain[:, 0]) <= set(range(len(pool)))
    normal = extra_index(method("sga").build(PARAMS), PARAMS, forget, pool)
    texts = lambda examples: [example_text(e) for e in examples]  # noqa: E731
    np.testing.assert_array_equal(normal, select_normal(texts(forget), texts(pool), 2, "tfidf", 7))


def test_run_params_keep_only_the_methods_own_options():
    world = FakeWorld(PARAMS)
    sga = run_params(world, "sga")
    assert {"rate", "k", "reading", "normal_source"} <= set(sga) and "graddiff_forget_weight" not in sga
    ga = run_params(world, "ga")
    assert ga["method"] == "ga" and not {"rate", "k", "reading", "normal_source", "npo_beta", "methods", "progress"} & set(ga)
    assert run_params(FakeWorld({**PARAMS, "rate": 0.3}), "ga") == ga  # changing r does not rename a GA run
    gd = run_params(world, "graddiff", graddiff_forget_weight=1.5, graddiff_retain_weight=0.5)
    assert (gd["graddiff_forget_weight"], gd["graddiff_retain_weight"]) == (1.5, 0.5)


@pytest.mark.parametrize("overrides,match", [
    ({"rate": 2.0, "reading": "descent"}, r"outside \[0, 1\]"),
    ({"k": 0}, "integer >= 1"),
    ({"forget_split": "forget05"}, "define the world"),
    ({"learning_rate": 1e-3}, "Unknown parameters"),
    ({"npo_beta": -1.0}, "npo_beta .* must be > 0"),
])
def test_run_overrides_are_checked_like_a_preset(overrides, match):
    with pytest.raises(ValueError, match=match):
        run_params(FakeWorld(PARAMS), "sga", **overrides)


def test_a_run_is_checked_against_its_own_methods_rate_range_only():
    descent = run_params(FakeWorld(PARAMS), "sga_adaptive", reading="descent")  # the world's r = -0.5 is SGA's, not adaptive SGA's
    assert descent["reading"] == "descent" and "rate" not in descent
    with pytest.raises(ValueError, match=r"Smoothing rate -0.5 is outside \[0, 1\]"):
        run_params(FakeWorld(PARAMS), "sga", reading="descent")


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"choose one of \['ga', 'graddiff', 'kl', 'npo', 'simnpo', 'sga', 'sga_adaptive'\]"):
        run_params(FakeWorld(PARAMS), "gd")


def test_cached_result_is_reused_unless_overwrite(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    path = tmp_path / "run.json"
    assert cached_result(path, compute)["value"] == 1
    assert cached_result(path, compute)["value"] == 1 and len(calls) == 1
    assert cached_result(path, compute, overwrite=True)["value"] == 2
    assert "environment" in cached_result(path, compute)


def test_final_evaluation_is_neutral_at_its_default_and_needs_a_trajectory():
    from sga.experiment import reference_params

    world = FakeWorld(PARAMS)
    full = run_params(world, "ga")
    assert "final_evaluation" not in full  # the default leaves the run's identity (and every earlier result) as it was
    assert run_params(world, "ga", final_evaluation=False, trajectory=True)["final_evaluation"] is False
    with pytest.raises(ValueError, match="needs trajectory=True"):
        run_params(world, "ga", final_evaluation=False, trajectory=False)
    reference_world = FakeWorld({**PARAMS, "final_evaluation": False})
    world.models = reference_world.models = {"target": "t", "retain": "r"}
    assert reference_params(reference_world, "target") == reference_params(world, "target")  # references always evaluate in full
