"""The unlearning methods and the options each one declares: the one place that says which parameters
a method takes, their defaults and valid values.

Validation (:func:`check_options`), run names (:func:`sga.results.run_name`), the run's identity
(:func:`run_options`) and the notebooks' parameter lists all read :data:`METHODS`. An option's ``key``
is its parameter name in presets and notebooks; ``arg`` the keyword of the loss class (``None`` for an
option used elsewhere, such as SGA's normal-data source).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sga import theory
from sga.losses import NPO, AdaptiveSGA, GradDiff, GradientAscent, KLRetain, SimNPO, SmoothedGradientAscent, UnlearningLoss
from sga.normal_data import NORMAL_SOURCES


def _number(value: Any) -> str | None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok else f"must be a finite number, got {value!r}"


def _non_negative(value: Any) -> str | None:
    return _number(value) or (None if value >= 0 else f"must be >= 0, got {value}")


def _positive(value: Any) -> str | None:
    return _number(value) or (None if value > 0 else f"must be > 0, got {value}")


def _k(value: Any) -> str | None:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
    return None if ok else f"must be an integer >= 1 (the forget sample plus K-1 normal samples), got {value!r}"


def _choice(choices) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {list(choices)}, got {value!r}"


def _model_id(value: Any) -> str | None:
    ok = value is None or (isinstance(value, str) and value.strip() != "")
    return None if ok else f"must be None or a hub id / local path (a non-empty string), got {value!r}"


NOT_NEUTRAL = object()


@dataclass(frozen=True)
class Option:
    """One option of a method: parameter ``key``, ``default``, the check of a value, its place in a run name."""

    key: str
    default: Any
    check: Callable[[Any], str | None]
    help: str
    arg: str | None = None  # keyword of the loss class; None: not passed to the loss
    label: str = ""  # prefix in the run name ("" shows the bare value)
    # a value at which the run is what it was before this option existed: left out of the run's identity,
    # so that adding an option never invalidates earlier results (NOT_NEUTRAL: always part of it)
    neutral: Any = NOT_NEUTRAL


@dataclass(frozen=True)
class Method:
    """A method: its loss class, the data it pairs with each forget sample, and its options."""

    name: str
    loss: type[UnlearningLoss]
    options: tuple[Option, ...] = ()
    describe: str = ""

    @property
    def extra(self) -> str | None:
        return self.loss.extra

    def build(self, params: Mapping[str, Any]) -> UnlearningLoss:
        """The loss object with this method's options taken from ``params``."""
        return self.loss(**{o.arg: params.get(o.key, o.default) for o in self.options if o.arg})


_RETAIN_HELP = "weight of the retain NLL"
_READING = Option("reading", "gls", _choice(theory.READINGS), "sign reading of the normal terms", "reading")
_K = Option("k", 4, _k, "K: the forget sample plus K-1 normal samples", "k", "k")
_NORMAL_SOURCE = Option("normal_source", "random", _choice(NORMAL_SOURCES),
                        "how the K-1 normal samples are chosen (random, tfidf or embedding nearest)")
_EMBEDDING_MODEL = Option("embedding_model", None, _model_id,
                          "model whose mean-pooled hidden states pick the embedding-nearest normal samples: None = the "
                          "start model, or a hub id / local path of a sentence-embedding model", None, "emb_", neutral=None)
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ga", GradientAscent, describe="gradient ascent on the forget NLL"),
        Method("graddiff", GradDiff, (
            Option("graddiff_forget_weight", 1.0, _non_negative, "weight of the forget NLL (gamma)", "gamma", "fw"),
            Option("graddiff_retain_weight", 1.0, _non_negative, "weight of the retain NLL (alpha)", "alpha", "rw"),
        ), "ascent on forget, descent on one retain sample per forget sample"),
        Method("kl", KLRetain, (
            Option("kl_retain_weight", 1.0, _non_negative, "weight of KL(ref || model) on retain tokens", "alpha", "rw"),
        ), "ascent on forget, KL to the start model on retain"),
        Method("npo", NPO, (
            Option("npo_beta", 0.1, _positive, "inverse temperature beta", "beta", "beta"),
            Option("npo_retain_weight", 1.0, _non_negative, _RETAIN_HELP, "alpha", "rw"),
        ), "negative preference optimisation against the start model, plus retain NLL"),
        Method("simnpo", SimNPO, (
            Option("simnpo_beta", 4.5, _positive, "inverse temperature beta", "beta", "beta"),
            Option("simnpo_delta", 0.0, _number, "margin delta on the per-token NLL", "delta", "delta"),
            Option("simnpo_retain_weight", 1.0, _non_negative, _RETAIN_HELP, "alpha", "rw"),
        ), "NPO without a reference: length-normalised NLL, plus retain NLL"),
        Method("sga", SmoothedGradientAscent, (
            _READING, Option("rate", -0.4, _number, "smoothing rate r", "rate", "rate"), _K, _NORMAL_SOURCE, _EMBEDDING_MODEL,
        ), "GA under a label smoothed over the forget sample and K-1 normal samples"),
        Method("sga_adaptive", AdaptiveSGA, (_READING, _K, _NORMAL_SOURCE, _EMBEDDING_MODEL),
               "SGA with r set every step from the measured gradients (r* moved into the first-order safe range)"),
    )
}  # fmt: skip
OPTION_KEYS: tuple[str, ...] = tuple(dict.fromkeys(o.key for m in METHODS.values() for o in m.options))


def method(name: str) -> Method:
    """The method called ``name``, or a ValueError naming the valid ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown unlearning method {name!r}; choose one of {list(METHODS)}.") from None


def option_defaults() -> dict[str, Any]:
    """Every method option with its default, keyed by parameter name."""
    return {o.key: o.default for m in METHODS.values() for o in m.options}


def check_options(name: str, params: Mapping[str, Any], combined: bool = True) -> None:
    """Raise a ValueError if any option of method ``name`` in ``params`` is invalid; with ``combined``, also the
    options against each other (SGA: r in its reading's range at K; adaptive SGA: K >= 2)."""
    spec = method(name)
    for option in spec.options:
        problem = option.check(params[option.key])
        if problem:
            raise ValueError(f"{option.key} ({name}: {option.help}) {problem}.")
    if not combined:
        return
    if name == "sga":
        theory.check_rate(params["rate"], params["reading"], params["k"])
    if name == "sga_adaptive" and params["k"] < 2:
        raise ValueError(f"k (sga_adaptive) must be >= 2: the rate is chosen between the forget sample and its normal samples, got {params['k']}.")


def run_options(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without the options of the other methods (changing r does not invalidate a GA result)
    and without own options at their neutral value."""
    own = {o.key: o for o in method(name).options}
    neutral = {key for key, o in own.items() if o.neutral is not NOT_NEUTRAL and params.get(key) == o.neutral}
    return {key: value for key, value in params.items() if (key not in OPTION_KEYS or key in own) and key not in neutral}


def make_loss(name: str, **options: Any) -> UnlearningLoss:
    """The loss of method ``name`` with keyword ``options`` of its loss class (defaults for the rest)."""
    return method(name).loss(**options)
