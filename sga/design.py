"""Notebook 05's study, fixed before any run: which configurations answer which question, at how many seeds, on which
worlds, how every run stops, and the learning-rate ladders. The sweep runs in phases, each built from the results of
the one before:

1. **pilot**: GA alone at a few seeds, to fix the step budget from GA (as the benchmark notebooks fix their epoch
   budget): S = the median step at which GA reaches the reference model's forgetting.
2. **study**: every configuration (:func:`core`, :func:`ablations`, :func:`ladders`), each run located
   (:mod:`sga.crossing`): read in full at its crossing and at step S (equal steps), its forgetting at its end, stopped ``tail`` steps after
   the crossing but not before S, or at ``budget_factor`` x S at the latest.
3. **equal compute**: GA given SGA's token budget (:func:`equal_compute`): GA read at the first step at which its token
   passes reach SGA's median token passes to the level.

Every run is a :class:`sga.sweep.Point` (its question's group, a label, its run spec): the notebook selects them by
group and spec, never by parsing labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sga import theory
from sga.presets import Settings
from sga.sweep import Point

CORE = "core"  # the group of the comparisons the verdicts rest on
ARMS = ("GA", "SGA r0", "GradDiff control", "KL", "NPO", "SimNPO", "FLAT", "SGA adaptive")
POWER_ARMS = ("GA", "SGA r0", "GradDiff control")  # the paper's two comparisons: SGA - GA, SGA - its GradDiff control
LADDER_METHODS = ("GA", "SGA r0", "SGA adaptive")


@dataclass(frozen=True)
class Study:
    """The study's numbers, stated before any run (see the module docstring)."""

    seeds: tuple[int, ...] = tuple(range(10))  # every core arm, and the second world's GA, SGA r0 and control
    power_seeds: tuple[int, ...] = tuple(range(20))  # GA, SGA r0 and the control on the first world (power estimate)
    second_world: int | None = 1  # world seed of the replication of the paper's two comparisons (None: none)
    pilot_seeds: tuple[int, ...] = (0, 1, 2)
    ablation_seeds: tuple[int, ...] = (0, 1, 2)
    ladder_seeds: tuple[int, ...] = (0, 1, 2)
    tail: int = 5  # steps a run goes on after the crossing, to show what follows
    budget_factor: float = 2.0  # every run stops at this many times GA's median steps-to-level at the latest
    pilot_factor: float = 2.0  # the pilot GA runs stop at this many times the preset's epochs at the latest
    diverge_above: float = 100.0  # forget NLL (nats per token) above which a ladder run counts as diverged
    sgd_rates: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)  # plain SGD's learning-rate ladder, rungs 3x apart
    adamw_factors: tuple[float, ...] = (1 / 3, 1.0, 3.0, 9.0)  # the AdamW ladder (no clipping): these multiples of the preset's rate
    ablations: bool = True


STUDIES: dict[str, Study] = {
    # seconds: two seeds where a comparison needs pairs, one elsewhere, one rung per ladder, no ablations
    "smoke": Study(seeds=(0, 1), power_seeds=(0, 1), pilot_seeds=(0,), ladder_seeds=(0,), sgd_rates=(10.0,),
                   adamw_factors=(3.0,), ablations=False),
    # what 2 cores run in under an hour: the paper's two comparisons at 5 seeds, the other core arms at 3, one world,
    # one seed per SGD rung over three decades, no AdamW ladder, no ablations; too few seeds for the power the design
    # asks (its verdicts say so): the complete design is "full"
    "mini": Study(seeds=(0, 1, 2), power_seeds=tuple(range(5)), second_world=None, ladder_seeds=(0,),
                  sgd_rates=(1.0, 10.0, 100.0), adamw_factors=(), ablations=False),
    # the complete design (module docstring): 20 + 10 seeds over two worlds for the paper's two comparisons, 10 for
    # the other core arms, both ladders, the ablations
    "full": Study(),
    "paper": Study(),
}


