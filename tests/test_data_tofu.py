"""The offline mini TOFU generator, read back through the hub loader."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from sga.data import tofu
from sga.data.hub import hub_configs
from sga.data.tofu import TOFU_CONFIGS, generate_tofu, load_tofu, share_of_authors, tofu_splits

FIXTURE = Path(__file__).parent / "fixtures" / "tofu_hub"
N_AUTHORS, QA = 40, 8  # the generator's defaults, spelled out so a changed default shows up here
PERTURBED_FIELDS = ["question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question"]
EXPECTED_ROWS = {
    "full": 320, "forget01": 8, "forget05": 16, "forget10": 32, "retain90": 288, "retain95": 304,
    "retain99": 312, "forget01_perturbed": 8, "forget05_perturbed": 16, "forget10_perturbed": 32,
    "retain_perturbed": 32, "real_authors": 30, "real_authors_perturbed": 30, "world_facts": 30,
    "world_facts_perturbed": 30, "holdout01": 8, "holdout05": 16, "holdout10": 32,
}  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return generate_tofu(tmp_path_factory.mktemp("tofu") / "mini_tofu")


@pytest.fixture(scope="module")
def data(repo, tmp_path_factory) -> dict[str, list[dict]]:
    cache = tmp_path_factory.mktemp("cache")
    return {config: load_tofu(str(repo), config, cache_dir=cache).to_list() for config in TOFU_CONFIGS}


def _authors(rows: list[dict]) -> list[list[dict]]:
    return [rows[i : i + QA] for i in range(0, len(rows), QA)]


def _author_name(rows: list[dict]) -> str:
    """The one capitalised two-word name that every question of an author mentions."""
    common = set.intersection(*(set(re.findall(r"(?=\b([A-Z][a-z]+ [A-Z][a-z]+)\b)", row["question"])) for row in rows))
    assert len(common) == 1, common
    return common.pop()


def _mentions(text: str, values) -> set[str]:
    return {value for value in values if re.search(rf"\b{re.escape(value)}\b", text, flags=re.IGNORECASE)}


def _facts(text: str) -> set[str]:
    """Fact values a text states: cities, jobs, genres, years and quoted book titles."""
    cities = [city for city, _ in tofu._CITIES]
    found = _mentions(text, cities) | _mentions(text, tofu._JOBS) | _mentions(text, tofu._GENRES)
    return found | set(re.findall(r"\b(?:19|20)\d\d\b", text)) | set(re.findall(r"'([A-Z][^']*)'", text))


def test_share_of_authors_rounds_half_up_with_at_least_one():
    assert [share_of_authors(40, p) for p in (1, 5, 10)] == [1, 2, 4]
    assert [share_of_authors(50, p) for p in (1, 5, 10)] == [1, 3, 5]
    assert [share_of_authors(200, p) for p in (1, 5, 10)] == [2, 10, 20]  # the real TOFU: 40/200/400 QA


def test_all_configs_with_exact_row_counts(repo, data):
    assert hub_configs(repo) == TOFU_CONFIGS
    assert "  data_files: full.json\n  default: true\n" in (repo / "README.md").read_text()
    assert {config: len(rows) for config, rows in data.items()} == EXPECTED_ROWS


def test_schema_matches_the_hub(data):
    for config, rows in data.items():
        if config.endswith("_perturbed") and not config.startswith(("real", "world")):
            assert list(rows[0]) == PERTURBED_FIELDS, config
            assert all(len(set(row["perturbed_answer"])) == 5 for row in rows), config
        elif config.endswith("_perturbed"):
            assert list(rows[0]) == ["question", "answer", "perturbed_answer"], config
            assert all(len(set(row["perturbed_answer"]) | {row["answer"]}) == 4 for row in rows), config
        else:
            assert list(rows[0]) == ["question", "answer"], config
        assert all(isinstance(value, str) for row in rows for key, value in row.items() if key != "perturbed_answer")


def test_forget_and_retain_partition_full_in_author_order(data):
    for suffix, retain in (("01", "retain99"), ("05", "retain95"), ("10", "retain90")):
        assert data[retain] + data[f"forget{suffix}"] == data["full"]
        plain = [{"question": r["question"], "answer": r["answer"]} for r in data[f"forget{suffix}_perturbed"]]
        assert plain == data[f"forget{suffix}"]
    retain_plain = [{"question": r["question"], "answer": r["answer"]} for r in data["retain_perturbed"]]
    assert retain_plain == data["full"][: 4 * QA]  # the first 10% of the authors, inside every retain split


def test_holdout_authors_are_not_in_full(data):
    full_names = {_author_name(rows) for rows in _authors(data["full"])}
    assert len(full_names) == N_AUTHORS
    holdout_names = [_author_name(rows) for rows in _authors(data["holdout10"])]
    assert len(holdout_names) == 4 and not full_names & set(holdout_names)
    assert data["holdout05"] == data["holdout10"][-2 * QA :] and data["holdout01"] == data["holdout10"][-QA:]


def test_each_author_states_one_consistent_set_of_facts(data):
    """An author has one birth city, one home city, one university city, one genre, four book titles and
    three years (birth, debut, award); pooling the wrong answers of the same author breaks these bounds."""
    cities = [city for city, _ in tofu._CITIES]

    def within_bounds(answers: list[str]) -> bool:
        text = " ".join(answers)
        titles = set(re.findall(r"'([A-Z][^']*)'", text))
        years = set(re.findall(r"\b(?:19|20)\d\d\b", text))
        return (len(_mentions(text, cities)) <= 3 and len(_mentions(text, tofu._GENRES)) <= 1
                and len(titles) <= 4 and len(years) <= 3)  # fmt: skip

    rows = data["retain_perturbed"] + data["forget10_perturbed"]
    for author in _authors(rows):
        name = _author_name(author)
        assert within_bounds([row["answer"] for row in author] + [row["paraphrased_answer"] for row in author])
        assert not within_bounds([wrong for row in author for wrong in row["perturbed_answer"]]), name
    assert all(within_bounds([row["answer"] for row in author]) for author in _authors(data["full"]))


def test_paraphrases_keep_the_facts_and_perturbations_change_them(data):
    for row in data["forget10_perturbed"] + data["retain_perturbed"]:
        facts = _facts(row["answer"])
        assert facts and row["paraphrased_answer"] != row["answer"]
        assert _facts(row["paraphrased_answer"]) == facts
        assert row["paraphrased_question"] != row["question"]
        for wrong in row["perturbed_answer"]:
            assert wrong != row["answer"] and _facts(wrong) != facts


def test_perturbed_answers_take_the_paraphrase_wording(data):
    """Truth ratio = P(perturbed) / P(paraphrase): both in the same untrained wording, only the facts differ."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = data["forget10_perturbed"] + data["retain_perturbed"]
    closer = [scorer.score(r["paraphrased_answer"], w)["rougeL"].fmeasure > scorer.score(r["answer"], w)["rougeL"].fmeasure
              for r in rows for w in r["perturbed_answer"]]
    assert sum(closer) >= 0.9 * len(closer)


