"""What notebook 04 shows of MUSE-News besides its figures: sizes and samples of the data, the MUSE table shape,
the paper's numbers, the metrics along unlearning, generations."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sga.benchmarks.muse_news import POOL_SPLIT
from sga.experiment import results_table
from sga.metrics.muse_news import AUC_RETRAIN_NEWS, METRICS
from sga.world import World

# what the paper reports on MUSE-News, as far as known: only KnowMem on D_r, from its reviews (no tables were available)
PAPER_KNOWMEM_R = {"retrain": 55.0, "kl": 48.0, "ga": 0.0, "sga": 1.94}


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


def generations_table(results: Mapping[str, Mapping[str, Any]], world: World, n: int = 1) -> pd.DataFrame:
    """The first ``n`` VerbMem references and forget KnowMem answers, with each model's greedy output."""
    rows = []
    for i in range(n):
        rows.append({"item": f"verbmem[{i}]", "reference": world.data["verbmem_forget"][i]["gt"],
                     **{label: r["metrics"]["verbmem_f"]["generations"][i] for label, r in results.items() if "metrics" in r}})
        rows.append({"item": f"knowmem forget[{i}]", "reference": world.data["knowmem_forget_qa"][i]["answer"],
                     **{label: r["metrics"]["knowmem_f"]["generations"][i] for label, r in results.items() if "metrics" in r}})
    return pd.DataFrame(rows).set_index("item")
