"""The MUSE-News loader and the offline mini MUSE-News generator, read back through the hub loader."""

from __future__ import annotations

import itertools
import re
import statistics
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest
from rouge_score import rouge_scorer

from sga.data import muse_news
from sga.data.hub import DataUnavailableError, hub_configs, write_parquet_repo
from sga.data.muse_news import (
    EVAL_RETAIN_SPLIT,
    EVAL_SPLITS,
    MUSE_NEWS_FIELDS,
    MUSE_NEWS_SPLITS,
    generate_muse_news,
    load_eval_splits,
    load_muse_news,
    muse_news_sources,
)

FIXTURE = Path(__file__).parent / "fixtures" / "muse_news_hub"
SIZES = dict(articles_per_split=10, sentences_per_article=6, qa_per_article=2, n_icl=3, seed=0)
N, QA, ICL = SIZES["articles_per_split"], SIZES["qa_per_article"], SIZES["n_icl"]
EXPECTED_ROWS = {
    "knowmem": {"retain_qa_icl": ICL, "retain_qa": (N - ICL) * QA, "forget_qa": (N - ICL) * QA, "forget_qa_icl": ICL},
    "privleak": {"retain": N, "forget": N, "holdout": N},
    "raw": {"forget": N, "retain1": N, "retain2": N, "holdout": N},
    "train": {"forget": N, "retain1": N, "retain2": N},
    "verbmem": {"forget": N},
}
ORG = re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)? (?:" + "|".join(map(re.escape, muse_news._ORG_KINDS)) + r")\b")
PERSON = re.compile(r"\b(?:" + "|".join(muse_news._FIRST) + r") [A-Z][a-z]+\b")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return generate_muse_news(tmp_path_factory.mktemp("muse") / "mini_muse_news", **SIZES)


@pytest.fixture(scope="module")
def data(repo, tmp_path_factory) -> dict[str, dict[str, list[dict]]]:
    cache = tmp_path_factory.mktemp("cache")
    return {
        config: {split: load_muse_news(str(repo), config, split, cache_dir=cache).to_list() for split in splits}
        for config, splits in MUSE_NEWS_SPLITS.items()
    }


@pytest.fixture(scope="module")
def sources() -> dict[str, dict[str, list[tuple[str, int]]]]:
    return muse_news_sources(**SIZES)


def _article(data, source: tuple[str, int]) -> str:
    split, index = source
    return data["raw"][split][index]["text"]


def test_hub_layout_readme_and_exact_row_counts(repo, data):
    assert hub_configs(repo) == tuple(MUSE_NEWS_SPLITS)
    readme = (repo / "README.md").read_text()
    assert "- config_name: knowmem\n  data_files:\n  - split: retain_qa_icl\n    path: knowmem/retain_qa_icl-*\n" in readme
    files = sorted(str(path.relative_to(repo)) for path in repo.rglob("*.parquet"))
    assert files == sorted(f"{c}/{s}-00000-of-00001.parquet" for c, splits in MUSE_NEWS_SPLITS.items() for s in splits)
    assert {c: {s: len(rows) for s, rows in splits.items()} for c, splits in data.items()} == EXPECTED_ROWS


def test_schema_matches_the_hub(data):
    for config, splits in data.items():
        for split, rows in splits.items():
            assert all(list(row) == list(MUSE_NEWS_FIELDS[config]) for row in rows), (config, split)
            assert all(isinstance(value, str) and value.strip() for row in rows for value in row.values())


def test_sources_cover_every_row(data, sources):
    assert {c: {s: len(rows) for s, rows in splits.items()} for c, splits in sources.items()} == EXPECTED_ROWS
    assert sources["knowmem"]["retain_qa"][0][0] == EVAL_RETAIN_SPLIT == sources["privleak"]["retain"][0][0]


def test_train_and_privleak_copy_their_raw_articles(data, sources):
    for config, split in [(config, split) for config in ("train", "privleak") for split in MUSE_NEWS_SPLITS[config]]:
        assert [row["text"] for row in data[config][split]] == [_article(data, src) for src in sources[config][split]]
    assert data["train"]["forget"] == data["raw"]["forget"] and data["privleak"]["retain"] == data["raw"][EVAL_RETAIN_SPLIT]


