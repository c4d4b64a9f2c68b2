"""What notebook 02 shows of TOFU besides its figures: samples of the data, answers, the paper's table shape."""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from sga.benchmarks.tofu import eval_splits
from sga.world import World

# numbers the paper's reviews quote for SGA on TOFU (no tables were available; see docs/sources.md)
PAPER_SGA_FORGET_QUALITY = (0.006, 0.09)


def samples(world: World, n: int = 3) -> pd.DataFrame:
    """A few forget questions with their answer, paraphrase and first perturbed answer."""
    rows = world.data["forget_perturbed"].select(range(min(n, len(world.data["forget_perturbed"]))))
    return pd.DataFrame({"question": rows["question"], "answer": rows["answer"],
                         "paraphrased_answer": rows["paraphrased_answer"],
                         "perturbed_answer[0]": [p[0] for p in rows["perturbed_answer"]]})


def answers_table(results: Mapping[str, Mapping[str, Any]], world: World, n: int = 2) -> pd.DataFrame:
    """The first ``n`` forget questions with each model's generated answer."""
    forget = eval_splits(world, world.settings.evaluation)["forget"]
    table = {"question": forget["question"][:n], "answer": forget["answer"][:n]}
    for label, r in results.items():
        if "metrics" in r:
            table[label] = r["metrics"]["forget"]["generations"][:n]
    return pd.DataFrame(table)


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
