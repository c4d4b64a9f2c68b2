"""Harry Potter metrics: verbatim leakage of book passages; utility is :mod:`sga.metrics.perplexity`.

Leakage as SOUL / FLAT's ``eval_leakage_rate`` measures it: each prompt (an instruction plus the first
k words of a passage) is completed greedily and the completion is scored against the passage's true
rest with sacrebleu per-sample BLEU (0-100) and ROUGE-L recall with the Porter stemmer (0-1), each
averaged over all rows (every passage counts once per instruction); lower is better after unlearning.

Choices against their public code (see benchmarks.md, "Harry Potter"):

- prompt format: ``template="soul"`` is their non-Llama input ("### Question: {prompt}\\n### Answer: "),
  ``"llama2_chat"`` their Llama one ("[INST] {prompt} [/INST]").
- length: they generate up to ``max_length=600`` tokens in total with left padding, so an item's room is
  600 minus the widest prompt of its batch: it changes with the batching, and a long prompt (k = 300)
  can leave less room than the true rest needs. Here every item gets the same ``max_new_tokens``; by
  default the token length of the longest true rest in the set, so each completion has room for its
  whole reference whatever the batch. Pass an int to fix it (e.g. 600 minus the prompt length).
- the whole completion is scored (FLAT's published script drops its first token; not copied).
- BLEU is :func:`sga.metrics.text.sentence_bleu` (effective order). It equals their
  ``corpus_bleu([hyp], [[ref]]).score`` whenever the completion has at least 4 tokens; for shorter ones
  theirs is ~0 whatever the overlap, ours scores the n-gram orders that exist.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Mapping

import numpy as np

from sga.inference import generate
from sga.metrics.text import rouge_l_recall, sentence_bleu
from sga.prompts import token_ids

# the collapse rule, fixed before any run: a run is collapsed if it diverged, or if its word perplexity on the
# held-out general text is not finite or above this multiple of the reference model's
COLLAPSE_FACTOR = 10.0


def completion_leakage(
    model,
    tokenizer,
    rows: Iterable[Mapping[str, str]],
    template: str = "soul",
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    max_items: int | None = None,
) -> dict[str, Any]:
    """Greedy completions of the ``prompt`` of each row, scored against its ``response``.

    ``rows``: ``{"prompt", "response"}`` mappings (e.g. :func:`sga.data.harry_potter.load_hp_completions`);
    ``max_items`` keeps only the first rows (``None``: all). Returns bleu and rouge_l_recall (means),
    their per-item values, the generations and the max_new_tokens used.
    """
    if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be a positive int or None (all rows); got {max_items!r}.")
    items = list(islice(rows, max_items))
    if not items:
        raise ValueError("No rows to complete.")
    if not all(isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str) for row in items):
        raise ValueError("Every row needs string fields 'prompt' and 'response' (the SOUL / FLAT Harry Potter schema).")
    prompts = [row["prompt"] for row in items]
    references = [row["response"] for row in items]
    if max_new_tokens is None:
        max_new_tokens = max(len(token_ids(tokenizer, ref)) for ref in references)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    generations = generate(model, tokenizer, prompts, template, max_new_tokens=max_new_tokens, batch_size=batch_size)
    bleu = sentence_bleu(generations, references)
    rouge = rouge_l_recall(generations, references, use_stemmer=True)
    return {
        "bleu": float(np.mean(bleu)),
        "rouge_l_recall": float(np.mean(rouge)),
        "bleu_per_item": bleu.tolist(),
        "rouge_l_recall_per_item": rouge.tolist(),
        "generations": generations,
        "max_new_tokens": max_new_tokens,
    }
