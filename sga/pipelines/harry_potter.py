"""Harry Potter (copyright takedown) as a benchmark spec, and the helpers notebook 03 shows it with.

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
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sga import experiment
from sga.comparison import Axes
from sga.data.harry_potter import INSTRUCTIONS, MUSE_DIR, SPLITS, generate_harry_potter, load_hp_completions, load_hp_passages
from sga.data.wikitext import WIKITEXT_CONFIG, generate_wikitext, load_wikitext
from sga.embedded import build_or_load_tiny_model, build_or_load_tokenizer, generated_data
from sga.experiment import Benchmark, World, WorldParts, reference, run_method  # noqa: F401 (the notebook's steps)
from sga.finetune import finetune_cached
from sga.metrics.harry_potter import completion_leakage
from sga.metrics.perplexity import perplexity
from sga.models import load_tokenizer
from sga.plots import model_color
from sga.presets import EMBEDDED
from sga.prompts import Text

_COLORS = {"reference": "C8", "simnpo": "C9"}  # beside sga.plots.COLORS (target, retain, ga, graddiff, kl, npo, sga)
COLLAPSE_FACTOR = 10.0  # collapsed: general-text word perplexity above this multiple of the reference model's
_WORLD_KEYS = ("data_source", "general_source", "target_model", "reference_model", "finetune_target", "target_finetune",
               "words_per_passage",
               "prompt_lengths", "data", "tiny_model", "tiny_training", "world_seed", "template", "max_length",
               "cpu_threads")


# ------------------------------------------------------------------ data


def word_chunks(text: str, words: int) -> list[str]:
    """Consecutive pieces of ``text`` of ``words`` whitespace words each (the last may be shorter), with the
    whitespace inside a piece kept as it is (newlines of an article stay newlines)."""
    if words < 1:
        raise ValueError(f"words must be at least 1, got {words}.")
    tokens = re.findall(r"\S+\s*", text)
    return [piece for piece in ("".join(tokens[i : i + words]).strip() for i in range(0, len(tokens), words)) if piece]


def _embedded_sources(params: Mapping[str, Any], cache_dir: Path) -> tuple[str, str]:
    """The generated saga (MUSE-Books form) and general corpus, written once and cached by their parameters."""
    data = params["data"]
    books, general = None, None
    if params["data_source"] == EMBEDDED:
        spec = {"n_books": data["n_books"], "passages_per_book": data["passages_per_book"],
                "words_per_passage": params["words_per_passage"], "prompt_lengths": tuple(params["prompt_lengths"]),
                "seed": params["world_seed"]}
        books = str(generated_data(cache_dir, "hp-saga", spec, generate_harry_potter) / MUSE_DIR)
    if params["general_source"] == EMBEDDED:
        spec = {"n_train": data["n_general_train"], "n_validation": 1, "n_test": data["n_general_test"],
                "seed": params["world_seed"]}
        general = str(generated_data(cache_dir, "wikitext-data", spec, generate_wikitext))
    return books or params["data_source"], general or params["general_source"]


def load_data(params: Mapping[str, Any], cache_dir: Path) -> dict[str, Any]:
    """Passages of both splits, the leakage prompts of the forget (train) passages at each prompt length,
    general training chunks and held-out general articles."""
    books, general = _embedded_sources(params, cache_dir)
    words = params["words_per_passage"]
    datasets_cache = Path(cache_dir) / "datasets"
    passages = {split: load_hp_passages(books, split, words, datasets_cache) for split in SPLITS}
    completions = {k: load_hp_completions(books, k, "train", words, datasets_cache) for k in params["prompt_lengths"]}
    general_train = load_wikitext(general, "train", WIKITEXT_CONFIG, datasets_cache)
    return {
        "passages": passages["train"],
        "domain_passages": passages["test"],
        "completions": completions,
        "general_chunks": [c for doc in general_train for c in word_chunks(doc, words)],
        "general_test": load_wikitext(general, "test", WIKITEXT_CONFIG, datasets_cache),
    }


def _tiny_models(params: Mapping[str, Any], data: Mapping[str, Any], cache_dir: Path) -> tuple[Any, str, str]:
    """Tokenizer, target (books + general text) and reference (general text only), trained once and cached."""
    books = [Text(p) for p in data["passages"] + data["domain_passages"]]
    general = [Text(c) for c in data["general_chunks"]]
    model_cfg, train_cfg = dict(params["tiny_model"]), dict(params["tiny_training"])
    repeat = train_cfg.pop("book_repeats")  # the books seen this many times per epoch (memorisation), general once
    seed = params["world_seed"]
    corpus = [e.text for e in books + general]
    tokenizer = build_or_load_tokenizer(corpus, model_cfg.pop("vocab_size"), cache_dir, seed=seed)
    # positions for a prompt plus its completion (longer than a training sequence)
    model_kwargs = {**model_cfg, "seed": seed, "max_position_embeddings": 2 * params["max_length"]}
    train_kwargs = {**train_cfg, "seed": seed, "max_length": params["max_length"], "progress": params["progress"]}
    build = lambda name, examples: str(build_or_load_tiny_model(name, examples, tokenizer, cache_dir, params["template"], model_kwargs, train_kwargs))  # noqa: E731
    return tokenizer, build("hp-target", books * repeat + general), build("hp-reference", general)


def load(params: Mapping[str, Any], cache_dir: Path) -> WorldParts:
    """The data, the forget chunks and general pool, the tokenizer and the target / reference model sources
    (with ``finetune_target``, the target is ``target_model`` fine-tuned on the books here, cached)."""
    finetune = params.get("finetune_target", False)
    if params["target_model"] != EMBEDDED and params["target_model"] == params["reference_model"] and not finetune:
        raise ValueError(
            f"target_model and reference_model are both {params['target_model']!r}. The target must be a model "
            "fine-tuned on the books (no such checkpoint is public): pass target_model=<hub id or local folder of "
            "your fine-tuned checkpoint>, or finetune_target=True to fine-tune target_model on the books here; the "
            "reference is the model that never saw them (e.g. facebook/opt-2.7b)."
        )
    data = load_data(params, cache_dir)
    if params["target_model"] == EMBEDDED:
        tokenizer, target, ref = _tiny_models(params, data, cache_dir)
    else:
        tokenizer, target, ref = load_tokenizer(params["target_model"]), params["target_model"], params["reference_model"]
        if finetune:
            books = [Text(p) for p in data["passages"] + data["domain_passages"]]
            target = finetune_cached(target, books, params, cache_dir, name="hp-target-finetuned")
    forget = [Text(p) for p in data["passages"]]
    pool = [Text(c) for c in data["general_chunks"]]
    return WorldParts(data, forget, pool, tokenizer, {"target": target, "reference": ref})


# ------------------------------------------------------------------ evaluation


def evaluate(world: World, model, params: Mapping[str, Any], reference_perplexity: float | None) -> dict[str, Any]:
    """Leakage at each prompt length, perplexities, the collapse flag; with ``reference_perplexity=None`` the
    model is its own reference (never collapsed)."""
    tokenizer, batch = world.tokenizer, params["eval_batch_size"]
    metrics: dict[str, Any] = {"leakage": {}}
    for k in params["prompt_lengths"]:
        metrics["leakage"][str(k)] = completion_leakage(
            model, tokenizer, world.data["completions"][k], params["template"], params["leakage_max_new_tokens"],
            batch, params["eval_max_items"])
    limit = params["eval_max_items"]
    general, domain = world.data["general_test"], world.data["domain_passages"]
    window = params["perplexity_window"] or params["max_length"]
    metrics["general"] = perplexity(model, tokenizer, general[:limit] if limit else general, window, batch)
    metrics["forget_domain"] = perplexity(model, tokenizer, domain[:limit] if limit else domain, window, batch)
    if params["zero_shot_tasks"]:
        metrics["zero_shot"] = zero_shot(model, tokenizer, params["zero_shot_tasks"], batch)
    ppl = metrics["general"]["word_perplexity"]
    metrics["reference_word_perplexity"] = reference_perplexity
    metrics["collapsed"] = reference_perplexity is not None and not (math.isfinite(ppl) and ppl <= COLLAPSE_FACTOR * reference_perplexity)
    return metrics


def evaluate_along(world: World, model, params: Mapping[str, Any], reference_perplexity: float | None) -> dict[str, Any]:
    """The cheap reading after each epoch (``trajectory``): leakage at the shortest prompt length on one prompt
    per forget passage (the first instruction), and general-text word perplexity."""
    k = min(params["prompt_lengths"])
    rows = world.data["completions"][k][:: len(INSTRUCTIONS)]
    leak = completion_leakage(model, world.tokenizer, rows, params["template"], params["leakage_max_new_tokens"],
                              params["eval_batch_size"])
    general = perplexity(model, world.tokenizer, world.data["general_test"], params["perplexity_window"] or params["max_length"],
                         params["eval_batch_size"])
    return {f"rouge_l_{k}": leak["rouge_l_recall"], f"bleu_{k}": leak["bleu"], "general_ppl": general["word_perplexity"]}


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


def axes(params: Mapping[str, Any]) -> Axes:
    """Completion ROUGE-L at the shortest prompt against general perplexity; the reference model's forgetting is the level."""
    k = min(params["prompt_lengths"])
    return Axes(f"rouge_l_{k}", f"completion ROUGE-L (k={k})", "general_ppl", "general perplexity", False,
                lambda world, result: {f"rouge_l_{k}": along_reading(result, k), "general_ppl": result["summary"]["general_ppl"]},
                "reference")


