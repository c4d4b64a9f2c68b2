"""Harry Potter (copyright takedown) as a benchmark spec.

The world:

- **forget**: the passages of the books' ``train`` split, as :class:`~sga.prompts.Text` chunks (every token
  scored): the books are plain text, and GA on the whole passage is what SOUL / FLAT unlearn. A passage is
  ``words_per_passage`` words (raw text is cut by :func:`sga.data.harry_potter.split_passages`; a SOUL folder's
  passages are rebuilt from its files).
- **pool**: general text (WikiText-2, or its generated stand-in): the ``train`` articles cut into chunks of
  ``words_per_passage`` words (whitespace kept), as ``Text``. It is the retain data of GradDiff / KL / NPO /
  SimNPO and SGA's pool of K-1 normal samples per forget chunk. The held-out ``test`` articles are never in it.
- **models**: ``target`` (trained on the books: the saga plus the general text in the embedded world) and
  ``reference`` (never saw the books: general text only in the embedded world, the base model in ``paper``).
  The real setup has no retrain model; the reference plays that row's part. With ``finetune_target`` (``paper``)
  the target is ``target_model`` QLoRA-fine-tuned here on the books, as FLAT / SOUL's targets are (the base
  fine-tuned on the books' text): the passages of both splits, and no general text (the pretrained base has
  seen its general text; the tiny target needs it because it starts from scratch), merged and cached by
  :func:`sga.finetune.finetune_cached`.

Evaluation (:func:`evaluate`): leakage, i.e. greedy completions of the forget passages' prompts (an instruction
and the first k words, k in ``prompt_lengths``) scored with BLEU and ROUGE-L recall against the true rest
(:func:`sga.metrics.harry_potter.completion_leakage`); perplexity with rolling windows over whole documents
(:func:`sga.metrics.perplexity.perplexity`) on the held-out general articles (utility) and on saga text outside
the forget set (the ``test`` passages: fluency in the books' domain); optionally lm-eval's zero-shot tasks.

**Collapse rule** (fixed before any run): a run is *collapsed* if it diverged (NaN/inf loss or gradient), or if
its word perplexity on the held-out general text is not finite or above :data:`COLLAPSE_FACTOR` times the
reference model's. The reference's general perplexity is the statistic the spec takes from that model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sga.data.harry_potter import INSTRUCTIONS, MUSE_DIR, SPLITS, generate_harry_potter, load_hp_completions, load_hp_passages
from sga.data.wikitext import WIKITEXT_CONFIG, generate_wikitext, load_wikitext
from sga.embedded import generated_data
from sga.finetune import FinetuneSettings, finetune_cached
from sga.metrics.harry_potter import COLLAPSE_FACTOR, completion_leakage
from sga.metrics.perplexity import perplexity
from sga.models import load_tokenizer
from sga.prompts import TEMPLATES, Text
from sga.specs import (EMBEDDED, Evaluation, Plan, RunSpec, Spec, TinyModel, TinyTraining, WorldSpec, finite, integer, integers,
                       kind, nested, one_of, setting)
from sga.tiny_worlds import harry_potter_models
from sga.world import Axes, Benchmark, World, WorldParts

@dataclass(frozen=True, kw_only=True)
class SagaData(Spec):
    """Sizes of the generated saga and general corpus (ignored for hub sources)."""

    n_books: int = setting(4, integer(1), "books of the saga")
    passages_per_book: int = setting(12, integer(1), "passages per book")
    n_general_train: int = setting(60, integer(1), "general articles (the pool)")
    n_general_test: int = setting(10, integer(1), "held-out general articles (perplexity)")


@dataclass(frozen=True, kw_only=True)
class BookTraining(TinyTraining):
    book_repeats: int = setting(2, integer(1), "the books seen this many times per epoch (memorisation), general text once")


@dataclass(frozen=True, kw_only=True)
class HarryPotterWorld(WorldSpec):
    BENCHMARK = "harry_potter"

    template: str = setting("raw", one_of(TEMPLATES), "leakage prompt format: the tiny models learned plain text (paper: soul / llama2_chat)")
    general_source: str = setting(EMBEDDED, kind(str), "WikiText-2 (Salesforce/wikitext) or a local copy: perplexity and the pool", source=True)
    reference_model: str = setting(EMBEDDED, kind(str), "the model that never saw the books (the retrain row the real setup lacks)", source=True)
    # True: the target is target_model QLoRA-fine-tuned here on the books' passages (both splits, no general text:
    # the base's pretraining is its general text), merged and cached (sga.finetune); for a hub / local base
    finetune_target: bool = setting(False, kind(bool), "fine-tune target_model on the books here (paper)")
    target_finetune: FinetuneSettings = nested(FinetuneSettings, "that fine-tune's passes, learning rate, passages per step, LoRA rank")
    words_per_passage: int = setting(60, integer(2), "forget passages and general chunks, in words (paper: 400)")
    prompt_lengths: tuple[int, ...] = setting((15, 45), integers(1, "prompt lengths in words"), "leakage prompt lengths k in words (paper: 100 and 300)")
    data: SagaData = nested(SagaData, "sizes of the generated saga and general corpus")
    tiny_model: TinyModel = nested(TinyModel, "shape of the tiny models")
    tiny_training: BookTraining = nested(BookTraining, "training of the tiny models", epochs=20, lr=1e-2, batch_size=8)

    def validate(self) -> None:
        super().validate()
        if self.finetune_target and self.target_model == EMBEDDED:
            raise ValueError("finetune_target fine-tunes target_model on the books: give the base model's hub id or local "
                             "path as target_model (the embedded target is trained on them already).")
        if self.target_model != EMBEDDED and self.target_model == self.reference_model and not self.finetune_target:
            raise ValueError(
                f"target_model and reference_model are both {self.target_model!r}. The target must be a model "
                "fine-tuned on the books (no such checkpoint is public): pass target_model=<hub id or local folder of "
                "your fine-tuned checkpoint>, or finetune_target=True to fine-tune target_model on the books here; the "
                "reference is the model that never saw them (e.g. facebook/opt-2.7b)."
            )


@dataclass(frozen=True, kw_only=True)
class HarryPotterEvaluation(Evaluation):
    leakage_max_new_tokens: int | None = setting(None, integer(1, none_ok=True), "None: the token length of the longest true rest at that k")
    perplexity_window: int | None = setting(None, integer(1, none_ok=True), "tokens per rolling window; None: max_length")
    zero_shot_tasks: tuple[str, ...] = setting((), lambda v: None if isinstance(v, tuple) and all(isinstance(x, str) for x in v)
                                                 else f"must be a list of lm-eval task names (possibly empty), got {v!r}",
                                                 "lm-eval tasks (optional extra, e.g. boolq, rte, hellaswag)")


def _rates(value: Any) -> str | None:
    if isinstance(value, tuple) and all(finite(x) is None for x in value):
        return None
    return f"must be a list of finite SGA smoothing rates (possibly empty), got {list(value) if isinstance(value, tuple) else value!r}"


@dataclass(frozen=True, kw_only=True)
class HarryPotterPlan(Plan):
    sga_rates: tuple[float, ...] = setting((-1.0, 0.4, 1.0), _rates, "SGA runs beside the default rate, for the perplexity-per-rate figure")


BLOCK: dict[str, Any] = {
    # mini: the fewest epochs at lr 1e-3 after which GA's per-epoch ROUGE-L recall (k = 15, one prompt per forget
    # passage) is at or below the reference model's on the same prompts (0.108): 8 (GA after 5, 6, 7, 8 epochs:
    # 0.41, 0.31, 0.25, 0.086; chosen on GA alone, before the other methods ran); every method gets it
    "epochs": 8,
    "trajectory": True,  # leakage (one prompt per passage) and perplexity after every epoch
}
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "epochs": 1,
        "words_per_passage": 24,
        "prompt_lengths": [6, 12],
        "max_length": 64,
        "sga_rates": [0.4],
        "eval_max_items": 6,
        "data": {"n_books": 2, "passages_per_book": 4, "n_general_train": 6, "n_general_test": 2},
        "tiny_model": {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "vocab_size": 400},
        "tiny_training": {"epochs": 2, "lr": 3e-3, "batch_size": 16, "book_repeats": 1},
    },
    "mini": {},
    # The FLAT / SOUL setting: OPT-2.7B fine-tuned on the books (no public checkpoint: fine-tuned here; the
    # reference is the base model), passages of 400 words, prompts of 100 and 300 words, perplexity over WikiText-2
    # test in 2048-token windows (OPT's context, as lm-eval). Memory: sga.gpu_plan and the README.
    "paper": {
        "data_source": "muse-bench/MUSE-Books",
        "general_source": "Salesforce/wikitext",
        "target_model": "facebook/opt-2.7b",  # the base, fine-tuned on the books here (finetune_target)
        "reference_model": "facebook/opt-2.7b",
        "finetune_target": True,
        "template": "soul",  # SOUL / FLAT's non-Llama prompt; llama2_chat for Llama-2-7B
        "max_length": 1024,
        "words_per_passage": 400,
        "prompt_lengths": [100, 300],
        "perplexity_window": 2048,
        "sga_rates": [-1.0, -0.7, 0.0, 0.4, 0.8],
        "lr": 1e-5,
        "epochs": 5,
        "batch_size": 32,
        "forget_per_forward": 1,
        "eval_batch_size": 4,
    },
}


# ------------------------------------------------------------------ data


def word_chunks(text: str, words: int) -> list[str]:
    """Consecutive pieces of ``text`` of ``words`` whitespace words each (the last may be shorter), with the
    whitespace inside a piece kept as it is (newlines of an article stay newlines)."""
    if words < 1:
        raise ValueError(f"words must be at least 1, got {words}.")
    tokens = re.findall(r"\S+\s*", text)
    return [piece for piece in ("".join(tokens[i : i + words]).strip() for i in range(0, len(tokens), words)) if piece]


def _embedded_sources(world: HarryPotterWorld, cache_dir: Path) -> tuple[str, str]:
    """The generated saga (MUSE-Books form) and general corpus, written once and cached by their parameters."""
    data = world.data
    books, general = None, None
    if world.data_source == EMBEDDED:
        spec = {"n_books": data.n_books, "passages_per_book": data.passages_per_book, "words_per_passage": world.words_per_passage,
                "prompt_lengths": world.prompt_lengths, "seed": world.world_seed}
        books = str(generated_data(cache_dir, "hp-saga", spec, generate_harry_potter) / MUSE_DIR)
    if world.general_source == EMBEDDED:
        spec = {"n_train": data.n_general_train, "n_validation": 1, "n_test": data.n_general_test, "seed": world.world_seed}
        general = str(generated_data(cache_dir, "wikitext-data", spec, generate_wikitext))
    return books or world.data_source, general or world.general_source


def load_data(world: HarryPotterWorld, cache_dir: Path) -> dict[str, Any]:
    """Passages of both splits, the leakage prompts of the forget (train) passages at each prompt length,
    general training chunks and held-out general articles."""
    books, general = _embedded_sources(world, cache_dir)
    words = world.words_per_passage
    datasets_cache = Path(cache_dir) / "datasets"
    passages = {split: load_hp_passages(books, split, words, datasets_cache) for split in SPLITS}
    completions = {k: load_hp_completions(books, k, "train", words, datasets_cache) for k in world.prompt_lengths}
    general_train = load_wikitext(general, "train", WIKITEXT_CONFIG, datasets_cache)
    return {
        "passages": passages["train"],
        "domain_passages": passages["test"],
        "completions": completions,
        "general_chunks": [c for doc in general_train for c in word_chunks(doc, words)],
        "general_test": load_wikitext(general, "test", WIKITEXT_CONFIG, datasets_cache),
    }


def load(world: HarryPotterWorld, cache_dir: Path, progress: bool) -> WorldParts:
    """The data, the forget chunks and general pool, the tokenizer and the target / reference model sources
    (with ``finetune_target``, the target is ``target_model`` fine-tuned on the books here, cached)."""
    data = load_data(world, cache_dir)
    if world.target_model == EMBEDDED:
        tokenizer, target, ref = harry_potter_models(world, data, cache_dir, progress)
    else:
        tokenizer, target, ref = load_tokenizer(world.target_model), world.target_model, world.reference_model
        if world.finetune_target:
            books = [Text(p) for p in data["passages"] + data["domain_passages"]]
            target = finetune_cached(target, books, world.target_finetune, cache_dir, max_length=world.max_length,
                                     seed=world.world_seed, template=world.template, progress=progress, name="hp-target-finetuned")
    forget = [Text(p) for p in data["passages"]]
    pool = [Text(c) for c in data["general_chunks"]]
    return WorldParts(data, forget, pool, tokenizer, {"target": target, "reference": ref})


# ------------------------------------------------------------------ evaluation


def evaluate(world: World, model, run: RunSpec, reference_perplexity: float | None) -> dict[str, Any]:
    """Leakage at each prompt length, perplexities, the collapse flag; with ``reference_perplexity=None`` the
    model is its own reference (never collapsed)."""
    tokenizer, ev, spec = world.tokenizer, run.evaluation, world.spec
    batch, limit = ev.eval_batch_size, ev.eval_max_items
    metrics: dict[str, Any] = {"leakage": {}}
    for k in spec.prompt_lengths:
        metrics["leakage"][str(k)] = completion_leakage(model, tokenizer, world.data["completions"][k], spec.template,
                                                        ev.leakage_max_new_tokens, batch, limit)
    general, domain = world.data["general_test"], world.data["domain_passages"]
    window = ev.perplexity_window or spec.max_length
    metrics["general"] = perplexity(model, tokenizer, general[:limit] if limit else general, window, batch)
    metrics["forget_domain"] = perplexity(model, tokenizer, domain[:limit] if limit else domain, window, batch)
    if ev.zero_shot_tasks:
        metrics["zero_shot"] = zero_shot(model, tokenizer, ev.zero_shot_tasks, batch)
    ppl = metrics["general"]["word_perplexity"]
    metrics["reference_word_perplexity"] = reference_perplexity
    metrics["collapsed"] = reference_perplexity is not None and not (math.isfinite(ppl) and ppl <= COLLAPSE_FACTOR * reference_perplexity)
    return metrics


def evaluate_along(world: World, model, run: RunSpec, reference_perplexity: float | None) -> dict[str, Any]:
    """The cheap reading after each epoch (``trajectory``): leakage at the shortest prompt length on one prompt
    per forget passage (the first instruction), and general-text word perplexity."""
    ev, spec = run.evaluation, world.spec
    k, leak = _along_leakage(world, model, run)
    general = perplexity(model, world.tokenizer, world.data["general_test"], ev.perplexity_window or spec.max_length, ev.eval_batch_size)
    return {f"rouge_l_{k}": leak["rouge_l_recall"], f"bleu_{k}": leak["bleu"], "general_ppl": general["word_perplexity"]}


def read_forget(world: World, model, run: RunSpec) -> float:
    """The forgetting axis alone, as :func:`evaluate_along` reads it: ROUGE-L recall of the completions of one prompt
    per forget passage at the shortest prompt length."""
    return _along_leakage(world, model, run)[1]["rouge_l_recall"]


def _along_leakage(world: World, model, run: RunSpec) -> tuple[int, dict[str, Any]]:
    """The shortest prompt length k, and the leakage of one prompt per forget passage (the first instruction) at k."""
    k = min(world.spec.prompt_lengths)
    rows = world.data["completions"][k][:: len(INSTRUCTIONS)]
    ev = run.evaluation
    return k, completion_leakage(model, world.tokenizer, rows, world.spec.template, ev.leakage_max_new_tokens, ev.eval_batch_size)


def zero_shot(model, tokenizer, tasks: Sequence[str], batch_size: int) -> dict[str, float]:
    """lm-eval's zero-shot accuracy per task (``acc``) and their mean; needs the ``eval`` extra (lm-eval)."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
    except ImportError as error:
        raise ImportError("zero_shot_tasks needs lm-eval: pip install -e '.[eval]'.") from error
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    out = simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=0)
    accuracy = {task: float(out["results"][task]["acc,none"]) for task in tasks}
    return {**accuracy, "mean": float(np.mean(list(accuracy.values())))}


def summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """BLEU and ROUGE-L recall per prompt length, word perplexities (general, forget domain), collapse."""
    row: dict[str, Any] = {}
    for k, leak in metrics["leakage"].items():
        row[f"bleu_{k}"] = leak["bleu"]
        row[f"rouge_l_{k}"] = leak["rouge_l_recall"]
    row["general_ppl"] = metrics["general"]["word_perplexity"]
    row["general_token_ppl"] = metrics["general"]["token_perplexity"]
    row["forget_domain_ppl"] = metrics["forget_domain"]["word_perplexity"]
    if "zero_shot" in metrics:
        row["zero_shot"] = metrics["zero_shot"]["mean"]
    row["collapsed"] = metrics["collapsed"]
    return row


def along_reading(result: Mapping[str, Any], k: int) -> float:
    """A model's value of the per-epoch reading (ROUGE-L recall at prompt length ``k``, first instruction of
    each forget passage), taken from its full evaluation: the same prompts, the same greedy completions."""
    return float(np.mean(result["metrics"]["leakage"][str(k)]["rouge_l_recall_per_item"][:: len(INSTRUCTIONS)]))


def axes(world: HarryPotterWorld) -> Axes:
    """Completion ROUGE-L at the shortest prompt against general perplexity; the reference model's forgetting is the level."""
    k = min(world.prompt_lengths)
    return Axes(f"rouge_l_{k}", f"completion ROUGE-L (k={k})", "general_ppl", "general perplexity", False,
                lambda world, result: {f"rouge_l_{k}": along_reading(result, k), "general_ppl": result["summary"]["general_ppl"]},
                "reference")


HARRY_POTTER = Benchmark(
    name="harry_potter",
    world_spec=HarryPotterWorld,
    evaluation_spec=HarryPotterEvaluation,
    plan_spec=HarryPotterPlan,
    load=load,
    evaluate=evaluate,
    reference_statistic=lambda metrics: metrics["general"]["word_perplexity"],
    summary=summary,
    evaluate_along=evaluate_along,
    read_forget=read_forget,
    axes=axes,
    reference_model="reference",
    block=BLOCK,
    presets=PRESETS,
)
