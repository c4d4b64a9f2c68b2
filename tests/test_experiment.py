"""The generic run path: extra data per method, run specs and their checks, identity, cached results."""

from dataclasses import replace

import numpy as np
import pytest

from sga.experiment import cached_result, extra_index
from sga.methods import method
from sga.normal_data import select_normal
from sga.presets import resolve
from sga.prompts import example_text

from conftest import QA

SETTINGS = resolve("tofu", "smoke", rate=-0.5, k=3, normal_source="tfidf", seed=7)


def test_extra_index_per_method():
    forget, pool = QA[:3], QA[3:]
    run = SETTINGS.run("sga")
    assert extra_index(method("ga").build(SETTINGS.run("ga").options), run, forget, pool) is None
    retain = extra_index(method("graddiff").build(SETTINGS.run("graddiff").options), run, forget, pool)
    assert retain.shape == (3, 1) and set(retain[:, 0]) <= set(range(len(pool)))
    normal = extra_index(method("sga").build(run.options), run, forget, pool)
    texts = lambda examples: [example_text(e) for e in examples]  # noqa: E731
    np.testing.assert_array_equal(normal, select_normal(texts(forget), texts(pool), 2, "tfidf", 7))


def test_a_run_holds_only_its_methods_options():
    sga = SETTINGS.run("sga")
    assert (sga.options.rate, sga.options.k, sga.options.reading, sga.options.normal_source) == (-0.5, 3, "gls", "tfidf")
    ga = SETTINGS.run("ga")
    assert ga.method == "ga" and ga.options.to_dict() == {} and "methods" not in ga.to_dict() and "progress" not in ga.to_dict()
    other_rate = resolve("tofu", "smoke", rate=0.3, k=3, normal_source="tfidf", seed=7)
    assert other_rate.run("ga") == ga and other_rate.run("ga").name() == ga.name()  # changing r does not rename a GA run
    assert other_rate.run("sga").key() != sga.key()
    gd = SETTINGS.run("graddiff", graddiff_forget_weight=1.5, graddiff_retain_weight=0.5)
    assert (gd.options.graddiff_forget_weight, gd.options.graddiff_retain_weight) == (1.5, 0.5)
    assert gd.name().startswith("tofu-forget10-graddiff-fw1.5-rw0.5-seed7-")


def test_every_field_is_in_the_identity():
    run = SETTINGS.run("ga")
    for changed in (replace(run, seed=8), replace(run, training=replace(run.training, lr=2e-3)),
                    replace(run, evaluation=replace(run.evaluation, eval_batch_size=4)),
                    replace(run, world=replace(run.world, world_seed=1))):
        assert changed.key() != run.key() and changed.name() != run.name()
    assert replace(run, seed=7).key() == run.key()  # equal specs, equal keys


@pytest.mark.parametrize("method_name,overrides,match", [
    ("sga", {"rate": 2.0, "reading": "descent"}, r"rate: Smoothing rate 2.0 is outside \[0, 1\]"),
    ("sga", {"k": 0}, "k .* must be an integer >= 1"),
    ("sga", {"k": "four"}, r"k \(sga: K: .*\) must be an integer >= 1, got 'four'"),
    ("ga", {"forget_split": "forget05"}, "define the world"),
    ("ga", {"learning_rate": 1e-3}, "Unknown parameters"),
    ("ga", {"seeds": [1]}, "notebook settings"),
    ("ga", {"rate": 0.4}, r"not options of ga \(its options: none\)"),
    ("npo", {"npo_beta": -1.0}, "npo_beta .* must be a positive number"),
    ("ga", {"final_evaluation": False, "trajectory": False}, "needs trajectory=True"),
])
def test_run_overrides_are_checked_like_a_preset(method_name, overrides, match):
    with pytest.raises(ValueError, match=match):
        SETTINGS.run(method_name, **overrides)


def test_a_run_is_checked_against_its_own_methods_rate_range_only():
    descent = SETTINGS.run("sga_adaptive", reading="descent")  # the settings' r = -0.5 is SGA's, not adaptive SGA's
    assert descent.options.reading == "descent" and not hasattr(descent.options, "rate")
    with pytest.raises(ValueError, match=r"Smoothing rate -0.5 is outside \[0, 1\]"):
        SETTINGS.run("sga", reading="descent")


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"choose one of \['ga', 'graddiff', 'kl', 'npo', 'simnpo', 'flat', 'sga', 'sga_adaptive'\]"):
        SETTINGS.run("gd")


def test_a_reference_evaluation_has_no_training_and_ignores_the_runs_path_settings():
    target = SETTINGS.reference("target")
    assert target.training is None and target.options.to_dict() == {} and target.name().startswith("tofu-forget10-target-seed7-")
    along = resolve("tofu", "smoke", rate=-0.5, k=3, normal_source="tfidf", seed=7, final_evaluation=False, trajectory=True)
    assert along.reference("target") == target  # a model as it is is always evaluated in full
    with pytest.raises(ValueError, match=r"which must be one of \['target', 'retain'\]"):
        SETTINGS.reference("retrain")


def test_a_run_without_final_evaluation_is_answered_by_the_same_run_with_one():
    short = SETTINGS.run("ga", final_evaluation=False, trajectory=True)
    full = SETTINGS.run("ga", trajectory=True)
    assert short.answered_by() == (short, full) and full.answered_by() == (full,)


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
