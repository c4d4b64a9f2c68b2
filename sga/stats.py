"""The statistics behind notebook 05's verdicts: Student-t intervals over seeds, paired comparisons with
family-wise adjustment (Holm's p-values, Bonferroni's simultaneous intervals, Benjamini-Hochberg q-values),
pooling over generated worlds, ratios for multiplicative columns, the power of a paired t-test and the seeds it
needs, rankings that only rank configurations whose every seed reached the forgetting level, the share of
seeds that reached it (Clopper-Pearson), and the learning-rate ladder of stability.

A rows table has one row per run with columns ``benchmark``, ``label``, ``seed``, optionally ``world`` (the
generated world the run was trained on) and the value columns. Runs of different labels with the same seed
(in the same world) share data order and LoRA initialisation, so comparisons pair them by (world, seed).
Pure numpy / pandas / scipy: this module is the project's one place for intervals (:func:`mean_interval`,
which :mod:`sga.analysis` and :mod:`sga.comparison` call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats

POOLED = "pooled"  # the world of a comparison that takes the pairs of every world together


# --- intervals over seeds -----------------------------------------------------------------------------------

def _finite(values: Iterable[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)


def t_summary(values: Iterable[float | None], confidence: float = 0.95) -> dict[str, float]:
    """The one-sample Student-t reading of ``values`` against 0 (for paired differences: the paired t-test).

    Keys: ``n`` (values left after dropping None / NaN), ``mean``, ``sd`` (ddof 1), ``d_z`` (mean / sd), ``t``,
    ``df``, ``p`` (two-sided), ``lo`` / ``hi`` (the ``confidence`` t-interval of the mean) and ``note``.
    Fewer than 2 values give NaN for everything but ``n`` and ``mean``; values without spread (sd = 0) give
    the degenerate interval [mean, mean] and NaN for ``d_z``, ``t`` and ``p``: no test is possible.
    """
    data = _finite(values)
    n = int(data.size)
    out: dict[str, Any] = dict.fromkeys(("mean", "sd", "d_z", "t", "df", "p", "lo", "hi"), math.nan)
    out["n"] = n
    out["note"] = f"n={n}: no test" if n < 2 else ""
    if n == 0:
        return out
    out["mean"] = mean = float(data.mean())
    if n < 2:
        return out
    sd = float(data.std(ddof=1))
    out["sd"], out["df"] = sd, float(n - 1)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    out["lo"], out["hi"] = mean - half, mean + half
    if sd == 0:
        out["note"] = "no spread: no test"
        return out
    out["d_z"] = mean / sd
    out["t"] = t = mean / (sd / math.sqrt(n))
    out["p"] = float(2 * scipy.stats.t.sf(abs(t), n - 1))
    return out


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean with its Student-t interval over independent runs (seeds).

    One value gives a NaN interval; NaN values are dropped.
    """
    s = t_summary(values, confidence)
    return s["mean"], s["lo"], s["hi"]


# --- multiplicity -------------------------------------------------------------------------------------------

