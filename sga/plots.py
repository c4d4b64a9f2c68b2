"""The few plotting helpers the notebooks share; every figure is saved as figures/NN-name.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd

CURVES = (("forget_nll", "forget NLL"), ("retain_nll", "retain / normal NLL"), ("grad_norm", "gradient norm"))
# one colour per model in every figure; other labels take the colours after these, in order
COLORS = {name: f"C{i}" for i, name in enumerate(("target", "retain", "ga", "graddiff", "kl", "npo", "sga"))}


def model_color(label: str, position: int) -> str:
    """The colour of ``label``: fixed for the reference models and methods, else by ``position``."""
    return COLORS.get(label, f"C{(len(COLORS) + position) % 10}")


def save_figure(fig: plt.Figure, figures_dir: str | Path, notebook: int, name: str) -> Path:
    """Save ``fig`` as ``figures_dir/NN-name.png`` (NN = the notebook's number) and return the path."""
    path = Path(figures_dir) / f"{notebook:02d}-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def quality_vs_utility(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Forget quality (log scale) against model utility, one labelled point per model."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (label, row) in enumerate(table.iterrows()):
        if pd.isna(row.get("forget_quality")) or pd.isna(row.get("model_utility")):
            continue
        marker = "s" if label in ("target", "retain") else "o"
        ax.scatter(row["model_utility"], row["forget_quality"], marker=marker, s=50, color=model_color(str(label), i))
        # alternate label sides so neighbouring points stay readable
        ax.annotate(str(label), (row["model_utility"], row["forget_quality"]), textcoords="offset points",
                    xytext=(6, 4) if i % 2 == 0 else (6, -12))
    ax.set_yscale("log")
    ax.set_xlabel("model utility (higher is better)")
    ax.set_ylabel("forget quality, KS p-value (higher is better)")
    ax.set_title(title or "Forget quality vs model utility")
    ax.grid(alpha=0.3)
    return fig


def training_curves(results: Mapping[str, Mapping[str, Any]], title: str = "") -> plt.Figure:
    """Forget NLL, retain/normal NLL and gradient norm per step, one line per run with a log."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.4))
    for i, (label, result) in enumerate(results.items()):
        steps = result.get("log") or []
        x = [s["step"] for s in steps]
        for ax, (key, _) in zip(axes, CURVES):
            values = [s.get(key, s.get("normal_nll") if key == "retain_nll" else None) for s in steps]
            if any(v is not None for v in values):  # one colour per run in every panel
                ax.plot(x, [float("nan") if v is None else v for v in values], label=label, color=model_color(label, i))
    for ax, (_, name) in zip(axes, CURVES):
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[-1].set_yscale("log")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
