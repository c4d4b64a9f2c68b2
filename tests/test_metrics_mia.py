"""Min-K% scores and the membership-inference AUC against hand-worked values and the reference formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import auc, roc_auc_score, roc_curve

from conftest import make_tiny_llama
from sga.inference import token_logprobs
from sga.metrics.mia import mia_auc, min_k_score, min_k_scores

LOGPROBS = [-0.1, -2.0, -0.5, -3.0, -1.0]


@pytest.mark.parametrize(
    "k, expected",
    [
        (0.4, 2.5),  # int(5 * 0.4) = 2 lowest: -3.0 and -2.0
        (0.2, 3.0),  # the single lowest
        (0.6, 2.0),  # -3.0, -2.0, -1.0
        (1.0, 1.32),  # all five
    ],
)
def test_min_k_score_by_hand(k, expected):
    assert min_k_score(LOGPROBS, k) == pytest.approx(expected, abs=1e-12)
    assert min_k_score(np.array(LOGPROBS[::-1]), k) == pytest.approx(expected, abs=1e-12)  # order does not matter


def test_min_k_score_matches_muse_bench_formula():
    """muse_bench: -np.mean(np.sort(all_prob)[:int(len(all_prob) * ratio)]), for every length it defines."""
    rng = np.random.default_rng(0)
    for n in range(3, 60, 7):
        values = np.log(rng.uniform(1e-4, 1, size=n))
        for ratio in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
            if int(n * ratio) == 0:
                continue
            official = float(-np.mean(np.sort(values)[: int(len(values) * ratio)]))
            assert min_k_score(values, ratio) == official


def test_min_k_score_keeps_one_token_of_a_short_text_and_refuses_bad_input():
    assert min_k_score([-1.0, -2.0], 0.4) == 2.0  # int(0.8) = 0 would be NaN in muse_bench
    with pytest.raises(ValueError, match="k is the fraction"):
        min_k_score(LOGPROBS, 0.0)
    with pytest.raises(ValueError, match="k is the fraction"):
        min_k_score(LOGPROBS, 1.5)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        min_k_score([], 0.4)


@pytest.mark.parametrize(
    "forget, holdout, expected",
    [
        ([1.0, 2.0, 3.0], [2.5, 4.0, 5.0], 1 / 9),  # one of 9 pairs has the holdout text lower: (3.0, 2.5)
        ([1.0, 2.0, 3.0], [2.0, 4.0, 5.0], 1.5 / 9),  # one such pair (3.0, 2.0) and one tie (2.0, 2.0) at one half
        ([2.0, 2.0], [1.0, 2.0, 3.0], 3 / 6),  # pairs (2, 1) twice, ties (2, 2) twice at one half
        ([0.1, 0.2], [3.0, 4.0], 0.0),  # forget texts far more likely (memorised): AUC 0
        ([3.0, 4.0], [0.1, 0.2], 1.0),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.5),
    ],
)
def test_mia_auc_hand_worked(forget, holdout, expected):
    assert mia_auc(forget, holdout) == pytest.approx(expected, abs=1e-12)


def test_mia_auc_matches_muse_bench_sweep_pair_counting_and_open_unlearning():
    rng = np.random.default_rng(1)
    forget = rng.integers(0, 8, size=23).astype(float)  # integers: many ties
    holdout = rng.integers(2, 10, size=17).astype(float)
    ours = mia_auc(forget, holdout)
    # muse_bench privleak.sweep: roc_curve(y, -ppl) then auc(fpr, tpr), forget labelled 0, holdout 1
    ppl = np.concatenate([forget, holdout])
    y = np.array([0] * len(forget) + [1] * len(holdout))
    fpr, tpr, _ = roc_curve(y, -ppl)
    assert ours == pytest.approx(auc(fpr, tpr), abs=1e-12)
    pairs = [1.0 if h < f else 0.5 if h == f else 0.0 for f, h in itertools.product(forget, holdout)]
    assert ours == pytest.approx(np.mean(pairs), abs=1e-12)
    # open-unlearning mia_auc: same labels, ranked by the score itself
    assert roc_auc_score(y, ppl) == pytest.approx(1 - ours, abs=1e-12)


def test_mia_auc_refuses_empty_or_non_finite_scores():
    with pytest.raises(ValueError, match="non-empty"):
        mia_auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        mia_auc([1.0, float("nan")], [2.0])


def test_min_k_scores_on_a_tiny_llama(tiny_tokenizer):
    model = make_tiny_llama(tiny_tokenizer, seed=1)
    texts = ["Ana Brook was born in Lisbon.", "Tom Reed writes poetry.", "Paris is the capital of France.", "Lima"]
    scores = min_k_scores(model, tiny_tokenizer, texts, k=0.4, max_length=64, batch_size=4)
    logprobs = token_logprobs(model, tiny_tokenizer, texts, max_length=64, batch_size=2)
    assert scores.shape == (len(texts),)
    assert [len(lp) for lp in logprobs] == [len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    np.testing.assert_allclose(scores, [min_k_score(lp, 0.4) for lp in logprobs], rtol=1e-5)
    # a random model spreads its mass over the vocabulary: each kept token costs about log(V) or more
    assert np.all(scores > 0.5 * np.log(len(tiny_tokenizer))) and np.all(np.isfinite(scores))
    assert np.all(min_k_scores(model, tiny_tokenizer, texts, k=1.0, max_length=64) <= scores + 1e-6)
    with pytest.raises(TypeError, match="single string"):
        min_k_scores(model, tiny_tokenizer, "one text")