def _family(p: Sequence[float], m: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    p = np.asarray(p, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    m = tested.size if m is None else int(m)
    if m < tested.size:
        raise ValueError(f"A family of m={m} cannot hold the {tested.size} p-values given.")
    return p, tested, m


def holm(p: Sequence[float], m: int | None = None) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error): sorted ascending, the i-th is
    max over j <= i of (m - j + 1) p_(j), capped at 1; returned in the input's order.

    NaN p-values (comparisons that could not be tested) stay NaN. ``m`` is the family's size, by default the
    number of p-values given that are not NaN; a larger ``m`` (the planned family, untested members included)
    is valid and more conservative: it is Holm's procedure with p = 1 for the untested members.
    """
    p, tested, m = _family(p, m)
    out = np.full(p.shape, math.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    steps = (m - np.arange(order.size)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return out


def benjamini_hochberg(p: Sequence[float], m: int | None = None) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate, independent or positively dependent tests): sorted
    ascending, the i-th is min over j >= i of m p_(j) / j, capped at 1; input order, NaN stays NaN, ``m`` as
    in :func:`holm`."""
    p, tested, m = _family(p, m)
    out = np.full(p.shape, math.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    steps = m * p[order] / np.arange(1, order.size + 1)
    out[order] = np.minimum(np.minimum.accumulate(steps[::-1])[::-1], 1.0)
    return out


def bonferroni_confidence(alpha: float, m: int) -> float:
    """The level 1 - alpha / m of each of m simultaneous (Bonferroni) intervals of family-wise level 1 - alpha."""
    return 1 - alpha / m


# --- paired comparisons -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """``label`` minus ``baseline`` on ``column`` in ``benchmark``, paired by seed: in one ``world``, or with
    ``world=None`` in every world of the benchmark together (pairs keyed by world and seed). ``log``: compare
    logs (a ratio), for a column on a multiplicative scale such as perplexity."""

    benchmark: str
    label: str
    baseline: str
    column: str
    world: Hashable | None = None
    log: bool = False


def paired_differences(rows: pd.DataFrame, column: str, label: str, baseline: str, benchmark: str,
                       world: Hashable | None = None, log: bool = False) -> pd.Series:
    """``column`` of ``label`` minus ``baseline``'s in ``benchmark`` (and ``world``, if given), one value per
    pair of runs with both values, indexed by (world, seed), or by seed when ``rows`` has no ``world`` column;
    with ``log``, the difference of natural logs (the log of the ratio).

    Repeated rows of one run (the same configuration listed in two groups of a sweep) count once when they
    agree; rows that disagree raise ValueError, as do non-positive values on the log scale.
    """
    keys = ["world", "seed"] if "world" in rows.columns else ["seed"]
    chosen = rows[(rows["benchmark"] == benchmark) & rows["label"].isin([label, baseline])]
    if world is not None:
        if "world" not in rows.columns:
            raise ValueError(f"World {world!r} asked for, but the rows have no 'world' column.")
        chosen = chosen[chosen["world"] == world]
    chosen = chosen[[*keys, "label", column]].drop_duplicates()
    clash = chosen.duplicated([*keys, "label"], keep=False)
    if clash.any():
        raise ValueError(f"Runs with two different values of {column!r}: {chosen[clash].to_dict('records')}")
    table = chosen.set_index([*keys, "label"])[column].astype(float).unstack("label")
    if label not in table or baseline not in table:
        return pd.Series([], dtype=float, name=column)
    a, b = table[label], table[baseline]
    if log:
        values = pd.concat([a, b]).dropna()
        if (values <= 0).any():
            raise ValueError(f"Log scale needs positive values of {column!r}; got {values[values <= 0].tolist()}.")
        a, b = np.log(a), np.log(b)
    diff = (a - b).dropna()
    diff.name = column
    return diff


def compare(rows: pd.DataFrame, comparisons: Sequence[Comparison], alpha: float = 0.05, m: int | None = None) -> pd.DataFrame:
    """One row per comparison, in order: ``n`` pairs, ``mean`` difference, its ``sd``, the effect size ``d_z``
    (mean / sd of the paired differences), ``t``, ``df``, the unadjusted two-sided paired t-test ``p`` and
    (1 - alpha) t-interval ``lo`` / ``hi``; adjusted over the family: ``p_holm`` (Holm's step-down p-values,
    family-wise error at alpha), ``lo_adj`` / ``hi_adj`` (Bonferroni's t-intervals at level 1 - alpha/m) and
    ``q_bh`` (Benjamini-Hochberg q-values); for log-scale comparisons ``ratio`` = exp(mean) (the ratio of the
    geometric means over the pairs) with ``ratio_lo`` / ``ratio_hi`` and ``ratio_lo_adj`` / ``ratio_hi_adj``.

    Holm's test has no simple intervals of its own that are more informative than Bonferroni's, so the
    simultaneous intervals reported with it are Bonferroni's: together they cover all m mean differences with
    probability at least 1 - alpha. Holm rejects at least whatever Bonferroni rejects, so a comparison can have
    ``p_holm`` < alpha while its Bonferroni interval still covers 0; read such a comparison as significant
    by Holm's test, with its size given by the (conservative) Bonferroni interval.

    ``m`` is the size of the family: by default every comparison given, including those that cannot be
    tested (fewer than 2 pairs, or no spread: NaN for the test and, with 0 or 1 pair, for the intervals;
    ``note`` says which); they count as never rejected, which keeps the adjustment valid and conservative.
    The columns ``correction`` and ``m``, and ``attrs["correction"]``, name the adjustment for printing.
    """
    m = len(comparisons) if m is None else int(m)
    records = []
    for c in comparisons:
        diff = paired_differences(rows, c.column, c.label, c.baseline, c.benchmark, c.world, c.log)
        s = t_summary(diff, 1 - alpha)
        adj = t_summary(diff, bonferroni_confidence(alpha, m)) if m else s
        records.append({"benchmark": c.benchmark, "world": POOLED if c.world is None else c.world, "column": c.column,
                        "label": c.label, "baseline": c.baseline, "scale": "log ratio" if c.log else "difference",
                        **{k: s[k] for k in ("n", "mean", "sd", "d_z", "t", "df", "p", "lo", "hi")},
                        "lo_adj": adj["lo"], "hi_adj": adj["hi"], "note": s["note"]})
    table = pd.DataFrame.from_records(records, columns=[
        "benchmark", "world", "column", "label", "baseline", "scale", "n", "mean", "sd", "d_z", "t", "df", "p", "lo", "hi",
        "lo_adj", "hi_adj", "note"])
    table["p_holm"] = holm(table["p"].to_numpy(float), m) if len(table) else []
    table["q_bh"] = benjamini_hochberg(table["p"].to_numpy(float), m) if len(table) else []
    logged = (table["scale"] == "log ratio").to_numpy()
    for name, source in (("ratio", "mean"), ("ratio_lo", "lo"), ("ratio_hi", "hi"), ("ratio_lo_adj", "lo_adj"), ("ratio_hi_adj", "hi_adj")):
        table[name] = np.where(logged, np.exp(table[source].to_numpy(float)), math.nan)
    correction = (f"Holm step-down p over m={m} (family-wise alpha={alpha:g}); "
                  f"Bonferroni simultaneous intervals at {100 * bonferroni_confidence(alpha, max(m, 1)):.4g}%; BH q-values")
    table["m"] = m
    table["correction"] = correction
    table.attrs["correction"] = correction
    table.attrs["alpha"] = alpha
    table.attrs["m"] = m
    return table


# --- worlds -------------------------------------------------------------------------------------------------

def worlds_differ(rows: pd.DataFrame, column: str, label: str, baseline: str, benchmark: str, log: bool = False) -> dict[str, Any]:
    """Whether the mean paired difference differs between the benchmark's worlds: Welch's t-test on two worlds'
    differences, the Alexander-Govern test (unequal variances) on more. Keys ``test``, ``statistic``, ``df``
    (NaN for Alexander-Govern), ``p``, ``worlds``; NaN when a world has fewer than 2 pairs."""
    if "world" not in rows.columns:
        raise ValueError("Comparing worlds needs a 'world' column.")
    diff = paired_differences(rows, column, label, baseline, benchmark, log=log)
    groups = {w: d.to_numpy(float) for w, d in diff.groupby(level="world", sort=False)} if len(diff) else {}
    out: dict[str, Any] = {"test": "Welch t" if len(groups) == 2 else "Alexander-Govern",
                           "statistic": math.nan, "df": math.nan, "p": math.nan, "worlds": len(groups)}
    if len(groups) < 2 or min(g.size for g in groups.values()) < 2:
        return out
    if len(groups) == 2:
        a, b = groups.values()
        res = scipy.stats.ttest_ind(a, b, equal_var=False)
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)) if va + vb > 0 else math.nan
        out.update(statistic=float(res.statistic), df=float(df), p=float(res.pvalue))
    else:
        res = scipy.stats.alexandergovern(*groups.values())
        out.update(statistic=float(res.statistic), p=float(res.pvalue))
    return out


def by_world(rows: pd.DataFrame, column: str, label: str, baseline: str, benchmark: str, confidence: float = 0.95,
             log: bool = False) -> pd.DataFrame:
    """One comparison per world and pooled (index: the worlds, then ``"pooled"``): the columns of
    :func:`t_summary` (unadjusted), ``ratio`` / ``ratio_lo`` / ``ratio_hi`` with ``log``, and on the pooled row
    :func:`worlds_differ`'s test of whether the worlds' means differ (``worlds_test``, ``worlds_p``).

    The pooled row takes every world's pairs together, each seed of each world a distinct run; it treats the
    worlds as the two fixed worlds they are (its interval is for their pairs' common mean, not for a population
    of worlds), and is only a fair summary when the worlds' means agree: a small ``worlds_p`` says they do not.
    """
    if "world" not in rows.columns:
        raise ValueError("Pooling over worlds needs a 'world' column.")
    worlds = list(dict.fromkeys(rows.loc[rows["benchmark"] == benchmark, "world"]))
    out = {w: t_summary(paired_differences(rows, column, label, baseline, benchmark, w, log), confidence) for w in worlds}
    out[POOLED] = t_summary(paired_differences(rows, column, label, baseline, benchmark, None, log), confidence)
    table = pd.DataFrame.from_dict(out, orient="index")
    if log:
        for name, source in (("ratio", "mean"), ("ratio_lo", "lo"), ("ratio_hi", "hi")):
            table[name] = np.exp(table[source].astype(float))
    test = worlds_differ(rows, column, label, baseline, benchmark, log)
    table["worlds_test"] = ""
    table["worlds_p"] = math.nan
    table.loc[POOLED, "worlds_test"] = test["test"]
    table.loc[POOLED, "worlds_p"] = test["p"]
    return table


# --- power --------------------------------------------------------------------------------------------------

def paired_t_power(n: int, d_z: float, alpha: float = 0.05) -> float:
    """The power of a two-sided paired t-test at level ``alpha`` with ``n`` pairs when the true effect size is
    ``d_z`` (mean / sd of the differences): exactly, from the noncentral t with n - 1 degrees of freedom and
    noncentrality d_z sqrt(n), both tails counted."""
    if n < 2:
        raise ValueError(f"A paired t-test needs at least 2 pairs, not {n}.")
    df, nc = n - 1, abs(d_z) * math.sqrt(n)
    crit = scipy.stats.t.ppf(1 - alpha / 2, df)
    return float(scipy.stats.nct.sf(crit, df, nc) + scipy.stats.nct.cdf(-crit, df, nc))


def paired_t_sample_size(d_z: float, alpha: float = 0.05, power: float = 0.8, max_n: int = 1_000_000) -> int:
    """The fewest pairs (seeds per arm) for which a two-sided paired t-test at level ``alpha`` reaches ``power``
    at effect size ``d_z``: :func:`paired_t_power` iterated over n, starting from the normal approximation
    ((z_{1-alpha/2} + z_{power}) / d_z)^2 and stepping to the exact boundary (power rises with n).
    G*Power's values at alpha 0.05, power 0.8: d_z 0.5 -> 34, 0.8 -> 15, 1.0 -> 10."""
    if d_z == 0 or not math.isfinite(d_z):
        raise ValueError(f"The effect size must be finite and non-zero, not {d_z}.")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must lie in (0, 1).")
    z = scipy.stats.norm.ppf(1 - alpha / 2) + scipy.stats.norm.ppf(power)
    n = max(2, min(max_n, int((z / abs(d_z)) ** 2)))
    while n > 2 and paired_t_power(n - 1, d_z, alpha) >= power:
        n -= 1
    while paired_t_power(n, d_z, alpha) < power:
        n += 1
        if n > max_n:
            raise ValueError(f"More than {max_n} pairs would be needed.")
    return n


# --- reaching the forgetting level, rankings ----------------------------------------------------------------

def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion k / n: beta quantiles, 0 below at k = 0 and 1 above
    at k = n; (NaN, NaN) for n = 0."""
    if n == 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is not between 0 and n={n}.")
    a = 1 - confidence
    lo = 0.0 if k == 0 else float(scipy.stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(scipy.stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def reach_table(rows: pd.DataFrame, column: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per (benchmark, world, label) (world left out when ``rows`` has none): ``reached`` (runs whose ``column``
    is not NaN, i.e. that reached the forgetting level), ``runs``, ``share`` and its Clopper-Pearson
    ``lo`` / ``hi``. Every row counts as a run, diverged ones included (they did not reach)."""
    keys = [k for k in ("benchmark", "world", "label") if k in rows.columns]
    out = {}
    for key, group in rows.groupby(keys, sort=False):
        k, n = int(group[column].notna().sum()), len(group)
        lo, hi = clopper_pearson(k, n, confidence)
        out[key] = {"reached": k, "runs": n, "share": k / n, "lo": lo, "hi": hi}
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=keys) if len(keys) > 1 else pd.Index(table.index, name=keys[0])
    return table.astype({"reached": int, "runs": int})


def ranking(summary: pd.DataFrame, column: str, higher_better: bool | Mapping[str, bool], reached: str | None = None,
            runs: str = "runs") -> pd.DataFrame:
    """Best and second per benchmark among the configurations whose every seed reached the forgetting level.

    ``summary`` is indexed by (benchmark, label), e.g. :func:`sga.comparison.interval_table`'s output: ``column``
    the mean over seeds, ``reached`` (default ``"<column> n"``) how many seeds have a value, ``runs`` how many
    seeds ran. ``higher_better``: one direction, or one per benchmark. Returns, same index: ``value``,
    ``reached``, ``runs``, ``ranked`` (every seed reached), ``rank`` (1 best, 2 second, ties sharing the
    better rank; 0 for the rest) and ``verdict`` ("best", "second", "" or, for a configuration not ranked,
    "reached k of n"). The ranks order means; whether a difference is real is for :func:`compare` to say.
    """
    reached = reached or f"{column} n"
    out = pd.DataFrame({"value": summary[column].astype(float), "reached": summary[reached].astype(int),
                        "runs": summary[runs].astype(int)}, index=summary.index)
    out["ranked"] = (out["reached"] == out["runs"]) & (out["runs"] > 0) & out["value"].notna()
    benchmarks = out.index.get_level_values(0)
    higher = np.array([higher_better if isinstance(higher_better, bool) else higher_better[b] for b in benchmarks])
    signed = out["value"].where(out["ranked"]) * np.where(higher, -1.0, 1.0)  # lower is better
    order = signed.groupby(benchmarks, sort=False).rank(method="min")
    out["rank"] = order.where(order <= 2, 0).fillna(0).astype(int)
    out["verdict"] = [("best" if r == 1 else "second" if r == 2 else "") if ok else f"reached {k} of {n}"
                      for ok, r, k, n in zip(out["ranked"], out["rank"], out["reached"], out["runs"])]
    return out


# --- stability over a learning-rate ladder ------------------------------------------------------------------

def stability_ladder(runs: pd.DataFrame, rung: str = "rung", method: str = "method", diverged: str = "diverged") -> pd.DataFrame:
    """Per method (index, in order of appearance), from runs over learning-rate rungs and seeds each marked
    ``diverged``: ``stable_up_to``, the highest rung such that no seed diverged at it or at any lower rung (NaN
    if seeds diverged at the lowest); ``next_rung``, the first rung where some seed diverged (NaN if none did:
    then stability is only known up to the ladder's top); ``diverged_next`` and ``seeds_next``, how many seeds
    diverged there and how many ran; ``diverged_above``, divergences at rungs above ``next_rung`` (a ladder that
    is not monotone shows here); ``rungs``, the rungs run."""
    out = {}
    for name, group in runs.groupby(method, sort=False):
        counts = group.groupby(rung)[diverged].agg(["sum", "size"]).sort_index()
        bad = counts.index[counts["sum"] > 0]
        first = bad[0] if len(bad) else None
        below = counts.index[counts.index < first] if first is not None else counts.index
        out[name] = {
            "stable_up_to": below[-1] if len(below) else math.nan,
            "next_rung": math.nan if first is None else first,
            "diverged_next": 0 if first is None else int(counts.loc[first, "sum"]),
            "seeds_next": 0 if first is None else int(counts.loc[first, "size"]),
            "diverged_above": 0 if first is None else int(counts.loc[counts.index > first, "sum"].sum()),
            "rungs": len(counts),
        }
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = method
    return table
