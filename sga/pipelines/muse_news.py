"""MUSE-News as a benchmark spec, and the helpers notebook 04 shows its data, tables and paths with.

- Data: ``muse-bench/MUSE-News`` by hub id or a local copy in its Parquet layout, or (``"embedded"``) the
  generated mini news corpus in exactly that layout, made once and cached by its parameters.
- Forget set: :class:`~sga.prompts.Text` chunks of ``raw/forget``; retain / normal pool: chunks of
  ``raw/retain1`` (the retain set muse_bench's unlearning scripts regularise on). Each article is cut into
  chunks of at most ``chunk_tokens`` tokens at word boundaries (one chunk if it fits).
- Models: ``target`` (trained on forget + retain articles) and ``retrain`` (retain only), the reference.
  In the embedded world both are tiny Llamas trained here; the holdout articles are never trained on
  (nor used for the tokenizer).
- Metrics (:mod:`sga.metrics.muse_news`, x100): VerbMem on D_f, KnowMem on D_f and D_r, each with a 95%
  bootstrap interval, and PrivLeak against AUC_retrain computed from the retrain model (the published
  constant shown beside it). The retrain model is its own reference: its PrivLeak is 0 by construction.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.stats

# transformers (v5) ignores clean_up_tokenization_spaces for a BPE tokenizer and says so on every decode of a
# VerbMem reference; with the tiny models' byte-level BPE nothing is cleaned up, which is what we want
logging.getLogger("transformers.tokenization_utils_tokenizers").addFilter(
    lambda record: "Ignoring clean_up_tokenization_spaces" not in record.getMessage())

from sga import experiment  # noqa: E402
from sga.comparison import Axes  # noqa: E402
from sga.data.muse_news import EVAL_SPLITS, generate_muse_news, load_muse_news  # noqa: E402
from sga.embedded import build_or_load_tiny_model, build_or_load_tokenizer, generated_data  # noqa: E402
from sga.experiment import Benchmark, World, WorldParts, reference, results_table, run_method  # noqa: E402,F401 (the notebook's steps)
from sga.metrics.muse_news import AUC_RETRAIN_NEWS, evaluate_muse_news, knowmem_prompt, summary_row  # noqa: E402
from sga.models import load_tokenizer  # noqa: E402
from sga.plots import COLORS, model_color  # noqa: E402
from sga.presets import EMBEDDED  # noqa: E402
from sga.prompts import QA, Text  # noqa: E402

_WORLD_KEYS = ("data_source", "target_model", "retrain_model", "data", "tiny_model", "tiny_training", "world_seed",
               "template", "chunk_tokens", "max_length", "cpu_threads")
TRAIN_SPLITS = ("forget", "retain1", "retain2")  # raw splits the target is trained on (the retrain model: retain only)
POOL_SPLIT = "retain1"
METRICS = (("verbmem_f", "VerbMem on D_f", "lower"), ("knowmem_f", "KnowMem on D_f", "lower"),
           ("knowmem_r", "KnowMem on D_r", "higher"), ("privleak", "PrivLeak", "near 0"))
PATH_METHODS = ("ga", "sga")  # runs read after every epoch (a full evaluation each: seconds on mini)
PLOT_ORDER = ("target", "retrain", "ga", "graddiff", "kl", "npo", "simnpo", "sga")
# what the paper reports on MUSE-News, as far as known: only KnowMem on D_r, from its reviews (no tables were available)
PAPER_KNOWMEM_R = {"retrain": 55.0, "kl": 48.0, "ga": 0.0, "sga": 1.94}


def data_source(params: Mapping[str, Any], cache_dir: Path) -> str:
    """The dataset location: the generated mini news corpus (made once, cached by its parameters) or the given source."""
    if params["data_source"] != EMBEDDED:
        return params["data_source"]
    return str(generated_data(cache_dir, "muse-news-data", {**params["data"], "seed": params["world_seed"]}, generate_muse_news))


def chunk_texts(tokenizer, texts: Sequence[str], chunk_tokens: int) -> list[str]:
    """Each text cut into pieces of at most ``chunk_tokens`` tokens (a text that fits is one piece), each cut
    made before a token that starts a word (a single word longer than a chunk is cut inside it).

    Texts are cut one by one, so every article starts a chunk, right after BOS, as VerbMem prompts it.
    (muse_bench packs a whole split into 2048-token chunks across article boundaries; a tiny model that
    memorised packed chunks does not recall an article from its start, so the spec keeps articles apart.)
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}.")
    chunks = [piece for text in texts if text and text.strip() for piece in _cut(tokenizer, text.strip(), chunk_tokens)]
    if not chunks:
        raise ValueError("There is no text to cut into chunks.")
    return chunks


