"""Notebook 05's study: the configurations of each phase, their seeds, budgets and stopping rules."""


import numpy as np
import pandas as pd
import pytest

from sga import design, presets
from sga.unlearn import epoch_batches

STUDY = design.Study(seeds=(0, 1), power_seeds=(0, 1, 2), pilot_seeds=(0,), ablation_seeds=(0,), ladder_seeds=(0,),
                     sgd_rates=(1.0, 3.0), adamw_factors=(3.0,))
WORLDS = {("tofu", 0): presets.resolve("tofu", "mini"), ("tofu", 1): presets.resolve("tofu", "mini", world_seed=1)}


def test_the_pilot_is_ga_alone_on_every_world_with_a_doubled_epoch_budget():
    pilot = design.pilot(WORLDS, STUDY)
    assert [(p.label, p.run.world.world_seed, p.seed) for p in pilot] == [("GA", 0, 0), ("GA", 1, 0)]
    run = pilot[0].run
    assert run.training.epochs == 8 and run.evaluation.locate and run.evaluation.stop_after_level == 5 and not run.evaluation.final_evaluation


def test_budgets_are_the_median_pilot_crossing_or_the_whole_pilot():
    rows = pd.DataFrame({"benchmark": ["tofu"] * 4, "world": [0, 0, 0, 1], "steps_to_level": [70, 81, 90, np.nan], "end_step": [75, 86, 95, 200]})
    assert design.budgets(rows, WORLDS, STUDY) == {("tofu", 0): 81, ("tofu", 1): 200}


def test_the_core_arms_seeds_and_stopping_rule():
    points = design.core(WORLDS, {("tofu", 0): 80, ("tofu", 1): 60}, {"tofu": 100}, STUDY)
    first = [p for p in points if p.run.world.world_seed == 0]
    second = [p for p in points if p.run.world.world_seed == 1]
    names = design.labels(WORLDS[("tofu", 0)])
    assert [names[a] for a in design.ARMS] == list(dict.fromkeys(p.label for p in first))
    assert {p.label: len([q for q in first if q.label == p.label]) for p in first} == {
        "GA": 3, "SGA r=-0.4": 3, "GradDiff, SGA r=-0.4's weights": 3, "KL": 2, "NPO": 2, "SimNPO": 2, "FLAT": 2, "SGA adaptive": 2}
    assert list(dict.fromkeys(p.label for p in second)) == ["GA", "SGA r=-0.4", "GradDiff, SGA r=-0.4's weights"] and len(second) == 6
    run = first[0].run
    assert (run.training.max_steps, run.evaluation.read_at, run.training.epochs) == (160, (80,), 7)  # 2 x 80 steps, 25 per epoch
    assert second[0].run.training.max_steps == 120 and {p.group for p in points} == {design.CORE}


def test_ablations_and_ladders_are_exploratory_groups_with_their_settings():
    settings = WORLDS[("tofu", 0)]
    ablations = design.ablations(settings, 80, 100, STUDY)
    assert [g for g in dict.fromkeys(p.group for p in ablations)] == ["gls rate", "descent rate", "K", "normal data", "reading"]
    assert len(ablations) == 4 + 4 + 4 + 2 + 1
    ladders = design.ladders(settings, 80, 100, STUDY)
    sgd = [p.run for p in ladders if p.group == "SGD ladder"]
    assert len(sgd) == 2 * 3 and {r.training.optimizer for r in sgd} == {"sgd"} and {r.training.lr for r in sgd} == {1.0, 3.0}
    assert all(r.training.max_grad_norm is None and r.training.diverge_above == 100.0 for r in sgd)
    adamw = [p for p in ladders if p.group == "AdamW ladder"]
    assert [p.label for p in adamw] == ["GA, AdamW lr=0.003", "SGA r=-0.4, AdamW lr=0.003", "SGA adaptive, AdamW lr=0.003"]
    assert adamw[0].run.training.optimizer == "adamw" and adamw[0].run.training.lr == pytest.approx(3e-3)


def test_ga_is_read_where_its_token_passes_reach_sgas():
    lengths = [10, 20, 30, 40, 50, 60, 70, 80, 90]
    target = 700
    step = design.ga_steps_for_tokens(lengths, 4, 3, target, epochs=5)
    spent = np.cumsum([2 * sum(lengths[i] for i in batch) for e in range(5) for batch in epoch_batches(9, 4, 3, e)])
    assert spent[step - 1] >= target > spent[step - 2]
    points = design.equal_compute(WORLDS[("tofu", 0)], 3000.0, lengths, STUDY)
    assert [p.seed for p in points] == [0, 1] and all(p.run.training.max_steps == p.run.evaluation.read_at[0] for p in points)
    with pytest.raises(ValueError, match="allow more epochs"):
        design.ga_steps_for_tokens(lengths, 4, 0, 1e9, epochs=2)


def test_each_preset_has_a_study_and_overrides_are_checked():
    assert design.study("full").power_seeds == tuple(range(20)) and not design.study("smoke").ablations
    assert design.study("mini").second_world is None and design.study("full").second_world == 1
    assert design.study("mini", seeds=[0, 1]).seeds == (0, 1)
    with pytest.raises(ValueError, match=r"Unknown study settings \['seedz'\]"):
        design.study("mini", seedz=[0])
