"""What is particular to a benchmark (:class:`Benchmark`), and a prepared world (:class:`World`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from sga.prompts import Example
from sga.specs import Evaluation, Plan, WorldSpec

if TYPE_CHECKING:
    from sga.presets import Settings


@dataclass(frozen=True)
class WorldParts:
    """What a benchmark's loader returns: loaded splits, the forget examples, the retain/normal pool,
    the tokenizer, and the source of each model (``target`` and the reference models)."""

    data: dict[str, Any]
    forget: list[Example]
    pool: list[Example]
    tokenizer: Any
    models: dict[str, str]


@dataclass(frozen=True)
class Axes:
    """A benchmark's two readings for comparisons across benchmarks: keys of its per-epoch reading, labels, the
    utility's direction, how a full evaluation is read on the path's scale, and which model never saw the forget data."""

    forget: str
    forget_label: str
    utility: str
    utility_label: str
    utility_higher: bool
    read_full: Callable[["World", Mapping[str, Any]], Mapping[str, float]]
    reference: str


@dataclass(frozen=True)
class Benchmark:
    """What is particular to a benchmark.

    - ``world_spec``, ``evaluation_spec``, ``plan_spec``: its typed specs (fields and defaults); ``block`` its layer
      over the common defaults, ``presets`` its layer per preset (:mod:`sga.presets`).
    - ``load(world_spec, cache_dir, progress)``: load or generate the data, load or train the models -> :class:`WorldParts`.
    - ``evaluate(world, model, run, reference_stat)``: the benchmark's metrics of ``model``; with
      ``reference_stat=None`` the model is its own reference (the retain/retrain model's row).
    - ``reference_statistic(metrics)``: what the metrics need from the reference model, taken from its metrics.
    - ``summary(metrics)``: the flat numbers of a results table.
    - ``evaluate_along(world, model, run, reference_stat)``: cheaper numbers read after every epoch (``trajectory``).
    - ``read_forget(world, model, run)``: the forgetting axis alone, exactly as ``evaluate_along`` reads it (the
      cheap reading that locates where a run reaches a forgetting level, :mod:`sga.crossing`).
    - ``axes(world_spec)``: its forgetting and utility readings (:class:`Axes`).
    """

    name: str
    world_spec: type[WorldSpec]
    evaluation_spec: type[Evaluation]
    plan_spec: type[Plan]
    load: Callable[..., WorldParts]
    evaluate: Callable[..., dict[str, Any]]
    reference_statistic: Callable[[Mapping[str, Any]], Any]
    summary: Callable[[Mapping[str, Any]], dict[str, Any]]
    evaluate_along: Callable[..., dict[str, Any]]
    read_forget: Callable[..., float]
    axes: Callable[[WorldSpec], Axes]
    reference_model: str
    block: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"smoke": {}, "mini": {}, "paper": {}})


@dataclass
class World:
    """A prepared benchmark: its settings, data, examples, tokenizer, model sources and result folder."""

    benchmark: Benchmark
    settings: "Settings"
    data: dict[str, Any]
    forget: list[Example]
    pool: list[Example]
    tokenizer: Any
    models: dict[str, str]
    out_dir: Path

    @property
    def spec(self) -> WorldSpec:
        return self.settings.world
