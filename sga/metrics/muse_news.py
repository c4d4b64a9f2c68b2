"""MUSE metrics (News; VerbMem and PrivLeak serve Books as well) as muse_bench defines them, on a 0-100 scale.

- VerbMem on D_f: greedy continuation of ``prompt`` (``VERBMEM_MAX_NEW_TOKENS`` new tokens) against ``gt`` cut
  to its first as many tokens (tokenised WITH special tokens, as muse_bench does, so a Llama keeps BOS plus
  127 tokens of text), ROUGE-L F1 without stemmer; mean x100.
- KnowMem: the ICL pairs as ``"Question: {q}\\nAnswer: {a}\\n\\n"`` then ``"Question: {q}\\nAnswer: "``;
  greedy, ``KNOWMEM_MAX_NEW_TOKENS`` new tokens, cut at ``KNOWMEM_STOP_STRINGS``; ROUGE-L F1 against
  ``answer``; mean x100, on forget QA (lower is better) and retain QA (utility, higher is better).
- PrivLeak: Min-40% scores of the forget and holdout texts, their AUC in muse_bench's convention
  (``sga.metrics.mia``), and (AUC - AUC_retrain) / AUC_retrain x100, near 0 is good. AUC_retrain is the
  retrain model's AUC, computed by the caller with :func:`evaluate_privleak`; muse_bench's hard-coded
  values are kept as ``AUC_RETRAIN_NEWS`` / ``AUC_RETRAIN_BOOKS`` for display beside it.
- Beside each VerbMem/KnowMem mean: the 95% percentile bootstrap interval of the mean (scipy's
  ``bootstrap``, as muse_bench's logger reports it), seeded here.

Prompts use the ``"raw"`` template (BOS, then the text as is: muse_bench tokenises with special tokens).
Generation is batched with left padding where muse_bench generates one prompt at a time; ROUGE's own
tokeniser (lower case, alphanumeric runs) makes the decoding's whitespace and clean-up irrelevant.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import scipy.stats

from sga.data.muse_news import EVAL_SPLITS
from sga.inference import generate
from sga.metrics.mia import mia_auc, min_k_scores
from sga.metrics.text import rouge_l_f1
from sga.prompts import token_ids

TEMPLATE = "raw"
VERBMEM_MAX_NEW_TOKENS = 128
KNOWMEM_MAX_NEW_TOKENS = 32
KNOWMEM_STOP_STRINGS: tuple[str, ...] = ("\n\n", "\nQuestion", "Question:")
PRIVLEAK_K = 0.4
AUC_RETRAIN_NEWS = 0.4772  # muse_bench constants.py, forget_holdout_Min-40% of MUSE-News_retrain
AUC_RETRAIN_BOOKS = 0.5393  # likewise for MUSE-Books
N_RESAMPLES = 9999  # scipy.stats.bootstrap's default, which muse_bench uses
# the four headline metrics: key, name, which direction is better
METRICS = (("verbmem_f", "VerbMem on D_f", "lower"), ("knowmem_f", "KnowMem on D_f", "lower"),
           ("knowmem_r", "KnowMem on D_r", "higher"), ("privleak", "PrivLeak", "near 0"))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (``scipy.stats.bootstrap``), reproducible by seed.

    NaN, NaN for a single value (no interval to resample).
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-D array of values; got shape {data.shape}.")
    if data.size == 1:
        return float("nan"), float("nan")
    result = scipy.stats.bootstrap(
        (data,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _summary(scores: np.ndarray, n_resamples: int, seed: int) -> dict[str, Any]:
    """Mean and bootstrap interval of per-item scores in 0-1, all x100."""
    low, high = bootstrap_ci(scores, n_resamples=n_resamples, seed=seed)
    mean = float(np.mean(scores))
    return {"score": 100 * mean, "ci_low": 100 * low, "ci_high": 100 * high, "scores": (100 * scores).tolist()}


def _rows(rows: Iterable[Mapping[str, Any]], fields: Sequence[str], name: str) -> list[Mapping[str, Any]]:
    items = list(rows)
    if not items:
        raise ValueError(f"The {name} rows are empty.")
    missing = [field for field in fields if field not in items[0]]
    if missing:
        raise ValueError(f"The {name} rows lack the field(s) {missing}; they need {list(fields)}.")
    return items


def verbmem_reference(tokenizer, gt: str, max_tokens: int = VERBMEM_MAX_NEW_TOKENS) -> str:
    """``gt`` cut to its first ``max_tokens`` tokens, tokenised with special tokens and decoded without them."""
    ids = token_ids(tokenizer, gt, special_tokens=True)[:max_tokens]
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)


def knowmem_prompt(question: str, icl: Iterable[Mapping[str, str]]) -> str:
    """The few-shot prompt: each ICL pair as ``Question: q / Answer: a`` and a blank line, then the question."""
    shots = "".join(f"Question: {pair['question']}\nAnswer: {pair['answer']}\n\n" for pair in icl)
    return shots + f"Question: {question}\nAnswer: "


def verbmem_scores(
    model, tokenizer, rows: Iterable[Mapping[str, str]], max_new_tokens: int = VERBMEM_MAX_NEW_TOKENS, batch_size: int = 8
) -> tuple[np.ndarray, list[str], list[str]]:
    """Per-item ROUGE-L F1 (0-1) of the greedy continuations of ``verbmem/forget`` rows (prompt, gt) against their
    cut references, with the generations and the references."""
    items = _rows(rows, ("prompt", "gt"), "verbmem")
    prompts = [row["prompt"] for row in items]
    generations = generate(model, tokenizer, prompts, TEMPLATE, max_new_tokens=max_new_tokens, batch_size=batch_size)
    references = [verbmem_reference(tokenizer, row["gt"], max_new_tokens) for row in items]
    return rouge_l_f1(generations, references, use_stemmer=False), generations, references


def evaluate_verbmem(
    model,
    tokenizer,
    rows: Iterable[Mapping[str, str]],
    max_new_tokens: int = VERBMEM_MAX_NEW_TOKENS,
    batch_size: int = 8,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """VerbMem of ``verbmem/forget`` rows (prompt, gt): score (mean ROUGE-L F1 x100), ci_low, ci_high,
    per-item scores, generations and the cut references."""
    scores, generations, references = verbmem_scores(model, tokenizer, rows, max_new_tokens, batch_size)
    return {**_summary(scores, n_resamples, seed), "generations": generations, "references": references}


def evaluate_knowmem(
    model,
    tokenizer,
    qa_rows: Iterable[Mapping[str, str]],
    icl_rows: Iterable[Mapping[str, str]],
    max_new_tokens: int = KNOWMEM_MAX_NEW_TOKENS,
    batch_size: int = 8,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """KnowMem of QA rows with the ICL rows as few-shot examples: score (mean ROUGE-L F1 x100), ci_low,
    ci_high, per-item scores and generations (cut at the stop strings)."""
    items = _rows(qa_rows, ("question", "answer"), "knowmem QA")
    icl = _rows(icl_rows, ("question", "answer"), "knowmem ICL")
    prompts = [knowmem_prompt(row["question"], icl) for row in items]
    generations = generate(
        model, tokenizer, prompts, TEMPLATE, max_new_tokens=max_new_tokens, batch_size=batch_size,
        stop_strings=KNOWMEM_STOP_STRINGS,
    )  # fmt: skip
    scores = rouge_l_f1(generations, [row["answer"] for row in items], use_stemmer=False)
    return {**_summary(scores, n_resamples, seed), "generations": generations}


def privleak(auc: float, auc_retrain: float) -> float:
    """PrivLeak = (AUC - AUC_retrain) / AUC_retrain x100 (both AUCs in muse_bench's convention)."""
    if not 0 < auc_retrain <= 1:
        raise ValueError(f"auc_retrain must be in (0, 1]; got {auc_retrain}.")
    return (auc - auc_retrain) / auc_retrain * 100


def evaluate_privleak(
    model,
    tokenizer,
    forget_texts: Sequence[str],
    holdout_texts: Sequence[str],
    k: float = PRIVLEAK_K,
    max_length: int = 4096,
    batch_size: int = 4,
) -> dict[str, Any]:
    """The Min-K% membership attack of forget against holdout texts: auc, forget_scores, holdout_scores.

    Run it on the retrain model to get the ``auc_retrain`` that :func:`privleak` needs.
    """
    forget = min_k_scores(model, tokenizer, forget_texts, k=k, max_length=max_length, batch_size=batch_size)
    holdout = min_k_scores(model, tokenizer, holdout_texts, k=k, max_length=max_length, batch_size=batch_size)
    return {"auc": mia_auc(forget, holdout), "forget_scores": forget.tolist(), "holdout_scores": holdout.tolist()}


def evaluate_muse_news(
    model,
    tokenizer,
    splits: Mapping[str, Iterable[Mapping[str, str]]],
    auc_retrain: float | None = None,
    batch_size: int = 8,
    verbmem_max_new_tokens: int = VERBMEM_MAX_NEW_TOKENS,
    knowmem_max_new_tokens: int = KNOWMEM_MAX_NEW_TOKENS,
    k: float = PRIVLEAK_K,
    max_length: int = 4096,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """All MUSE-News metrics of one model; ``splits`` as ``sga.data.muse_news.load_eval_splits`` returns them.

    Returns verbmem_f, knowmem_f, knowmem_r (each with score and ci_low/ci_high) and privleak: the
    model's auc, the given auc_retrain, privleak (``None`` without auc_retrain) and the published constant.
    """
    if set(splits) != set(EVAL_SPLITS):
        raise ValueError(f"splits must have exactly the keys {list(EVAL_SPLITS)}; got {sorted(splits)}.")
    boot = dict(n_resamples=n_resamples, seed=seed)
    forget = [row["text"] for row in _rows(splits["privleak_forget"], ("text",), "privleak forget")]
    holdout = [row["text"] for row in _rows(splits["privleak_holdout"], ("text",), "privleak holdout")]
    attack = evaluate_privleak(model, tokenizer, forget, holdout, k=k, max_length=max_length, batch_size=batch_size)

    def knowmem(kind: str) -> dict[str, Any]:
        qa, icl = splits[f"knowmem_{kind}_qa"], splits[f"knowmem_{kind}_qa_icl"]
        return evaluate_knowmem(model, tokenizer, qa, icl, knowmem_max_new_tokens, batch_size, **boot)

    return {
        "verbmem_f": evaluate_verbmem(
            model, tokenizer, splits["verbmem_forget"], verbmem_max_new_tokens, batch_size, **boot
        ),
        "knowmem_f": knowmem("forget"),
        "knowmem_r": knowmem("retain"),
        "privleak": {
            **attack,
            "auc_retrain": auc_retrain,
            "privleak": None if auc_retrain is None else privleak(attack["auc"], auc_retrain),
            "published_auc_retrain": AUC_RETRAIN_NEWS,
        },
    }


def summary_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """The flat numbers of an :func:`evaluate_muse_news` result for a results table."""
    row: dict[str, Any] = {}
    for name in ("verbmem_f", "knowmem_f", "knowmem_r"):
        metric = result[name]
        row.update({name: metric["score"], f"{name}_ci_low": metric["ci_low"], f"{name}_ci_high": metric["ci_high"]})
    leak = result["privleak"]
    row.update({"privleak": leak["privleak"], "auc": leak["auc"], "auc_retrain": leak["auc_retrain"]})
    return row
