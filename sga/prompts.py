"""Prompt templates and the one encoding of (prompt, answer) pairs used everywhere.

Training, unlearning and evaluation all encode a pair the same way:
``[BOS] + tokens(prompt) + tokens(answer) + [EOS]``, with the prompt (and BOS) masked
out of the labels (-100), so a loss is always over the answer tokens plus EOS.
Prompt and answer are tokenised separately so the mask boundary is exact.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

IGNORE_INDEX = -100

# template name -> (format string for the prompt, whether a BOS token is prepended)
_TEMPLATES: dict[str, tuple[str, bool]] = {
    "llama2_chat": ("[INST] {question} [/INST]", True),
    "phi": ("Question: {question}\nAnswer: ", False),
    "plain": ("{question}", False),
    "hf_chat": ("", False),  # the tokenizer's own chat template (e.g. Llama-3.2-Instruct); it adds its BOS itself
}
TEMPLATES: tuple[str, ...] = tuple(_TEMPLATES)


def _template(name: str) -> tuple[str, bool]:
    try:
        return _TEMPLATES[name]
    except KeyError:
        raise ValueError(f"Unknown prompt template {name!r}; choose one of {list(TEMPLATES)}.") from None


def format_prompt(question: str, template: str, tokenizer=None) -> str:
    """The prompt text for ``question`` under ``template`` (``hf_chat`` needs the tokenizer)."""
    fmt, _ = _template(template)
    if template == "hf_chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("Template 'hf_chat' needs a tokenizer with a chat template; use llama2_chat, phi or plain.")
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return fmt.format(question=question)


def encode_prompt(tokenizer, question: str, template: str) -> list[int]:
    """Token ids of the formatted prompt, with BOS where the template asks for it."""
    _, add_bos = _template(template)
    ids = tokenizer(format_prompt(question, template, tokenizer), add_special_tokens=False)["input_ids"]
    if add_bos and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def encode_qa(tokenizer, question: str, answer: str, template: str, max_length: int = 512) -> dict[str, list[int]]:
    """Encode one pair: ``input_ids``, ``attention_mask`` and ``labels`` (prompt masked, EOS appended).

    If the pair is longer than ``max_length`` the answer is truncated from the right; the prompt is
    kept whole, and at least one answer token always remains.
    """
    prompt_ids = encode_prompt(tokenizer, question, template)
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    room = max(1, max_length - len(prompt_ids))
    answer_ids = answer_ids[:room]
    input_ids = prompt_ids + answer_ids
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
    }


def encode_pairs(tokenizer, pairs: Iterable[tuple[str, str]], template: str, max_length: int = 512) -> list[dict[str, list[int]]]:
    """:func:`encode_qa` of every (question, answer) pair."""
    return [encode_qa(tokenizer, question, answer, template, max_length) for question, answer in pairs]


def collate(features: Sequence[dict[str, list[int]]], pad_token_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad encoded pairs to one batch of tensors (labels padded with -100)."""
    if padding_side not in ("left", "right"):
        raise ValueError("padding_side must be 'left' or 'right'.")
    width = max(len(f["input_ids"]) for f in features)
    out: dict[str, list[list[int]]] = {k: [] for k in ("input_ids", "attention_mask", "labels")}
    for f in features:
        pad = width - len(f["input_ids"])
        for key, fill in (("input_ids", pad_token_id), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
            seq = f[key]
            out[key].append(seq + [fill] * pad if padding_side == "right" else [fill] * pad + seq)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
