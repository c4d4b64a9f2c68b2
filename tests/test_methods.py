"""The method registry: each method's options, their checks, and the loss they build."""

import pytest

from sga import methods
from sga.losses import SmoothedGradientAscent
from sga.presets import resolve

PARAMS = resolve("tofu", "smoke")


def test_option_keys_are_unique_and_defaults_are_valid():
    by_key = {}
    for m in methods.METHODS.values():
        for o in m.options:  # a key several methods share (SGA's reading, k, normal source) is one option
            assert by_key.setdefault(o.key, o) is o
    assert list(by_key) == list(methods.OPTION_KEYS)
    for name in methods.METHODS:
        methods.check_options(name, {**PARAMS, **methods.option_defaults()})


def test_build_takes_the_options_from_the_parameters():
    params = {**PARAMS, "rate": -0.5, "k": 3, "graddiff_forget_weight": 1.5, "graddiff_retain_weight": 0.25, "npo_beta": 0.2}
    sga = methods.method("sga").build(params)
    assert isinstance(sga, SmoothedGradientAscent) and (sga.rate, sga.k, sga.reading) == (-0.5, 3, "gls")
    assert (sga.forget_weight, sga.normal_weight) == pytest.approx((1 + 0.5 - 0.5 / 3, -0.5 / 3))
    gd = methods.method("graddiff").build(params)
    assert (gd.gamma, gd.alpha) == (1.5, 0.25)
    assert methods.method("npo").build(params).beta == 0.2
    assert methods.method("simnpo").build(params).beta == 4.5 and methods.method("kl").build(params).alpha == 1.0


def test_sga_is_graddiff_with_particular_weights():
    """The algebra notebook 02's control rests on: SGA's two weights, as GradDiff options."""
    sga = methods.method("sga").build({**PARAMS, "rate": -0.4, "k": 4})
    assert (sga.forget_weight, -sga.normal_weight * (sga.k - 1)) == pytest.approx((1.3, 0.3))


@pytest.mark.parametrize("key,value,match", [
    ("k", 0, "k .* must be an integer >= 1"),
    ("k", 2.5, "integer"),
    ("rate", float("nan"), "finite number"),
    ("normal_source", "llm", r"must be one of \['random', 'tfidf', 'embedding'\]"),
    ("graddiff_retain_weight", -1.0, "must be >= 0"),
])
def test_bad_options_are_refused(key, value, match):
    name = next(m.name for m in methods.METHODS.values() if any(o.key == key for o in m.options))
    with pytest.raises(ValueError, match=match):
        methods.check_options(name, {**PARAMS, key: value})


def test_run_options_drop_the_other_methods_options():
    own = methods.run_options("npo", PARAMS)
    assert "npo_beta" in own and "rate" not in own and "graddiff_forget_weight" not in own and own["lr"] == PARAMS["lr"]
    with pytest.raises(ValueError, match="choose one of"):
        methods.run_options("gd", PARAMS)


def test_an_option_at_its_neutral_value_leaves_the_run_identity_unchanged():
    from sga.methods import Method, Option, run_options
    from sga.losses import GradientAscent

    extra = Option("extra_thing", None, lambda v: None, "a later option", neutral=None)
    spec = Method("ga_x", GradientAscent, (extra,))
    methods.METHODS["ga_x"] = spec
    try:
        base = {"lr": 1.0}
        assert run_options("ga_x", {**base, "extra_thing": None}) == base
        assert run_options("ga_x", {**base, "extra_thing": "m"}) == {**base, "extra_thing": "m"}
    finally:
        del methods.METHODS["ga_x"]


def test_adaptive_sga_options_and_checks():
    loss = methods.method("sga_adaptive").build({**PARAMS, "k": 3, "reading": "descent"})
    assert (loss.k, loss.reading, loss.extra_per_forget()) == (3, "descent", 2)
    own = methods.run_options("sga_adaptive", {**PARAMS, **methods.option_defaults()})
    assert "rate" not in own and {"reading", "k", "normal_source"} <= set(own)
    with pytest.raises(ValueError, match="must be >= 2"):
        methods.check_options("sga_adaptive", {**PARAMS, **methods.option_defaults(), "k": 1})
