"""Harry Potter metrics: completion leakage (BLEU, ROUGE-L recall) and rolling perplexity, the latter
checked against lm-eval's HFLM.loglikelihood_rolling on a tiny random Llama."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu
import torch
from conftest import make_tiny_llama
from rouge_score import rouge_scorer

from sga.data.harry_potter import completion_rows
from sga.metrics.harry_potter import completion_leakage
from sga.metrics.perplexity import perplexity, rolling_loglikelihood, rolling_windows

DOCS = [
    "The ferry left Grellan Quay at dawn with seven passengers and a crate of singing glass . Nobody aboard knew the "
    "crate hummed a warning , except the cook , who had heard that tune once before , on the night the old "
    "lighthouse went dark . Mira Tolland kept bees on the roof of the mapmakers guild .",
    "Every spring the bees drew a new street plan in wax .",
    "dawn",
]
ROWS = [  # hand-made completions: what the scripted model answers is keyed by the prompt's marker word
    {"prompt": "Continue: alpha one two", "response": "the cat sat on the mat"},
    {"prompt": "Continue: beta one two", "response": "a dog ran in the park today"},
    {"prompt": "Continue: gamma one two", "response": "birds sing at dawn"},
]
SCRIPT = {"alpha": "the cat sat on the mat", "beta": "a dog ran", "gamma": "fish swim at night"}


def _tokenizer(bos: bool = True, adds_bos: bool = False):
    """A word-level tokenizer over the test texts (conftest's pattern); ``adds_bos``: its default encoding
    prepends BOS, as Llama's and OPT's do."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>"])
    texts = DOCS + [row["prompt"] + " " + row["response"] for row in ROWS] + list(SCRIPT.values())
    tok.train_from_iterator(texts + ["### Question: ### Answer: [INST] [/INST]"], trainer)
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>" if bos else None, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def tok():
    return _tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return make_tiny_llama(tok, seed=3)


