"""The few plotting helpers the notebooks share; every figure is saved as figures/NN-name.png."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sga.metrics.harry_potter import COLLAPSE_FACTOR
from sga.metrics.muse_news import METRICS

CURVES = (("forget_nll", "forget NLL"), ("retain_nll", "retain / normal NLL"), ("grad_norm", "gradient norm"))
# one colour per model in every figure; other labels take the colours after these, in order
COLORS = {name: f"C{i}" for i, name in enumerate(("target", "retain", "ga", "graddiff", "kl", "npo", "sga"))}


def model_color(label: str, position: int) -> str:
    """The colour of ``label``: fixed for the reference models and methods, else by ``position``."""
    return COLORS.get(label, f"C{(len(COLORS) + position) % 10}")


def save_figure(fig: plt.Figure, figures_dir: str | Path, notebook: int, name: str) -> None:
    """Save ``fig`` as ``figures_dir/NN-name.png`` (NN = the notebook's number).

    Returns nothing, so that a notebook cell ending with it shows only the figure: a cell's trailing ``;`` hides a
    return value under papermill and Jupyter, but not under nbval, whose strict comparison would then see an extra output.
    """
    path = Path(figures_dir) / f"{notebook:02d}-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


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


def _label_color(label: str, position: int) -> str:
    return model_color(label.split(" ")[0], position)


def truth_ratio_histograms(results: Mapping[str, Mapping[str, Any]], reference: str = "retain", bins: int = 20) -> plt.Figure:
    """Forget-split truth ratios (log scale) of each model, one panel each, over the reference model's.

    Forget quality is the KS test between exactly these two samples.
    """
    labels = [label for label, r in results.items() if "metrics" in r]
    ref = np.log10(results[reference]["metrics"]["forget"]["truth_ratios"])
    values = {label: np.log10(results[label]["metrics"]["forget"]["truth_ratios"]) for label in labels}
    edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=bins)
    cols = min(4, len(labels))
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), sharex=True, squeeze=False, constrained_layout=True)
    for ax, (i, label) in zip(axes.flat, enumerate(labels)):
        ax.hist(ref, bins=edges, color="0.75", label=f"{reference} model")
        ax.hist(values[label], bins=edges, histtype="step", lw=1.8, color=_label_color(label, i), label=label)
        summary = results[label].get("summary", {})
        d, p = summary.get("forget_ks_d"), summary.get("forget_quality")
        title = label if d is None else f"{label}\nD = {d:.2f}, p = {p:.1e}"
        ax.set_title(title, fontsize=9)
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("log10 truth ratio (forget)")
    axes.flat[0].legend(fontsize=7)
    return fig


def paths(runs: Mapping[str, Sequence[Mapping[str, Any]]], start: Mapping[str, Any], reference: Mapping[str, Any] | None = None,
          x: str = "forget_quality", y: str = "model_utility") -> plt.Figure:
    """Each run's path from the start model through its after-epoch readings (``trajectory``); several runs
    of one label (seeds) share a colour. ``start`` and ``reference`` are summary rows (e.g. target, retain)."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for i, (label, results) in enumerate(runs.items()):
        color = _label_color(label, i)
        for j, result in enumerate(results):
            points = [start] + [step for step in result.get("trajectory", [])]
            ax.plot([p[x] for p in points], [p[y] for p in points], "-", color=color, alpha=0.8, lw=1.2,
                    marker=".", ms=4, label=label if j == 0 else None)
            ax.plot(points[-1][x], points[-1][y], "o", color=color, ms=5)
    ax.plot(start[x], start[y], "s", color=COLORS["target"], ms=8, label="target (start)")
    if reference is not None:
        ax.plot(reference[x], reference[y], "s", color=COLORS["retain"], ms=8, label="retain model")
    ax.set_xscale("log")
    ax.set_xlabel(f"{x.replace('_', ' ')} (log)")
    ax.set_ylabel(y.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def interval_plot(table: pd.DataFrame, keys: Sequence[tuple[str, str, str]]) -> plt.Figure:
    """Per label, the mean and interval columns of :func:`sga.analysis.seed_table` for each (key, title, scale)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 0.45 * len(table) + 1.4), sharey=True, constrained_layout=True)
    positions = np.arange(len(table))[::-1]
    for ax, (key, title, scale) in zip(np.atleast_1d(axes), keys):
        for pos, (i, (label, row)) in zip(positions, enumerate(table.iterrows())):
            _interval_row(ax, pos, row[key], row[f"{key} lo"], row[f"{key} hi"], _label_color(str(label), i))
        ax.set(title=title, xscale=scale)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_yticks(positions, [str(label) for label in table.index])
    return fig


def _interval_row(ax: plt.Axes, pos: float, mean: float, lo: float, hi: float, color: str, point_color: str | None = None) -> None:
    """One row of an interval plot at height ``pos``: the interval as a bar (if both ends exist), the mean as a dot."""
    if not (pd.isna(lo) or pd.isna(hi)):
        ax.plot([lo, hi], [pos, pos], "-", color=color, lw=2)
    ax.plot(mean, pos, "o", color=point_color or color)


def benchmark_paths(curves: Mapping[str, Mapping[str, Sequence[pd.DataFrame]]], axes_of: Mapping[str, Any],
                    levels: Mapping[str, float]) -> plt.Figure:
    """One panel per benchmark: each configuration's paths (one thin line per seed, forget against utility
    from the target at epoch 0), and the reference model's forgetting as a dashed vertical line."""
    fig, panels = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.4), squeeze=False)
    for ax, (benchmark, by_label) in zip(panels[0], curves.items()):
        spec = axes_of[benchmark]
        for i, (label, seeds) in enumerate(by_label.items()):
            for j, curve in enumerate(seeds):
                ax.plot(curve["forget"], curve["utility"], "-", marker=".", ms=3, lw=1, alpha=0.75, color=f"C{i % 10}",
                        label=label if j == 0 else None)
        ax.axvline(levels[benchmark], ls="--", lw=1, color="k", label=f"{spec.reference} model's forgetting")
        _forget_utility_panel(ax, benchmark, spec, f"{spec.forget_label} (lower: more forgotten)")
    panels[0][0].legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    return fig