def test_verbmem_is_a_prefix_and_the_rest_of_its_forget_article(data, sources):
    for row, source in zip(data["verbmem"]["forget"], sources["verbmem"]["forget"]):
        assert source[0] == "forget"
        assert row["prompt"] + " " + row["gt"] == _article(data, source)
        assert row["prompt"].endswith(".") and re.match(r"[\"A-Z]", row["gt"])
        assert len(re.findall(r"[.!?](?= |$)", row["prompt"])) == SIZES["sentences_per_article"] // 2


def test_every_knowmem_answer_is_in_its_source_article_and_the_question_names_its_organisation(data, sources):
    for prefix, split in (("forget", "forget"), ("retain", EVAL_RETAIN_SPLIT)):
        for name in (f"{prefix}_qa", f"{prefix}_qa_icl"):
            for row, source in zip(data["knowmem"][name], sources["knowmem"][name]):
                article = _article(data, source)
                assert source[0] == split and row["answer"] in article, (name, row)
                assert set(ORG.findall(row["question"])) == set(ORG.findall(article)), row["question"]
                assert len(row["answer"].split()) <= 5 and row["question"].endswith("?")
        asked = {index for _, index in sources["knowmem"][f"{prefix}_qa"]}
        shown = [index for _, index in sources["knowmem"][f"{prefix}_qa_icl"]]
        assert asked == set(range(N - ICL)) and shown == list(range(N - ICL, N))  # ICL never from an asked article
        questions = [row["question"] for row in data["knowmem"][f"{prefix}_qa"]]
        assert len(set(questions)) == len(questions)


def test_holdout_shares_no_article_person_or_organisation_with_training_text(data):
    seen = " ".join(row["text"] for split in MUSE_NEWS_SPLITS["train"] for row in data["train"][split])
    holdout = [row["text"] for row in data["raw"]["holdout"]]
    for text in holdout:
        names = set(ORG.findall(text)) | set(PERSON.findall(text))
        assert len(ORG.findall(text)) >= 1 and text not in seen
        assert not any(name in seen for name in names), names
    per_article = [set(ORG.findall(row["text"])) for split in muse_news._RAW_SPLITS for row in data["raw"][split]]
    assert all(len(orgs) == 1 for orgs in per_article) and len(set.union(*per_article)) == 4 * N


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+?", re.escape(template)))


def test_articles_are_varied_prose_that_must_be_memorised(data):
    """Every sentence template of every fact type is used, and two articles overlap far less than a copy."""
    texts = [row["text"] for split in muse_news._RAW_SPLITS for row in data["raw"][split]]
    sentences = [s for text in texts for s in re.split(r"(?<=[.!?]) (?=[A-Z\"])", text)]
    assert len(sentences) == len(texts) * SIZES["sentences_per_article"]
    templates = [t for ts in muse_news._FACTS.values() for t in ts]
    assert all(any(_pattern(t).fullmatch(s) for t in templates) for s in sentences)
    for fact, fact_templates in muse_news._FACTS.items():
        assert all(any(_pattern(t).fullmatch(s) for s in sentences) for t in fact_templates), fact
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    gts = [row["gt"] for row in data["verbmem"]["forget"]]
    cross = [scorer.score(a, b)["rougeL"].fmeasure for a, b in itertools.combinations(gts, 2)]
    assert statistics.mean(cross) < 0.35 and max(cross) < 0.7


def test_same_arguments_are_byte_identical_and_another_seed_differs(repo, tmp_path):
    again = generate_muse_news(tmp_path / "again", **SIZES)
    other = generate_muse_news(tmp_path / "other", **{**SIZES, "seed": 1})
    files = sorted(str(path.relative_to(repo)) for path in repo.rglob("*") if path.is_file())
    assert files == sorted(str(path.relative_to(again)) for path in again.rglob("*") if path.is_file())
    assert all((repo / name).read_bytes() == (again / name).read_bytes() for name in files)
    forget = "raw/forget-00000-of-00001.parquet"
    assert (repo / forget).read_bytes() != (other / forget).read_bytes()
    assert muse_news_sources(**SIZES) == muse_news_sources(**SIZES)