def study(name: str, **overrides: Any) -> Study:
    """The study ``name`` (a preset's, or "full") with ``overrides`` (lists become tuples)."""
    if name not in STUDIES:
        raise ValueError(f"Unknown study {name!r}; choose one of {list(STUDIES)}.")
    unknown = sorted(set(overrides) - {f.name for f in fields(Study)})
    if unknown:
        raise ValueError(f"Unknown study settings {unknown}; valid ones: {sorted(f.name for f in fields(Study))}.")
    return replace(STUDIES[name], **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


def labels(settings: Settings) -> dict[str, str]:
    """The label of each arm on ``settings``' benchmark (SGA's shows its rate r0)."""
    r0 = settings.options_of("sga").rate
    return {"GA": "GA", "SGA r0": f"SGA r={r0:+g}", "GradDiff control": f"GradDiff, SGA r={r0:+g}'s weights", "KL": "KL",
            "NPO": "NPO", "SimNPO": "SimNPO", "FLAT": "FLAT", "SGA adaptive": "SGA adaptive"}


def _arms(settings: Settings) -> dict[str, tuple[str, dict[str, Any]]]:
    sga = settings.options_of("sga")
    gamma, alpha = theory.graddiff_weights(sga.rate, sga.k, "gls")
    return {"GA": ("ga", {}), "SGA r0": ("sga", {"rate": sga.rate}),
            "GradDiff control": ("graddiff", {"graddiff_forget_weight": gamma, "graddiff_retain_weight": alpha}),
            "KL": ("kl", {}), "NPO": ("npo", {}), "SimNPO": ("simnpo", {}), "FLAT": ("flat", {}), "SGA adaptive": ("sga_adaptive", {})}


def located(study: Study, **overrides: Any) -> dict[str, Any]:
    """The overrides every study run has: located, read in full at its crossing (no final evaluation; its end's
    forgetting alone), stopped ``tail`` steps after the crossing."""
    return {"locate": True, "trajectory": False, "final_evaluation": False, "stop_after_level": study.tail, **overrides}


def _points(settings: Settings, group: str, arms: Mapping[str, tuple[str, dict[str, Any]]], seeds: Sequence[int],
            common: Mapping[str, Any]) -> list[Point]:
    return [Point(group, label, settings.run(method, seed=int(seed), **{**common, **overrides}))
            for label, (method, overrides) in arms.items() for seed in seeds]


def pilot(worlds: Mapping[tuple[str, int], Settings], study: Study) -> list[Point]:
    """GA at the pilot seeds on every (benchmark, world), stopped at the crossing plus the tail, or at ``pilot_factor``
    times the preset's epochs."""
    out = []
    for settings in worlds.values():
        epochs = math.ceil(study.pilot_factor * settings.training.epochs)
        out += _points(settings, "pilot", {"GA": ("ga", {})}, study.pilot_seeds, located(study, epochs=epochs))
    return out


def budgets(pilot_rows: pd.DataFrame, worlds: Mapping[tuple[str, int], Settings], study: Study) -> dict[tuple[str, int], int]:
    """S per (benchmark, world): the median step at which the pilot GA runs reached the level (rounded up, at least 1;
    the pilot's whole budget where none did)."""
    out = {}
    for (benchmark, world), settings in worlds.items():
        mine = pilot_rows[(pilot_rows.benchmark == benchmark) & (pilot_rows.world == world)]
        steps = mine.steps_to_level.dropna()
        out[(benchmark, world)] = max(1, int(math.ceil(steps.median())) if len(steps) else int(mine.end_step.max()))
    return out


def study_overrides(settings: Settings, study: Study, steps: int, n_forget: int) -> dict[str, Any]:
    """The overrides of every study run on ``settings``' world, given S = ``steps``: located (:func:`located`), read at
    S too, stopped at ``budget_factor`` x S at the latest, with the epochs of ``n_forget`` forget samples that cover it."""
    max_steps = max(steps + 1, math.ceil(study.budget_factor * steps))
    epochs = math.ceil(max_steps / math.ceil(n_forget / settings.training.batch_size))
    return located(study, max_steps=max_steps, read_at=(steps,), epochs=epochs)


def core(worlds: Mapping[tuple[str, int], Settings], steps: Mapping[tuple[str, int], int], n_forget: Mapping[str, int],
         study: Study) -> list[Point]:
    """The arms of the verdicts on the first world of every benchmark (GA, SGA r0 and the GradDiff control at the power
    seeds, the others at ``seeds``), and GA, SGA r0 and the control at ``seeds`` on the second world."""
    out = []
    for (benchmark, world), settings in worlds.items():
        common = study_overrides(settings, study, steps[(benchmark, world)], n_forget[benchmark])
        arms, names = _arms(settings), labels(settings)
        first = world == min(w for b, w in worlds if b == benchmark)
        for arm in ARMS if first else POWER_ARMS:
            seeds = study.power_seeds if first and arm in POWER_ARMS else study.seeds
            out += _points(settings, CORE, {names[arm]: arms[arm]}, seeds, common)
    return out


def ablations(settings: Settings, steps: int, n_forget: int, study: Study) -> list[Point]:
    """Exploratory, at ``ablation_seeds`` (no verdict rests on them): the gls rate grid, the descent reading's rates, K
    (at r0 and at r0's total normal weight r (K-1)/K), the normal data's source, adaptive SGA under the descent reading."""
    sga = settings.options_of("sga")
    r0, k = sga.rate, sga.k
    total = r0 * (k - 1) / k
    groups: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
        "gls rate": {f"SGA r={r:+g}": ("sga", {"rate": r}) for r in (-1.0, 0.4, 1.0, 1.2)},
        "descent rate": {f"SGA descent r={r:g}": ("sga", {"reading": "descent", "rate": r}) for r in (0.25, 0.5, 0.75, 1.0)},
        "K": {label: config for kk in (2, 8) for label, config in (
            (f"SGA r={r0:+g}, K={kk}", ("sga", {"rate": r0, "k": kk})),
            (f"SGA K={kk}, same normal weight", ("sga", {"rate": total * kk / (kk - 1), "k": kk})))},
        "normal data": {f"SGA r={r0:+g}, {source}": ("sga", {"rate": r0, "normal_source": source}) for source in ("tfidf", "embedding")},
        "reading": {"SGA adaptive, descent": ("sga_adaptive", {"reading": "descent"})},
    }
    common = study_overrides(settings, study, steps, n_forget)
    return [p for group, arms in groups.items() for p in _points(settings, group, arms, study.ablation_seeds, common)]


