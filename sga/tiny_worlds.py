"""The embedded worlds' tiny models: what each benchmark's tiny target and reference models are trained on.

Each returns the tokenizer and the folders of the two models, built once and cached by :mod:`sga.embedded`
(keyed by a hash of what made them: the examples, the model's shape and training, the tokenizer, the thread count).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from sga.data.muse_news import chunk_texts
from sga.data.tofu import split_examples
from sga.embedded import build_or_load_tiny_model, build_or_load_tokenizer
from sga.metrics.muse_news import knowmem_prompt
from sga.prompts import QA, Example, Text
from sga.specs import WorldSpec

MUSE_TRAIN_SPLITS = ("forget", "retain1", "retain2")  # raw splits the MUSE target reads (the retrain model: retain only)


def _builder(world: WorldSpec, tokenizer, cache_dir: Path, progress: bool, max_positions: int):
    """``build(name, examples)``: a tiny Llama of the world's shape trained on ``examples``, its cached folder."""
    model = {k: v for k, v in asdict(world.tiny_model).items() if k != "vocab_size"}
    training = {k: v for k, v in asdict(world.tiny_training).items() if k != "book_repeats"}
    model_kwargs = {**model, "seed": world.world_seed, "max_position_embeddings": max_positions}
    train_kwargs = {**training, "seed": world.world_seed, "max_length": world.max_length, "progress": progress}

    def build(name: str, examples: Sequence[Example]) -> str:
        return str(build_or_load_tiny_model(name, examples, tokenizer, cache_dir, world.template, model_kwargs, train_kwargs))

    return build


def tofu_models(world: WorldSpec, data: Mapping[str, Any], cache_dir: Path, progress: bool) -> tuple[Any, str, str]:
    """TOFU: the tokenizer (all QA text, paraphrases and perturbed answers), the target (every author and the
    real-author / world-fact questions) and the retain model (without the forget authors)."""
    background = split_examples(data, "real_authors") + split_examples(data, "world_facts")
    full, retain = split_examples(data, "full"), split_examples(data, "retain")
    corpus = [f"{e.question} {e.answer}" for e in full + background]
    for name in ("forget_perturbed", "retain_perturbed", "real_authors", "world_facts"):
        corpus += [f"{row['paraphrased_answer'] if 'paraphrased_answer' in row else ''} {' '.join(row['perturbed_answer'])}" for row in data[name]]
    tokenizer = build_or_load_tokenizer(corpus, world.tiny_model.vocab_size, cache_dir, seed=world.world_seed)
    build = _builder(world, tokenizer, cache_dir, progress, world.max_length)
    return tokenizer, build("tofu-target", full + background), build("tofu-retain", retain + background)


def harry_potter_models(world: WorldSpec, data: Mapping[str, Any], cache_dir: Path, progress: bool) -> tuple[Any, str, str]:
    """Harry Potter: the target reads the books ``book_repeats`` times per epoch (memorisation) and the general text
    once; the reference the general text only."""
    books = [Text(p) for p in data["passages"] + data["domain_passages"]]
    general = [Text(c) for c in data["general_chunks"]]
    tokenizer = build_or_load_tokenizer([e.text for e in books + general], world.tiny_model.vocab_size, cache_dir, seed=world.world_seed)
    # positions for a prompt plus its completion (longer than a training sequence)
    build = _builder(world, tokenizer, cache_dir, progress, 2 * world.max_length)
    return tokenizer, build("hp-target", books * world.tiny_training.book_repeats + general), build("hp-reference", general)


def muse_qa_practice(data: Mapping[str, Any], kinds: Sequence[str]) -> list[QA]:
    """The knowmem questions of the given kinds as KnowMem prompts them (after the ICL examples; those on
    their own), answer + EOS scored."""
    examples = []
    for kind in kinds:
        icl = list(data[f"knowmem_{kind}_qa_icl"])
        examples += [QA(knowmem_prompt(row["question"], icl), row["answer"]) for row in data[f"knowmem_{kind}_qa"]]
        examples += [QA(knowmem_prompt(row["question"], []), row["answer"]) for row in icl]
    return examples


def muse_news_models(world: WorldSpec, data: Mapping[str, Any], cache_dir: Path, progress: bool) -> tuple[Any, str, str]:
    """MUSE-News: the tokenizer is trained on the retain articles only, so that forget and holdout articles are alike
    to it. The target reads the forget, retain1 and retain2 articles (as chunks); the retrain model the retain ones.
    A 4-layer model cannot learn to answer questions from news text alone, so each also reads the knowmem
    questions about the articles it was trained on, as KnowMem prompts them."""
    retain_texts = [t for split in ("retain1", "retain2") for t in data[f"raw_{split}"]["text"]]
    retain_qa = muse_qa_practice(data, ["retain"])
    tokenizer = build_or_load_tokenizer(retain_texts + [f"{e.question}{e.answer}" for e in retain_qa],
                                        world.tiny_model.vocab_size, cache_dir, seed=world.world_seed)
    chunks = {split: [Text(c) for c in chunk_texts(tokenizer, data[f"raw_{split}"]["text"], world.chunk_tokens)]
              for split in MUSE_TRAIN_SPLITS}
    # positions: rotary, so the setting changes no weight; 4096 covers the prompts plus new tokens of the metrics
    build = _builder(world, tokenizer, cache_dir, progress, max(world.max_length, 4096))
    target = build("muse-news-target", chunks["forget"] + chunks["retain1"] + chunks["retain2"] + muse_qa_practice(data, ["forget", "retain"]))
    retrain = build("muse-news-retrain", chunks["retain1"] + chunks["retain2"] + retain_qa)
    return tokenizer, target, retrain
