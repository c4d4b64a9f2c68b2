"""Typed, frozen specs of what a run depends on; each checks its values when it is made and owns its identity.

    WorldSpec     a benchmark's world: data source, generator sizes, models, world seed, prompt format
    Loading       how a model is loaded (quantisation, compute dtype)
    Training      the optimiser and the LoRA adapter of an unlearning run
    Evaluation    what a model is read on (a benchmark adds its own fields)
    RunSpec       a world, a method with its options (:mod:`sga.methods`), loading, training, evaluation, seed

A field's metadata holds the check of its value and a line of help; :class:`Spec` runs every check in
``__post_init__``, so no spec with an invalid value can exist, and :meth:`RunSpec.key` is the one function that
decides result file names and whether a result can be reused. Settings that change nothing a run computes
(display, which runs a notebook makes) are not fields of these specs (see :class:`Plan`).
The layers these are built from (defaults, benchmark block, preset, overrides) are in :mod:`sga.presets`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, ClassVar, Sequence

from sga.models import COMPUTE_DTYPES, QUANTIZATIONS
from sga.optim import OPTIMIZERS
from sga.prompts import TEMPLATES
from sga.results import params_hash

EMBEDDED = "embedded"
Check = Callable[[Any], "str | None"]


# ------------------------------------------------------------------ checks of single values
def integer(lo: int, none_ok: bool = False) -> Check:
    """An integer >= ``lo`` (or None)."""

    def check(value: Any) -> str | None:
        if value is None and none_ok:
            return None
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= lo:
            return None
        return f"must be an integer >= {lo}{' or None' if none_ok else ''}, got {value!r}"

    return check


def positive(none_ok: bool = False) -> Check:
    """A finite number > 0 (or None)."""

    def check(value: Any) -> str | None:
        if value is None and none_ok:
            return None
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return None
        return f"must be a positive number{' or None' if none_ok else ''}, got {value!r}"

    return check


def finite(value: Any) -> str | None:
    """A finite number."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok else f"must be a finite number, got {value!r}"


def non_negative(value: Any) -> str | None:
    """A finite number >= 0."""
    return finite(value) or (None if value >= 0 else f"must be >= 0, got {value}")


def one_of(choices: Sequence[Any]) -> Check:
    """One of ``choices``."""
    return lambda value: None if value in choices else f"must be one of {list(choices)}, got {value!r}"


def kind(*types: type) -> Check:
    """An instance of one of ``types``."""
    names = " or ".join(t.__name__ for t in types)
    return lambda value: None if isinstance(value, types) else f"must be a {names}, got {value!r}"


def integers(lo: int, what: str, empty_ok: bool = False) -> Check:
    """A tuple of integers >= ``lo`` (lists are turned into tuples when a spec is made)."""

    def check(value: Any) -> str | None:
        ok = isinstance(value, tuple) and (value or empty_ok) and all(integer(lo)(x) is None for x in value)
        return None if ok else f"must be a {'' if empty_ok else 'non-empty '}list of {what} (integers >= {lo}), got {list(value) if isinstance(value, tuple) else value!r}"

    return check


def model_id(value: Any) -> str | None:
    """None, or a non-empty hub id / local path."""
    ok = value is None or (isinstance(value, str) and value.strip() != "")
    return None if ok else f"must be None or a hub id / local path (a non-empty string), got {value!r}"


def setting(default: Any, check: Check, help: str, **extra: Any) -> Any:
    """A spec field: its default, the check of its value, a line of help (and e.g. ``source=True`` for a data or
    model source checked offline, ``label`` for its place in a run name)."""
    return field(default=default, metadata={"check": check, "help": help, **extra})


def _spec_kind(cls: type) -> Check:
    return lambda value: None if isinstance(value, cls) else f"must be a {cls.__name__} (or a dict of its fields), got {value!r}"


def nested(cls: type, help: str, **values: Any) -> Any:
    """A field holding a nested spec (e.g. the generator's sizes), ``cls(**values)`` by default; a layer may give a
    dict of some of its fields (:func:`sga.presets.resolve` merges it key by key)."""
    return field(default_factory=lambda: cls(**values), metadata={"check": _spec_kind(cls), "help": help})


# ------------------------------------------------------------------ the base
class InvalidValue(ValueError):
    """A field's value failed its check: ``key`` names the field, ``problem`` says what is wrong."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"Parameter {key} {problem}.")


@dataclass(frozen=True)
class Spec:
    """A frozen set of checked values. Lists become tuples (a spec is hashable); every field is checked on creation,
    then :meth:`validate` checks the fields against each other."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, value := tuple(value))
            check = f.metadata.get("check")
            problem = check(value) if check else None
            if problem:
                raise InvalidValue(f.name, problem)
        self.validate()

    def validate(self) -> None:
        """Checks across fields (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-able values (nested specs as dicts)."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def help(cls) -> dict[str, str]:
        """Each field's line of help."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def merge_into(spec: Spec, values: dict[str, Any], where: str) -> Spec:
    """``spec`` with ``values`` replaced, refusing names it does not have (naming the valid ones)."""
    unknown = sorted(set(values) - set(spec.field_names()))
    if unknown:
        raise ValueError(f"Unknown keys {unknown} in {where!r}; valid ones: {sorted(spec.field_names())}.")
    try:
        return replace(spec, **values)
    except InvalidValue as error:
        raise InvalidValue(f"{where}.{error.key}", error.problem) from None


