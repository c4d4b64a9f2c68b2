"""Example kinds, prompt templates, and the one encoding of an example used everywhere.

Three kinds of example, by what is scored (the labels that are not -100):

- :class:`QA`: a question put in a prompt template, and its answer: ``[BOS] prompt answer [EOS]``, the
  prompt masked, the answer and EOS scored (TOFU; the SOUL form of Harry Potter).
- :class:`Completion`: a raw-text prefix and its continuation: ``[BOS] prefix continuation``, the prefix
  masked, the continuation scored (MUSE's VerbMem; a passage cut after its first words).
- :class:`Text`: plain text, ``[BOS] text``, every token after BOS scored (book or news chunks).

Training, unlearning, scoring and rate dynamics all go through :func:`encode`. Prompt and target are
tokenised separately so the mask boundary is exact; a sequence longer than ``max_length`` loses the end
of its scored part (at least one scored token always remains).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, Union

import torch

IGNORE_INDEX = -100

# template name -> (format string for the prompt, whether a BOS token is prepended)
_TEMPLATES: dict[str, tuple[str, bool]] = {
    "llama2_chat": ("[INST] {question} [/INST]", True),
    "phi": ("Question: {question}\nAnswer: ", False),
    "plain": ("{question}", False),
    "raw": ("{question}", True),  # raw text after BOS: completions of plain text (MUSE, the Text and Completion kinds)
    "soul": ("### Question: {question}\n### Answer: ", False),  # SOUL / FLAT Harry Potter prompts (non-Llama models)
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


TOKEN_MEMO_MAX = 500_000  # texts remembered per tokenizer (each a tuple of ids); past that the memo starts afresh
_token_memos: "weakref.WeakKeyDictionary[Any, tuple[int, dict[tuple[str, bool], tuple[int, ...]]]]" = weakref.WeakKeyDictionary()


def token_ids(tokenizer, text: str, special_tokens: bool = False) -> list[int]:
    """``tokenizer(text, add_special_tokens=special_tokens)["input_ids"]``, remembered per tokenizer.

    Evaluation texts are encoded again at every per-epoch reading; this encodes each once (a new list is
    returned every time, so callers may change it). A tokenizer whose vocabulary changes size (added tokens)
    starts a new memo; one changed in another way (its normaliser, its post-processor) needs
    :func:`forget_token_ids`.
    """
    size = len(tokenizer)
    memo = _token_memos.get(tokenizer)
    if memo is None or memo[0] != size or len(memo[1]) >= TOKEN_MEMO_MAX:
        memo = (size, {})
        _token_memos[tokenizer] = memo
    key = (text, special_tokens)
    ids = memo[1].get(key)
    if ids is None:
        ids = memo[1][key] = tuple(tokenizer(text, add_special_tokens=special_tokens)["input_ids"])
    return list(ids)


def forget_token_ids(tokenizer=None) -> None:
    """Drop what :func:`token_ids` remembers for ``tokenizer`` (every tokenizer if None)."""
    if tokenizer is None:
        _token_memos.clear()
    else:
        _token_memos.pop(tokenizer, None)


def encode_prompt(tokenizer, question: str, template: str) -> list[int]:
    """Token ids of the formatted prompt, with BOS where the template asks for it."""
    _, add_bos = _template(template)
    ids = token_ids(tokenizer, format_prompt(question, template, tokenizer))
    if add_bos and tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    return ids


@dataclass(frozen=True)
class QA:
    """A question (put into the prompt template) and its answer; the answer and EOS are scored."""

    question: str
    answer: str


@dataclass(frozen=True)
class Completion:
    """A raw-text prefix and its continuation; the continuation is scored (no template, no EOS)."""

    prefix: str
    continuation: str


@dataclass(frozen=True)
class Text:
    """Plain text; every token after BOS is scored."""

    text: str


Example = Union[QA, Completion, Text]


def qa_examples(questions: Iterable[str], answers: Iterable[str]) -> list[QA]:
    """:class:`QA` examples from parallel lists of questions and answers."""
    questions, answers = list(questions), list(answers)
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers.")
    return [QA(q, a) for q, a in zip(questions, answers)]


def example_text(example: Example) -> str:
    """The example's whole text in one string (what normal-sample similarity is computed on)."""
    if isinstance(example, QA):
        return f"{example.question} {example.answer}"
    if isinstance(example, Completion):
        return example.prefix + example.continuation
    return example.text


def _bos(tokenizer) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def encode(tokenizer, example: Example, template: str, max_length: int = 512) -> dict[str, list[int]]:
    """Encode one example: ``input_ids``, ``attention_mask`` and ``labels`` (-100 where not scored).

    ``template`` formats the question of a :class:`QA`; the other kinds are raw text after BOS.
    """
    if isinstance(example, QA):
        context = encode_prompt(tokenizer, example.question, template)
        target = token_ids(tokenizer, example.answer) + [tokenizer.eos_token_id]
    elif isinstance(example, Completion):
        context = _bos(tokenizer) + token_ids(tokenizer, example.prefix)
        target = token_ids(tokenizer, example.continuation)
    elif isinstance(example, Text):
        context, target = _bos(tokenizer), token_ids(tokenizer, example.text)
    else:
        raise TypeError(f"Cannot encode {type(example).__name__}; pass a QA, Completion or Text example.")
    if not target:
        raise ValueError(f"{type(example).__name__} example has nothing to score: {example!r}.")
    target = target[: max(1, max_length - len(context))]
    input_ids = context + target
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(context) + target,
    }


def encode_examples(tokenizer, examples: Iterable[Example], template: str, max_length: int = 512) -> list[dict[str, list[int]]]:
    """:func:`encode` of every example."""
    return [encode(tokenizer, example, template, max_length) for example in examples]


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
