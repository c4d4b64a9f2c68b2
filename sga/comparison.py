"""Reading runs of every benchmark on two common axes, forgetting and utility: paths, equal forgetting,
Pareto fronts and stability (notebook 05).

Each benchmark names its forgetting reading (lower = more forgotten) and its utility reading, both taken
from the per-epoch readings of a run (``trajectory``), and says how a full evaluation of a model as it is
(the target, the reference model) is read on the same scale, so that paths start at the target and the
reference model's forgetting is a level every run can be compared at.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sga import stats
from sga.world import Axes, World


def axes(world: World) -> Axes:
    """The two readings of ``world``'s benchmark (its spec's ``axes``)."""
    return world.benchmark.axes(world.spec)


def path(result: Mapping[str, Any], start: Mapping[str, float], ax: Axes) -> pd.DataFrame:
    """A run's path: epoch 0 is ``start`` (the target read on the path's scale), then each epoch's reading;
    columns ``forget`` and ``utility``. A diverged run's path stops at its last reading."""
    points = [{"epoch": 0, "forget": start[ax.forget], "utility": start[ax.utility]}]
    points += [{"epoch": e["epoch"], "forget": e[ax.forget], "utility": e[ax.utility]} for e in result.get("trajectory") or []]
    return pd.DataFrame(points).set_index("epoch")


def at_forget_level(curve: pd.DataFrame, level: float, log_utility: bool = False) -> tuple[float, float]:
    """(epoch, utility) where the path first reaches ``forget <= level``, interpolated linearly between the
    two readings around the crossing (utility in log space with ``log_utility``, e.g. perplexity);
    (NaN, NaN) if it never does. A path that starts at or below the level gives its start."""
    forget, utility, epochs = curve["forget"].to_numpy(float), curve["utility"].to_numpy(float), curve.index.to_numpy(float)
    reached = np.flatnonzero(forget <= level)
    if reached.size == 0:
        return math.nan, math.nan
    i = int(reached[0])
    if i == 0:
        return float(epochs[0]), float(utility[0])
    t = (forget[i - 1] - level) / (forget[i - 1] - forget[i])
    value = lambda a, b: math.exp(math.log(a) + t * (math.log(b) - math.log(a))) if log_utility else a + t * (b - a)  # noqa: E731
    return float(epochs[i - 1] + t * (epochs[i] - epochs[i - 1])), float(value(utility[i - 1], utility[i]))


def pareto_front(forget: Sequence[float], utility: Sequence[float], utility_higher: bool = True) -> np.ndarray:
    """Which points no other point dominates (forgets at least as much, lower forget, and has at least as good a
    utility, strictly better in one); NaN points are never on the front."""
    f = np.asarray(forget, float)
    u = np.asarray(utility, float) * (1 if utility_higher else -1)
    ok = ~(np.isnan(f) | np.isnan(u))
    front = np.zeros(len(f), bool)
    for i in np.flatnonzero(ok):
        others = ok & (f <= f[i]) & (u >= u[i]) & ((f < f[i]) | (u > u[i]))
        front[i] = not others.any()
    return front


def stability(result: Mapping[str, Any], spike_factor: float = 10.0) -> dict[str, Any]:
    """From a run's step log: whether it diverged, its largest gradient norm, the steps whose gradient norm
    exceeds ``spike_factor`` times the run's median, and the oscillation of the loss (standard deviation of
    its step-to-step changes)."""
    log = result.get("log") or []
    norms = np.array([s["grad_norm"] for s in log], float)
    losses = np.array([s["loss"] for s in log], float)
    finite = norms[np.isfinite(norms)]
    median = float(np.median(finite)) if finite.size else math.nan
    changes = np.diff(losses[np.isfinite(losses)])
    return {
        "diverged": result["status"] == "diverged",
        "max_grad_norm": float(finite.max()) if finite.size else math.nan,
        "spikes": int((finite > spike_factor * median).sum()) if finite.size else 0,
        "loss_oscillation": float(changes.std()) if changes.size > 1 else math.nan,
    }