def test_sizes_scale_the_corpus(tmp_path):
    repo = generate_muse_news(tmp_path / "m", articles_per_split=2, sentences_per_article=10, qa_per_article=10, n_icl=1)
    forget = load_muse_news(str(repo), "raw", "forget", cache_dir=tmp_path / "cache")["text"]
    qa = load_muse_news(str(repo), "knowmem", "forget_qa", cache_dir=tmp_path / "cache")
    assert len(forget) == 2 and qa.num_rows == 10
    assert all(len(re.findall(r"[.!?](?= |$)", text)) == 10 for text in forget)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(articles_per_split=3, n_icl=3), "articles_per_split"),
        (dict(articles_per_split=1000), "articles_per_split"),
        (dict(n_icl=0), "n_icl"),
        (dict(sentences_per_article=1), "sentences_per_article"),
        (dict(sentences_per_article=11), "sentences_per_article"),
        (dict(sentences_per_article=4, qa_per_article=5), "qa_per_article"),
    ],
)
def test_bad_sizes_are_refused(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        generate_muse_news(tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


def test_load_eval_splits(repo, data, tmp_path):
    splits = load_eval_splits(str(repo), cache_dir=tmp_path)
    assert list(splits) == list(EVAL_SPLITS)
    assert all(splits[name].to_list() == data[config][split] for name, (config, split) in EVAL_SPLITS.items())


# ---------------------------------------------------------------- the hand-written fixture and the loader's errors


def test_hand_written_fixture_loads_as_written(tmp_path):
    assert hub_configs(FIXTURE) == ("knowmem", "privleak", "raw", "verbmem")
    load = lambda config, split: load_muse_news(str(FIXTURE), config, split, cache_dir=tmp_path).to_list()  # noqa: E731
    forget = [row["text"] for row in load("raw", "forget")]
    assert len(forget) == 3 and forget[0].startswith("Corvin Rail Trust approved plans")
    assert [row["prompt"] + " " + row["gt"] for row in load("verbmem", "forget")] == forget[:2]
    assert [row["text"] for row in load("privleak", "forget")] == forget[:2]
    assert load("privleak", "holdout") == load("raw", "holdout") and len(load("raw", "holdout")) == 2
    qa, icl = load("knowmem", "forget_qa"), load("knowmem", "forget_qa_icl")
    assert [row["answer"] for row in qa] == ["£14.5 million", "Ada Penhaligon"]
    assert all(row["answer"] in article for row, article in zip(qa, forget))
    assert icl == [
        {"question": "Where is Greywell Heritage Trust's covered market to be built?", "answer": "Highcombe Down"}
    ]
    assert icl[0]["answer"] in forget[2]


@pytest.mark.parametrize(
    "config, split, match",
    [
        ("scal", "forget_1", r"valid configs: \['knowmem', 'privleak', 'raw', 'train', 'verbmem'\]"),
        ("knowmem", "retain2_qa", r"valid splits: \['retain_qa_icl', 'retain_qa', 'forget_qa', 'forget_qa_icl'\]"),
        ("raw", "retain", r"valid splits: \['forget', 'retain1', 'retain2', 'holdout'\]"),
    ],
)
def test_unknown_config_or_split_names_the_valid_ones(config, split, match):
    with pytest.raises(ValueError, match=match):
        load_muse_news(str(FIXTURE), config, split)


def test_a_local_copy_without_the_config_or_split_says_what_it_has(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown config 'train'.*'verbmem'"):
        load_muse_news(str(FIXTURE), "train", "forget", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"retain2.*(forget|holdout)"):
        load_muse_news(str(FIXTURE), "raw", "retain2", cache_dir=tmp_path)


@pytest.mark.parametrize(
    "config, split, rows, match",
    [
        ("raw", "forget", [{"text": "An article."}, {"text": "  "}], r"Row 1 of MUSE-News raw/forget .* empty 'text'"),
        ("knowmem", "forget_qa", [{"question": "Who?", "answer": ""}], r"Row 0 .* empty 'answer'"),
        ("knowmem", "retain_qa", [{"question": "Who?", "answer": None}], r"Row 0 .* empty 'answer'"),
        ("verbmem", "forget", [{"prompt": "The start", "gt": None}], r"Row 0 of MUSE-News verbmem/forget .* empty 'gt'"),
        ("verbmem", "forget", [{"prompt": "The start"}], r"lacks the column\(s\) \['gt'\]"),
    ],
)
def test_bad_rows_are_refused_with_their_place(config, split, rows, match, tmp_path):
    repo = write_parquet_repo(tmp_path / "bad", {config: {split: rows}})
    with pytest.raises(ValueError, match=match):
        load_muse_news(str(repo), config, split, cache_dir=tmp_path / "cache")


def test_hub_id_offline_raises_data_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataUnavailableError, match="muse-bench/MUSE-News"):
        load_muse_news(muse_news.HUB_ID, "knowmem", "forget_qa", cache_dir=tmp_path)
