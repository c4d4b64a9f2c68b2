"""The MUSE-News spec on the generic run path, end to end on the smoke preset: the world (chunks, models, no
holdout in training), one JSON per run and reused, the retrain row's PrivLeak 0 by construction, the table's
columns; clear errors before any work; every preset key a papermill parameter of notebook 04."""

import json
import time
from pathlib import Path

import pandas as pd
import pytest

import benchmark_checks

from sga import experiment, presets
from sga.benchmarks import muse_news
from sga.data.hub import DataUnavailableError
from sga.data.muse_news import chunk_texts
from sga.tables import muse_news as tables

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "04_muse_news.ipynb"


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("muse_news")
    settings = presets.resolve("muse_news", "smoke", methods=["ga", "sga"], progress=False)
    return experiment.prepare(settings, root / "cache", root / "runs")


def test_world_holds_chunks_and_models(smoke_world):
    w = smoke_world
    assert set(w.models) == {"target", "retrain"} and muse_news.MUSE_NEWS.reference_model == "retrain"
    assert w.forget and w.pool and all(type(e).__name__ == "Text" for e in w.forget + w.pool)
    longest = max(len(w.tokenizer(e.text, add_special_tokens=False)["input_ids"]) for e in w.forget)
    assert longest <= w.spec.chunk_tokens + 2  # cut by tokens (re-tokenising a cut piece may differ by a token)
    forget_text = " ".join(w.data["raw_forget"]["text"])
    assert all(e.text.split()[0] in forget_text for e in w.forget)  # chunks are pieces of the forget articles
    holdout = set(w.data["privleak_holdout"]["text"])
    assert not any(e.text in holdout or any(h in e.text for h in holdout) for e in w.forget + w.pool)
    assert "raw_holdout" not in w.data  # the holdout articles are read by the attack only


def test_chunks_are_cut_at_words(tiny_tokenizer):
    text = "Where was Ana Brook born? Ana Brook was born in Lisbon."
    chunks = chunk_texts(tiny_tokenizer, [text, text], 4)
    assert all(len(tiny_tokenizer(c, add_special_tokens=False)["input_ids"]) <= 4 for c in chunks)
    assert " ".join(chunks).split() == f"{text} {text}".split()
    with pytest.raises(ValueError, match="no text"):
        chunk_texts(tiny_tokenizer, ["", "  "], 4)


def test_runs_make_one_result_each_reused_and_a_table(smoke_world):
    retrain = experiment.reference(smoke_world, "retrain")
    assert retrain["summary"]["privleak"] == 0.0 and retrain["summary"]["auc_retrain"] == retrain["summary"]["auc"]
    ga = experiment.run_method(smoke_world, "ga", trajectory=True)  # GA and SGA with the metrics after every epoch (their path)
    path = smoke_world.out_dir / f"{ga['name']}.json"
    stamp = path.stat().st_mtime_ns
    assert ga["status"] == "completed" and ga["summary"]["auc_retrain"] == retrain["summary"]["auc"]
    assert experiment.run_method(smoke_world, "ga", trajectory=True) == json.loads(path.read_text()) and path.stat().st_mtime_ns == stamp
    sga_run = experiment.run_method(smoke_world, "sga", trajectory=True)
    assert sga_run["name"] != ga["name"] and all("normal_nll" in step for step in sga_run["log"])
    assert len(list(smoke_world.out_dir.glob("*.json"))) == 3  # retrain, ga, sga: one JSON each
    results = {"target": experiment.reference(smoke_world, "target"), "retrain": retrain, "ga": ga, "sga": sga_run}
    table = experiment.results_table(results)
    for key in ("verbmem_f", "knowmem_f", "knowmem_r"):
        assert {key, f"{key}_ci_low", f"{key}_ci_high"} <= set(table.columns)
    assert {"privleak", "auc", "auc_retrain"} <= set(table.columns)
    shown = tables.muse_table(results)
    assert list(shown.columns) == ["VerbMem on D_f (lower)", "KnowMem on D_f (lower)", "KnowMem on D_r (higher)",
                                   "PrivLeak (near 0)", "AUC", "AUC_retrain", "published AUC_retrain"]
    assert shown.loc["retrain", "PrivLeak (near 0)"] == "0.0"
    assert pd.isna(tables.paper_comparison(results).loc["target"].iloc[1])
    path_rows = tables.path_table(results)
    assert list(path_rows.loc["ga"].index) == [0, 1] and path_rows.loc[("ga", 1), "verbmem_f"] == ga["summary"]["verbmem_f"]
    assert path_rows.loc[("sga", 0), "privleak"] == results["target"]["summary"]["privleak"]  # the path starts at the target


def test_bad_input_fails_before_any_work(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="chunk_tokens must be an integer >= 8"):
        presets.resolve("muse_news", "smoke", chunk_tokens=0)
    with pytest.raises(ValueError, match="Unknown parameter 'forget_split' for muse_news"):
        presets.resolve("muse_news", "smoke", forget_split="forget10")
    with pytest.raises(ValueError, match="Use 'embedded' for every model"):
        presets.resolve("muse_news", "smoke", retrain_model="muse-bench/MUSE-news_retrain")
    with pytest.raises(ValueError, match=r"chunk_tokens \(200\) plus BOS must fit in max_length \(64\)"):
        presets.resolve("muse_news", "smoke", chunk_tokens=200)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    began = time.perf_counter()
    with pytest.raises(DataUnavailableError, match="data_source='muse-bench/MUSE-News'.*'mini'"):
        experiment.prepare(presets.resolve("muse_news", "paper"), tmp_path / "cache", tmp_path / "runs")
    assert time.perf_counter() - began < 1.0 and not (tmp_path / "cache").exists()


def test_paper_preset_states_the_12gb_plan():
    paper = presets.resolve("muse_news", "paper")
    assert paper.world.chunk_tokens == 2048 and paper.world.max_length == 2049 and paper.training.forget_per_forward == 1
    assert paper.world.retrain_model == "muse-bench/MUSE-news_retrain" and paper.loading.quantization == "nf4"


def test_every_preset_key_is_a_notebook_parameter():
    """papermill sees every preset key in notebook 04's parameters cell (an unparsed line would be dropped)."""
    import papermill as pm

    declared = pm.inspect_notebook(str(NOTEBOOK))
    assert set(presets.parameter_names("muse_news")) <= set(declared)
    assert {"preset", "output_dir", "cache_dir", "figures_dir", "overwrite", "progress"} <= set(declared)


def test_flat_runs_on_the_smoke_world_with_template_answers_and_counts_its_tokens(smoke_world):
    benchmark_checks.flat_run(smoke_world)


def test_the_forgetting_reading_alone_equals_the_one_along_training(smoke_world):
    benchmark_checks.forgetting_reading_alone(smoke_world, "verbmem_f")
