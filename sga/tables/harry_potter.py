"""What notebook 03 shows of Harry Potter besides its figures: sizes and samples of the data, results with the
collapse flag, completions side by side, per-epoch readings."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from sga import experiment
from sga.world import World


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
    k = min(world.spec.prompt_lengths) if k is None else k
    rows = world.data["completions"][k][:n]
    return pd.DataFrame({"prompt": [r["prompt"] for r in rows], "true rest": [r["response"] for r in rows]})


def completions_table(results: Mapping[str, Mapping[str, Any]], world: World, n: int = 2, k: int | None = None,
                      width: int = 160) -> pd.DataFrame:
    """Side by side: the end of the prompt, the true rest and each model's greedy completion of the first ``n``
    forget prompts at prompt length ``k`` (default: the shortest), each cut to ``width`` characters."""
    k = min(world.spec.prompt_lengths) if k is None else k
    rows = world.data["completions"][k][:n]
    cut = lambda text: text if len(text) <= width else text[: width - 3] + "..."  # noqa: E731
    table = {"prompt (last words)": ["... " + " ".join(r["prompt"].split()[-8:]) for r in rows],
             "true rest": [cut(r["response"]) for r in rows]}
    for label, r in results.items():
        if "metrics" in r:
            table[label] = [cut(g) for g in r["metrics"]["leakage"][str(k)]["generations"][:n]]
    return pd.DataFrame(table).T.rename(columns=lambda i: f"prompt {i}")


def trajectory_table(results: Mapping[str, Mapping[str, Any]], column: str) -> pd.DataFrame:
    """One row per epoch, one column per run: ``column`` of each run's per-epoch reading (``trajectory``)."""
    table = {label: {e["epoch"]: e[column] for e in r.get("trajectory") or []} for label, r in results.items()}
    table = pd.DataFrame({label: values for label, values in table.items() if values})
    table.index.name = "epoch"
    return table
