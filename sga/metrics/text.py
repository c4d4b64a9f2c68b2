"""Per-item text-overlap metrics shared by the benchmarks (ROUGE-L and sentence BLEU).

Thin wrappers over the reference libraries, so scores match the published numbers:
``rouge_score`` for ROUGE-L (TOFU and Harry Potter: recall with the Porter stemmer; MUSE: F1 without it)
and ``sacrebleu`` for per-sample BLEU (Harry Potter, 0-100 scale).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU


@lru_cache(maxsize=None)
def _rouge_l_scorer(use_stemmer: bool) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


@lru_cache(maxsize=1)
def _bleu() -> BLEU:
    # effective_order: what sacrebleu.sentence_bleu uses, so short sentences are not scored 0 by default.
    return BLEU(effective_order=True)


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences of strings, not a single string.")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; pass one reference per prediction.")


def _rouge_l(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool, field: str) -> np.ndarray:
    _check_pairs(predictions, references)
    scorer = _rouge_l_scorer(use_stemmer)
    # rouge_score takes (target, prediction): recall is measured against the reference.
    return np.array(
        [getattr(scorer.score(ref, pred)["rougeL"], field) for pred, ref in zip(predictions, references)],
        dtype=float,
    )


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = True) -> np.ndarray:
    """ROUGE-L recall of each prediction against its reference (0-1), shape [N]."""
    return _rouge_l(predictions, references, use_stemmer, "recall")


def rouge_l_f1(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = False) -> np.ndarray:
    """ROUGE-L F1 of each prediction against its reference (0-1), shape [N]."""
    return _rouge_l(predictions, references, use_stemmer, "fmeasure")


def sentence_bleu(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """sacrebleu sentence-level BLEU (0-100, effective order) of each prediction, shape [N]."""
    _check_pairs(predictions, references)
    bleu = _bleu()
    return np.array([bleu.sentence_score(pred, [ref]).score for pred, ref in zip(predictions, references)], dtype=float)