def ladders(settings: Settings, steps: int, n_forget: int, study: Study) -> list[Point]:
    """The stability study: GA, SGA r0 and adaptive SGA under plain SGD (no momentum, no clipping) over ``sgd_rates``,
    and under AdamW at ``adamw_factors`` times the preset's rate (no clipping); a run diverges at a non-finite loss or
    gradient or a forget NLL above ``diverge_above``."""
    arms, names = _arms(settings), labels(settings)
    common = {**study_overrides(settings, study, steps, n_forget), "max_grad_norm": "none", "diverge_above": study.diverge_above}
    out = []
    for rate in study.sgd_rates:
        ladder = {f"{names[arm]}, SGD lr={rate:g}": arms[arm] for arm in LADDER_METHODS}
        out += _points(settings, "SGD ladder", ladder, study.ladder_seeds, {**common, "optimizer": "sgd", "lr": rate})
    for factor in study.adamw_factors:
        lr = factor * settings.training.lr
        ladder = {f"{names[arm]}, AdamW lr={lr:.3g}": arms[arm] for arm in LADDER_METHODS}
        out += _points(settings, "AdamW ladder", ladder, study.ladder_seeds, {**common, "lr": lr})
    return out


def ga_steps_for_tokens(forget_tokens: Sequence[int], batch_size: int, seed: int, tokens: float, epochs: int) -> int:
    """The first step at which GA's token passes (forward + backward: twice each forget sample's tokens) reach
    ``tokens``, with the batches :func:`sga.unlearn.epoch_batches` draws for ``seed``; ``forget_tokens[i]`` is the
    encoded length of forget sample i."""
    from sga.unlearn import epoch_batches

    spent, step = 0, 0
    for epoch in range(epochs):
        for batch in epoch_batches(len(forget_tokens), batch_size, seed, epoch):
            step += 1
            spent += 2 * int(np.sum(np.asarray(forget_tokens)[batch]))
            if spent >= tokens:
                return step
    raise ValueError(f"{epochs} epochs of GA spend {spent} token passes, fewer than {tokens:g}; allow more epochs.")


def equal_compute(settings: Settings, sga_tokens: float, forget_tokens: Sequence[int], study: Study) -> list[Point]:
    """GA given SGA's token budget: GA at ``seeds``, read at the first step its token passes reach ``sga_tokens`` (SGA
    r0's median token passes to the level) and stopped there."""
    spe = math.ceil(len(forget_tokens) / settings.training.batch_size)
    epochs = math.ceil(sga_tokens / (2 * sum(forget_tokens))) + 1
    out = []
    for seed in study.seeds:
        at = ga_steps_for_tokens(forget_tokens, settings.training.batch_size, seed, sga_tokens, epochs)
        common = located(study, read_at=(at,), max_steps=at, epochs=math.ceil(at / spe))
        out += _points(settings, "equal compute", {"GA, SGA's token budget": ("ga", {})}, (seed,), common)
    return out
