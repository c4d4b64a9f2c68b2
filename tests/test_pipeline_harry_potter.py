"""The Harry Potter spec on the generic run path, end to end on the smoke preset: the world (forget passages,
general pool, target and reference models), one JSON per run, reused; the results table and the reference
rows; clear errors on bad input; every preset key a papermill parameter of notebook 03."""

import json
import time
from dataclasses import replace
from pathlib import Path

import papermill
import pytest

import benchmark_checks

from sga import experiment, presets
from sga.data.harry_potter import SOUL_DIR
from sga.data.hub import DataUnavailableError
from sga.benchmarks import harry_potter as hp
from sga.prompts import Text
from sga.tables import harry_potter as tables

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "03_harry_potter.ipynb"


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hp")
    settings = presets.resolve("harry_potter", "smoke", progress=False)
    return experiment.prepare(settings, root / "cache", root / "runs")


def test_world_holds_forget_passages_general_pool_and_both_models(smoke_world):
    data, world = smoke_world.data, smoke_world.spec
    assert [e.text for e in smoke_world.forget] == data["passages"] and all(isinstance(e, Text) for e in smoke_world.forget)
    assert all(len(p.split()) == world.words_per_passage for p in data["passages"])
    assert [e.text for e in smoke_world.pool] == data["general_chunks"] and len(smoke_world.pool) > len(smoke_world.forget)
    held_out = " ".join(data["general_test"])
    assert not any(chunk in held_out for chunk in data["general_chunks"])  # the perplexity articles are never trained on
    assert not set(data["passages"]) & set(data["domain_passages"])
    assert set(smoke_world.models) == {"target", "reference"} and hp.HARRY_POTTER.reference_model == "reference"
    assert set(data["completions"]) == set(world.prompt_lengths)
    assert all(len(rows) == 6 * len(data["passages"]) for rows in data["completions"].values())


def test_runs_write_one_result_each_reused_and_the_table(smoke_world):
    ga = experiment.run_method(smoke_world, "ga")
    path = smoke_world.out_dir / f"{ga['name']}.json"
    stamp = path.stat().st_mtime_ns
    assert ga["status"] == "completed" and json.loads(path.read_text())["params"]["method"] == "ga"
    assert experiment.run_method(smoke_world, "ga") == json.loads(path.read_text()) and path.stat().st_mtime_ns == stamp
    sga_run = experiment.run_method(smoke_world, "sga")
    assert sga_run["name"] != ga["name"] and all("normal_nll" in step for step in sga_run["log"])
    assert len(sga_run["trajectory"]) == smoke_world.settings.training.epochs
    results = {"target": experiment.reference(smoke_world, "target"), "reference": experiment.reference(smoke_world, "reference"),
               "ga": ga, "sga": sga_run}
    table = tables.results_table(results)
    ks = smoke_world.spec.prompt_lengths
    expected = ["status", *[f"{m}_{k}" for k in ks for m in ("bleu", "rouge_l")], "general_ppl", "general_token_ppl",
                "forget_domain_ppl", "collapsed"]
    assert list(table.columns) == expected and list(table.index) == ["target", "reference", "ga", "sga"]
    assert not table["collapsed"].any()  # one smoke epoch moves nothing far
    ref = results["reference"]["metrics"]
    assert ref["reference_word_perplexity"] is None  # the reference is its own: no collapse test against itself
    assert results["target"]["metrics"]["reference_word_perplexity"] == ref["general"]["word_perplexity"]
    assert len(results["target"]["metrics"]["leakage"][str(ks[0])]["generations"]) == smoke_world.settings.evaluation.eval_max_items
    sides = tables.completions_table(results, smoke_world, n=2)
    assert list(sides.index) == ["prompt (last words)", "true rest", "target", "reference", "ga", "sga"]
    diverged = tables.results_table({"x": {"status": "diverged"}, **results})
    assert diverged.loc["x", "collapsed"] and not diverged.loc["target", "collapsed"]


def test_soul_folder_gives_the_same_world_data(smoke_world, tmp_path):
    saga = next(Path(smoke_world.out_dir).parent.parent.glob("cache/hp-saga-*"))
    soul = replace(smoke_world.spec, data_source=str(saga / SOUL_DIR))
    data = hp.load_data(soul, tmp_path)
    assert data["passages"] == smoke_world.data["passages"] and data["completions"] == smoke_world.data["completions"]


def test_bad_input_fails_with_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # offline, a missing path is refused as a hub id (below)
    with pytest.raises(ValueError, match="prompt_lengths"):
        presets.resolve("harry_potter", "smoke", prompt_lengths=[])
    with pytest.raises(ValueError, match="sga_rates"):
        presets.resolve("harry_potter", "smoke", sga_rates=["high"])
    with pytest.raises(ValueError, match="Unknown parameter"):
        presets.resolve("harry_potter", "smoke", forget_split="forget10")
    with pytest.raises(ValueError, match="every model"):
        presets.resolve("harry_potter", "smoke", target_model="facebook/opt-2.7b")
    with pytest.raises(ValueError, match="prompt_lengths must be"):  # a prompt as long as the passage: nothing to complete
        experiment.prepare(presets.resolve("harry_potter", "smoke", prompt_lengths=[6, 24]), tmp_path / "c", tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        experiment.prepare(presets.resolve("harry_potter", "smoke", data_source="./no/such/books.txt"), tmp_path / "c", tmp_path / "r")
    with pytest.raises(ValueError, match="fine-tuned on the books"):  # checked before anything is downloaded
        presets.resolve("harry_potter", "paper", finetune_target=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    began = time.perf_counter()
    with pytest.raises(DataUnavailableError, match="mini"):
        experiment.prepare(presets.resolve("harry_potter", "paper", target_model="me/opt-2.7b-hp"), tmp_path / "c2", tmp_path / "r2")
    assert time.perf_counter() - began < 1.0 and not (tmp_path / "c2").exists()


def test_every_preset_key_is_a_notebook_parameter():
    names = set(papermill.inspect_notebook(str(NOTEBOOK)))
    expected = set(presets.parameter_names("harry_potter")) | {"preset", "output_dir", "cache_dir", "figures_dir", "overwrite"}
    assert expected <= names, sorted(expected - names)
    assert names <= expected, sorted(names - expected)


def test_flat_runs_on_the_smoke_world_with_template_answers_and_counts_its_tokens(smoke_world):
    benchmark_checks.flat_run(smoke_world)


def test_the_forgetting_reading_alone_equals_the_one_along_training(smoke_world):
    benchmark_checks.forgetting_reading_alone(smoke_world, f"rouge_l_{min(smoke_world.spec.prompt_lengths)}")
