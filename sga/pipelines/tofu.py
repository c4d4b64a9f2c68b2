"""TOFU as a benchmark spec, and the helpers notebook 02 shows its data and answers with.

The embedded world (``"embedded"`` data and models) and the hub world (``locuslab/TOFU`` and the
open-unlearning checkpoints, or local copies of them) go through the same functions. The generic steps
(``prepare``, ``reference``, ``run_method``, ``results_table``) are those of :mod:`sga.experiment`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from sga import experiment
from sga.comparison import Axes
from sga.data.tofu import generate_tofu, load_tofu, tofu_splits
from sga.embedded import build_or_load_tiny_model, build_or_load_tokenizer, generated_data
from sga.experiment import Benchmark, World, WorldParts, reference, results_table, run_method  # noqa: F401 (the notebook's steps)
from sga.metrics.text import rouge_l_recall
from sga.metrics.tofu import evaluate_tofu, ks_test, model_utility, summary_row
from sga.models import load_tokenizer
from sga.presets import EMBEDDED
from sga.prompts import QA, qa_examples

_EVAL_SPLITS = {"forget": "forget_perturbed", "retain": "retain_perturbed", "real_authors": "real_authors", "world_facts": "world_facts"}
_WORLD_KEYS = ("data_source", "target_model", "retain_model", "forget_split", "data", "tiny_model", "tiny_training",
               "world_seed", "template", "max_length", "cpu_threads", "exclude_eval_from_pool")


def data_source(params: Mapping[str, Any], cache_dir: Path) -> str:
    """The dataset location: the generated mini TOFU (made once, cached by its parameters) or the given source."""
    if params["data_source"] != EMBEDDED:
        return params["data_source"]
    return str(generated_data(cache_dir, "tofu-data", {**params["data"], "seed": params["world_seed"]}, generate_tofu))


def split_examples(data: Mapping[str, Any], split: str) -> list[QA]:
    """(question, answer) examples of one loaded split."""
    return qa_examples(data[split]["question"], data[split]["answer"])


def _tiny_models(params: Mapping[str, Any], data: dict[str, Any], cache_dir: Path) -> tuple[Any, str, str]:
    """Tokenizer, target and retain models of the embedded world, trained once and cached."""
    background = split_examples(data, "real_authors") + split_examples(data, "world_facts")
    full, retain = split_examples(data, "full"), split_examples(data, "retain")
    corpus = [f"{e.question} {e.answer}" for e in full + background]
    for name in ("forget_perturbed", "retain_perturbed", "real_authors", "world_facts"):
        corpus += [f"{row['paraphrased_answer'] if 'paraphrased_answer' in row else ''} {' '.join(row['perturbed_answer'])}" for row in data[name]]
    model_cfg, train_cfg = dict(params["tiny_model"]), dict(params["tiny_training"])
    seed = params["world_seed"]
    tokenizer = build_or_load_tokenizer(corpus, model_cfg.pop("vocab_size"), cache_dir, seed=seed)
    model_kwargs = {**model_cfg, "seed": seed, "max_position_embeddings": params["max_length"]}
    train_kwargs = {**train_cfg, "seed": seed, "max_length": params["max_length"], "progress": params["progress"]}
    build = lambda name, examples: str(build_or_load_tiny_model(name, examples, tokenizer, cache_dir, params["template"], model_kwargs, train_kwargs))  # noqa: E731
    return tokenizer, build("tofu-target", full + background), build("tofu-retain", retain + background)


def load(params: Mapping[str, Any], cache_dir: Path) -> WorldParts:
    """The configs this forget split needs, the tokenizer and the target / retain model sources."""
    source = data_source(params, cache_dir)
    configs = {"full": "full", **tofu_splits(params["forget_split"])}
    data = {name: load_tofu(source, config) for name, config in configs.items()}
    if params["target_model"] == EMBEDDED:
        tokenizer, target, retain = _tiny_models(params, data, cache_dir)
    else:
        tokenizer, target, retain = load_tokenizer(params["target_model"]), params["target_model"], params["retain_model"]
    return WorldParts(data, split_examples(data, "forget"), retain_pool(data, params["exclude_eval_from_pool"]), tokenizer,
                      {"target": target, "retain": retain})


def retain_pool(data: Mapping[str, Any], exclude_eval: bool) -> list[QA]:
    """The retain split as training pool (GradDiff/KL/NPO's retain samples, SGA's normal samples), without the
    retain evaluation questions when ``exclude_eval`` (so no evaluation item is trained on)."""
    pool = split_examples(data, "retain")
    if not exclude_eval:
        return pool
    held = set(data["retain_perturbed"]["question"])
    return [example for example in pool if example.question not in held]


def eval_splits(world: World, params: Mapping[str, Any]) -> dict[str, Any]:
    """The four evaluation splits, cut to ``eval_max_items`` rows when set."""
    limit = params["eval_max_items"]
    splits = {kind: world.data[name] for kind, name in _EVAL_SPLITS.items()}
    return {k: (v.select(range(min(limit, len(v)))) if limit else v) for k, v in splits.items()}


def evaluate(world: World, model, params: Mapping[str, Any], retain_truth_ratios: Any, rouge_max_items: int | None = None) -> dict[str, Any]:
    """TOFU's metrics; without the retain model's truth ratios the model is compared with itself (D = 0, p = 1)."""
    metrics = evaluate_tofu(model, world.tokenizer, eval_splits(world, params), params["template"], retain_truth_ratios,
                            gen_max_new_tokens=params["gen_max_new_tokens"], batch_size=params["eval_batch_size"],
                            max_length=params["max_length"], rouge_max_items=rouge_max_items)
    if retain_truth_ratios is None:
        own = metrics["forget"]["truth_ratios"]
        metrics["forget_ks_d"], metrics["forget_quality"] = ks_test(own, own)
    return metrics


def evaluate_along(world: World, model, params: Mapping[str, Any], retain_truth_ratios: Any) -> dict[str, Any]:
    """The cheap reading after each epoch: every truth ratio and probability, ROUGE-L on the first
    ``path_rouge_items`` questions of each split; returns the summary numbers."""
    return summary_row(evaluate(world, model, params, retain_truth_ratios, rouge_max_items=params["path_rouge_items"]))


def axes(params: Mapping[str, Any]) -> Axes:
    """Forget ROUGE-L against model utility; the retain model's forgetting is the level."""
    return Axes("forget_rouge_l", "forget ROUGE-L", "model_utility", "model utility", True,
                lambda world, result: path_summary(result, world), "retain")


