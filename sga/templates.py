"""Template answers for FLAT: for each forget sample, the same prompt with a refusal as its answer.

FLAT pairs each forget prompt x and its answer y_f with a template answer y_e for the same x and pushes
the two apart. The template follows the forget sample's kind:

- :class:`~sga.prompts.QA`: the same question, answered by one of :data:`REFUSALS` ("I don't know.").
- :class:`~sga.prompts.Completion`: the same prefix, continued by one of :data:`REFUSAL_CONTINUATIONS`.
- :class:`~sga.prompts.Text` (MUSE-News chunks, this project's Harry Potter passages): FLAT says nothing
  about plain text. Our choice: the template is a :class:`~sga.prompts.Completion` whose prefix is the
  chunk's first ``prefix_words`` words (default 8, the original text up to the end of that word) and
  whose continuation is one of :data:`REFUSAL_CONTINUATIONS`; the forget row stays the whole Text.
  FLAT needs one prompt shared by y_f and y_e, and a Text has none, so its opening words play the
  prompt's part, as in FLAT's Harry Potter setup (a passage's first words, continued by a refusal).

Each refusal is drawn by ``np.random.default_rng(seed)``, so a seed fixes every template.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from sga.prompts import QA, Completion, Example, Text

REFUSALS: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "I don't have an answer to that question.",
    "Sorry, I can't help with that.",
    "I'm afraid I don't know.",
    "That is something I don't know.",
    "I have no idea.",
    "I can't answer that.",
    "I'm not able to answer that question.",
    "I don't have any details about that.",
    "Unfortunately, I don't know the answer.",
    "I'm sorry, but I have no knowledge of that.",
    "That's not something I can tell you.",
    "I'm unable to provide that information.",
    "I don't recall anything about that.",
    "I have no record of that.",
    "I'm not aware of any answer to that.",
    "That information is not available to me.",
    "I can't say.",
    "I really couldn't tell you.",
    "I don't have enough information to answer that.",
    "My knowledge does not cover that.",
    "I'm not familiar with that.",
    "I have never come across that.",
    "I'm sorry, I don't have that information.",
    "I can't provide an answer here.",
    "That is beyond what I know.",
    "I don't know anything about that topic.",
    "I'm not the right source for that question.",
    "I'm not certain, so I would rather not guess.",
    "I would only be guessing, and I don't know.",
    "There is nothing I can tell you about that.",
    "I'm not in a position to answer that.",
    "I lack the knowledge to answer that question.",
    "That question is outside what I know.",
    "I don't have reliable information on that.",
    "I'm sorry, that is unknown to me.",
    "I have nothing to share on that.",
    "I cannot recall the answer.",
    "No idea, I'm afraid.",
    "I don't know much about that at all.",
    "I'm unsure what the answer is.",
    "That is not something I have learned.",
    "I'm afraid I can't help you with that question.",
    "I'd rather not answer, since I don't know.",
    "I don't have the facts needed to answer.",
    "I'm drawing a blank on that one.",
    "That doesn't ring a bell for me.",
    "I can't give you an answer to that.",
    "Sorry, I'm not familiar with that subject.",
    "I'm not sure, and I don't want to mislead you.",
    "The answer to that is unknown to me.",
    "I can't find anything about that in what I know.",
)

# Continuations of a raw-text prefix: each starts with a space, as a continuation of the prefix's last word.
REFUSAL_CONTINUATIONS: tuple[str, ...] = (
    " I'm sorry, but I can't continue this text.",
    " I don't know how this text continues.",
    " Sorry, I'm unable to complete this passage.",
    " I can't recall the rest of this passage.",
    " I'm not able to continue from here.",
    " I don't know what comes next.",
    " I'm afraid I cannot complete this text.",
    " Sorry, I don't remember how this goes on.",
    " I have no knowledge of the rest of this text.",
    " I'm not sure how this passage continues, so I will stop here.",
    " I can't provide the continuation of this text.",
    " I'm sorry, I don't know the rest.",
)


def text_prefix(text: str, words: int) -> str:
    """The text up to the end of its ``words``-th word (the whole text if it has fewer), spacing kept."""
    match = re.match(rf"\s*\S+(?:\s+\S+){{0,{words - 1}}}", text)
    return match.group(0) if match else text


def _template(example: Example, rng: np.random.Generator, prefix_words: int) -> Example:
    if isinstance(example, QA):
        return QA(example.question, REFUSALS[rng.integers(len(REFUSALS))])
    continuation = REFUSAL_CONTINUATIONS[rng.integers(len(REFUSAL_CONTINUATIONS))]
    if isinstance(example, Completion):
        return Completion(example.prefix, continuation)
    if isinstance(example, Text):
        return Completion(text_prefix(example.text, prefix_words), continuation)
    raise TypeError(f"No FLAT template for {type(example).__name__}; pass a QA, Completion or Text example.")


def template_examples(forget: Sequence[Example], seed: int, prefix_words: int = 8) -> list[Example]:
    """One template example per forget example, in order: the same prompt with a seeded refusal as answer."""
    if prefix_words < 1:
        raise ValueError(f"prefix_words must be >= 1, got {prefix_words}.")
    rng = np.random.default_rng(seed)
    return [_template(example, rng, prefix_words) for example in forget]
