"""TOFU as a benchmark spec: its world, evaluation and notebook settings, its layers, how its world is loaded and
how a model is read.

The embedded world (``"embedded"`` data and models) and the hub world (``locuslab/TOFU`` and the open-unlearning
checkpoints, or local copies of them) go through the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sga.data.tofu import FORGET_SPLITS, generate_tofu, load_tofu, split_examples, tofu_splits
from sga.embedded import data_source
from sga.inference import generate
from sga.metrics.text import rouge_l_recall
from sga.metrics.tofu import evaluate_tofu, ks_test, model_utility, summary_row
from sga.models import load_tokenizer
from sga.prompts import QA
from sga.specs import EMBEDDED, Evaluation, Plan, RunSpec, Spec, TinyModel, TinyTraining, WorldSpec, integer, kind, nested, one_of, setting
from sga.tiny_worlds import tofu_models
from sga.world import Axes, Benchmark, World, WorldParts

_EVAL_SPLITS = {"forget": "forget_perturbed", "retain": "retain_perturbed", "real_authors": "real_authors", "world_facts": "world_facts"}


@dataclass(frozen=True, kw_only=True)
class TofuData(Spec):
    """Sizes of the generated mini TOFU (ignored for a hub source)."""

    n_authors: int = setting(100, integer(1), "fictitious authors")
    qa_per_author: int = setting(10, integer(1), "QA pairs per author")
    n_holdout_authors: int = setting(10, integer(0), "authors of the holdout configs (never in full)")
    n_real_authors: int = setting(30, integer(1), "real-author questions")
    n_world_facts: int = setting(30, integer(1), "world-fact questions")


@dataclass(frozen=True, kw_only=True)
class TofuWorld(WorldSpec):
    """TOFU's world. mini: 100 fictitious authors x 10 QA, so forget10 holds 10 authors = 100 questions (the real
    forget10: 400)."""

    BENCHMARK = "tofu"
    NAME_FIELDS = ("forget_split",)

    retain_model: str = setting(EMBEDDED, kind(str), "the retain model: must match the forget split (retain90 for forget10)", source=True)
    forget_split: str = setting("forget10", one_of(FORGET_SPLITS), "forget01 | forget05 | forget10")
    # retain evaluation questions (retain_perturbed) are kept out of the retain/normal training pool; the real TOFU
    # does not do this (retain_perturbed lies inside retain90), so set False to reproduce it
    exclude_eval_from_pool: bool = setting(True, kind(bool), "keep the retain evaluation questions out of the training pool")
    data: TofuData = nested(TofuData, "sizes of the generated data")
    tiny_model: TinyModel = nested(TinyModel, "shape of the tiny models")
    tiny_training: TinyTraining = nested(TinyTraining, "training of the tiny models", epochs=30, lr=1e-2, batch_size=8)


@dataclass(frozen=True, kw_only=True)
class TofuEvaluation(Evaluation):
    gen_max_new_tokens: int = setting(48, integer(1), "greedy answer length in tokens")
    path_rouge_items: int = setting(16, integer(1), "along training, ROUGE-L over the first questions of each split")


@dataclass(frozen=True, kw_only=True)
class TofuPlan(Plan):
    budget_scan_epochs: int = setting(6, integer(1), "notebook 02: the GA run that fixes the epoch budget goes this far")


BLOCK: dict[str, Any] = {
    # mini: the fewest epochs at lr 1e-3 after which GA's forget ROUGE-L is at or below the retain model's (4 on
    # this world: notebook 02 applies the rule to a GA run before any other method runs); every method gets it
    "epochs": 4,
    "trajectory": True,
}
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "epochs": 1,
        "budget_scan_epochs": 2,
        "gen_max_new_tokens": 16,
        "data": {"n_authors": 10, "qa_per_author": 4, "n_holdout_authors": 1, "n_real_authors": 6, "n_world_facts": 6},
        "tiny_model": {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "vocab_size": 400},
        "tiny_training": {"epochs": 2, "lr": 3e-3, "batch_size": 16},
    },
    "mini": {},
    "paper": {
        "data_source": "locuslab/TOFU",
        "target_model": "open-unlearning/tofu_Llama-2-7b-chat-hf_full",
        "retain_model": "open-unlearning/tofu_Llama-2-7b-chat-hf_retain90",
        "template": "llama2_chat",
        # LoRA, not TOFU's full fine-tuning (1e-5): the alignment-handbook's Zephyr-7B SFT recipes use 2e-5 full and
        # 2e-4 QLoRA (r=16), a factor of 10, which takes TOFU's 1e-5 to 1e-4 here
        "lr": 1e-4,
        "epochs": 5,
        "batch_size": 32,
        "max_length": 512,
        "gen_max_new_tokens": 200,
    },
}


def load(world: TofuWorld, cache_dir: Path, progress: bool) -> WorldParts:
    """The configs this forget split needs, the tokenizer and the target / retain model sources."""
    source = data_source(world, cache_dir, "tofu-data", generate_tofu)
    configs = {"full": "full", **tofu_splits(world.forget_split)}
    data = {name: load_tofu(source, config) for name, config in configs.items()}
    if world.target_model == EMBEDDED:
        tokenizer, target, retain = tofu_models(world, data, cache_dir, progress)
    else:
        tokenizer, target, retain = load_tokenizer(world.target_model), world.target_model, world.retain_model
    return WorldParts(data, split_examples(data, "forget"), retain_pool(data, world.exclude_eval_from_pool), tokenizer,
                      {"target": target, "retain": retain})


def retain_pool(data: Mapping[str, Any], exclude_eval: bool) -> list[QA]:
    """The retain split as training pool (GradDiff/KL/NPO's retain samples, SGA's normal samples), without the
    retain evaluation questions when ``exclude_eval`` (so no evaluation item is trained on)."""
    pool = split_examples(data, "retain")
    if not exclude_eval:
        return pool
    held = set(data["retain_perturbed"]["question"])
    return [example for example in pool if example.question not in held]


def eval_splits(world: World, evaluation: Evaluation) -> dict[str, Any]:
    """The four evaluation splits, cut to ``eval_max_items`` rows when set."""
    limit = evaluation.eval_max_items
    splits = {kind: world.data[name] for kind, name in _EVAL_SPLITS.items()}
    return {k: (v.select(range(min(limit, len(v)))) if limit else v) for k, v in splits.items()}


def evaluate(world: World, model, run: RunSpec, retain_truth_ratios: Any, rouge_max_items: int | None = None) -> dict[str, Any]:
    """TOFU's metrics; without the retain model's truth ratios the model is compared with itself (D = 0, p = 1)."""
    ev = run.evaluation
    metrics = evaluate_tofu(model, world.tokenizer, eval_splits(world, ev), world.spec.template, retain_truth_ratios,
                            gen_max_new_tokens=ev.gen_max_new_tokens, batch_size=ev.eval_batch_size,
                            max_length=world.spec.max_length, rouge_max_items=rouge_max_items)
    if retain_truth_ratios is None:
        own = metrics["forget"]["truth_ratios"]
        metrics["forget_ks_d"], metrics["forget_quality"] = ks_test(own, own)
    return metrics


def evaluate_along(world: World, model, run: RunSpec, retain_truth_ratios: Any) -> dict[str, Any]:
    """The cheap reading after each epoch: every truth ratio and probability, ROUGE-L on the first
    ``path_rouge_items`` questions of each split; returns the summary numbers."""
    return summary_row(evaluate(world, model, run, retain_truth_ratios, rouge_max_items=run.evaluation.path_rouge_items))


def read_forget(world: World, model, run: RunSpec) -> float:
    """The forgetting axis alone, as :func:`evaluate_along` reads it: ROUGE-L recall of the greedy answers to the first
    ``path_rouge_items`` forget questions."""
    ev = run.evaluation
    forget = eval_splits(world, ev)["forget"]
    questions, answers = forget["question"][: ev.path_rouge_items], forget["answer"][: ev.path_rouge_items]
    generations = generate(model, world.tokenizer, questions, world.spec.template, max_new_tokens=ev.gen_max_new_tokens,
                           batch_size=ev.eval_batch_size)
    return float(np.mean(rouge_l_recall(generations, answers)))


def path_summary(result: Mapping[str, Any], world: World) -> dict[str, Any]:
    """A full evaluation read the way :func:`evaluate_along` reads a model along training (ROUGE-L over the
    first ``path_rouge_items`` questions of each split), so reference models sit on the same scale as paths."""
    evaluation = world.settings.evaluation
    k, metrics = evaluation.path_rouge_items, result["metrics"]
    splits = eval_splits(world, evaluation)
    rouge = {kind: float(np.mean(rouge_l_recall(metrics[kind]["generations"][:k], splits[kind]["answer"][:k]))) for kind in splits}
    components = {**metrics["utility_components"], **{f"{s}_rouge_l_recall": rouge[s] for s in ("retain", "real_authors", "world_facts")}}
    return {**result["summary"], "model_utility": model_utility(components), "forget_rouge_l": rouge["forget"],
            "retain_rouge_l": rouge["retain"]}


def axes(world: TofuWorld) -> Axes:
    """Forget ROUGE-L against model utility; the retain model's forgetting is the level."""
    return Axes("forget_rouge_l", "forget ROUGE-L", "model_utility", "model utility", True,
                lambda world, result: path_summary(result, world), "retain")


TOFU = Benchmark(
    name="tofu",
    world_spec=TofuWorld,
    evaluation_spec=TofuEvaluation,
    plan_spec=TofuPlan,
    load=load,
    evaluate=evaluate,
    reference_statistic=lambda metrics: metrics["forget"]["truth_ratios"],
    summary=summary_row,
    evaluate_along=evaluate_along,
    read_forget=read_forget,
    axes=axes,
    reference_model="retain",
    block=BLOCK,
    presets=PRESETS,
)