def top_two(table: pd.DataFrame, higher_better: Mapping[str, bool]) -> pd.DataFrame:
    """For each column of ``higher_better``: 1 for its best row, 2 for the second (ties share a rank), else 0."""
    ranks = pd.DataFrame(0, index=table.index, columns=list(higher_better))
    for column, higher in higher_better.items():
        values = table[column].astype(float)
        order = values.rank(method="min", ascending=not higher)
        ranks[column] = order.where(order <= 2, 0).fillna(0).astype(int)
    return ranks


def run_rows(results: Mapping[Any, Mapping[str, Any]], starts: Mapping[str, Mapping[str, float]],
             levels: Mapping[str, float], axes_of: Mapping[str, Axes]) -> pd.DataFrame:
    """One row per run (keys: sweep points with ``benchmark``, ``label``, ``method``, ``seed``): its end point (last
    per-epoch reading; NaN for a diverged run), where it reaches its benchmark's forget ``level``, its
    stability figures, training time and, for adaptive SGA, the mean rate and the share of first-order-safe steps."""
    rows = []
    for point, result in results.items():
        ax = axes_of[point.benchmark]
        curve = path(result, starts[point.benchmark], ax)
        diverged = result["status"] != "completed"
        eq_epoch, eq_utility = at_forget_level(curve, levels[point.benchmark], log_utility=not ax.utility_higher)
        steps = result.get("log") or []
        rates = [s["rate"] for s in steps if "rate" in s]
        rows.append({
            "benchmark": point.benchmark, "label": point.label, "method": point.method, "seed": point.seed,
            "status": result["status"],
            "end_forget": math.nan if diverged else float(curve["forget"].iloc[-1]),
            "end_utility": math.nan if diverged else float(curve["utility"].iloc[-1]),
            "eq_epoch": eq_epoch, "eq_utility": eq_utility,
            "train_seconds": result.get("train_seconds", math.nan), **stability(result),
            "mean_rate": float(np.mean(rates)) if rates else math.nan,
            "safe_share": float(np.mean([s["safe"] for s in steps if "safe" in s])) if rates else math.nan,
        })
    return pd.DataFrame(rows)