# ------------------------------------------------------------------ the parts of a run
@dataclass(frozen=True, kw_only=True)
class TinyModel(Spec):
    """Shape of an embedded tiny Llama (ignored for hub models)."""

    hidden_size: int = setting(128, integer(8), "hidden size")
    num_layers: int = setting(4, integer(1), "transformer layers")
    num_heads: int = setting(4, integer(1), "attention heads")
    vocab_size: int = setting(1024, integer(16), "BPE vocabulary size")


@dataclass(frozen=True, kw_only=True)
class TinyTraining(Spec):
    """How an embedded tiny model is trained from scratch (ignored for hub models)."""

    epochs: int = setting(30, integer(1), "passes over the training examples")
    lr: float = setting(1e-2, positive(), "peak learning rate (warmup, then cosine decay)")
    batch_size: int = setting(8, integer(1), "sequences per step")


@dataclass(frozen=True, kw_only=True)
class WorldSpec(Spec):
    """A benchmark's world: data and models, and the format they are read in; runs cannot change it.

    A benchmark subclasses it with its own sources and generator sizes. ``NAME_FIELDS`` are shown in run names;
    fields with ``source=True`` metadata are data or model sources (``"embedded"``, a hub id or a local path).
    """

    BENCHMARK: ClassVar[str] = ""
    NAME_FIELDS: ClassVar[tuple[str, ...]] = ()

    data_source: str = setting(EMBEDDED, kind(str), "'embedded' (generated offline), a hub id or a local hub-layout folder", source=True)
    target_model: str = setting(EMBEDDED, kind(str), "'embedded' (a tiny model trained here), a hub id or a local path", source=True)
    template: str = setting("phi", one_of(TEMPLATES), "prompt format of QA examples")
    max_length: int = setting(128, integer(8), "tokens per training / unlearning sequence")
    world_seed: int = setting(0, integer(0), "seed of the generated data and the tiny models")
    # the thread count changes float summation order, and these small runs are sensitive enough to it that 1 and
    # 2 threads give visibly different results: fixed for reproducibility (2: the 2-core machine mini is sized for)
    cpu_threads: int | None = setting(2, integer(1, none_ok=True), "torch CPU threads (results depend on it)")

    def sources(self) -> dict[str, str]:
        """The data and model sources, by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("source")}

    def model_sources(self) -> dict[str, str]:
        return {name: value for name, value in self.sources().items() if name.endswith("_model")}

    def validate(self) -> None:
        models = self.model_sources()
        if EMBEDDED in models.values() and len(set(models.values())) > 1:
            raise ValueError(f"Use 'embedded' for every model ({', '.join(models)}) or hub ids / local paths for all of them.")


@dataclass(frozen=True, kw_only=True)
class Loading(Spec):
    """How a model is loaded, to be evaluated or unlearned."""

    quantization: str = setting("nf4", one_of(QUANTIZATIONS), "nf4 | fp4 | int8 | none")
    compute_dtype: str = setting("float32", one_of(tuple(COMPUTE_DTYPES)), "float32 | bfloat16 | float16")


@dataclass(frozen=True, kw_only=True)
class Training(Spec):
    """The optimiser (AdamW at a constant learning rate) and the LoRA adapter of an unlearning run."""

    lr: float = setting(1e-3, positive(), "learning rate")
    epochs: int = setting(5, integer(0), "passes over the forget set")
    batch_size: int = setting(4, integer(1), "forget samples per optimizer step")
    forget_per_forward: int | None = setting(None, integer(1, none_ok=True), "micro-batches: forget samples (with their extras) per forward; None = all")
    max_grad_norm: float | None = setting(1.0, positive(none_ok=True), "gradient-norm clipping; None = off")
    lora_rank: int = setting(8, integer(1), "LoRA rank")
    lora_alpha: float = setting(16, positive(), "LoRA alpha")
    lora_targets: str | tuple = setting("all-linear", kind(str, tuple), "modules LoRA wraps")
    gradient_checkpointing: bool = setting(False, kind(bool), "recompute activations in the backward pass")
    max_steps: int | None = setting(None, integer(1, none_ok=True), "stop after this many steps at the latest; None: every step of the epochs")
    optimizer: str = setting("adamw", one_of(OPTIMIZERS), "adamw, or sgd: plain SGD, no momentum (the stability ladder)")
    diverge_above: float | None = setting(None, positive(none_ok=True), "forget NLL (nats per token) above which a run counts "
                                          "as diverged and stops; None: only a non-finite loss or gradient")


@dataclass(frozen=True, kw_only=True)
class Evaluation(Spec):
    """How a model is read: in full at the end, and (``trajectory``) after every epoch; a benchmark adds its fields."""

    eval_batch_size: int = setting(32, integer(1), "sequences per evaluation forward")
    eval_max_items: int | None = setting(None, integer(1, none_ok=True), "first items of each evaluation split; None = all")
    trajectory: bool = setting(False, kind(bool), "also read the run after every epoch (its path, not only its end)")
    final_evaluation: bool = setting(True, kind(bool), "evaluate the finished model in full (False: its last reading is its end)")
    locate: bool = setting(False, kind(bool), "locate where the run first reaches the reference model's forgetting, within 2 "
                           "steps, and read it there and at the end in full (sga.crossing)")
    check_every: int | None = setting(None, integer(1, none_ok=True), "with locate: steps between readings of the forgetting axis; None: one epoch")
    stop_after_level: int | None = setting(None, integer(0, none_ok=True), "with locate: stop this many steps after the "
                                           "crossing (to show what follows); None: run the whole budget")
    read_at: tuple[int, ...] = setting((), integers(1, "steps", empty_ok=True), "with locate: steps at which the run is "
                                       "also read in full (it runs at least to the last)")

    def validate(self) -> None:
        if not self.final_evaluation and not (self.trajectory or self.locate):
            raise ValueError("final_evaluation=False needs trajectory=True or locate=True: a reading is then the run's end.")
        if not self.locate and (self.check_every is not None or self.stop_after_level is not None or self.read_at):
            raise ValueError("check_every, stop_after_level and read_at belong to locate=True (the search for the forgetting level).")


@dataclass(frozen=True, kw_only=True)
class Plan(Spec):
    """Which runs a notebook makes and how it shows them: not part of any run's identity."""

    methods: tuple[str, ...] = setting(("ga", "graddiff", "kl", "npo", "simnpo", "flat", "sga"), lambda v: _methods(v), "the methods a notebook runs")
    seeds: tuple[int, ...] = setting((0, 1, 2), integers(0, "seeds"), "seeds of the runs compared with intervals")
    progress: bool = setting(True, kind(bool), "progress bars (display only)")
    gpu_memory_gb: float | None = setting(None, positive(none_ok=True), "the card's memory: each run of a hub model takes the "
                                          "largest forget_per_forward that fits it (sga.gpu_plan), or is refused saying what would fit")