def _cut(tokenizer, text: str, chunk_tokens: int) -> list[str]:
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts_word = [s == 0 or text[s - 1].isspace() or text[s].isspace() for s, _ in offsets]
    pieces, begin, n = [], 0, len(offsets)
    while begin < n:
        end = min(begin + chunk_tokens, n)
        if end < n:
            end = next((j for j in range(end, begin, -1) if starts_word[j]), end)
        piece = text[offsets[begin][0] : offsets[end][0] if end < n else len(text)].strip()
        if piece:
            pieces.append(piece)
        begin = end
    return pieces


def _qa_practice(data: Mapping[str, Any], kinds: Sequence[str]) -> list[QA]:
    """The knowmem questions of the given kinds as KnowMem prompts them (after the ICL examples; those on
    their own), answer + EOS scored."""
    examples = []
    for kind in kinds:
        icl = list(data[f"knowmem_{kind}_qa_icl"])
        examples += [QA(knowmem_prompt(row["question"], icl), row["answer"]) for row in data[f"knowmem_{kind}_qa"]]
        examples += [QA(knowmem_prompt(row["question"], []), row["answer"]) for row in icl]
    return examples


def _tiny_models(params: Mapping[str, Any], data: dict[str, Any], cache_dir: Path) -> tuple[Any, str, str]:
    """Tokenizer, target and retrain models of the embedded world, trained once and cached.

    The tokenizer is trained on the retain articles only, so that forget and holdout articles are alike to
    it. The target reads the forget, retain1 and retain2 articles (as chunks); the retrain model the retain
    ones. A 4-layer model cannot learn to answer questions from news text alone, so each also reads the
    knowmem questions about the articles it was trained on, as KnowMem prompts them.
    """
    model_cfg, train_cfg = dict(params["tiny_model"]), dict(params["tiny_training"])
    seed = params["world_seed"]
    retain_texts = [t for split in ("retain1", "retain2") for t in data[f"raw_{split}"]["text"]]
    retain_qa = _qa_practice(data, ["retain"])
    tokenizer = build_or_load_tokenizer(retain_texts + [f"{e.question}{e.answer}" for e in retain_qa],
                                        model_cfg.pop("vocab_size"), cache_dir, seed=seed)
    chunks = {split: [Text(c) for c in chunk_texts(tokenizer, data[f"raw_{split}"]["text"], params["chunk_tokens"])]
              for split in TRAIN_SPLITS}
    # positions: rotary, so the setting changes no weight; 4096 covers the prompts plus new tokens of the metrics
    model_kwargs = {**model_cfg, "seed": seed, "max_position_embeddings": max(params["max_length"], 4096)}
    train_kwargs = {**train_cfg, "seed": seed, "max_length": params["max_length"], "progress": params["progress"]}
    build = lambda name, examples: str(build_or_load_tiny_model(name, examples, tokenizer, cache_dir, params["template"], model_kwargs, train_kwargs))  # noqa: E731
    target = build("muse-news-target", chunks["forget"] + chunks["retain1"] + chunks["retain2"] + _qa_practice(data, ["forget", "retain"]))
    retrain = build("muse-news-retrain", chunks["retain1"] + chunks["retain2"] + retain_qa)
    return tokenizer, target, retrain


def load(params: Mapping[str, Any], cache_dir: Path) -> WorldParts:
    """The raw splits and the evaluation splits, the tokenizer, the forget / pool chunks and the model sources."""
    if params["chunk_tokens"] + 1 > params["max_length"]:
        raise ValueError(f"chunk_tokens ({params['chunk_tokens']}) plus BOS must fit in max_length "
                         f"({params['max_length']}); lower chunk_tokens or raise max_length.")
    source = data_source(params, cache_dir)
    embedded = params["target_model"] == EMBEDDED
    raw = TRAIN_SPLITS if embedded else ("forget", POOL_SPLIT)
    data = {f"raw_{split}": load_muse_news(source, "raw", split, cache_dir) for split in raw}
    data.update({name: load_muse_news(source, config, split, cache_dir) for name, (config, split) in EVAL_SPLITS.items()})
    if embedded:
        tokenizer, target, retrain = _tiny_models(params, data, cache_dir)
    else:
        tokenizer, target, retrain = load_tokenizer(params["target_model"]), params["target_model"], params["retrain_model"]
    forget, pool = (
        [Text(c) for c in chunk_texts(tokenizer, data[f"raw_{split}"]["text"], params["chunk_tokens"])]
        for split in ("forget", POOL_SPLIT)
    )
    return WorldParts(data, forget, pool, tokenizer, {"target": target, "retrain": retrain})