def pareto_panels(table: pd.DataFrame, axes_of: Mapping[str, Any], front: Mapping[str, Sequence[str]]) -> plt.Figure:
    """Per benchmark, each configuration's end point (mean over seeds, with its intervals as error bars);
    the labels in ``front[benchmark]`` (the Pareto front) are joined by a line."""
    benchmarks = list(dict.fromkeys(table.index.get_level_values(0)))
    fig, panels = plt.subplots(1, len(benchmarks), figsize=(5.2 * len(benchmarks), 4.4), squeeze=False)
    for ax, benchmark in zip(panels[0], benchmarks):
        spec, rows = axes_of[benchmark], table.loc[benchmark]
        for i, (label, row) in enumerate(rows.iterrows()):
            x, y = row["end_forget"], row["end_utility"]
            xerr = [[x - row["end_forget lo"]], [row["end_forget hi"] - x]] if pd.notna(row["end_forget lo"]) else None
            yerr = [[y - row["end_utility lo"]], [row["end_utility hi"] - y]] if pd.notna(row["end_utility lo"]) else None
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="osD^v"[i // 10 % 5], ms=5, capsize=2, color=f"C{i % 10}", label=label)
        on = rows.loc[list(front[benchmark])].sort_values("end_forget")
        ax.plot(on["end_forget"], on["end_utility"], "-", color="k", lw=1, alpha=0.6, label="Pareto front")
        _forget_utility_panel(ax, benchmark, spec, f"{spec.forget_label} at the end")
    panels[0][0].legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    return fig


def _forget_utility_panel(ax: plt.Axes, benchmark: str, spec: Any, xlabel: str) -> None:
    """Forgetting on x (reversed: more forgotten to the right), utility on y (log for perplexity)."""
    ax.set(title=benchmark, xlabel=xlabel, ylabel=spec.utility_label)
    if not spec.utility_higher:
        ax.set_yscale("log")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)


