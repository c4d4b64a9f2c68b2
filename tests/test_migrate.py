"""Result files of the flat-parameter form are renamed to the name the typed run spec gives the same run."""

import json

import pytest

from sga import migrate, presets
from sga.results import read_json, write_json_atomic

SMOKE_WORLD = {"benchmark": "tofu", "preset": "smoke", "compute_dtype": "float32", "cpu_threads": 1, "data_source": "embedded",
               "data": {"n_authors": 10, "n_holdout_authors": 1, "n_real_authors": 6, "n_world_facts": 6, "qa_per_author": 4},
               "eval_batch_size": 32, "eval_max_items": 8, "exclude_eval_from_pool": True, "forget_split": "forget10",
               "gen_max_new_tokens": 16, "gradient_checkpointing": False, "lora_alpha": 16, "lora_rank": 8, "lora_targets": "all-linear",
               "max_length": 128, "path_rouge_items": 16, "quantization": "nf4", "retain_model": "embedded", "seed": 0,
               "target_model": "embedded", "template": "phi", "tiny_model": {"hidden_size": 32, "num_heads": 4, "num_layers": 2, "vocab_size": 400},
               "tiny_training": {"batch_size": 16, "epochs": 2, "lr": 0.003}, "trajectory": True, "world_seed": 0,
               "batch_size": 4, "epochs": 1, "forget_per_forward": None, "lr": 0.001, "max_grad_norm": 1.0}
# as the old code wrote them (from a smoke run of notebook 05): SGA at 3x lr without a final evaluation; GA unclipped,
# with the final evaluation left out as its neutral value; the retain model as it is
OLD_SGA = {**SMOKE_WORLD, "method": "sga", "lr": 0.003, "final_evaluation": False, "k": 4, "normal_source": "random", "rate": -0.4, "reading": "gls"}
OLD_GA = {**SMOKE_WORLD, "method": "ga", "max_grad_norm": None}
OLD_RETAIN = {**SMOKE_WORLD, "method": "retain"}
SETTINGS = presets.resolve("tofu", "smoke")


@pytest.mark.parametrize("old,new", [
    (OLD_SGA, SETTINGS.run("sga", lr=0.003, final_evaluation=False, trajectory=True)),
    (OLD_GA, SETTINGS.run("ga", max_grad_norm="none")),
    (OLD_RETAIN, SETTINGS.reference("retain")),
])
def test_old_parameters_give_the_spec_the_code_builds_now(old, new):
    assert migrate.migrated_spec(old) == new


def test_a_folder_is_renamed_once_adapters_move_and_duplicates_go(tmp_path):
    runs = tmp_path / "tofu"
    for name, params in (("tofu-forget10-ga-seed0-aaaa", OLD_GA), ("tofu-forget10-retain-seed0-bbbb", OLD_RETAIN),
                         ("tofu-forget10-retain-seed0-cccc", {**OLD_RETAIN, "lr": 0.001})):  # the same evaluation twice
        write_json_atomic(runs / f"{name}.json", {"name": name, "params": params, "metrics": {"x": 1.0}, "log": []})
    (runs / "tofu-forget10-ga-seed0-aaaa" / "adapter").mkdir(parents=True)
    assert migrate.migrate(tmp_path) == {"renamed": 2, "already new": 0, "duplicates removed": 1}
    ga = SETTINGS.run("ga", max_grad_norm="none")
    moved = read_json(runs / f"{ga.name()}.json")
    assert moved["name"] == ga.name() and moved["params"] == json.loads(json.dumps(ga.to_dict())) and moved["metrics"] == {"x": 1.0}
    assert (runs / ga.name() / "adapter").is_dir() and not (runs / "tofu-forget10-ga-seed0-aaaa").exists()
    assert sorted(p.name for p in runs.glob("*.json")) == sorted([f"{ga.name()}.json", f"{SETTINGS.reference('retain').name()}.json"])
    assert migrate.migrate(tmp_path) == {"renamed": 0, "already new": 2, "duplicates removed": 0}  # run twice: nothing to do