def eval_splits(world: World, params: Mapping[str, Any]) -> dict[str, Any]:
    """The splits the metrics read (``sga.data.muse_news.EVAL_SPLITS``), cut to ``eval_max_items`` rows when set
    (the ICL examples are kept whole)."""
    limit = params["eval_max_items"]
    splits = {name: world.data[name] for name in EVAL_SPLITS}
    cut = lambda name, rows: rows.select(range(min(limit, len(rows)))) if limit and not name.endswith("_icl") else rows  # noqa: E731
    return {name: cut(name, rows) for name, rows in splits.items()}


def evaluate(world: World, model, params: Mapping[str, Any], auc_retrain: float | None) -> dict[str, Any]:
    """The MUSE-News metrics; without ``auc_retrain`` the model is its own reference (PrivLeak 0 by construction)."""
    with warnings.catch_warnings():
        # scipy's bootstrap warns when every score is equal (e.g. all 0 after unlearning); the interval it
        # reports then ([x, x] or NaN) says the same
        warnings.filterwarnings("ignore", category=scipy.stats.DegenerateDataWarning)
        metrics = evaluate_muse_news(model, world.tokenizer, eval_splits(world, params), auc_retrain,
                                     batch_size=params["eval_batch_size"], seed=params["seed"])
    if auc_retrain is None:
        leak = metrics["privleak"]
        leak.update(auc_retrain=leak["auc"], privleak=0.0)
    return metrics


def evaluate_along(world: World, model, params: Mapping[str, Any], auc_retrain: float | None) -> dict[str, Any]:
    """The reading after each epoch (``trajectory``): the four metrics and their intervals, as at the end
    (on the mini corpus a full evaluation takes seconds)."""
    return summary_row(evaluate(world, model, params, auc_retrain))


def axes(params: Mapping[str, Any]) -> Axes:
    """VerbMem on D_f against KnowMem on D_r; the retrain model's forgetting is the level."""
    return Axes("verbmem_f", "VerbMem on D_f", "knowmem_r", "KnowMem on D_r", True, lambda world, result: result["summary"], "retrain")


MUSE_NEWS = Benchmark(
    name="muse_news",
    load=load,
    evaluate=evaluate,
    reference_statistic=lambda metrics: metrics["privleak"]["auc"],
    summary=summary_row,
    world_keys=_WORLD_KEYS,
    reference_model="retrain",
    evaluate_along=evaluate_along,
    axes=axes,
)


def prepare(params: Mapping[str, Any], cache_dir: str | Path, out_dir: str | Path) -> World:
    """The MUSE-News world of ``params`` (see :func:`sga.experiment.prepare`)."""
    return experiment.prepare(MUSE_NEWS, params, cache_dir, out_dir)


def run(world: World, method_name: str, overwrite: bool = False) -> dict[str, Any]:
    """:func:`sga.experiment.run_method` with the world's parameters, and for the methods of ``PATH_METHODS``
    (GA and SGA) with ``trajectory``: the four metrics after every epoch, the path from the target on."""
    return run_method(world, method_name, overwrite, trajectory=(method_name in PATH_METHODS) or None)


# ------------------------------------------------------------------ what the notebook shows


def sizes(world: World) -> pd.DataFrame:
    """Rows of each loaded split, and the forget / pool chunks with their token counts."""
    rows = {name: len(data) for name, data in world.data.items()}
    tokens = lambda examples: [len(world.tokenizer(e.text, add_special_tokens=False)["input_ids"]) for e in examples]  # noqa: E731
    for name, examples in (("forget chunks", world.forget), (f"pool chunks ({POOL_SPLIT})", world.pool)):
        counts = tokens(examples)
        rows[name] = len(examples)
        rows[f"{name}: mean tokens"] = round(float(np.mean(counts)), 1)
    return pd.Series(rows, name="rows").to_frame().T


def samples(world: World) -> dict[str, pd.DataFrame]:
    """The first forget article, its VerbMem prompt and ground truth, and the first KnowMem questions of each kind."""
    verbmem = world.data["verbmem_forget"][0]
    knowmem = pd.DataFrame([{"set": kind, "question": row["question"], "answer": row["answer"]}
                            for kind in ("forget", "retain") for row in world.data[f"knowmem_{kind}_qa"].select(range(2))])
    return {
        "article": pd.DataFrame({"raw/forget[0]": [world.data["raw_forget"][0]["text"]]}),
        "verbmem": pd.DataFrame({"prompt": [verbmem["prompt"]], "gt": [verbmem["gt"]]}),
        "knowmem": knowmem,
        "chunk": pd.DataFrame({"forget chunk 0": [world.forget[0].text]}),
    }