HARRY_POTTER = Benchmark(
    name="harry_potter",
    load=load,
    evaluate=evaluate,
    reference_statistic=lambda metrics: metrics["general"]["word_perplexity"],
    summary=summary,
    world_keys=_WORLD_KEYS,
    reference_model="reference",
    evaluate_along=evaluate_along,
    axes=axes,
)


def prepare(params: Mapping[str, Any], cache_dir: str | Path, out_dir: str | Path) -> World:
    """The Harry Potter world of ``params`` (see :func:`sga.experiment.prepare`)."""
    return experiment.prepare(HARRY_POTTER, params, cache_dir, out_dir)


# ------------------------------------------------------------------ tables and figures for notebook 03


def _color(label: str, position: int, rates: Mapping[str, float] = {}) -> str:
    """One colour per model: SGA at any rate in SGA's colour, the reference and SimNPO in their own."""
    return _COLORS.get(label) or model_color("sga" if label in rates else label, position)


def _named(label: str, rates: Mapping[str, float]) -> str:
    return f"{label} (r={rates[label]:g})" if label in rates and "r=" not in label else label


def results_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: status, the summary numbers, and ``collapsed`` (True for a diverged run too)."""
    table = experiment.results_table(results)
    if "collapsed" not in table:
        table["collapsed"] = False
    table["collapsed"] = [bool(c) if s == "completed" else True for c, s in zip(table["collapsed"], table["status"])]
    return table


def data_sizes(world: World) -> pd.DataFrame:
    """How many items each part of the world holds, and their length in words."""
    data = world.data
    parts = {"forget passages (train split)": data["passages"], "saga text outside the forget set (test split)": data["domain_passages"],
             "general chunks (train articles: pool, retain)": data["general_chunks"], "held-out general articles (test)": data["general_test"]}
    parts.update({f"leakage prompts, k = {k}": [r["prompt"] for r in rows] for k, rows in data["completions"].items()})
    return pd.DataFrame({"items": {n: len(v) for n, v in parts.items()},
                         "mean words": {n: round(float(np.mean([len(t.split()) for t in v])), 1) for n, v in parts.items()}})


def samples(world: World, n: int = 2, k: int | None = None) -> pd.DataFrame:
    """The first ``n`` leakage prompts at prompt length ``k`` (default: the shortest) with their true rest."""
    k = min(world.params["prompt_lengths"]) if k is None else k
    rows = world.data["completions"][k][:n]
    return pd.DataFrame({"prompt": [r["prompt"] for r in rows], "true rest": [r["response"] for r in rows]})


def completions_table(results: Mapping[str, Mapping[str, Any]], world: World, n: int = 2, k: int | None = None,
                      width: int = 160) -> pd.DataFrame:
    """Side by side: the end of the prompt, the true rest and each model's greedy completion of the first ``n``
    forget prompts at prompt length ``k`` (default: the shortest), each cut to ``width`` characters."""
    k = min(world.params["prompt_lengths"]) if k is None else k
    rows = world.data["completions"][k][:n]
    cut = lambda text: text if len(text) <= width else text[: width - 3] + "..."  # noqa: E731
    table = {"prompt (last words)": ["... " + " ".join(r["prompt"].split()[-8:]) for r in rows],
             "true rest": [cut(r["response"]) for r in rows]}
    for label, r in results.items():
        if "metrics" in r:
            table[label] = [cut(g) for g in r["metrics"]["leakage"][str(k)]["generations"][:n]]
    return pd.DataFrame(table).T.rename(columns=lambda i: f"prompt {i}")


def perplexity_figure(table: pd.DataFrame, rates: Mapping[str, float], reference_ppl: float, title: str = ""):
    """General-text word perplexity per model on a log axis, SGA runs by rate; collapsed runs marked with x,
    and the collapse threshold (:data:`COLLAPSE_FACTOR` x the reference's) drawn as a line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    labels = list(table.index)
    for i, label in enumerate(labels):
        row = table.loc[label]
        value = row.get("general_ppl")
        shown = value if pd.notna(value) and math.isfinite(value) else np.nan
        color = _color(str(label), i, rates)
        ax.bar(i, shown if pd.notna(shown) else 0, color=color, alpha=0.35 if label in rates and label != "sga" else 0.9)
        if row["collapsed"]:
            ax.scatter([i], [shown if pd.notna(shown) else reference_ppl * COLLAPSE_FACTOR], marker="x", color="k", s=60, zorder=3)
    ax.axhline(COLLAPSE_FACTOR * reference_ppl, color="k", ls="--", lw=1, label=f"collapse: {COLLAPSE_FACTOR:g} x reference")
    names = [_named(str(label), rates).replace(" (", "\n(") for label in labels]
    ax.set_xticks(range(len(labels)), names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("word perplexity, held-out general text")
    ax.set_title(title or "Perplexity per method (x: collapsed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def tradeoff_figure(table: pd.DataFrame, k: int, rates: Mapping[str, float], title: str = ""):
    """Memorisation (ROUGE-L recall of completions at prompt length ``k``) against general-text perplexity
    (log axis), one point per model; collapsed runs drawn as x."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (label, row) in enumerate(table.iterrows()):
        x, y = row.get("general_ppl"), row.get(f"rouge_l_{k}")
        if pd.isna(x) or pd.isna(y) or not math.isfinite(x):
            continue
        marker = "x" if row["collapsed"] else ("s" if label in ("target", "reference") else "o")
        ax.scatter(x, y, marker=marker, s=55, color=_color(str(label), i, rates))
        ax.annotate(_named(str(label), rates), (x, y), textcoords="offset points", xytext=(6, 4) if i % 2 == 0 else (6, -12), fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())  # labelled minor ticks of a short log range overlap
    ax.set_xlabel("word perplexity, held-out general text (lower is better)")
    ax.set_ylabel(f"ROUGE-L recall of completions, k = {k} (lower: forgotten)")
    ax.set_title(title or "Memorisation vs perplexity")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def trajectory_table(results: Mapping[str, Mapping[str, Any]], column: str) -> pd.DataFrame:
    """One row per epoch, one column per run: ``column`` of each run's per-epoch reading (``trajectory``)."""
    table = {label: {e["epoch"]: e[column] for e in r.get("trajectory") or []} for label, r in results.items()}
    table = pd.DataFrame({label: values for label, values in table.items() if values})
    table.index.name = "epoch"
    return table


def along_reading(result: Mapping[str, Any], k: int) -> float:
    """A model's value of the per-epoch reading (ROUGE-L recall at prompt length ``k``, first instruction of
    each forget passage), taken from its full evaluation: the same prompts, the same greedy completions."""
    return float(np.mean(result["metrics"]["leakage"][str(k)]["rouge_l_recall_per_item"][:: len(INSTRUCTIONS)]))


def trajectory_figure(results: Mapping[str, Mapping[str, Any]], k: int, references: Mapping[str, float], title: str = ""):
    """Per-epoch ROUGE-L recall at prompt length ``k`` and general-text perplexity (log axis), one line per run;
    ``references``: label -> that model's ROUGE-L on the same reading, drawn as horizontal lines."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (label, r) in enumerate(results.items()):
        epochs = r.get("trajectory") or []
        if epochs:
            x = [e["epoch"] for e in epochs]
            color = _color(str(label), i)
            axes[0].plot(x, [e[f"rouge_l_{k}"] for e in epochs], marker="o", ms=3, label=label, color=color)
            axes[1].plot(x, [e["general_ppl"] for e in epochs], marker="o", ms=3, label=label, color=color)
    for j, (label, value) in enumerate(references.items()):
        axes[0].axhline(value, ls="--", lw=1, color=_color(label, j), label=f"{label} (as it is)")
    axes[0].set_ylabel(f"ROUGE-L recall, k = {k}")
    axes[1].set_ylabel("word perplexity, general text")
    axes[1].set_yscale("log")
    axes[1].yaxis.set_minor_formatter(plt.NullFormatter())
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title or "After every epoch")
    fig.tight_layout()
    return fig
