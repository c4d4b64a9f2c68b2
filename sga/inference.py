"""Batched scoring and greedy generation, shared by every benchmark's metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from sga.prompts import IGNORE_INDEX, Example, collate, encode_examples, encode_prompt, token_ids


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def _label_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL of the next-token labels and the mask of the scored ones, both shape [B, T-1]."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    if bool((mask.sum(dim=1) == 0).any()):
        raise ValueError("A sequence has no label tokens to score; check its answer and max_length.")
    token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    return token_nll, mask


def label_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL of the label tokens of each sequence and their count, both shape [B].

    ``logits`` are the model's outputs for ``input_ids``; ``labels`` hold -100 where not scored.
    """
    token_nll, mask = _label_token_nll(logits, labels)
    return (token_nll * mask).sum(dim=1), mask.sum(dim=1)


def label_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean softmax probability of the label tokens of each sequence, shape [B] (masking as :func:`label_nll`).

    Each scored token's probability is exp(-its NLL); the mean runs over that sequence's scored tokens only.
    """
    token_nll, mask = _label_token_nll(logits, labels)
    return (torch.exp(-token_nll) * mask).sum(dim=1) / mask.sum(dim=1)


def sequence_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood of the label tokens of each sequence, shape [B].

    ``batch`` holds ``input_ids``, ``attention_mask`` and ``labels`` (-100 where not scored).
    This is the one place every loss and metric gets l(x) from.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    total, counts = label_nll(logits, batch["labels"])
    return total / counts


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of a collated batch moved to ``device``."""
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def example_nll(
    model: torch.nn.Module,
    tokenizer,
    examples: Sequence[Example],
    template: str,
    batch_size: int = 16,
    max_length: int = 512,
) -> np.ndarray:
    """Mean per-token NLL of the scored tokens of each example (a QA's answer plus EOS, a completion's
    continuation, a text's every token), shape [N]."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    out: list[np.ndarray] = []
    for start in range(0, len(examples), batch_size):
        feats = encode_examples(tokenizer, examples[start : start + batch_size], template, max_length)
        batch = to_device(collate(feats, tokenizer.pad_token_id), device)
        out.append(sequence_nll(model, batch).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer,
    questions: Sequence[str],
    template: str,
    max_new_tokens: int = 200,
    batch_size: int = 16,
    stop_strings: Sequence[str] = (),
) -> list[str]:
    """Greedy completions of each prompt (left padding, cut at EOS and at any of ``stop_strings``)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    texts: list[str] = []
    for start in range(0, len(questions), batch_size):
        feats = [{"input_ids": encode_prompt(tokenizer, q, template)} for q in questions[start : start + batch_size]]
        for f in feats:
            f["attention_mask"] = [1] * len(f["input_ids"])
            f["labels"] = f["input_ids"]
        batch = to_device(collate(feats, tokenizer.pad_token_id, padding_side="left"), device)
        generated = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        for row in new_tokens.tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            texts.append(_cut(tokenizer.decode(row, skip_special_tokens=True), stop_strings).strip())
    model.train(was_training)
    return texts


def _cut(text: str, stop_strings: Sequence[str]) -> str:
    for stop in stop_strings:
        pos = text.find(stop)
        if pos >= 0:
            text = text[:pos]
    return text


def _text_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int, device: torch.device, bos: bool):
    """Collated batches of raw texts (no template), each cut to ``max_length`` tokens; with ``bos`` a BOS first."""
    for start in range(0, len(texts), batch_size):
        feats = []
        for text in texts[start : start + batch_size]:
            ids = token_ids(tokenizer, text)[:max_length]
            if bos and tokenizer.bos_token_id is not None:
                ids = [tokenizer.bos_token_id] + ids[: max_length - 1]
            ids = ids or [tokenizer.eos_token_id]
            feats.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids})
        yield to_device(collate(feats, tokenizer.pad_token_id), device)


@torch.no_grad()
def token_logprobs(model: torch.nn.Module, tokenizer, texts: Sequence[str], max_length: int = 512, batch_size: int = 8) -> list[np.ndarray]:
    """Log-probability of every token after the first, per text (for membership-inference scores)."""
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    for batch in _text_batches(tokenizer, texts, max_length, batch_size, model_device(model), bos=True):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
        lengths = batch["attention_mask"].sum(dim=1) - 1
        out.extend(logp[i, : int(n)].cpu().numpy() for i, n in enumerate(lengths))
    model.train(was_training)
    return out


@torch.no_grad()
def mean_hidden_states(model: torch.nn.Module, tokenizer, texts: Sequence[str], max_length: int = 512, batch_size: int = 16) -> np.ndarray:
    """Each text's last-layer hidden states averaged over its tokens (padding excluded), shape [N, hidden].

    The offline text embedding of SGA's ``embedding`` normal-data source: the model's own representation.
    """
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    for batch in _text_batches(tokenizer, texts, max_length, batch_size, model_device(model), bos=False):
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True).hidden_states[-1]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * mask).sum(dim=1) / mask.sum(dim=1)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))


def sentence_embedder(source: str, batch_size: int = 32, max_length: int = 256) -> Callable[[Sequence[str]], np.ndarray]:
    """``embed(texts) -> [N, D]`` of a sentence-embedding model given by hub id or local path (SGA's
    ``embedding_model``): the model is loaded once, here, with ``AutoTokenizer`` / ``AutoModel``.

    A text's vector is the mean of the last hidden state over its real tokens (attention mask; the
    tokenizer's special tokens included, padding excluded), L2-normalised: the sentence-transformers
    convention (``Pooling(pooling_mode_mean_tokens=True)`` then ``Normalize``) of models such as
    ``sentence-transformers/all-MiniLM-L6-v2``. Texts are cut at ``max_length`` tokens, or at the model's
    own limit if lower (its ``max_position_embeddings``, the tokenizer's ``model_max_length``, and the
    ``max_seq_length`` of a sentence-transformers ``sentence_bert_config.json``, 256 for all-MiniLM-L6-v2).
    A hub id that cannot be reached (offline, or not downloaded) fails here with an error naming it.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import cached_file

    from sga.models import _resolve

    resolved = _resolve(source)  # a path-like source that does not exist: FileNotFoundError
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = AutoModel.from_pretrained(resolved, dtype=torch.float32)
        st_config = cached_file(resolved, "sentence_bert_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError as error:
        if Path(resolved).exists():
            raise
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") else ""
        raise OSError(
            f"Could not load the sentence-embedding model {source!r} (embedding_model) from the Hugging Face hub or its "
            f"local cache{offline}: {error}\nDownload it where the hub is reachable (e.g. `hf download {source}`), or "
            "pass a local directory written by save_pretrained (a copy of the hub repository); embedding_model=None "
            "uses the start model's own hidden states."
        ) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    limits = [max_length, getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    if st_config:
        limits.append(json.loads(Path(st_config).read_text()).get("max_seq_length"))
    max_length = min(int(n) for n in limits if n)
    model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> np.ndarray:
        out: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(model_device(model))
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            out.append(torch.nn.functional.normalize(mean, p=2, dim=1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), dtype=np.float32)

    return embed
