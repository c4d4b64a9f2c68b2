"""The unlearning methods and the options each one declares: the one place that says which parameters a method
takes, their defaults and valid values.

A method's options are a frozen :class:`Options` spec: each field has its default, the check of its value, a line
of help, the keyword of the loss class it feeds (``arg``; none for an option used elsewhere, such as SGA's
normal-data source) and its label in run names. An option's name is its parameter name in presets and notebooks;
options shared by several methods (SGA's reading, K, normal source) have one name. Checks across options (SGA's r in
its reading's range at K) run when the options are made, so a run checks its own method's options only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sga import theory
from sga.losses import FLAT, FLAT_DIVERGENCES, NPO, AdaptiveSGA, GradDiff, GradientAscent, KLRetain, SimNPO, SmoothedGradientAscent, UnlearningLoss
from sga.normal_data import NORMAL_SOURCES
from sga.specs import InvalidValue, Spec, finite, integer, model_id, non_negative, one_of, positive, setting


def option(default: Any, check, help: str, arg: str | None = None, label: str = "") -> Any:
    """A method option: default, check, help, the loss class's keyword (None: not passed to the loss) and its
    prefix in run names (``""`` shows the bare value)."""
    return setting(default, check, help, arg=arg, label=label)


@dataclass(frozen=True)
class Options(Spec):
    """A method's options (none, for GA and for a model evaluated as it is)."""

    def loss_arguments(self) -> dict[str, Any]:
        """The keyword arguments of the method's loss class."""
        return {f.metadata["arg"]: getattr(self, f.name) for f in fields(self) if f.metadata.get("arg")}

    def name_parts(self) -> list[str]:
        """Each option's part of a run name (options that are None are left out)."""
        short = lambda value: round(value, 10) if isinstance(value, float) else value  # noqa: E731 (1.2999999999999998 -> 1.3)
        return [f"{f.metadata['label']}{short(getattr(self, f.name))}" for f in fields(self) if getattr(self, f.name) is not None]


_RETAIN_HELP = "weight of the retain NLL"


def _reading() -> Any:
    return option("gls", one_of(tuple(theory.READINGS)), "SGA sign reading: gls or descent", "reading")


def _k() -> Any:
    return option(4, integer(1), "K: the forget sample plus K-1 normal samples", "k", "k")


def _normal_source() -> Any:
    return option("random", one_of(NORMAL_SOURCES), "how the K-1 normal samples are chosen (random, tfidf or embedding nearest)")


def _embedding_model() -> Any:
    return option(None, model_id, "the 'embedding' source's model: None = the start model's hidden states, or a "
                  "sentence-embedding hub id / local path", None, "emb_")


@dataclass(frozen=True)
class GradDiffOptions(Options):
    graddiff_forget_weight: float = option(1.0, non_negative, "weight of the forget NLL (gamma)", "gamma", "fw")
    graddiff_retain_weight: float = option(1.0, non_negative, "weight of the retain NLL (alpha)", "alpha", "rw")


@dataclass(frozen=True)
class KLOptions(Options):
    kl_retain_weight: float = option(1.0, non_negative, "weight of KL(ref || model) on retain tokens", "alpha", "rw")


@dataclass(frozen=True)
class NPOOptions(Options):
    npo_beta: float = option(0.1, positive(), "inverse temperature beta", "beta", "beta")
    npo_retain_weight: float = option(1.0, non_negative, _RETAIN_HELP, "alpha", "rw")


@dataclass(frozen=True)
class SimNPOOptions(Options):
    simnpo_beta: float = option(4.5, positive(), "inverse temperature beta", "beta", "beta")
    simnpo_delta: float = option(0.0, finite, "margin delta on the per-token NLL", "delta", "delta")
    simnpo_retain_weight: float = option(1.0, non_negative, _RETAIN_HELP, "alpha", "rw")


@dataclass(frozen=True)
class FLATOptions(Options):
    divergence: str = option("tv", one_of(tuple(FLAT_DIVERGENCES)), "FLAT's f-divergence (tv: its public code's default)", "divergence", "")


@dataclass(frozen=True)
class SGAOptions(Options):
    reading: str = _reading()
    rate: float = option(-0.4, finite, "smoothing rate r", "rate", "rate")
    k: int = _k()
    normal_source: str = _normal_source()
    embedding_model: str | None = _embedding_model()

    def validate(self) -> None:
        try:
            theory.check_rate(self.rate, self.reading, self.k)
        except ValueError as error:
            raise ValueError(f"Parameter rate: {error}") from None


@dataclass(frozen=True)
class AdaptiveSGAOptions(Options):
    reading: str = _reading()
    k: int = _k()
    normal_source: str = _normal_source()
    embedding_model: str | None = _embedding_model()

    def validate(self) -> None:
        if self.k < 2:
            raise ValueError(f"k (sga_adaptive) must be >= 2: the rate is chosen between the forget sample and its normal samples, got {self.k}.")


@dataclass(frozen=True)
class Method:
    """A method: its loss class, the data it pairs with each forget sample, and its options."""

    name: str
    loss: type[UnlearningLoss]
    options: type[Options] = Options
    describe: str = ""

    @property
    def extra(self) -> str | None:
        return self.loss.extra

    def build(self, options: Options) -> UnlearningLoss:
        """The loss object with these options."""
        return self.loss(**options.loss_arguments())

    def make_options(self, **values: Any) -> Options:
        """This method's options from ``values`` (its own option names only), errors naming the method."""
        try:
            return self.options(**values)
        except InvalidValue as error:
            raise ValueError(f"{error.key} ({self.name}: {self.options.help()[error.key]}) {error.problem}.") from None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ga", GradientAscent, describe="gradient ascent on the forget NLL"),
        Method("graddiff", GradDiff, GradDiffOptions, "ascent on forget, descent on one retain sample per forget sample"),
        Method("kl", KLRetain, KLOptions, "ascent on forget, KL to the start model on retain"),
        Method("npo", NPO, NPOOptions, "negative preference optimisation against the start model, plus retain NLL"),
        Method("simnpo", SimNPO, SimNPOOptions, "NPO without a reference: length-normalised NLL, plus retain NLL"),
        Method("flat", FLAT, FLATOptions, "forget data only: push the forget answer's token probability below a template answer's"),
        Method("sga", SmoothedGradientAscent, SGAOptions, "GA under a label smoothed over the forget sample and K-1 normal samples"),
        Method("sga_adaptive", AdaptiveSGA, AdaptiveSGAOptions,
               "SGA with r set every step from the measured gradients (r* moved into the first-order safe range)"),
    )
}  # fmt: skip


def method(name: str) -> Method:
    """The method called ``name``, or a ValueError naming the valid ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown unlearning method {name!r}; choose one of {list(METHODS)}.") from None


def option_defaults() -> dict[str, Any]:
    """Every method option with its default, by parameter name (shared options once)."""
    return {f.name: f.default for m in METHODS.values() for f in fields(m.options)}


def options_of(name: str) -> tuple[str, ...]:
    """The option names of method ``name``."""
    return method(name).options.field_names()


def make_loss(name: str, **arguments: Any) -> UnlearningLoss:
    """The loss of method ``name`` with keyword ``arguments`` of its loss class (defaults for the rest)."""
    return method(name).loss(**arguments)