def _methods(value: Any) -> str | None:
    from sga.methods import METHODS  # the registry sits above the specs

    if not isinstance(value, tuple) or not value:
        return f"must be a non-empty list of methods from {list(METHODS)}, got {value!r}"
    unknown = [m for m in value if m not in METHODS]
    return f"names unknown methods {unknown}; choose from {list(METHODS)}" if unknown else None


# ------------------------------------------------------------------ a run


@dataclass(frozen=True, kw_only=True)
class RunSpec(Spec):
    """One result: a method (or, with ``training=None``, a model evaluated as it is) in a world.

    ``options`` are the method's own options (:mod:`sga.methods`): changing SGA's rate leaves a GA run as it is.
    """

    world: WorldSpec
    method: str
    options: Any
    loading: Loading
    training: Training | None
    evaluation: Evaluation
    seed: int = setting(0, integer(0), "seed of a run: LoRA initialisation, batch order, normal samples")

    @property
    def benchmark(self) -> str:
        return self.world.BENCHMARK

    def key(self) -> str:
        """The run's identity: a hash of everything it depends on (the one owner of this decision)."""
        return params_hash([type(self.world).__name__, self.to_dict()])

    def name(self) -> str:
        """The result's file name (without ``.json``): benchmark, the world's name fields, method, its options,
        seed, then :meth:`key`."""
        parts = [self.benchmark, *(getattr(self.world, f) for f in self.world.NAME_FIELDS), self.method,
                 *self.options.name_parts(), f"seed{self.seed}", self.key()]
        return "-".join(str(p) for p in parts).replace("/", "_")

    def answered_by(self) -> tuple["RunSpec", ...]:
        """The specs whose result answers this one: itself, and for a run without a final evaluation the same run
        with one (the same training and readings, plus the full evaluation)."""
        if self.evaluation.final_evaluation:
            return (self,)
        return (self, replace(self, evaluation=replace(self.evaluation, final_evaluation=True)))


def field_owner(specs: dict[str, type[Spec]]) -> dict[str, str]:
    """Parameter name -> the part that owns it, for parts whose field names must not overlap."""
    owner: dict[str, str] = {}
    for part, cls in specs.items():
        for name in cls.field_names():
            if name in owner:
                raise TypeError(f"Parameter {name!r} is a field of both {owner[name]} and {part}.")
            owner[name] = part
    return owner

