import datasets
import numpy as np
import pytest
import scipy.stats
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sga.inference import example_nll
from sga.prompts import qa_examples
from sga.metrics.tofu import (
    UTILITY_NAMES,
    evaluate_split,
    evaluate_tofu,
    forget_quality,
    model_utility,
    normalised_probability,
    relative_answer_probability,
    summary_row,
    truth_ratio,
    truth_ratio_score,
)

# ---------------------------------------------------------------- pure metrics


def test_truth_ratio_hand_computed():
    got = truth_ratio([0.5], [[1.0, 2.0, 3.0]])
    assert got.shape == (1,)
    assert got[0] == pytest.approx(np.exp(-2.0) / np.exp(-0.5))


def test_truth_ratio_uses_geometric_not_arithmetic_mean():
    correct, perturbed = np.array([0.0]), np.array([[1.0, 3.0]])
    geometric = np.exp(-2.0)
    arithmetic = (np.exp(-1.0) + np.exp(-3.0)) / 2
    got = truth_ratio(correct, perturbed)[0]
    assert got == pytest.approx(geometric)
    assert abs(got - arithmetic) > 0.01


def test_truth_ratio_is_stable_for_large_losses():
    # exp(-1000) underflows to 0, the log-space ratio does not
    assert truth_ratio([1000.0], [[1001.0, 1003.0]])[0] == pytest.approx(np.exp(-2.0))


@pytest.mark.parametrize(
    "correct, perturbed, match",
    [
        ([[0.5]], [[1.0]], r"shape \[N\]"),
        ([0.5], [1.0], r"shape \[N, P\]"),
        ([0.5, 0.2], [[1.0, 2.0]], r"N = 2"),
        ([0.5], np.zeros((1, 0)), "P >= 1"),
    ],
)
def test_truth_ratio_rejects_bad_shapes(correct, perturbed, match):
    with pytest.raises(ValueError, match=match):
        truth_ratio(correct, perturbed)


def test_truth_ratio_score_hand_computed():
    tr = [0.5, 2.0, 1.0]
    assert truth_ratio_score(tr, "forget") == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert truth_ratio_score([0.5, 2.0, 0.25], "retain") == pytest.approx((0.5 + 0.0 + 0.75) / 3)
    assert truth_ratio_score([0.5, 2.0, 0.25], "world_facts") == truth_ratio_score([0.5, 2.0, 0.25], "real_authors")
    assert truth_ratio_score([0.0], "forget") == 0.0
    with pytest.raises(ValueError, match="choose one of"):
        truth_ratio_score(tr, "holdout")


def test_normalised_and_relative_probability_hand_computed():
    np.testing.assert_allclose(normalised_probability([0.0, np.log(2.0)]), [1.0, 0.5])
    # P(a) = 1, perturbed 1/2 and 1/4 -> 1 / 1.75 ; second item P(a) = 1/2, perturbed 1/2 -> 1/2
    got = relative_answer_probability([0.0, np.log(2.0)], [[np.log(2.0), np.log(4.0)], [np.log(2.0), np.inf]])
    assert got == pytest.approx((4 / 7 + 1 / 2) / 2)


def test_forget_quality_extremes_and_parity_with_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.random(40), rng.random(30) * 1.5
    assert forget_quality(a, a) == pytest.approx(1.0)
    assert forget_quality(np.arange(50.0), np.arange(50.0) + 100) < 1e-20
    assert forget_quality(a, b) == pytest.approx(scipy.stats.ks_2samp(a, b).pvalue)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        forget_quality([], a)


def test_model_utility_is_the_harmonic_mean_of_nine():
    values = [0.9, 0.5, 0.3, 0.7, 0.2, 0.6, 0.8, 0.4, 0.55]
    expected = 9 / sum(1 / x for x in values)
    assert model_utility(values) == pytest.approx(expected)
    assert model_utility(dict(zip(UTILITY_NAMES, values))) == pytest.approx(expected)
    assert model_utility(values[:8] + [0.0]) == 0.0
    with pytest.raises(ValueError, match="exactly 9"):
        model_utility(values[:8])
    with pytest.raises(ValueError, match="non-negative"):
        model_utility(values[:8] + [-0.1])


