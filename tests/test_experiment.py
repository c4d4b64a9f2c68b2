import numpy as np
import pytest

from sga.experiment import cached_result, extra_index, method_loss, run_params
from sga.normal_data import select_normal
from sga.presets import resolve

from conftest import QA

PARAMS = resolve("tofu", "smoke", rate=-0.5, k=3, normal_source="tfidf", seed=7)


def test_method_loss_takes_sga_options_from_the_parameters():
    loss = method_loss("sga", PARAMS)
    assert (loss.rate, loss.k, loss.reading) == (-0.5, 3, "gls")
    assert (loss.forget_weight, loss.normal_weight) == pytest.approx((1 + 0.5 - 0.5 / 3, -0.5 / 3))
    assert method_loss("ga", PARAMS).name == "ga"
    with pytest.raises(ValueError, match="choose one of"):
        method_loss("gd", PARAMS)


def test_extra_index_per_method():
    forget, pool = QA[:3], QA[3:]
    assert extra_index(method_loss("ga", PARAMS), PARAMS, forget, pool) is None
    retain = extra_index(method_loss("graddiff", PARAMS), PARAMS, forget, pool)
    assert retain.shape == (3, 1) and set(retain[:, 0]) <= set(range(len(pool)))
    normal = extra_index(method_loss("sga", PARAMS), PARAMS, forget, pool)
    texts = lambda pairs: [f"{q} {a}" for q, a in pairs]  # noqa: E731
    np.testing.assert_array_equal(normal, select_normal(texts(forget), texts(pool), 2, "tfidf", 7))


def test_run_params_drop_sga_options_for_other_methods():
    assert {"rate", "k", "reading", "normal_source"} <= set(run_params(PARAMS, "sga"))
    ga = run_params(PARAMS, "ga")
    assert ga["method"] == "ga" and not {"rate", "k", "reading", "normal_source", "methods", "progress"} & set(ga)
    assert run_params({**PARAMS, "rate": 0.3}, "ga") == ga


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