TOFU = Benchmark(
    name="tofu",
    load=load,
    evaluate=evaluate,
    reference_statistic=lambda metrics: metrics["forget"]["truth_ratios"],
    summary=summary_row,
    world_keys=_WORLD_KEYS,
    name_keys=("forget_split",),
    evaluate_along=evaluate_along,
    axes=axes,
)


def prepare(params: Mapping[str, Any], cache_dir: str | Path, out_dir: str | Path) -> World:
    """The TOFU world of ``params`` (see :func:`sga.experiment.prepare`)."""
    return experiment.prepare(TOFU, params, cache_dir, out_dir)


def samples(world: World, n: int = 3) -> pd.DataFrame:
    """A few forget questions with their answer, paraphrase and first perturbed answer."""
    rows = world.data["forget_perturbed"].select(range(min(n, len(world.data["forget_perturbed"]))))
    return pd.DataFrame({"question": rows["question"], "answer": rows["answer"],
                         "paraphrased_answer": rows["paraphrased_answer"],
                         "perturbed_answer[0]": [p[0] for p in rows["perturbed_answer"]]})


def answers_table(results: Mapping[str, Mapping[str, Any]], world: World, n: int = 2) -> pd.DataFrame:
    """The first ``n`` forget questions with each model's generated answer."""
    forget = eval_splits(world, world.params)["forget"]
    table = {"question": forget["question"][:n], "answer": forget["answer"][:n]}
    for label, r in results.items():
        if "metrics" in r:
            table[label] = r["metrics"]["forget"]["generations"][:n]
    return pd.DataFrame(table)


# numbers the paper's reviews quote for SGA on TOFU (no tables were available; see ../shared/reference/method.md)
PAPER_SGA_FORGET_QUALITY = (0.006, 0.09)


def styled(table: pd.DataFrame, precision: int = 3):
    """A results table for display: p-values (forget quality) in scientific notation, the rest fixed-point."""
    scientific = [c for c in table.columns if str(c).startswith("forget_quality")]
    fixed = [c for c in table.columns if c not in scientific and pd.api.types.is_float_dtype(table[c])]
    return table.style.format("{:.1e}", subset=scientific, na_rep="–").format(f"{{:.{precision}f}}", subset=fixed, na_rep="–")


def paper_table(references: Mapping[str, Mapping[str, Any]], seeds: pd.DataFrame) -> pd.DataFrame:
    """The paper's table shape: forget quality (with the KS statistic D), model utility, forget and retain
    ROUGE-L, for the target and retain models, each method (mean over its seeds), and the reviews' SGA range."""
    columns = ["forget_quality", "forget_ks_d", "model_utility", "forget_rouge_l", "retain_rouge_l"]
    rows = {label: {c: r["summary"][c] for c in columns} for label, r in references.items()}
    rows.update({label: {c: seeds.loc[label, c] for c in columns} for label in seeds.index})
    table = pd.DataFrame(rows).T.astype(float)
    table["runs"] = [1] * len(references) + list(seeds["runs"])
    low, high = PAPER_SGA_FORGET_QUALITY
    table.loc[f"paper, SGA on Llama-2 / Phi (reviews): FQ {low}-{high}"] = [math.nan] * len(table.columns)
    return table


def path_summary(result: Mapping[str, Any], world: World) -> dict[str, Any]:
    """A full evaluation read the way :func:`evaluate_along` reads a model along training (ROUGE-L over the
    first ``path_rouge_items`` questions of each split), so reference models sit on the same scale as paths."""
    k, metrics = world.params["path_rouge_items"], result["metrics"]
    splits = eval_splits(world, world.params)
    rouge = {kind: float(np.mean(rouge_l_recall(metrics[kind]["generations"][:k], splits[kind]["answer"][:k]))) for kind in splits}
    components = {**metrics["utility_components"], **{f"{s}_rouge_l_recall": rouge[s] for s in ("retain", "real_authors", "world_facts")}}
    return {**result["summary"], "model_utility": model_utility(components), "forget_rouge_l": rouge["forget"],
            "retain_rouge_l": rouge["retain"]}