class ScriptedLM(torch.nn.Module):
    """A stand-in for a causal LM: ``generate`` answers each prompt with the continuation scripted for the
    marker word it contains (cut at ``max_new_tokens``), and records what it was asked."""

    def __init__(self, tokenizer, script: dict[str, str]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # gives sga.inference.model_device a device
        self.tokenizer, self.script, self.calls = tokenizer, script, []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        new = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tokenizer.decode([i for i, m in zip(ids, mask) if m])
            self.calls.append((prompt, max_new_tokens))
            answer = next(text for marker, text in self.script.items() if marker in prompt.split())
            ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            new.append(ids[:max_new_tokens])
        width = max(map(len, new))
        padded = [row + [self.tokenizer.pad_token_id] * (width - len(row)) for row in new]
        return torch.cat([input_ids, torch.tensor(padded, dtype=input_ids.dtype)], dim=1)


# ---------------------------------------------------------------- completion leakage

def test_leakage_exact_values_on_scripted_completions(tok):
    lm = ScriptedLM(tok, SCRIPT)
    result = completion_leakage(lm, tok, ROWS, batch_size=2)
    assert result["generations"] == ["the cat sat on the mat", "a dog ran", "fish swim at night"]
    assert result["max_new_tokens"] == 7 and {n for _, n in lm.calls} == {7}  # the longest response, in tokens
    assert lm.calls[0][0] == "### Question : Continue : alpha one two ### Answer :"  # the SOUL format, no BOS
    assert result["rouge_l_recall_per_item"] == pytest.approx([1.0, 3 / 7, 1 / 4])
    # "a dog ran": every 1-, 2- and 3-gram matches, so effective-order BLEU is the brevity penalty alone
    bleu = result["bleu_per_item"]
    assert bleu[0] == pytest.approx(100.0) and bleu[1] == pytest.approx(100 * math.exp(1 - 7 / 3))
    # SOUL / FLAT score corpus_bleu([hyp], [[ref]]) per sample: the same for completions of >= 4 tokens ...
    assert bleu[2] == pytest.approx(sacrebleu.corpus_bleu(["fish swim at night"], [["birds sing at dawn"]]).score)
    assert 0 < bleu[2] < 100
    # ... while a 3-token completion gets ~0 there whatever it matches
    assert sacrebleu.corpus_bleu(["a dog ran"], [["a dog ran in the park today"]]).score < 1e-3
    assert result["bleu"] == pytest.approx(np.mean(bleu))
    assert result["rouge_l_recall"] == pytest.approx((1 + 3 / 7 + 1 / 4) / 3)


def test_leakage_length_template_and_subset_are_parameters(tok):
    lm = ScriptedLM(tok, SCRIPT)
    result = completion_leakage(lm, tok, ROWS, template="llama2_chat", max_new_tokens=2, max_items=2)
    assert result["generations"] == ["the cat", "a dog"] and len(lm.calls) == 2
    assert lm.calls[0] == ("<s> [ INST ] Continue : alpha one two [/ INST ]", 2)  # the Llama format, after BOS
    assert result["rouge_l_recall_per_item"] == pytest.approx([2 / 6, 2 / 7])


@pytest.mark.parametrize(
    "rows, kwargs, match",
    [
        ([], {}, "No rows"),
        ([{"prompt": "p"}], {}, "'prompt' and 'response'"),
        (ROWS, {"max_items": 0}, "max_items"),
        (ROWS, {"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_leakage_refuses_bad_input(rows, kwargs, match, tok):
    with pytest.raises(ValueError, match=match):
        completion_leakage(ScriptedLM(tok, SCRIPT), tok, rows, **kwargs)


def test_leakage_on_a_tiny_llama_matches_the_reference_libraries(tok, model):
    rows = completion_rows([DOCS[1], DOCS[0]], 5)
    result = completion_leakage(model, tok, rows, max_new_tokens=6, batch_size=4)
    gens = result["generations"]
    assert len(gens) == 12 and all(len(g.split()) <= 6 for g in gens)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    refs = [row["response"] for row in rows]
    expected_rouge = [scorer.score(r, g)["rougeL"].recall for g, r in zip(gens, refs)]
    assert result["rouge_l_recall_per_item"] == pytest.approx(expected_rouge)
    expected_bleu = [sacrebleu.sentence_bleu(g, [r]).score for g, r in zip(gens, refs)]
    assert result["bleu_per_item"] == pytest.approx(expected_bleu)


# ---------------------------------------------------------------- rolling perplexity

def test_rolling_windows_exact():
    tokens = [10, 11, 12, 13, 14, 15, 16]
    assert rolling_windows(tokens, 1, 3) == [
        ([1, 10, 11], [10, 11, 12]),
        ([12, 13, 14], [13, 14, 15]),  # a full window: one token of the previous one as context
        ([13, 14, 15], [16]),  # the last, short window: as much context as fits
    ]
    assert rolling_windows(tokens, 1, 10) == [([1, 10, 11, 12, 13, 14, 15], tokens)]
    with pytest.raises(ValueError, match="max_length"):
        rolling_windows(tokens, 1, 0)


def test_rolling_windows_equal_lm_evals():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    for n in range(1, 30):
        tokens = list(range(100, 100 + n))
        for max_length in (1, 2, 3, 5, 8, 29, 40):
            theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 7, max_length, context_len=1)]
            # lm-eval feeds (context + continuation)[:-1] to the model and scores the continuation
            assert rolling_windows(tokens, 7, max_length) == [((c + p)[:-1], p) for c, p in theirs]


@pytest.mark.parametrize("bos, adds_bos", [(True, True), (False, False)])
def test_loglikelihood_agrees_with_lm_eval_hflm(bos, adds_bos):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    tokenizer = _tokenizer(bos=bos, adds_bos=adds_bos)  # with BOS (the prefix) or without (EOS is)
    model = make_tiny_llama(tokenizer, seed=1)
    requests = [Instance("loglikelihood_rolling", {}, (doc,), idx) for idx, doc in enumerate(DOCS)]
    for max_length in (8, 64):
        # add_bos_token=False: lm-eval then encodes the text without special tokens, as we do (left at None,
        # lm-eval 0.4.13 uses the tokenizer's default and, for a tokenizer that adds BOS, scores it too)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, max_length=max_length, batch_size=3, add_bos_token=False)
        theirs = lm.loglikelihood_rolling(requests, disable_tqdm=True)
        ours, n_tokens = rolling_loglikelihood(model, tokenizer, DOCS, max_length=max_length, batch_size=3)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
        assert n_tokens.tolist() == [len(tokenizer(doc, add_special_tokens=False)["input_ids"]) for doc in DOCS]


def test_loglikelihood_with_full_context_is_one_plain_forward(tok, model):
    ids = tok(DOCS[0], add_special_tokens=False)["input_ids"]
    assert len(ids) < 64  # one window at max_length 64
    sequence = torch.tensor([[tok.bos_token_id, *ids]])
    with torch.no_grad():
        logp = model(input_ids=sequence).logits[0, :-1].log_softmax(-1)
    direct = logp.gather(-1, sequence[0, 1:, None]).sum().item()
    ours, _ = rolling_loglikelihood(model, tok, DOCS[:1], max_length=64)
    assert ours[0] == pytest.approx(direct, abs=1e-4)
    windowed, _ = rolling_loglikelihood(model, tok, DOCS[:1], max_length=8)
    assert abs(windowed[0] - direct) > 1e-3  # less context changes the score
    one_by_one, _ = rolling_loglikelihood(model, tok, DOCS, max_length=8, batch_size=1)
    batched, _ = rolling_loglikelihood(model, tok, DOCS, max_length=8, batch_size=16)
    np.testing.assert_allclose(one_by_one, batched, atol=1e-4)


def test_token_and_word_perplexity(tok, model):
    result = perplexity(model, tok, DOCS[1:], max_length=8)
    loglik, n_tokens = rolling_loglikelihood(model, tok, DOCS[1:], max_length=8)
    assert result["n_words"] == 12 + 1 and result["n_tokens"] == 12 + 1
    assert result["nll"] == pytest.approx(-loglik.sum())
    assert result["word_perplexity"] == pytest.approx(math.exp(-loglik.sum() / 13))
    assert result["token_perplexity"] == pytest.approx(math.exp(-loglik.sum() / n_tokens.sum()))
    assert result["document_loglikelihood"] == pytest.approx(loglik.tolist())
    words = perplexity(model, tok, ["Nobody aboard knew the crate hummed a warning ,"], max_length=8)
    assert words["n_words"] == 9 and words["n_tokens"] == 9


@pytest.mark.parametrize(
    "texts, error, match",
    [
        ([], ValueError, "No documents"),
        (["ok", ""], ValueError, "Text 1 has no tokens"),
        ("dawn", TypeError, "single string"),
    ],
)
def test_perplexity_refuses_bad_input(texts, error, match, tok, model):
    with pytest.raises(error, match=match):
        perplexity(model, tok, texts, max_length=8)
