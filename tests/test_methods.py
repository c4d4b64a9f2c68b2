"""The method registry: each method's typed options, their checks, and the loss they build."""

from dataclasses import fields

import pytest

from sga import methods
from sga.losses import SmoothedGradientAscent


def test_shared_options_are_one_option_and_defaults_are_valid():
    by_name = {}
    for m in methods.METHODS.values():
        for f in fields(m.options):  # an option several methods share (SGA's reading, k, normal source) is one option
            assert by_name.setdefault(f.name, (f.default, f.metadata["help"])) == (f.default, f.metadata["help"])
        m.make_options()  # the defaults pass every check
    assert list(by_name) == list(methods.option_defaults())


def test_build_takes_the_options():
    sga = methods.method("sga").build(methods.SGAOptions(rate=-0.5, k=3))
    assert isinstance(sga, SmoothedGradientAscent) and (sga.rate, sga.k, sga.reading) == (-0.5, 3, "gls")
    assert (sga.forget_weight, sga.normal_weight) == pytest.approx((1 + 0.5 - 0.5 / 3, -0.5 / 3))
    gd = methods.method("graddiff").build(methods.GradDiffOptions(graddiff_forget_weight=1.5, graddiff_retain_weight=0.25))
    assert (gd.gamma, gd.alpha) == (1.5, 0.25)
    assert methods.method("npo").build(methods.NPOOptions(npo_beta=0.2)).beta == 0.2
    assert methods.method("simnpo").build(methods.SimNPOOptions()).beta == 4.5 and methods.method("kl").build(methods.KLOptions()).alpha == 1.0
    assert methods.SGAOptions(embedding_model="m").loss_arguments() == {"reading": "gls", "rate": -0.4, "k": 4}  # not the loss's


def test_sga_is_graddiff_with_particular_weights():
    """The algebra notebook 02's control rests on: SGA's two weights, as GradDiff options."""
    sga = methods.method("sga").build(methods.SGAOptions(rate=-0.4, k=4))
    assert (sga.forget_weight, -sga.normal_weight * (sga.k - 1)) == pytest.approx((1.3, 0.3))


@pytest.mark.parametrize("name,values,match", [
    ("sga", {"k": 0}, r"k \(sga: K: the forget sample plus K-1 normal samples\) must be an integer >= 1"),
    ("sga", {"k": 2.5}, "integer"),
    ("sga", {"rate": float("nan")}, "finite number"),
    ("sga", {"rate": 1.5, "k": 4}, r"Smoothing rate 1.5 is outside \(-inf, 1.33333\)"),
    ("sga", {"normal_source": "llm"}, r"must be one of \['random', 'tfidf', 'embedding'\]"),
    ("graddiff", {"graddiff_retain_weight": -1.0}, "must be >= 0"),
    ("sga_adaptive", {"k": 1}, "must be >= 2"),
])
def test_bad_options_are_refused(name, values, match):
    with pytest.raises(ValueError, match=match):
        methods.method(name).make_options(**values)


def test_run_names_show_each_option():
    assert methods.SGAOptions().name_parts() == ["gls", "rate-0.4", "k4", "random"]
    assert methods.SGAOptions(embedding_model="org/m").name_parts()[-1] == "emb_org/m"
    gd = methods.GradDiffOptions(graddiff_forget_weight=1 - (-0.4) * 3 / 4 - 0.0000000000000002, graddiff_retain_weight=0.3)
    assert gd.name_parts() == ["fw1.3", "rw0.3"]  # floats as written
    assert methods.options_of("sga_adaptive") == ("reading", "k", "normal_source", "embedding_model")


def test_adaptive_sga_options():
    loss = methods.method("sga_adaptive").build(methods.AdaptiveSGAOptions(k=3, reading="descent"))
    assert (loss.k, loss.reading, loss.extra_per_forget()) == (3, "descent", 2)