def muse_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The paper's MUSE table shape: per model, each metric's mean with its 95% bootstrap interval, and the AUCs."""
    table = results_table(results)
    out = pd.DataFrame(index=table.index)
    for key, name, better in METRICS[:3]:
        out[f"{name} ({better})"] = [f"{m:.1f} [{lo:.1f}, {hi:.1f}]" if pd.notna(m) else "" for m, lo, hi in
                                     zip(table.get(key, np.nan), table.get(f"{key}_ci_low", np.nan), table.get(f"{key}_ci_high", np.nan))]
    out["PrivLeak (near 0)"] = [f"{v:.1f}" if pd.notna(v) else "" for v in table.get("privleak", np.nan)]
    out["AUC"] = table.get("auc")
    out["AUC_retrain"] = table.get("auc_retrain")
    out["published AUC_retrain"] = AUC_RETRAIN_NEWS
    return out


def paper_comparison(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """KnowMem on D_r, ours beside the paper's numbers known from its reviews (NaN where not reported)."""
    table = results_table(results)
    return pd.DataFrame({
        "KnowMem on D_r, ours (mini: tiny models)": table["knowmem_r"].round(1),
        "KnowMem on D_r, paper (Llama-2-7B, from its reviews)": [PAPER_KNOWMEM_R.get(str(m), np.nan) for m in table.index],
    })


def path_table(results: Mapping[str, Mapping[str, Any]], methods: Sequence[str] | None = None) -> pd.DataFrame:
    """The four metrics along unlearning, one row per (method, epoch): epoch 0 is the target, the others are
    read after each epoch of the run (its ``trajectory``; the last one is the run's final evaluation)."""
    start = results["target"]["summary"]
    rows = []
    for name in methods or [m for m, r in results.items() if r.get("trajectory")]:
        r = results[name]
        rows.append({"method": name, "epoch": 0, "step": 0, **{key: start[key] for key, _, _ in METRICS}})
        rows += [{"method": name, "epoch": e["epoch"], "step": e["step"], **{key: e[key] for key, _, _ in METRICS}}
                 for e in r.get("trajectory") or []]
    return pd.DataFrame(rows).set_index(["method", "epoch"])


def _colors(labels: Sequence[str]) -> list[str]:
    """The fixed colour of each known model or method (sga.plots); the others (retrain, simnpo) take the next
    free colours in ``PLOT_ORDER``, so they never share one."""
    others = [label for label in PLOT_ORDER if label not in COLORS]
    return [model_color(label, others.index(label) if label in others else len(others)) for label in labels]


def plot_paths(table: pd.DataFrame, retrain: Mapping[str, Any], title: str = "") -> plt.Figure:
    """Each metric of a :func:`path_table` against the epoch, one line per method, the retrain model's value dashed."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.0 * len(METRICS), 3.3))
    methods = list(dict.fromkeys(table.index.get_level_values("method")))
    for ax, (key, name, better) in zip(axes, METRICS):
        for method_name, color in zip(methods, _colors(methods)):
            part = table.loc[method_name]
            ax.plot(part.index, part[key], marker="o", label=method_name, color=color)
        ax.axhline(retrain["summary"][key], ls="--", color="k", lw=1, label="retrain")
        ax.set_xlabel("epoch of unlearning (0 = target)")
        ax.set_title(f"{name} ({better})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_metrics(results: Mapping[str, Mapping[str, Any]], title: str = "") -> plt.Figure:
    """The four metrics per model as bars, with the 95% bootstrap intervals of VerbMem and KnowMem."""
    table = results_table(results)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.0 * len(METRICS), 3.3))
    labels = [str(m) for m in table.index]
    colors = _colors(labels)
    for ax, (key, name, better) in zip(axes, METRICS):
        values = table[key].astype(float).to_numpy()
        if f"{key}_ci_low" in table:
            err = np.abs(np.vstack([values - table[f"{key}_ci_low"].astype(float), table[f"{key}_ci_high"].astype(float) - values]))
            ax.bar(labels, values, color=colors, yerr=np.nan_to_num(err), capsize=3)
        else:
            ax.bar(labels, values, color=colors)
        ax.set_title(f"{name} ({better})")
        ax.tick_params(axis="x", rotation=60)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def generations_table(results: Mapping[str, Mapping[str, Any]], world: World, n: int = 1) -> pd.DataFrame:
    """The first ``n`` VerbMem references and forget KnowMem answers, with each model's greedy output."""
    rows = []
    for i in range(n):
        rows.append({"item": f"verbmem[{i}]", "reference": world.data["verbmem_forget"][i]["gt"],
                     **{label: r["metrics"]["verbmem_f"]["generations"][i] for label, r in results.items() if "metrics" in r}})
        rows.append({"item": f"knowmem forget[{i}]", "reference": world.data["knowmem_forget_qa"][i]["answer"],
                     **{label: r["metrics"]["knowmem_f"]["generations"][i] for label, r in results.items() if "metrics" in r}})
    return pd.DataFrame(rows).set_index("item")