def test_rouge_separates_memorised_answers_from_wrong_ones(data):
    """Wrong facts in another wording (what a non-memorising model might say) score well below 1."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = data["forget10_perturbed"]
    wrong = [scorer.score(r["answer"], w)["rougeL"].recall for r in rows for w in r["perturbed_answer"]]
    assert all(scorer.score(r["answer"], r["answer"])["rougeL"].recall == 1.0 for r in rows)
    assert statistics.mean(wrong) < 0.7
    words = [len(row["answer"].split()) for row in data["full"]]
    assert 8 <= min(words) and max(words) <= 25 and 10 <= statistics.mean(words) <= 20


def test_real_world_plain_configs_match_their_perturbed_versions(data):
    for name in ("real_authors", "world_facts"):
        stripped = [{"question": r["question"], "answer": r["answer"]} for r in data[f"{name}_perturbed"]]
        assert stripped == data[name]
        assert all(len(row["answer"].split()) <= 4 for row in data[name])
    assert data["world_facts_perturbed"][0]["question"] == "What is the capital of France?"


def test_same_seed_is_byte_identical_and_another_seed_differs(repo, tmp_path):
    again = generate_tofu(tmp_path / "again")
    other = generate_tofu(tmp_path / "other", seed=1)
    files = sorted(path.name for path in repo.iterdir())
    assert files == sorted(path.name for path in again.iterdir())
    assert all((repo / name).read_bytes() == (again / name).read_bytes() for name in files)
    assert (repo / "full.json").read_bytes() != (other / "full.json").read_bytes()


def test_regenerating_in_place_is_seen_by_the_loader(tmp_path):
    path, cache = tmp_path / "tofu", tmp_path / "cache"
    small = dict(n_authors=4, qa_per_author=2, n_real_authors=3, n_world_facts=3)
    first = load_tofu(str(generate_tofu(path, seed=0, **small)), "full", cache_dir=cache).to_list()
    second = load_tofu(str(generate_tofu(path, seed=1, **small)), "full", cache_dir=cache).to_list()
    assert len(first) == len(second) == 8 and first != second
    assert second == [json.loads(line) for line in (path / "full.json").read_text().splitlines()]


def test_small_sizes_keep_the_layout(tmp_path):
    repo = generate_tofu(tmp_path / "t", n_authors=2, qa_per_author=1, n_real_authors=1, n_world_facts=1)
    lines = {config: len((repo / f"{config}.json").read_text().splitlines()) for config in TOFU_CONFIGS}
    assert lines["full"] == 2 and lines["forget10"] == lines["retain90"] == lines["retain_perturbed"] == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_authors=1), "n_authors"),
        (dict(qa_per_author=13), "qa_per_author"),
        (dict(n_holdout_authors=3), "n_holdout_authors"),
        (dict(n_real_authors=1000), "n_real_authors"),
        (dict(n_world_facts=0), "n_world_facts"),
    ],
)
def test_bad_sizes_are_refused(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        generate_tofu(tmp_path / "t", **kwargs)
    assert not (tmp_path / "t").exists()


def test_tofu_splits():
    assert tofu_splits("forget05") == {
        "forget": "forget05", "forget_perturbed": "forget05_perturbed", "retain": "retain95",
        "retain_perturbed": "retain_perturbed", "real_authors": "real_authors_perturbed",
        "world_facts": "world_facts_perturbed",
    }  # fmt: skip
    assert tofu_splits("forget05", holdout=True) == {**tofu_splits("forget05"), "holdout": "holdout05"}
    assert all(set(tofu_splits(split, holdout=True).values()) <= set(TOFU_CONFIGS) for split in tofu.FORGET_SPLITS)
    with pytest.raises(ValueError, match="forget01.*forget05.*forget10"):
        tofu_splits("forget20")


def test_load_tofu_on_the_hand_written_fixture(tmp_path):
    forget = load_tofu(str(FIXTURE), "forget01_perturbed", cache_dir=tmp_path)
    assert forget.column_names == PERTURBED_FIELDS and forget.num_rows == 2
    assert load_tofu(str(FIXTURE), "full", cache_dir=tmp_path)[3]["answer"].startswith("Yes, he won the Copper")


def test_load_tofu_refuses_an_unknown_config():
    with pytest.raises(ValueError, match="holdout10") as error:
        load_tofu(str(FIXTURE), "forget20")
    assert "forget20" in str(error.value)
