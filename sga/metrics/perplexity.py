"""Perplexity of whole documents with rolling windows, as lm-eval's ``loglikelihood_rolling`` scores them.

A document is tokenised without special tokens and every token is predicted exactly once, in
consecutive windows of ``max_length`` predicted tokens (the last one shorter). The first window
predicts the first ``max_length`` tokens from the prefix token (BOS, or EOS for a tokenizer without
BOS) and the tokens before each; every later window's input is the ``max_length`` tokens that end just
before its last predicted token: a full window sees one token of the previous window, the last, shorter
one as much previous context as fits. This is lm-eval's ``get_rolling_token_windows(context_len=1)``
followed by ``make_disjoint_window``; the tests check the numbers against lm-eval's ``HFLM``.

Reported as token perplexity, exp(total NLL / scored tokens), and word perplexity, exp(total NLL /
whitespace words), the number lm-eval's ``wikitext`` task reports as ``word_perplexity`` (comparable
across tokenizers). lm-eval counts words as ``len(re.split(r"\\s+", doc))``, one more than
``len(doc.split())`` for each end of the document that is whitespace; here ``doc.split()`` is used.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from sga.inference import model_device
from sga.prompts import token_ids


def rolling_windows(token_ids: Sequence[int], prefix_id: int, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input ids, predicted ids) per window; the predicted ids are the targets of the input's LAST positions."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1 token, got {max_length}.")
    sequence = [prefix_id, *token_ids]  # sequence[i] is the input that predicts token_ids[i]
    windows = []
    for start in range(0, len(token_ids), max_length):
        end = min(start + max_length, len(token_ids))
        windows.append((sequence[max(0, end - max_length) : end], list(token_ids[start:end])))
    return windows


@torch.no_grad()
def rolling_loglikelihood(
    model: torch.nn.Module, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-likelihood of each text's tokens and the number of its tokens, both shape [N]."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string.")
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if prefix is None:
        raise ValueError("Rolling log-likelihood needs a tokenizer with a BOS or EOS token to put before the text.")
    windows: list[tuple[int, list[int], list[int]]] = []
    for index, text in enumerate(texts):
        ids = token_ids(tokenizer, text)
        if not ids:
            raise ValueError(f"Text {index} has no tokens; leave empty documents out.")
        windows += [(index, inputs, targets) for inputs, targets in rolling_windows(ids, prefix, max_length)]
    loglik = np.zeros(len(texts))
    n_tokens = np.zeros(len(texts), dtype=np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix  # masked, never scored
    was_training = model.training
    model.eval()
    device = model_device(model)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        width = max(len(inputs) for _, inputs, _ in chunk)
        input_ids = torch.tensor([inputs + [pad] * (width - len(inputs)) for _, inputs, _ in chunk], device=device)
        mask = torch.tensor([[1] * len(inputs) + [0] * (width - len(inputs)) for _, inputs, _ in chunk], device=device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        for row, (index, inputs, targets) in enumerate(chunk):
            scored = logits[row, len(inputs) - len(targets) : len(inputs)].float().log_softmax(dim=-1)
            target = torch.tensor(targets, device=device)[:, None]
            loglik[index] += scored.gather(-1, target).sum().item()
            n_tokens[index] += len(targets)
    model.train(was_training)
    return loglik, n_tokens


def perplexity(
    model: torch.nn.Module, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 8
) -> dict[str, Any]:
    """Token and word perplexity of whole documents (see the module docstring).

    Returns token_perplexity, word_perplexity, nll (summed over all documents), n_tokens, n_words and
    the per-document log-likelihoods.
    """
    if len(texts) == 0:
        raise ValueError("No documents to score.")
    loglik, n_tokens = rolling_loglikelihood(model, tokenizer, texts, max_length, batch_size)
    n_words = sum(len(text.split()) for text in texts)
    if n_words == 0:
        raise ValueError("The documents have no whitespace-separated words; word perplexity is undefined.")
    nll = -float(loglik.sum())
    return {
        "token_perplexity": math.exp(nll / int(n_tokens.sum())),
        "word_perplexity": math.exp(nll / n_words),
        "nll": nll,
        "n_tokens": int(n_tokens.sum()),
        "n_words": n_words,
        "document_loglikelihood": loglik.tolist(),
    }
