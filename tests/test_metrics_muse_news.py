"""MUSE metrics: prompt construction, stop strings and cuts checked exactly through a scripted model, the
arithmetic and the bootstrap, and an end-to-end run on a tiny random Llama."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from conftest import make_tiny_llama
from sga.data.muse_news import EVAL_SPLITS, generate_muse_news, load_eval_splits, load_muse_news
from sga.metrics import muse_news as mn
from sga.metrics.mia import mia_auc

FIXTURE = Path(__file__).parent / "fixtures" / "muse_news_hub"
ICL = [{"question": "Who won?", "answer": "The mayor"}, {"question": "Where?", "answer": "Leeds"}]
FEW = dict(n_resamples=999, seed=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    sizes = dict(articles_per_split=4, sentences_per_article=4, qa_per_article=1, n_icl=1)
    repo = generate_muse_news(tmp_path_factory.mktemp("muse") / "mini", **sizes)
    return load_eval_splits(str(repo), cache_dir=tmp_path_factory.mktemp("cache")) | {
        "raw": load_muse_news(str(repo), "raw", "forget", cache_dir=tmp_path_factory.mktemp("cache2"))["text"]
    }


def _bpe(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    special = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


@pytest.fixture(scope="module")
def bpe(corpus) -> Tokenizer:
    qa = [f"Question: {row['question']}\nAnswer: {row['answer']}\n\n" for row in corpus["knowmem_forget_qa"]]
    return _bpe(list(corpus["raw"]) + qa)


@pytest.fixture(scope="module")
def tokenizer(bpe) -> PreTrainedTokenizerFast:
    return _wrap(bpe)


class ScriptedLM(torch.nn.Module):
    """Stands in for a causal LM in ``sga.inference.generate``: records each prompt it is given (decoded with
    its special tokens) and the max_new_tokens, and 'generates' ``reply(prompt)`` cut to max_new_tokens."""

    def __init__(self, tokenizer, reply: Callable[[str], str]):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.tokenizer, self.reply = tokenizer, reply
        self.prompts: list[str] = []
        self.max_new_tokens: list[int] = []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tokenizer.decode([i for i, m in zip(ids, mask) if m])
            self.prompts.append(prompt)
            rows.append(self.tokenizer(self.reply(prompt), add_special_tokens=False)["input_ids"][:max_new_tokens])
        self.max_new_tokens.append(max_new_tokens)
        width = max(len(row) for row in rows)
        new = [row + [self.tokenizer.eos_token_id] * (width - len(row)) for row in rows]
        return torch.cat([input_ids, torch.tensor(new, dtype=torch.long)], dim=1)


# ---------------------------------------------------------------- prompts, cuts and stop strings


def test_knowmem_prompt_is_exactly_muse_bench_s():
    assert mn.knowmem_prompt("When?", ICL) == (
        "Question: Who won?\nAnswer: The mayor\n\nQuestion: Where?\nAnswer: Leeds\n\nQuestion: When?\nAnswer: "
    )
    assert mn.knowmem_prompt("When?", []) == "Question: When?\nAnswer: "


def test_knowmem_prompts_reach_the_model_after_bos_and_replies_are_cut_at_each_stop_string(tokenizer):
    qa = [
        {"question": "Who runs the trust?", "answer": "Ada Penhaligon"},
        {"question": "How much?", "answer": "£14.5 million"},
        {"question": "When?", "answer": "winter 2029"},
        {"question": "What runs?", "answer": "the railway runs"},
    ]
    replies = {
        "Who runs the trust?": "Ada Penhaligon\n\nQuestion: Who else?\nAnswer: Bram",
        "How much?": "£14.5 million\nQuestion 2",
        "When?": "in winter Question: next",
        "What runs?": "The railway run",  # no stop string; "run" is not "runs" without a stemmer
    }
    model = ScriptedLM(tokenizer, lambda prompt: replies[prompt.rsplit("Question: ", 1)[1].split("\n")[0]])
    result = mn.evaluate_knowmem(model, tokenizer, qa, ICL, batch_size=3, **FEW)
    assert model.prompts == ["<s>" + mn.knowmem_prompt(row["question"], ICL) for row in qa]
    assert model.max_new_tokens == [32, 32]
    assert result["generations"] == ["Ada Penhaligon", "£14.5 million", "in winter", "The railway run"]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = [100 * scorer.score(row["answer"], gen)["rougeL"].fmeasure for row, gen in zip(qa, result["generations"])]
    assert result["scores"] == pytest.approx(expected, abs=1e-9)
    assert result["scores"] == pytest.approx([100.0, 100.0, 100 * 2 * (1 / 2 * 1 / 2) / 1, 100 * 2 / 3], abs=1e-9)
    assert result["score"] == pytest.approx(np.mean(expected), abs=1e-9)


def test_verbmem_reference_keeps_the_first_tokens_with_special_tokens_counted(bpe, tokenizer):
    gt = "Councillors voted 12 to 4 in favour of the plans. The extension is expected to cost £14.5 million."
    ids = tokenizer(gt, add_special_tokens=False)["input_ids"]
    assert len(ids) > 8
    assert mn.verbmem_reference(tokenizer, gt, 5) == tokenizer.decode(ids[:5])
    assert mn.verbmem_reference(tokenizer, gt, 128) == gt
    with_bos = copy.deepcopy(bpe)
    bos = [("<s>", bpe.token_to_id("<s>"))]
    with_bos.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=bos)
    llama_like = _wrap(with_bos)  # adds BOS with special tokens, as Llama's tokenizer does
    assert llama_like(gt)["input_ids"] == [llama_like.bos_token_id] + ids
    assert mn.verbmem_reference(llama_like, gt, 5) == tokenizer.decode(ids[:4])  # BOS takes one of the 5


def test_verbmem_generates_max_new_tokens_and_scores_against_the_equally_cut_gt(tokenizer):
    rows = [
        {"prompt": "Corvin Rail Trust approved plans.", "gt": "Councillors voted 12 to 4 for the plans. It will cost £14.5 million."},
        {"prompt": "Saltmarsh Water Board unveiled plans.", "gt": "Work is due to end by winter 2029, the chair said."},
    ]
    gts = {row["prompt"]: row["gt"] for row in rows}
    parrot = ScriptedLM(tokenizer, lambda prompt: gts[prompt.removeprefix("<s>")])  # continues with the true text
    full = mn.evaluate_verbmem(parrot, tokenizer, rows, **FEW)
    assert parrot.prompts == ["<s>" + row["prompt"] for row in rows] and parrot.max_new_tokens == [128]
    assert full["scores"] == [100.0, 100.0] and full["references"] == [row["gt"] for row in rows]
    short = mn.evaluate_verbmem(parrot, tokenizer, rows, max_new_tokens=5, **FEW)
    assert short["scores"] == [100.0, 100.0]  # 5 generated tokens against the gt's first 5 tokens
    assert short["references"] == [mn.verbmem_reference(tokenizer, row["gt"], 5) for row in rows]
    assert all(len(tokenizer(ref, add_special_tokens=False)["input_ids"]) == 5 for ref in short["references"])
    wrong = ScriptedLM(tokenizer, lambda prompt: "Councillors voted against the plans.")
    result = mn.evaluate_verbmem(wrong, tokenizer, rows, **FEW)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = [100 * scorer.score(row["gt"], "Councillors voted against the plans.")["rougeL"].fmeasure for row in rows]
    assert result["scores"] == pytest.approx(expected, abs=1e-9) and 0 < result["score"] < 60


def test_missing_fields_are_refused(tokenizer):
    model = ScriptedLM(tokenizer, lambda prompt: "")
    with pytest.raises(ValueError, match=r"lack the field\(s\) \['gt'\]"):
        mn.evaluate_verbmem(model, tokenizer, [{"prompt": "p"}])
    with pytest.raises(ValueError, match="knowmem ICL rows are empty"):
        mn.evaluate_knowmem(model, tokenizer, [{"question": "q", "answer": "a"}], [])


# ---------------------------------------------------------------- arithmetic and bootstrap


def test_privleak_arithmetic_and_published_constants():
    assert mn.privleak(0.25, 0.5) == -50.0
    assert mn.privleak(0.6, 0.4) == pytest.approx(50.0)
    assert mn.privleak(mn.AUC_RETRAIN_NEWS, mn.AUC_RETRAIN_NEWS) == 0.0
    assert mn.privleak(0.0, mn.AUC_RETRAIN_NEWS) == -100.0  # a fully memorised forget set
    assert mn.AUC_RETRAIN_NEWS == pytest.approx(0.47719999999999996, abs=1e-12)  # muse_bench constants.py
    assert mn.AUC_RETRAIN_BOOKS == pytest.approx(0.5392999999999999, abs=1e-12)
    with pytest.raises(ValueError, match="auc_retrain"):
        mn.privleak(0.3, 0.0)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(3).uniform(0, 1, size=40)
    first = mn.bootstrap_ci(values, n_resamples=2000, seed=7)
    assert first == mn.bootstrap_ci(values, n_resamples=2000, seed=7)
    assert first != mn.bootstrap_ci(values, n_resamples=2000, seed=8)
    assert first[0] < values.mean() < first[1]
    # normal theory: mean +- 1.96 sd / sqrt(n)
    half = 1.96 * values.std() / np.sqrt(values.size)
    assert first[0] == pytest.approx(values.mean() - half, abs=0.2 * half)
    assert first[1] == pytest.approx(values.mean() + half, abs=0.2 * half)
    assert mn.bootstrap_ci([0.3, 0.3, 0.3], n_resamples=100) == pytest.approx((0.3, 0.3))
    assert all(np.isnan(mn.bootstrap_ci([0.5])))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        mn.bootstrap_ci([])


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    intervals = [mn.bootstrap_ci(rng.uniform(0, 1, size=60), n_resamples=999, seed=i) for i in range(300)]
    hits = [low <= 0.5 <= high for low, high in intervals]
    assert 0.90 <= np.mean(hits) <= 0.99


# ---------------------------------------------------------------- end to end on a tiny random Llama


def test_each_metric_on_a_tiny_llama_over_the_hand_written_fixture(tokenizer, tmp_path):
    model = make_tiny_llama(tokenizer, seed=2)
    load = lambda config, split: load_muse_news(str(FIXTURE), config, split, cache_dir=tmp_path).to_list()  # noqa: E731
    verb = mn.evaluate_verbmem(model, tokenizer, load("verbmem", "forget"), batch_size=2, **FEW)
    qa, icl = load("knowmem", "forget_qa"), load("knowmem", "forget_qa_icl")
    know = mn.evaluate_knowmem(model, tokenizer, qa, icl, batch_size=2, **FEW)
    for result in (verb, know):
        assert len(result["scores"]) == len(result["generations"]) == 2
        assert all(0 <= s <= 100 for s in result["scores"]) and 0 <= result["score"] <= 100
        assert result["ci_low"] <= result["score"] <= result["ci_high"]
    assert verb["references"] == [row["gt"] for row in load("verbmem", "forget")]  # each gt is under 128 tokens
    assert not any(stop in g for g in know["generations"] for stop in mn.KNOWMEM_STOP_STRINGS)
    forget, holdout = [r["text"] for r in load("privleak", "forget")], [r["text"] for r in load("privleak", "holdout")]
    leak = mn.evaluate_privleak(model, tokenizer, forget, holdout, batch_size=3)
    assert len(leak["forget_scores"]) == 2 and len(leak["holdout_scores"]) == 2
    assert 0 <= leak["auc"] <= 1 and leak["auc"] == mia_auc(leak["forget_scores"], leak["holdout_scores"])
    assert min(leak["forget_scores"] + leak["holdout_scores"]) > 0


def test_evaluate_muse_news_end_to_end(corpus, tokenizer):
    model = make_tiny_llama(tokenizer, seed=4)
    splits = {name: corpus[name] for name in EVAL_SPLITS}
    short = dict(batch_size=4, verbmem_max_new_tokens=24, knowmem_max_new_tokens=8, **FEW)
    alone = mn.evaluate_muse_news(model, tokenizer, splits, **short)
    assert alone["privleak"]["privleak"] is None and alone["privleak"]["published_auc_retrain"] == mn.AUC_RETRAIN_NEWS
    auc = alone["privleak"]["auc"]
    assert len(alone["privleak"]["forget_scores"]) == 4 and 0 <= auc <= 1
    assert [len(alone[m]["scores"]) for m in ("verbmem_f", "knowmem_f", "knowmem_r")] == [4, 3, 3]
    compared = mn.evaluate_muse_news(model, tokenizer, splits, auc_retrain=0.5, **short)
    assert compared["privleak"]["privleak"] == pytest.approx((auc - 0.5) / 0.5 * 100)
    assert compared["verbmem_f"] == alone["verbmem_f"]  # greedy and seeded: the same numbers again
    row = mn.summary_row(compared)
    assert set(row) == {
        "verbmem_f", "verbmem_f_ci_low", "verbmem_f_ci_high", "knowmem_f", "knowmem_f_ci_low", "knowmem_f_ci_high",
        "knowmem_r", "knowmem_r_ci_low", "knowmem_r_ci_high", "privleak", "auc", "auc_retrain",
    }  # fmt: skip
    assert all(0 <= row[m] <= 100 for m in ("verbmem_f", "knowmem_f", "knowmem_r")) and row["auc_retrain"] == 0.5
    with pytest.raises(ValueError, match="exactly the keys"):
        mn.evaluate_muse_news(model, tokenizer, {k: v for k, v in splits.items() if k != "privleak_holdout"})
