"""TOFU metrics: truth ratio, forget quality, model utility and the per-split evaluation.

Definitions follow open-unlearning (the maintained reference):
- losses are mean per-token NLLs of the answer tokens plus EOS; the normalised probability is exp(-loss);
- truth ratio TR = P_wrong / P_correct with P_wrong the *geometric* mean of the perturbed answers'
  probabilities, exp(-mean_j L_j) (TOFU's old training-time code used the arithmetic mean of P);
  "correct" is ``paraphrased_answer`` on forget/retain and ``answer`` on real authors / world facts;
- forget quality is the two-sided KS-test p-value between the unlearned and the retain model's
  forget-split truth ratios; model utility is the harmonic mean of 9 numbers (probability, ROUGE-L
  recall, truth-ratio score on retain, real authors and world facts).

``max_items`` keeps only the first items of a split: TOFU's original repository scored only the first
300 items of large splits, open-unlearning scores all (the default, ``None``).
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import scipy.stats
from scipy.special import logsumexp

from sga.inference import example_nll, generate
from sga.metrics.text import rouge_l_recall
from sga.prompts import qa_examples

SPLIT_KINDS: tuple[str, ...] = ("forget", "retain", "real_authors", "world_facts")
UTILITY_SPLITS: tuple[str, ...] = ("retain", "real_authors", "world_facts")
UTILITY_METRICS: tuple[str, ...] = ("probability", "rouge_l_recall", "truth_ratio_score")
UTILITY_NAMES: tuple[str, ...] = tuple(f"{split}_{metric}" for split in UTILITY_SPLITS for metric in UTILITY_METRICS)
_WITH_PARAPHRASE = ("forget", "retain")


def _check_kind(kind: str) -> None:
    if kind not in SPLIT_KINDS:
        raise ValueError(f"Unknown TOFU split kind {kind!r}; choose one of {list(SPLIT_KINDS)}.")


def _losses(correct_loss: Any, perturbed_loss: Any) -> tuple[np.ndarray, np.ndarray]:
    correct = np.asarray(correct_loss, dtype=float)
    perturbed = np.asarray(perturbed_loss, dtype=float)
    if correct.ndim != 1:
        raise ValueError(f"correct_loss must have shape [N]; got shape {correct.shape}.")
    if perturbed.ndim != 2 or perturbed.shape[0] != correct.shape[0] or perturbed.shape[1] == 0:
        raise ValueError(
            f"perturbed_loss must have shape [N, P] with N = {correct.shape[0]} (one row per item) and P >= 1; "
            f"got shape {perturbed.shape}."
        )
    return correct, perturbed


def normalised_probability(loss: Any) -> np.ndarray:
    """exp(-loss): the geometric-mean per-token probability of a sequence, elementwise."""
    return np.exp(-np.asarray(loss, dtype=float))


def truth_ratio(correct_loss: Any, perturbed_loss: Any) -> np.ndarray:
    """Per item P_wrong / P_correct, shape [N], from mean per-token losses [N] and [N, P].

    P_wrong = exp(-mean_j L_j) (geometric mean over the P perturbed answers), P_correct = exp(-L);
    computed in log space as exp(L - mean_j L_j).
    """
    correct, perturbed = _losses(correct_loss, perturbed_loss)
    return np.exp(correct - perturbed.mean(axis=1))


def truth_ratio_score(tr: Any, split_kind: str) -> float:
    """Split score from truth ratios: forget mean(min(TR, 1/TR)); retain/real/world mean(max(0, 1 - TR))."""
    _check_kind(split_kind)
    ratios = np.asarray(tr, dtype=float)
    if ratios.size == 0:
        raise ValueError("No truth ratios to score.")
    if split_kind == "forget":
        with np.errstate(divide="ignore"):
            return float(np.mean(np.minimum(ratios, 1.0 / ratios)))
    return float(np.mean(np.maximum(0.0, 1.0 - ratios)))


def relative_answer_probability(correct_loss: Any, perturbed_loss: Any) -> float:
    """Mean over items of P(a) / (P(a) + sum_j P(perturbed_j)) (real authors / world facts)."""
    correct, perturbed = _losses(correct_loss, perturbed_loss)
    log_all = np.concatenate([-correct[:, None], -perturbed], axis=1)
    return float(np.mean(np.exp(-correct - logsumexp(log_all, axis=1))))


def ks_test(tr_unlearned: Any, tr_retain: Any) -> tuple[float, float]:
    """(KS statistic D, two-sided p-value) between the unlearned and the retain model's forget-split truth ratios.

    With n items on each side, D takes the values j/n: one truth ratio more or less on one side of the
    retain model's moves D by 1/n.
    """
    unlearned = np.asarray(tr_unlearned, dtype=float)
    retain = np.asarray(tr_retain, dtype=float)
    if unlearned.ndim != 1 or retain.ndim != 1 or unlearned.size == 0 or retain.size == 0:
        raise ValueError(
            f"forget_quality needs two non-empty 1-D arrays of truth ratios; got shapes {unlearned.shape} and {retain.shape}."
        )
    result = scipy.stats.ks_2samp(unlearned, retain, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def forget_quality(tr_unlearned: Any, tr_retain: Any) -> float:
    """Two-sided KS-test p-value between the unlearned and the retain model's forget-split truth ratios."""
    return ks_test(tr_unlearned, tr_retain)[1]


