"""The hub loader and the hub-layout writers (TOFU JSON Lines layout, MUSE Parquet layout)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest

from sga.data.hub import DataUnavailableError, hub_configs, load_hub_dataset, write_jsonl_repo, write_parquet_repo

FIXTURE = Path(__file__).parent / "fixtures" / "tofu_hub"
FIXTURE_CONFIGS = (
    "full",
    "forget01",
    "retain99",
    "forget01_perturbed",
    "retain_perturbed",
    "real_authors_perturbed",
    "world_facts_perturbed",
)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_fixture_configs_are_read_from_the_readme_yaml():
    assert hub_configs(FIXTURE) == FIXTURE_CONFIGS


@pytest.mark.parametrize("config", FIXTURE_CONFIGS)
def test_fixture_loads_each_config_as_written(config, tmp_path):
    dataset = load_hub_dataset(str(FIXTURE), config, cache_dir=tmp_path)
    assert dataset.to_list() == _jsonl(FIXTURE / f"{config}.json")


def test_fixture_forget_and_retain_partition_full(tmp_path):
    load = lambda config: load_hub_dataset(str(FIXTURE), config, cache_dir=tmp_path).to_list()  # noqa: E731
    assert load("retain99") + load("forget01") == load("full")


def test_fixture_perturbed_schema(tmp_path):
    forget = load_hub_dataset(str(FIXTURE), "forget01_perturbed", cache_dir=tmp_path)
    assert set(forget.column_names) == {
        "question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question"
    }  # fmt: skip
    assert forget.features["perturbed_answer"].feature.dtype == "string"
    assert [len(row["perturbed_answer"]) for row in forget] == [5, 5]
    world = load_hub_dataset(str(FIXTURE), "world_facts_perturbed", cache_dir=tmp_path)
    assert world.column_names == ["question", "answer", "perturbed_answer"]
    assert world[0]["perturbed_answer"] == ["Sydney", "Melbourne", "Perth"]


def test_unknown_config_lists_the_valid_ones():
    with pytest.raises(ValueError, match="forget10") as error:
        load_hub_dataset(str(FIXTURE), "forget10")
    assert all(name in str(error.value) for name in FIXTURE_CONFIGS)


def test_directory_without_configs_block_is_refused(tmp_path):
    (tmp_path / "full.json").write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(ValueError, match="README.md"):
        load_hub_dataset(str(tmp_path), "full")


def test_hub_id_offline_raises_data_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataUnavailableError) as error:
        load_hub_dataset("locuslab/TOFU", "full", cache_dir=tmp_path)  # empty cache: nothing to fall back on
    message = str(error.value)
    assert isinstance(error.value, RuntimeError)
    assert "'mini'" in message and "local directory" in message and "locuslab/TOFU" in message


def test_jsonl_repo_layout_and_readme(tmp_path):
    tables = {"full": [{"question": "Q1?", "answer": "A1."}, {"question": "Q2?", "answer": "A2."}],
              "forget01": [{"question": "Q2?", "answer": "A2."}]}  # fmt: skip
    repo = write_jsonl_repo(tmp_path / "repo", tables, default_config="full", description="Tiny.")
    assert sorted(path.name for path in repo.iterdir()) == ["README.md", "forget01.json", "full.json"]
    assert (repo / "README.md").read_text() == (
        "---\nconfigs:\n"
        "- config_name: full\n  data_files: full.json\n  default: true\n"
        "- config_name: forget01\n  data_files: forget01.json\n"
        "---\n\nTiny.\n"
    )
    assert (repo / "forget01.json").read_text() == '{"question": "Q2?", "answer": "A2."}\n'
    assert load_hub_dataset(str(repo), "forget01", cache_dir=tmp_path / "cache").to_list() == tables["forget01"]


def test_jsonl_repo_rejects_a_default_that_is_not_a_table(tmp_path):
    with pytest.raises(ValueError, match="default_config"):
        write_jsonl_repo(tmp_path / "repo", {"full": [{"question": "q", "answer": "a"}]}, default_config="train")


def test_parquet_repo_round_trips(tmp_path):
    tables = {
        "knowmem": {
            "retain_qa": [{"question": "Who won?", "answer": "The mayor"}],
            "forget_qa": [{"question": "When?", "answer": "In May"}, {"question": "Where?", "answer": "Leeds"}],
        },
        "raw": {"forget": [{"text": "A long news article."}], "holdout": [{"text": "Another one."}]},
    }
    repo = write_parquet_repo(tmp_path / "muse", tables)
    assert (repo / "knowmem" / "forget_qa-00000-of-00001.parquet").is_file()
    assert "  data_files:\n  - split: retain_qa\n    path: knowmem/retain_qa-*\n" in (repo / "README.md").read_text()
    assert hub_configs(repo) == ("knowmem", "raw")
    for config, splits in tables.items():
        for split, rows in splits.items():
            loaded = load_hub_dataset(str(repo), config, split=split, cache_dir=tmp_path / "cache")
            assert loaded.to_list() == rows


def test_failed_write_keeps_the_previous_repo_and_leaves_no_temp_dirs(tmp_path):
    good = {"full": [{"question": "q", "answer": "a"}]}
    repo = write_jsonl_repo(tmp_path / "repo", good, default_config="full")
    before = {path.name: path.read_bytes() for path in repo.iterdir()}
    broken = {"full": [{"question": "q", "answer": "a"}], "forget01": [{"question": object()}]}
    with pytest.raises(TypeError):
        write_jsonl_repo(tmp_path / "repo", broken, default_config="full")
    with pytest.raises(ValueError, match="no rows"):
        write_jsonl_repo(tmp_path / "other", {"full": []}, default_config="full")
    assert {path.name: path.read_bytes() for path in repo.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]


def test_rewrite_replaces_the_whole_repo(tmp_path):
    write_jsonl_repo(tmp_path / "repo", {"full": [{"q": 1}], "extra": [{"q": 2}]}, default_config="full")
    repo = write_jsonl_repo(tmp_path / "repo", {"full": [{"q": 3}]}, default_config="full")
    assert sorted(path.name for path in repo.iterdir()) == ["README.md", "full.json"]
    assert (repo / "full.json").read_text() == '{"q": 3}\n'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]


@pytest.mark.parametrize(
    "write",
    [
        lambda out: write_jsonl_repo(out, {}, default_config="full"),
        lambda out: write_jsonl_repo(out, {"full set": [{"q": 1}]}, default_config="full set"),
        lambda out: write_parquet_repo(out, {}),
        lambda out: write_parquet_repo(out, {"raw": {}}),
        lambda out: write_parquet_repo(out, {"raw": {"../forget": [{"text": "t"}]}}),
        lambda out: write_parquet_repo(out, {"raw/sub": {"forget": [{"text": "t"}]}}),
    ],
)
def test_writers_refuse_empty_or_badly_named_tables(write, tmp_path):
    with pytest.raises(ValueError):
        write(tmp_path / "repo")
    assert list(tmp_path.iterdir()) == []


def test_parquet_writer_accepts_hub_config_names_with_hyphens_and_dots(tmp_path):
    repo = write_parquet_repo(tmp_path / "wikitext", {"wikitext-2-raw-v1": {"test": [{"text": "a"}], "v1.1": [{"text": "b"}]}})
    assert hub_configs(repo) == ("wikitext-2-raw-v1",)
    assert load_hub_dataset(str(repo), "wikitext-2-raw-v1", split="v1.1", cache_dir=tmp_path / "cache")["text"] == ["b"]


def test_two_local_repos_of_one_layout_never_share_a_cache(tmp_path):
    """Two directories with the same README configs (the mini and smoke worlds) load their own rows, in any order,
    and nothing is left in a shared datasets cache that parallel loads could race on."""
    first = write_parquet_repo(tmp_path / "a" / "books", {"raw": {"forget": [{"text": "one"}, {"text": "two"}]}})
    second = write_parquet_repo(tmp_path / "b" / "books", {"raw": {"forget": [{"text": "three"}]}})
    cache = tmp_path / "cache"
    for repo, rows in ((first, ["one", "two"]), (second, ["three"]), (first, ["one", "two"])):
        assert load_hub_dataset(str(repo), "raw", split="forget", cache_dir=cache)["text"] == rows
    assert not cache.exists() or not any(cache.iterdir())