# ---------------------------------------------------------------- evaluation on a tiny random model

CORPUS = [
    "Who wrote the novel about the silver river? The novel was written by Basil Mahfouz.",
    "Where was the author born? The author was born in a small town by the sea.",
    "What genre does she write in? She writes mystery and science fiction books.",
    "What is the capital of France? Paris is the capital of France.",
] * 4


def _rows(kind):
    n_pert = 5 if kind in ("forget", "retain") else 3
    rows = []
    for i, text in enumerate(CORPUS[:4]):
        question, answer = text.split("? ")
        row = {
            "question": question + "?",
            "answer": answer,
            "perturbed_answer": [f"{answer.split()[0]} wrong answer number {j} for {kind}" for j in range(n_pert)],
        }
        if kind in ("forget", "retain"):
            row["paraphrased_answer"] = f"In other words, {answer.lower()}"
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def tiny():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


KW = dict(gen_max_new_tokens=6, batch_size=3, max_length=64)


def _nll(model, tokenizer, questions, answers):
    return example_nll(model, tokenizer, qa_examples(questions, answers), "llama2_chat", batch_size=2, max_length=64)


def test_evaluate_split_forget_matches_independent_recomputation(tiny):
    model, tokenizer = tiny
    rows = _rows("forget")
    result = evaluate_split(model, tokenizer, rows, "forget", "llama2_chat", **KW)
    assert set(result) == {"loss", "probability", "rouge_l_recall", "truth_ratio_score", "truth_ratios", "generations"}
    assert len(result["truth_ratios"]) == len(result["generations"]) == len(rows)
    assert all(isinstance(g, str) for g in result["generations"])

    questions = [r["question"] for r in rows]
    answer_loss = _nll(model, tokenizer, questions, [r["answer"] for r in rows])
    para_loss = _nll(model, tokenizer, questions, [r["paraphrased_answer"] for r in rows])
    pert_loss = np.stack([_nll(model, tokenizer, [r["question"]] * 5, r["perturbed_answer"]) for r in rows])
    expected_tr = truth_ratio(para_loss, pert_loss)
    np.testing.assert_allclose(result["truth_ratios"], expected_tr, rtol=1e-5)
    assert result["loss"] == pytest.approx(answer_loss.mean(), rel=1e-5)
    assert result["probability"] == pytest.approx(np.exp(-answer_loss).mean(), rel=1e-5)
    assert result["truth_ratio_score"] == pytest.approx(np.mean(np.minimum(expected_tr, 1 / expected_tr)), rel=1e-5)
    # a random model over a vocabulary of ~300 is far from certain of anything
    assert 0 < result["probability"] < 0.5


def test_evaluate_split_real_authors_uses_answer_and_relative_probability(tiny):
    model, tokenizer = tiny
    rows = _rows("real_authors")
    result = evaluate_split(model, tokenizer, rows, "real_authors", "llama2_chat", **KW)
    questions = [r["question"] for r in rows]
    answer_loss = _nll(model, tokenizer, questions, [r["answer"] for r in rows])
    pert_loss = np.stack([_nll(model, tokenizer, [r["question"]] * 3, r["perturbed_answer"]) for r in rows])
    p_answer, p_pert = np.exp(-answer_loss), np.exp(-pert_loss)
    assert result["probability"] == pytest.approx(np.mean(p_answer / (p_answer + p_pert.sum(axis=1))), rel=1e-5)
    np.testing.assert_allclose(result["truth_ratios"], np.exp(-pert_loss.mean(axis=1)) / p_answer, rtol=1e-5)
    assert result["truth_ratio_score"] == pytest.approx(
        np.mean(np.maximum(0, 1 - np.asarray(result["truth_ratios"]))), rel=1e-6
    )


