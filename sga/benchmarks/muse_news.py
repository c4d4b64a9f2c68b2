"""MUSE-News as a benchmark spec.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from sga.data.muse_news import EVAL_SPLITS, chunk_texts, generate_muse_news, load_muse_news
from sga.embedded import data_source
from sga.metrics.muse_news import evaluate_muse_news, summary_row, verbmem_scores
from sga.models import load_tokenizer
from sga.prompts import TEMPLATES, Text
from sga.specs import EMBEDDED, Evaluation, Plan, RunSpec, Spec, TinyModel, TinyTraining, WorldSpec, integer, kind, nested, one_of, setting
from sga.tiny_worlds import MUSE_TRAIN_SPLITS, muse_news_models
from sga.world import Axes, Benchmark, World, WorldParts

# transformers (v5) ignores clean_up_tokenization_spaces for a BPE tokenizer and says so on every decode of a
# VerbMem reference; with the tiny models' byte-level BPE nothing is cleaned up, which is what we want
logging.getLogger("transformers.tokenization_utils_tokenizers").addFilter(
    lambda record: "Ignoring clean_up_tokenization_spaces" not in record.getMessage())

POOL_SPLIT = "retain1"


@dataclass(frozen=True, kw_only=True)
class NewsData(Spec):
    """Sizes of the generated mini news corpus (ignored for a hub source)."""

    articles_per_split: int = setting(16, integer(1), "articles per raw split")
    sentences_per_article: int = setting(8, integer(1), "sentences per article")
    qa_per_article: int = setting(2, integer(1), "KnowMem questions per article")
    n_icl: int = setting(3, integer(0), "in-context examples of KnowMem prompts")


@dataclass(frozen=True, kw_only=True)
class MuseNewsWorld(WorldSpec):
    BENCHMARK = "muse_news"

    template: str = setting("raw", one_of(TEMPLATES), "BOS then the text as is, as muse_bench tokenises (Text chunks have no template)")
    max_length: int = setting(256, integer(8), "tokens per training / unlearning sequence (BOS + a chunk)")
    retrain_model: str = setting(EMBEDDED, kind(str), "the reference model: trained on the retain articles only", source=True)
    chunk_tokens: int = setting(255, integer(8), "each article cut into chunks of at most this many tokens (mini: one per article; paper: 2048)")
    data: NewsData = nested(NewsData, "sizes of the generated corpus")
    tiny_model: TinyModel = nested(TinyModel, "shape of the tiny models")
    tiny_training: TinyTraining = nested(TinyTraining, "training of the tiny models", epochs=50, lr=1e-2, batch_size=8)

    def validate(self) -> None:
        super().validate()
        if self.chunk_tokens + 1 > self.max_length:
            raise ValueError(f"chunk_tokens ({self.chunk_tokens}) plus BOS must fit in max_length "
                             f"({self.max_length}); lower chunk_tokens or raise max_length.")


BLOCK: dict[str, Any] = {
    # mini: the fewest epochs at lr 1e-3 after which GA's VerbMem on D_f is at or below the retrain model's
    # (12 = 48 steps; chosen on GA alone, before the other methods ran); every method gets it
    "epochs": 12,
}
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "epochs": 1,
        "chunk_tokens": 63,
        "max_length": 64,
        "data": {"articles_per_split": 5, "sentences_per_article": 4, "qa_per_article": 2, "n_icl": 2},
        "tiny_model": {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "vocab_size": 400},
        "tiny_training": {"epochs": 2, "lr": 3e-3, "batch_size": 16},
    },
    "mini": {},
    # hub data and the muse-bench Llama-2-7B checkpoints, 4-bit QLoRA. One forward must stay near 4096 tokens to fit
    # 12 GB (sga.gpu_plan): one forget chunk of 2048 tokens with its extras per forward, gradients accumulated over
    # the batch of 32, and K=2 for SGA (1 forget + 1 normal chunk)
    "paper": {
        "data_source": "muse-bench/MUSE-News",
        "target_model": "muse-bench/MUSE-News_target",
        "retrain_model": "muse-bench/MUSE-news_retrain",  # spelled with a lower-case n on the hub
        "chunk_tokens": 2048,
        "max_length": 2049,
        "lr": 1e-5,
        "epochs": 10,
        "batch_size": 32,
        "forget_per_forward": 1,
        "k": 2,
        "eval_batch_size": 4,
    },
}


def load(world: MuseNewsWorld, cache_dir: Path, progress: bool) -> WorldParts:
    """The raw splits and the evaluation splits, the tokenizer, the forget / pool chunks and the model sources."""
    source = data_source(world, cache_dir, "muse-news-data", generate_muse_news)
    embedded = world.target_model == EMBEDDED
    raw = MUSE_TRAIN_SPLITS if embedded else ("forget", POOL_SPLIT)
    data = {f"raw_{split}": load_muse_news(source, "raw", split, cache_dir) for split in raw}
    data.update({name: load_muse_news(source, config, split, cache_dir) for name, (config, split) in EVAL_SPLITS.items()})
    if embedded:
        tokenizer, target, retrain = muse_news_models(world, data, cache_dir, progress)
    else:
        tokenizer, target, retrain = load_tokenizer(world.target_model), world.target_model, world.retrain_model
    forget, pool = ([Text(c) for c in chunk_texts(tokenizer, data[f"raw_{split}"]["text"], world.chunk_tokens)]
                    for split in ("forget", POOL_SPLIT))
    return WorldParts(data, forget, pool, tokenizer, {"target": target, "retrain": retrain})


def eval_splits(world: World, evaluation: Evaluation) -> dict[str, Any]:
    """The splits the metrics read (``sga.data.muse_news.EVAL_SPLITS``), cut to ``eval_max_items`` rows when set
    (the ICL examples are kept whole)."""
    limit = evaluation.eval_max_items
    splits = {name: world.data[name] for name in EVAL_SPLITS}
    cut = lambda name, rows: rows.select(range(min(limit, len(rows)))) if limit and not name.endswith("_icl") else rows  # noqa: E731
    return {name: cut(name, rows) for name, rows in splits.items()}


def evaluate(world: World, model, run: RunSpec, auc_retrain: float | None) -> dict[str, Any]:
    """The MUSE-News metrics; without ``auc_retrain`` the model is its own reference (PrivLeak 0 by construction)."""
    with warnings.catch_warnings():
        # scipy's bootstrap warns when every score is equal (e.g. all 0 after unlearning); the interval it
        # reports then ([x, x] or NaN) says the same
        warnings.filterwarnings("ignore", category=scipy.stats.DegenerateDataWarning)
        metrics = evaluate_muse_news(model, world.tokenizer, eval_splits(world, run.evaluation), auc_retrain,
                                     batch_size=run.evaluation.eval_batch_size, seed=run.seed)
    if auc_retrain is None:
        leak = metrics["privleak"]
        leak.update(auc_retrain=leak["auc"], privleak=0.0)
    return metrics


def evaluate_along(world: World, model, run: RunSpec, auc_retrain: float | None) -> dict[str, Any]:
    """The reading after each epoch (``trajectory``): the four metrics and their intervals, as at the end
    (on the mini corpus a full evaluation takes seconds)."""
    return summary_row(evaluate(world, model, run, auc_retrain))


def read_forget(world: World, model, run: RunSpec) -> float:
    """The forgetting axis alone, as :func:`evaluate_along` reads it: VerbMem on D_f (its mean, x100)."""
    rows = eval_splits(world, run.evaluation)["verbmem_forget"]
    return 100 * float(np.mean(verbmem_scores(model, world.tokenizer, rows, batch_size=run.evaluation.eval_batch_size)[0]))


def axes(world: MuseNewsWorld) -> Axes:
    """VerbMem on D_f against KnowMem on D_r; the retrain model's forgetting is the level."""
    return Axes("verbmem_f", "VerbMem on D_f", "knowmem_r", "KnowMem on D_r", True, lambda world, result: result["summary"], "retrain")


MUSE_NEWS = Benchmark(
    name="muse_news",
    world_spec=MuseNewsWorld,
    evaluation_spec=Evaluation,
    plan_spec=Plan,
    load=load,
    evaluate=evaluate,
    reference_statistic=lambda metrics: metrics["privleak"]["auc"],
    summary=summary_row,
    evaluate_along=evaluate_along,
    read_forget=read_forget,
    axes=axes,
    reference_model="retrain",
    block=BLOCK,
    presets=PRESETS,
)
