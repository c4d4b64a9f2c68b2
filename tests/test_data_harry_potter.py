"""Harry Potter data: passages and prompts, the three source forms, the saga and WikiText generators."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from sga.data.harry_potter import (
    INSTRUCTIONS,
    MUSE_DIR,
    SOUL_DIR,
    completion_rows,
    generate_harry_potter,
    load_hp_completions,
    load_hp_passages,
    saga_books,
    soul_prompt_lengths,
    split_passages,
)
from sga.data.hub import hub_configs, load_hub_dataset
from sga.data.wikitext import generate_wikitext, load_wikitext, wikitext_documents

FIXTURES = Path(__file__).parent / "fixtures" / "harry_potter"
MUSE, SOUL = FIXTURES / "muse_books", FIXTURES / "soul"
# The fixture books cut into passages of 12 words, in book order (each book's tail is dropped).
PASSAGES = [
    "The ferry left Grellan Quay at dawn with seven passengers and a",
    "crate of singing glass. Nobody aboard knew the crate hummed a warning,",
    "except the cook, who had heard that tune once before, on the",
    "Mira Tolland kept bees on the roof of the mapmakers' guild. Every",
    "spring the bees drew a new street plan in wax, and every",
]
TRAIN, TEST = PASSAGES[0::2], PASSAGES[1::2]
SIZES = dict(n_books=2, passages_per_book=4, words_per_passage=40, prompt_lengths=(10, 25))


@pytest.fixture(scope="module")
def saga(tmp_path_factory) -> Path:
    return generate_harry_potter(tmp_path_factory.mktemp("hp") / "saga", **SIZES)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- passages and prompts

def test_split_passages_cuts_exact_word_counts_and_drops_the_tail():
    assert split_passages("a b\nc  d\te f g", 3) == ["a b c", "d e f"]
    assert split_passages("a b", 3) == [] and split_passages("", 1) == []
    with pytest.raises(ValueError, match="words_per_passage"):
        split_passages("a b", 0)


def test_completion_rows_one_per_instruction_with_exact_split():
    rows = completion_rows(["w1 w2 w3 w4 w5", "v1 v2 v3"], 2)
    assert len(INSTRUCTIONS) == 6 and len(set(INSTRUCTIONS)) == 6
    assert rows[:6] == [{"prompt": f"{instruction}\nw1 w2", "response": "w3 w4 w5"} for instruction in INSTRUCTIONS]
    assert rows[6:] == [{"prompt": f"{instruction}\nv1 v2", "response": "v3"} for instruction in INSTRUCTIONS]


@pytest.mark.parametrize("k, match", [(3, "Passage 1 has 3 words, no more than the prompt length 3"), (0, "least 1")])
def test_completion_rows_refuses_a_prompt_as_long_as_the_passage(k, match):
    with pytest.raises(ValueError, match=match):
        completion_rows(["w1 w2 w3 w4", "v1 v2 v3"], k)


# ---------------------------------------------------------------- the three source forms, on the fixtures

def test_muse_fixture_passages_alternate_between_the_splits(tmp_path):
    assert hub_configs(MUSE) == ("raw",)
    assert load_hp_passages(str(MUSE), "train", words_per_passage=12, cache_dir=tmp_path) == TRAIN
    assert load_hp_passages(str(MUSE), "test", words_per_passage=12, cache_dir=tmp_path) == TEST
    rows = load_hp_completions(str(MUSE), 5, "test", words_per_passage=12, cache_dir=tmp_path)
    assert rows == completion_rows(TEST, 5) and len(rows) == 12
    assert rows[0] == {
        "prompt": f"{INSTRUCTIONS[0]}\ncrate of singing glass. Nobody",
        "response": "aboard knew the crate hummed a warning,",
    }


def test_soul_fixture_is_read_as_written_and_gives_the_same_passages():
    assert soul_prompt_lengths(SOUL, "train") == (5, 8) and soul_prompt_lengths(SOUL, "test") == (5,)
    rows = load_hp_completions(SOUL, 8, "train")
    assert rows == [json.loads(line) for line in (SOUL / "hp_train_qa_8.jsonl").read_text().splitlines()]
    assert rows[0] == {
        "prompt": "Please continue this text: The ferry left Grellan Quay at dawn with",
        "response": "seven passengers and a",
    }
    # the instructions are not ours: passages come back from the prompt's last k words plus the response
    assert load_hp_passages(SOUL, "train") == TRAIN and load_hp_passages(str(SOUL), "test") == TEST


def test_soul_folder_refuses_an_unavailable_prompt_length():
    with pytest.raises(ValueError, match=r"prompt lengths available for 'test' are \[5\]"):
        load_hp_completions(SOUL, 8, "test")


def test_txt_file_is_one_text(tmp_path):
    book = load_hub_dataset(str(MUSE), "raw", split="forget", cache_dir=tmp_path / "cache")["text"][1]
    (tmp_path / "book.txt").write_text(book, encoding="utf-8")
    assert load_hp_passages(tmp_path / "book.txt", "train", words_per_passage=12) == [PASSAGES[3]]
    assert load_hp_passages(str(tmp_path / "book.txt"), "test", words_per_passage=12) == [PASSAGES[4]]
    rows = load_hp_completions(tmp_path / "book.txt", 11, "train", words_per_passage=12)
    assert [row["response"] for row in rows] == ["Every"] * 6


@pytest.mark.parametrize(
    "source, kwargs, error, match",
    [
        ("missing/book.txt", {}, FileNotFoundError, "No such file or folder"),
        ("./no_such_folder", {}, FileNotFoundError, "No such file or folder"),
        ("empty.txt", {"words_per_passage": 5}, ValueError, "no text"),
        ("short.txt", {"words_per_passage": 5, "split": "test"}, ValueError, "none for the 'test' split"),
        ("book.txt", {}, ValueError, "pass words_per_passage"),
        ("book.txt", {"words_per_passage": 4}, ValueError, "no more than the prompt length 4"),
        ("book.json", {"words_per_passage": 5}, ValueError, "not a .txt"),
        ("folder", {"words_per_passage": 5}, ValueError, "neither hp_"),
        ("book.txt", {"words_per_passage": 5, "split": "validation"}, ValueError, "Unknown Harry Potter split"),
    ],
)
def test_clear_errors(source, kwargs, error, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "short.txt").write_text("one two three four five six")  # one passage of 5: nothing for test
    (tmp_path / "book.txt").write_text(" ".join(f"w{i}" for i in range(20)))
    (tmp_path / "book.json").write_text("{}")
    (tmp_path / "folder").mkdir()
    with pytest.raises(error, match=match):
        load_hp_completions(source, 4, **kwargs)


# ---------------------------------------------------------------- the generated saga

def test_saga_files_and_sizes(saga):
    soul = saga / SOUL_DIR
    assert sorted(p.name for p in soul.iterdir()) == [
        "hp_test_qa_10.jsonl", "hp_test_qa_25.jsonl", "hp_train_qa_10.jsonl", "hp_train_qa_25.jsonl"
    ]  # fmt: skip
    for path in soul.iterdir():
        k = int(path.stem.rsplit("_", 1)[1])
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == 4 * 6 and all(list(row) == ["prompt", "response"] for row in rows)
        for index, row in enumerate(rows):
            instruction, head = row["prompt"].split("\n")
            assert instruction == INSTRUCTIONS[index % 6]
            assert len(head.split()) == k and len(row["response"].split()) == 40 - k
    books = load_hub_dataset(str(saga / MUSE_DIR), "raw", split="forget")["text"]
    assert [len(book.split()) for book in books] == [160, 160]
    assert books[0].startswith("Book One: ") and books[1].startswith("Book Two: ") and "\n\nChapter 1: " in books[0]


def test_both_forms_load_to_the_same_rows_and_prompt_plus_response_is_the_passage(saga):
    for split in ("train", "test"):
        passages = load_hp_passages(saga / MUSE_DIR, split, words_per_passage=40)
        assert load_hp_passages(saga / SOUL_DIR, split) == passages and len(passages) == 4
        for k in (10, 25):
            rows = load_hp_completions(saga / SOUL_DIR, k, split)
            assert rows == load_hp_completions(saga / MUSE_DIR, k, split, words_per_passage=40)
            rebuilt = [row["prompt"].split("\n", 1)[1] + " " + row["response"] for row in rows]
            assert rebuilt == [p for p in passages for _ in range(6)]
    books = load_hub_dataset(str(saga / MUSE_DIR), "raw", split="forget")["text"]
    every = load_hp_passages(saga / MUSE_DIR, "train", 40) + load_hp_passages(saga / MUSE_DIR, "test", 40)
    assert sorted(every) == sorted(" ".join(book.split()[i : i + 40]) for book in books for i in range(0, 160, 40))


def test_same_seed_is_byte_identical_and_another_seed_differs(saga, tmp_path):
    again = generate_harry_potter(tmp_path / "again", **SIZES)
    other = generate_harry_potter(tmp_path / "other", seed=1, **SIZES)
    assert _files(again) == _files(saga) and len(_files(saga)) == 6
    name = f"{SOUL_DIR}/hp_train_qa_10.jsonl"
    assert (other / name).read_bytes() != (saga / name).read_bytes()
    regenerated = generate_harry_potter(tmp_path / "again", **{**SIZES, "prompt_lengths": (5,)})
    assert sorted(p.name for p in (regenerated / SOUL_DIR).iterdir()) == ["hp_test_qa_5.jsonl", "hp_train_qa_5.jsonl"]


def test_prose_is_varied_and_its_facts_recur_consistently():
    text = "\n\n".join(saga_books(n_books=3, words_per_book=3000, seed=0))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|(?<=[.!?]')\s+", text) if len(s.split()) > 3]
    assert len(set(sentences)) / len(sentences) > 0.8  # few sentences twice: the text has to be memorised
    words = text.split()
    eight = Counter(tuple(words[i : i + 8]) for i in range(len(words) - 7))
    assert len(eight) / sum(eight.values()) > 0.6
    facts = {
        "house": re.findall(r"(\w+ \w+), like everyone in (\w+),", text),
        "charm": re.findall(r"the (\w+) charm (.+?), and lifted", text),
        "teacher": re.findall(r"(Magister \w+ \w+), who taught ([\w ]+?) at", text),
    }
    for name, pairs in facts.items():
        seen = defaultdict(set)
        for key, value in pairs:
            seen[key].add(value)
        assert all(len(values) == 1 for values in seen.values()), (name, seen)  # one fact per key
        assert max(Counter(key for key, _ in pairs).values()) >= 3, name  # and it recurs


def test_saga_sizes_are_checked(tmp_path):
    with pytest.raises(ValueError, match="prompt_lengths"):
        generate_harry_potter(tmp_path / "a", words_per_passage=20, prompt_lengths=(10, 20))
    with pytest.raises(ValueError, match="at least one passage"):
        generate_harry_potter(tmp_path / "b", n_books=1, passages_per_book=1)
    with pytest.raises(ValueError, match="n_books"):
        saga_books(n_books=13)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---------------------------------------------------------------- WikiText stand-in

def test_wikitext_documents_join_rows_between_top_level_headings():
    rows = ["", " = Alpha = \n", "", " Lead text . \n", "", " = = History = = \n", "", " More\n",
            " Last line without newline", "", " = B = \n", "", " Body . \n", "", " = = = Deep = = = \n"]  # fmt: skip
    assert wikitext_documents(rows) == [
        " = Alpha = \n Lead text . \n = = History = = \n More\n Last line without newline\n",
        " = B = \n Body . \n = = = Deep = = = \n",
    ]
    assert wikitext_documents(["preamble\n", " = T = \n"]) == ["preamble\n", " = T = \n"]
    assert wikitext_documents(["", "  \n"]) == []


def test_generated_wikitext_has_the_hub_layout_and_loads_as_articles(tmp_path):
    repo = generate_wikitext(tmp_path / "wikitext", n_train=5, n_validation=2, n_test=3)
    assert hub_configs(repo) == ("wikitext-2-raw-v1",)
    assert sorted(p.name for p in (repo / "wikitext-2-raw-v1").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"
    ]  # fmt: skip
    rows = load_hub_dataset(str(repo), "wikitext-2-raw-v1", split="test", cache_dir=tmp_path / "cache")
    assert rows.column_names == ["text"] and "" in rows["text"]
    assert all(row == "" or row.endswith("\n") for row in rows["text"])
    docs = load_wikitext(str(repo), "test", cache_dir=tmp_path / "cache")
    assert len(docs) == 3 and all(re.match(r" = [^=].* = \n", doc) and " = = " in doc for doc in docs)
    assert docs == wikitext_documents(rows["text"])
    train = load_wikitext(str(repo), "train", cache_dir=tmp_path / "cache")
    assert len(train) == 5 and len({doc.splitlines()[0] for doc in train}) == 5
    saga_words = {"Magister", "charm", "wand", "Headmistress", "Headmaster"}
    assert not saga_words & set(" ".join(train + docs).split())
    again = generate_wikitext(tmp_path / "again", n_train=5, n_validation=2, n_test=3)
    assert _files(again) == _files(repo)
    other = generate_wikitext(tmp_path / "other", n_train=5, n_validation=2, n_test=3, seed=1)
    assert _files(other) != _files(repo)
    with pytest.raises(ValueError, match="Unknown WikiText split"):
        load_wikitext(str(repo), "dev")