def test_evaluate_split_max_items_and_bad_rows(tiny):
    model, tokenizer = tiny
    rows = _rows("retain")
    full = evaluate_split(model, tokenizer, rows, "retain", "llama2_chat", **KW)
    first_two = evaluate_split(model, tokenizer, rows, "retain", "llama2_chat", max_items=2, **KW)
    np.testing.assert_allclose(first_two["truth_ratios"], full["truth_ratios"][:2], rtol=1e-5)
    assert first_two["generations"] == full["generations"][:2]
    as_dataset = evaluate_split(model, tokenizer, datasets.Dataset.from_list(rows), "retain", "llama2_chat", **KW)
    assert as_dataset == full

    with pytest.raises(ValueError, match="paraphrased_answer"):
        evaluate_split(model, tokenizer, _rows("world_facts"), "retain", "llama2_chat", **KW)
    uneven = _rows("world_facts")
    uneven[1]["perturbed_answer"] = uneven[1]["perturbed_answer"][:2]
    with pytest.raises(ValueError, match="one common length"):
        evaluate_split(model, tokenizer, uneven, "world_facts", "llama2_chat", **KW)
    with pytest.raises(ValueError, match="choose one of"):
        evaluate_split(model, tokenizer, rows, "holdout", "llama2_chat", **KW)
    with pytest.raises(ValueError, match="max_items"):
        evaluate_split(model, tokenizer, rows, "retain", "llama2_chat", max_items=0, **KW)


def test_evaluate_tofu_structure_utility_quality_and_determinism(tiny):
    model, tokenizer = tiny
    splits = {kind: _rows(kind) for kind in ("forget", "retain", "real_authors", "world_facts")}
    retain_tr = [0.5, 0.9, 1.2, 2.0]
    result = evaluate_tofu(model, tokenizer, splits, "llama2_chat", retain_truth_ratios=retain_tr, **KW)

    assert list(result["utility_components"]) == list(UTILITY_NAMES)
    assert result["utility_components"]["world_facts_rouge_l_recall"] == result["world_facts"]["rouge_l_recall"]
    assert result["model_utility"] == pytest.approx(scipy.stats.hmean(list(result["utility_components"].values())))
    assert result["forget_quality"] == pytest.approx(
        scipy.stats.ks_2samp(result["forget"]["truth_ratios"], retain_tr).pvalue
    )
    assert result["forget_ks_d"] == pytest.approx(scipy.stats.ks_2samp(result["forget"]["truth_ratios"], retain_tr).statistic)
    assert result["forget_items"] == len(result["forget"]["truth_ratios"])
    assert summary_row(result) == {
        "forget_quality": result["forget_quality"],
        "forget_ks_d": result["forget_ks_d"],
        "model_utility": result["model_utility"],
        "forget_rouge_l": result["forget"]["rouge_l_recall"],
        "retain_rouge_l": result["retain"]["rouge_l_recall"],
    }

    again = evaluate_tofu(model, tokenizer, splits, "llama2_chat", **KW)
    assert again["forget_quality"] is None
    for kind in splits:
        assert again[kind] == result[kind]

    with pytest.raises(ValueError, match="exactly the keys"):
        evaluate_tofu(model, tokenizer, {"forget": splits["forget"]}, "llama2_chat", **KW)


def test_evaluate_split_scores_generations_against_answer(tiny, monkeypatch):
    model, tokenizer = tiny
    rows = _rows("forget")
    # a model that answers the first two questions verbatim and the rest with half of the answer
    answers = [r["answer"] for r in rows]
    canned = answers[:2] + [" ".join(a.split()[: len(a.split()) // 2]) for a in answers[2:]]
    monkeypatch.setattr("sga.metrics.tofu.generate", lambda *args, **kwargs: canned)
    result = evaluate_split(model, tokenizer, rows, "forget", "llama2_chat", **KW)
    expected = [1.0, 1.0] + [(len(a.split()) // 2) / len(a.split()) for a in answers[2:]]
    assert result["rouge_l_recall"] == pytest.approx(np.mean(expected))
    assert result["generations"] == canned