def step_traces(traces: Mapping[str, Mapping[str, Sequence[Sequence[float]]]], ylabel: str, log: bool = False) -> plt.Figure:
    """One panel per benchmark: per label, one line per seed of a per-step quantity (e.g. adaptive SGA's
    rate, the gradient norm)."""
    fig, panels = plt.subplots(1, len(traces), figsize=(5.2 * len(traces), 3.6), squeeze=False)
    for ax, (benchmark, by_label) in zip(panels[0], traces.items()):
        for i, (label, seeds) in enumerate(by_label.items()):
            for j, values in enumerate(seeds):
                ax.plot(np.arange(1, len(values) + 1), values, lw=1, alpha=0.75, color=f"C{i % 10}", label=label if j == 0 else None)
        ax.set(title=benchmark, xlabel="step", ylabel=ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    panels[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def rate_panels(table: pd.DataFrame, rates: Mapping[str, Mapping[str, float]], column: str, axes_of: Mapping[str, Any],
                lines: Mapping[str, str] = {}) -> plt.Figure:
    """Per reading (rows) and benchmark (columns), ``column`` (mean with its interval over seeds) of the fixed-rate
    configurations in ``rates[reading]`` (label -> r) against r; each label in ``lines`` (label -> legend text)
    drawn as a horizontal line."""
    benchmarks = list(dict.fromkeys(table.index.get_level_values(0)))
    fig, panels = plt.subplots(len(rates), len(benchmarks), figsize=(4.6 * len(benchmarks), 3.6 * len(rates)), squeeze=False)
    for row_panels, (reading, by_label) in zip(panels, rates.items()):
        for ax, benchmark in zip(row_panels, benchmarks):
            rows = table.loc[benchmark]
            present = [label for label in by_label if label in rows.index]
            x = np.array([by_label[label] for label in present])
            y = rows.loc[present, column].astype(float).to_numpy()
            lo, hi = (rows.loc[present, f"{column} {end}"].astype(float).to_numpy() for end in ("lo", "hi"))
            order = np.argsort(x)
            ax.errorbar(x[order], y[order], yerr=[np.nan_to_num(y - lo, nan=0)[order], np.nan_to_num(hi - y, nan=0)[order]],
                        fmt="o-", capsize=3, color="C6", label="SGA, fixed r")
            for i, (label, text) in enumerate(lines.items()):
                if label in rows.index and pd.notna(rows.loc[label, column]):
                    ax.axhline(float(rows.loc[label, column]), ls="--", lw=1, color=f"C{i % 10}", label=text)
            spec = axes_of[benchmark]
            ax.set(title=benchmark, xlabel=f"smoothing rate r ({reading})", ylabel=f"{spec.utility_label} at equal forgetting")
            if not spec.utility_higher:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        row_panels[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def interval_panels(table: pd.DataFrame, labels: Sequence[str], column: str, axes_of: Mapping[str, Any], baseline: str) -> plt.Figure:
    """Per benchmark, ``column`` (mean and interval over seeds) of each label in ``labels``, one row each, with the
    ``baseline`` label's mean as a dashed vertical line (a label without a value is left empty)."""
    benchmarks = list(dict.fromkeys(table.index.get_level_values(0)))
    fig, panels = plt.subplots(1, len(benchmarks), figsize=(4.4 * len(benchmarks), 0.32 * len(labels) + 1.6), sharey=True, squeeze=False)
    positions = np.arange(len(labels))[::-1]
    for ax, benchmark in zip(panels[0], benchmarks):
        rows, spec = table.loc[benchmark], axes_of[benchmark]
        for pos, label in zip(positions, labels):
            if label not in rows.index or pd.isna(rows.loc[label, column]):
                continue
            mean, lo, hi = (float(rows.loc[label, c]) for c in (column, f"{column} lo", f"{column} hi"))
            _interval_row(ax, pos, mean, lo, hi, "C0", point_color="C3" if label == baseline else "C0")
        if baseline in rows.index and pd.notna(rows.loc[baseline, column]):
            ax.axvline(float(rows.loc[baseline, column]), ls="--", lw=1, color="C3")
        ax.set(title=benchmark, xlabel=f"{spec.utility_label} at equal forgetting")
        if not spec.utility_higher:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    panels[0][0].set_yticks(positions, list(labels))
    fig.tight_layout()
    return fig


def forest(table: pd.DataFrame, axes_of: Mapping[str, Any]) -> plt.Figure:
    """One panel per benchmark: each comparison of a :func:`sga.stats.compare` table (rows labelled "label - baseline
    (world)"), its mean paired difference (a ratio for a log-scale column) with the unadjusted interval (thin) and the
    interval adjusted for the family (thick), no difference dashed."""
    benchmarks = list(dict.fromkeys(table["benchmark"]))
    fig, panels = plt.subplots(1, len(benchmarks), figsize=(4.8 * len(benchmarks), 0.34 * len(table) / len(benchmarks) + 1.8), squeeze=False)
    for ax, benchmark in zip(panels[0], benchmarks):
        rows = table[table["benchmark"] == benchmark].reset_index(drop=True)
        logged = bool((rows["scale"] == "log ratio").any())
        columns = ("ratio", "ratio_lo", "ratio_hi", "ratio_lo_adj", "ratio_hi_adj") if logged else ("mean", "lo", "hi", "lo_adj", "hi_adj")
        positions = np.arange(len(rows))[::-1]
        for pos, row in zip(positions, rows.itertuples()):
            mean, lo, hi, lo_adj, hi_adj = (getattr(row, c) for c in columns)
            ax.plot([lo, hi], [pos, pos], color="C0", lw=1)
            ax.plot([lo_adj, hi_adj], [pos, pos], color="C0", lw=4, alpha=0.35)
            ax.plot([mean], [pos], "o", color="C3" if row.p_holm < table.attrs.get("alpha", 0.05) else "C0", ms=5)
        ax.axvline(1.0 if logged else 0.0, ls="--", lw=1, color="k")
        ax.set_yticks(positions, [f"{r.label} - {r.baseline} ({r.world})" for r in rows.itertuples()], fontsize=7)
        spec = axes_of[benchmark]
        ax.set(title=benchmark, xlabel=f"{spec.utility_label}: {'ratio' if logged else 'difference'} (red: Holm-significant)")
        if logged:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def forgetting_paths(paths: Mapping[str, Mapping[str, Sequence[tuple[Sequence[int], Sequence[float]]]]],
                     levels: Mapping[str, float], axes_of: Mapping[str, Any]) -> plt.Figure:
    """One panel per benchmark: each configuration's readings of the forgetting axis along its runs (one line per
    seed: the steps read, from the target at step 0), the reference model's forgetting dashed."""
    fig, panels = plt.subplots(1, len(paths), figsize=(5.2 * len(paths), 3.8), squeeze=False)
    for ax, (benchmark, by_label) in zip(panels[0], paths.items()):
        for i, (label, seeds) in enumerate(by_label.items()):
            for j, (steps, values) in enumerate(seeds):
                ax.plot(steps, values, lw=1, alpha=0.6, marker=".", ms=3, color=f"C{i % 10}", label=label if j == 0 else None)
        ax.axhline(levels[benchmark], ls="--", lw=1, color="k", label=f"{axes_of[benchmark].reference} model")
        ax.set(title=benchmark, xlabel="step", ylabel=f"{axes_of[benchmark].forget_label} (lower: more forgotten)")
        ax.grid(alpha=0.3)
    panels[0][0].legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    return fig


def ladder_panels(table: pd.DataFrame) -> plt.Figure:
    """Per ladder (rows: SGD, AdamW) and benchmark (columns), the share of seeds that diverged at each learning rate,
    one line per method; ``table`` has columns ladder, benchmark, method, lr, diverged (share)."""
    ladders, benchmarks = list(dict.fromkeys(table["ladder"])), list(dict.fromkeys(table["benchmark"]))
    fig, panels = plt.subplots(len(ladders), len(benchmarks), figsize=(4.4 * len(benchmarks), 3.2 * len(ladders)), squeeze=False)
    for row_panels, ladder in zip(panels, ladders):
        for ax, benchmark in zip(row_panels, benchmarks):
            part = table[(table["ladder"] == ladder) & (table["benchmark"] == benchmark)]
            for i, (method, rows) in enumerate(part.groupby("method", sort=False)):
                rows = rows.sort_values("lr")
                ax.plot(rows["lr"], rows["diverged"], "o-", color=f"C{i}", label=method, alpha=0.8)
            ax.set(title=f"{benchmark}: {ladder}", xlabel="learning rate", ylabel="share of seeds diverged", ylim=(-0.05, 1.05))
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
        row_panels[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig

# ------------------------------------------------------------------ notebook 03: Harry Potter
_HP_COLORS = {"reference": "C8", "simnpo": "C9", "flat": "C7"}  # beside COLORS (target, retain, ga, graddiff, kl, npo, sga)


def _hp_color(label: str, position: int, rates: Mapping[str, float] = {}) -> str:
    """One colour per model: SGA at any rate in SGA's colour, the reference and SimNPO in their own."""
    return _HP_COLORS.get(label) or model_color("sga" if label in rates else label, position)


def _hp_named(label: str, rates: Mapping[str, float]) -> str:
    return f"{label} (r={rates[label]:g})" if label in rates and "r=" not in label else label


def hp_perplexity(table: pd.DataFrame, rates: Mapping[str, float], reference_ppl: float, title: str = ""):
    """General-text word perplexity per model on a log axis, SGA runs by rate; collapsed runs marked with x,
    and the collapse threshold (:data:`COLLAPSE_FACTOR` x the reference's) drawn as a line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    labels = list(table.index)
    for i, label in enumerate(labels):
        row = table.loc[label]
        value = row.get("general_ppl")
        shown = value if pd.notna(value) and math.isfinite(value) else np.nan
        color = _hp_color(str(label), i, rates)
        ax.bar(i, shown if pd.notna(shown) else 0, color=color, alpha=0.35 if label in rates and label != "sga" else 0.9)
        if row["collapsed"]:
            ax.scatter([i], [shown if pd.notna(shown) else reference_ppl * COLLAPSE_FACTOR], marker="x", color="k", s=60, zorder=3)
    ax.axhline(COLLAPSE_FACTOR * reference_ppl, color="k", ls="--", lw=1, label=f"collapse: {COLLAPSE_FACTOR:g} x reference")
    names = [_hp_named(str(label), rates).replace(" (", "\n(") for label in labels]
    ax.set_xticks(range(len(labels)), names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("word perplexity, held-out general text")
    ax.set_title(title or "Perplexity per method (x: collapsed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def hp_tradeoff(table: pd.DataFrame, k: int, rates: Mapping[str, float], title: str = ""):
    """Memorisation (ROUGE-L recall of completions at prompt length ``k``) against general-text perplexity
    (log axis), one point per model; collapsed runs drawn as x."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (label, row) in enumerate(table.iterrows()):
        x, y = row.get("general_ppl"), row.get(f"rouge_l_{k}")
        if pd.isna(x) or pd.isna(y) or not math.isfinite(x):
            continue
        marker = "x" if row["collapsed"] else ("s" if label in ("target", "reference") else "o")
        ax.scatter(x, y, marker=marker, s=55, color=_hp_color(str(label), i, rates))
        ax.annotate(_hp_named(str(label), rates), (x, y), textcoords="offset points", xytext=(6, 4) if i % 2 == 0 else (6, -12), fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())  # labelled minor ticks of a short log range overlap
    ax.set_xlabel("word perplexity, held-out general text (lower is better)")
    ax.set_ylabel(f"ROUGE-L recall of completions, k = {k} (lower: forgotten)")
    ax.set_title(title or "Memorisation vs perplexity")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def hp_trajectory(results: Mapping[str, Mapping[str, Any]], k: int, references: Mapping[str, float], title: str = ""):
    """Per-epoch ROUGE-L recall at prompt length ``k`` and general-text perplexity (log axis), one line per run;
    ``references``: label -> that model's ROUGE-L on the same reading, drawn as horizontal lines."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (label, r) in enumerate(results.items()):
        epochs = r.get("trajectory") or []
        if epochs:
            x = [e["epoch"] for e in epochs]
            color = _hp_color(str(label), i)
            axes[0].plot(x, [e[f"rouge_l_{k}"] for e in epochs], marker="o", ms=3, label=label, color=color)
            axes[1].plot(x, [e["general_ppl"] for e in epochs], marker="o", ms=3, label=label, color=color)
    for j, (label, value) in enumerate(references.items()):
        axes[0].axhline(value, ls="--", lw=1, color=_hp_color(label, j), label=f"{label} (as it is)")
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


# ------------------------------------------------------------------ notebook 04: MUSE-News
MUSE_ORDER = ("target", "retrain", "ga", "graddiff", "kl", "npo", "simnpo", "flat", "sga")


def _muse_colors(labels: Sequence[str]) -> list[str]:
    """The fixed colour of each known model or method (sga.plots); the others (retrain, simnpo) take the next
    free colours in ``PLOT_ORDER``, so they never share one."""
    others = [label for label in MUSE_ORDER if label not in COLORS]
    return [model_color(label, others.index(label) if label in others else len(others)) for label in labels]


def muse_paths(table: pd.DataFrame, retrain: Mapping[str, Any], title: str = "") -> plt.Figure:
    """Each metric of a :func:`path_table` against the epoch, one line per method, the retrain model's value dashed."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.0 * len(METRICS), 3.3))
    methods = list(dict.fromkeys(table.index.get_level_values("method")))
    for ax, (key, name, better) in zip(axes, METRICS):
        for method_name, color in zip(methods, _muse_colors(methods)):
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


def muse_metrics(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """The four metrics per model (rows of a results table) as bars, with the 95% bootstrap intervals of VerbMem and KnowMem."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.0 * len(METRICS), 3.3))
    labels = [str(m) for m in table.index]
    colors = _muse_colors(labels)
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