def model_utility(values: Mapping[str, float] | Sequence[float]) -> float:
    """Harmonic mean of the 9 utility numbers (a mapping such as ``utility_components`` or a sequence).

    Any zero gives 0; negative or non-finite values are rejected.
    """
    numbers = np.asarray(list(values.values()) if isinstance(values, Mapping) else list(values), dtype=float)
    if numbers.shape != (len(UTILITY_NAMES),):
        raise ValueError(
            f"model_utility needs exactly {len(UTILITY_NAMES)} numbers ({', '.join(UTILITY_NAMES)}); got {numbers.size}."
        )
    if not np.all(np.isfinite(numbers)) or np.any(numbers < 0):
        raise ValueError(f"model_utility needs finite, non-negative numbers; got {numbers.tolist()}.")
    if np.any(numbers == 0):
        return 0.0
    return float(scipy.stats.hmean(numbers))


def _take_rows(rows: Iterable[Mapping[str, Any]], kind: str, max_items: int | None) -> list[Mapping[str, Any]]:
    if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be a positive int or None (all items); got {max_items!r}.")
    items = list(islice(rows, max_items))
    if not items:
        raise ValueError(f"The {kind} split has no rows.")
    needed = ["question", "answer", "perturbed_answer"] + (["paraphrased_answer"] if kind in _WITH_PARAPHRASE else [])
    missing = [field for field in needed if field not in items[0]]
    if missing:
        raise ValueError(f"{kind} rows lack the field(s) {missing}; TOFU {kind} rows carry {needed}.")
    counts = {len(row["perturbed_answer"]) for row in items}
    if len(counts) != 1 or 0 in counts or any(isinstance(row["perturbed_answer"], str) for row in items):
        raise ValueError(
            f"Every {kind} row needs a non-empty list of perturbed answers of one common length; got lengths {sorted(counts)}."
        )
    return items


def evaluate_split(
    model,
    tokenizer,
    rows: Iterable[Mapping[str, Any]],
    kind: str,
    template: str,
    gen_max_new_tokens: int = 200,
    batch_size: int = 16,
    max_length: int = 512,
    max_items: int | None = None,
    rouge_max_items: int | None = None,
) -> dict[str, Any]:
    """Score one TOFU split (a ``datasets.Dataset`` or list of dicts in the hub schema).

    Returns loss (mean over items of the answer's loss), probability (forget/retain: mean P(answer);
    real authors / world facts: mean relative probability against the perturbed answers),
    rouge_l_recall (greedy generation vs answer; over the first ``rouge_max_items`` items when set, the
    cheap reading along training), truth_ratio_score, truth_ratios (per item) and generations.
    """
    _check_kind(kind)
    items = _take_rows(rows, kind, max_items)
    questions = [row["question"] for row in items]
    answers = [row["answer"] for row in items]

    def nll(qs: Sequence[str], ans: Sequence[str]) -> np.ndarray:
        return example_nll(model, tokenizer, qa_examples(qs, ans), template, batch_size=batch_size, max_length=max_length)

    answer_loss = nll(questions, answers)
    n_perturbed = len(items[0]["perturbed_answer"])
    flat_perturbed = [p for row in items for p in row["perturbed_answer"]]
    perturbed_loss = nll([q for q in questions for _ in range(n_perturbed)], flat_perturbed).reshape(len(items), n_perturbed)

    if kind in _WITH_PARAPHRASE:
        correct_loss = nll(questions, [row["paraphrased_answer"] for row in items])
        probability = float(np.mean(normalised_probability(answer_loss)))
    else:
        correct_loss = answer_loss
        probability = relative_answer_probability(answer_loss, perturbed_loss)
    ratios = truth_ratio(correct_loss, perturbed_loss)

    scored = slice(None, rouge_max_items)
    generations = generate(model, tokenizer, questions[scored], template, max_new_tokens=gen_max_new_tokens, batch_size=batch_size)
    return {
        "loss": float(np.mean(answer_loss)),
        "probability": probability,
        "rouge_l_recall": float(np.mean(rouge_l_recall(generations, answers[scored]))),
        "truth_ratio_score": truth_ratio_score(ratios, kind),
        "truth_ratios": ratios.tolist(),
        "generations": generations,
    }


def evaluate_tofu(
    model,
    tokenizer,
    splits: Mapping[str, Iterable[Mapping[str, Any]]],
    template: str,
    retain_truth_ratios: Sequence[float] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Evaluate all four TOFU splits; ``kw`` goes to :func:`evaluate_split`.

    Returns one entry per split, ``utility_components`` (the 9 named numbers), ``model_utility``, and
    ``forget_quality`` (``None`` unless ``retain_truth_ratios``, the retain model's forget-split truth
    ratios, is given).
    """
    if set(splits) != set(SPLIT_KINDS):
        raise ValueError(f"splits must have exactly the keys {list(SPLIT_KINDS)}; got {sorted(splits)}.")
    result: dict[str, Any] = {
        kind: evaluate_split(model, tokenizer, splits[kind], kind, template, **kw) for kind in SPLIT_KINDS
    }
    components = {f"{s}_{m}": result[s][m] for s in UTILITY_SPLITS for m in UTILITY_METRICS}
    result["utility_components"] = components
    result["model_utility"] = model_utility(components)
    d, p = (None, None) if retain_truth_ratios is None else ks_test(result["forget"]["truth_ratios"], retain_truth_ratios)
    result["forget_quality"], result["forget_ks_d"] = p, d
    result["forget_items"] = len(result["forget"]["truth_ratios"])
    return result


def summary_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """The flat numbers of an :func:`evaluate_tofu` result for a results table."""
    return {
        "forget_quality": result["forget_quality"],
        "forget_ks_d": result["forget_ks_d"],
        "model_utility": result["model_utility"],
        "forget_rouge_l": result["forget"]["rouge_l_recall"],
        "retain_rouge_l": result["retain"]["rouge_l_recall"],
    }