def located_rows(results: Mapping[Any, Mapping[str, Any]], axes_of: Mapping[str, Axes], second: Mapping[str, str] = {}) -> pd.DataFrame:
    """One row per located run (keys: sweep points): benchmark, world (its seed), group, label, method, seed, status;
    whether it reached its benchmark's forgetting level, at which step (within ``resolution`` steps) and after how many
    token passes (forward + backward), its forgetting and utility there (``eq_*``), at the steps every run was also
    read at (``steps_*``: the first of ``read_at``), and at its end (``end_*``: its forgetting alone, NaN for a diverged run);
    ``second[benchmark]`` names a second forgetting reading beside the axis (``*_second``, e.g. TOFU's forget quality;
    NaN on the other benchmarks); its stability figures, times, and for adaptive SGA the mean rate and the share of
    first-order-safe steps."""
    rows = []
    for point, result in results.items():
        ax, crossing, log = axes_of[point.benchmark], result.get("crossing") or {}, result.get("log") or []
        reached, completed = crossing.get("step") is not None, result["status"] == "completed"
        readings = {"eq": crossing.get("reading") if reached else None,
                    "steps": next(iter((crossing.get("at_steps") or {}).values()), None),
                    "end": result.get("end") if completed else None}
        row: dict[str, Any] = {
            "benchmark": point.benchmark, "world": point.run.world.world_seed, "group": point.group, "label": point.label,
            "method": point.method, "seed": point.seed, "optimizer": point.run.training.optimizer, "lr": point.run.training.lr,
            "status": result["status"], "reached": reached,
            "steps_to_level": crossing.get("step") if reached else math.nan, "resolution": crossing.get("resolution") if reached else math.nan,
            "tokens_to_level": _tokens_at(log, crossing["step"]) if reached else math.nan, "end_step": len(log),
            "tokens": _tokens_at(log, len(log)),
        }
        for prefix, reading in readings.items():
            keys = {"forget": ax.forget, "utility": ax.utility, "second": second.get(point.benchmark)}
            row.update({f"{prefix}_{name}": math.nan if reading is None or reading.get(key) is None else float(reading[key])
                        for name, key in keys.items()})
        rates = [s["rate"] for s in log if "rate" in s]
        row.update(**stability(result), train_seconds=result.get("train_seconds", math.nan), wall_seconds=result.get("wall_seconds", math.nan),
                   mean_rate=float(np.mean(rates)) if rates else math.nan,
                   safe_share=float(np.mean([s["safe"] for s in log if "safe" in s])) if rates else math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _tokens_at(log: Sequence[Mapping[str, Any]], step: int) -> float:
    """Forward plus backward token passes spent by the end of ``step`` (0 at step 0)."""
    return 0.0 if step == 0 else float(log[step - 1]["forward_tokens"] + log[step - 1]["backward_tokens"])


def interval_table(rows: pd.DataFrame, columns: Sequence[str], confidence: float = 0.95) -> pd.DataFrame:
    """Per (benchmark, label): the number of runs, and for each column its mean over seeds with a Student-t
    interval (``<column> lo`` / ``hi``, :func:`sga.stats.mean_interval`) and how many runs have a value
    (``<column> n``)."""
    out = {}
    for key, group in rows.groupby(["benchmark", "label"], sort=False):
        row: dict[str, Any] = {"runs": len(group)}
        for column in columns:
            values = group[column].astype(float)
            row[column], row[f"{column} lo"], row[f"{column} hi"] = stats.mean_interval(values.tolist(), confidence)
            row[f"{column} n"] = int(values.notna().sum())
        out[key] = row
    table = pd.DataFrame(out).T
    table.index.names = ["benchmark", "label"]
    return table


def paired_difference(rows: pd.DataFrame, column: str, label: str, baseline: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per benchmark: ``column`` of ``label`` minus ``baseline``'s, paired by seed (same LoRA initialisation and
    batch order; by world and seed where ``rows`` has a ``world`` column), mean with its unadjusted Student-t
    interval and the number of pairs with both values (:func:`sga.stats.paired_differences`; for a family of
    comparisons with adjusted p-values and intervals, :func:`sga.stats.compare`)."""
    out = {}
    for benchmark, group in rows.groupby("benchmark", sort=False):
        present = set(group.loc[group[column].notna(), "label"])
        if label not in present or baseline not in present:  # a configuration with no value here: no row
            continue
        s = stats.t_summary(stats.paired_differences(group, column, label, baseline, benchmark), confidence)
        out[benchmark] = {"difference": s["mean"], "lo": s["lo"], "hi": s["hi"], "pairs": s["n"]}
    return pd.DataFrame(out).T


def step_seconds(world: World, method_name: str, steps: int = 8, **overrides: Any) -> float:
    """Mean wall time of one optimizer step of ``method_name`` on ``world`` (its first ``steps`` batches of
    forget samples, from the target with a fresh adapter, no evaluation): a like-for-like cost measurement."""
    import tempfile

    from sga.experiment import free, run_unlearning, start_model

    run = world.settings.run(method_name, **{**overrides, "epochs": 1})
    forget = world.forget[: steps * run.training.batch_size]
    model = start_model(world.models["target"], run)
    with tempfile.TemporaryDirectory() as run_dir:
        log = run_unlearning(model, world.tokenizer, run, forget, world.pool, Path(run_dir), progress=False)
    free(model)
    return log.seconds / len(log.steps)
