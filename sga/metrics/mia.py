"""Membership-inference scores shared by the benchmarks: Min-K% Prob and the AUC of telling two sets apart.

Min-K% Prob (Shi et al., 2024): a text's score is minus the mean of its lowest ``k`` fraction of token
log-probabilities, so a HIGH score means the model finds the text UNLIKELY (it looks unseen).

AUC convention, muse_bench's (the official PrivLeak): forget texts are labelled 0 and holdout texts 1, and
they are ranked by minus the score, so AUC = P(a holdout text looks more likely to the model than a forget
text), ties counting one half. A model that memorised the forget texts gives an AUC near 0, one that never
saw them (the retrain model, if forget and holdout are alike) about 0.5. open-unlearning keeps the labels
but ranks by the score itself: its AUC' = 1 - AUC (1 when the forget texts are much more likely), and its
privleak turns both AUCs back into this convention before taking the relative difference.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from sga.inference import token_logprobs


def min_k_score(logprobs: Sequence[float] | np.ndarray, k: float = 0.4) -> float:
    """Min-K% score of one text from its token log-probabilities: -mean of the lowest ``int(n * k)`` of them.

    At least one token is kept (muse_bench's formula gives NaN when ``n * k < 1``; open-unlearning keeps one).
    """
    values = np.asarray(logprobs, dtype=float)
    if not 0 < k <= 1:
        raise ValueError(f"k is the fraction of lowest log-probabilities kept, in (0, 1]; got {k}.")
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"min_k_score needs a non-empty 1-D array of token log-probabilities; got shape {values.shape}.")
    n_kept = max(1, int(len(values) * k))  # the references' expression, float rounding included
    return float(-np.mean(np.sort(values)[:n_kept]))


def min_k_scores(
    model, tokenizer, texts: Sequence[str], k: float = 0.4, max_length: int = 4096, batch_size: int = 4
) -> np.ndarray:
    """Min-K% score of each text under ``model``, shape [N]; texts are cut to ``max_length`` tokens (BOS included).

    The log-probabilities are those of every token after BOS, as ``tokenizer.encode(text)`` feeds a Llama in
    muse_bench (which scores whole texts: keep ``max_length`` above the longest text to match it).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string.")
    logprobs = token_logprobs(model, tokenizer, list(texts), max_length=max_length, batch_size=batch_size)
    for text, values in zip(texts, logprobs):
        if values.size == 0:
            raise ValueError(f"Text {text[:40]!r} has no token after BOS to score; drop empty texts.")
    return np.array([min_k_score(values, k) for values in logprobs], dtype=float)


def mia_auc(forget_scores: Sequence[float] | np.ndarray, holdout_scores: Sequence[float] | np.ndarray) -> float:
    """muse_bench's AUC (module docstring): ``roc_auc_score`` with forget labelled 0, holdout 1, on -score.

    Equivalently the share of (forget, holdout) pairs whose holdout text scores lower, ties counting 1/2.
    """
    forget = np.asarray(forget_scores, dtype=float)
    holdout = np.asarray(holdout_scores, dtype=float)
    if forget.ndim != 1 or holdout.ndim != 1 or forget.size == 0 or holdout.size == 0:
        raise ValueError(
            f"mia_auc needs two non-empty 1-D arrays of scores; got shapes {forget.shape} and {holdout.shape}."
        )
    scores = np.concatenate([forget, holdout])
    if not np.all(np.isfinite(scores)):
        raise ValueError("mia_auc got a NaN or infinite score; check the texts that were scored.")
    labels = np.concatenate([np.zeros(forget.size, dtype=int), np.ones(holdout.size, dtype=int)])
    return float(roc_auc_score(labels, -scores))
