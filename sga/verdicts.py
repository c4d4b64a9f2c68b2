"""Notebook 05's verdicts, by the criteria its design states before any run: each claim of the paper, per benchmark,
read off the family of comparisons (:func:`sga.stats.compare`) and the learning-rate ladders
(:func:`sga.stats.stability_ladder`) as "supported", "refuted" or "unresolved", with the numbers it rests on.

- Claim 1, SGA improves on GA's trade-off: SGA r0 minus GA (pooled over worlds) at the level; supported if Holm's
  p < alpha and SGA is better, refuted if Holm's p < alpha and GA is better, unresolved otherwise.
- Claim 1b, by smoothing and not by reweighting: SGA r0 minus the GradDiff control with its exact weights, read the
  same way; where the two do not differ while claim 1 holds: "the reweighting".
- Claim 3, the theory's rate: adaptive SGA minus GA and minus SGA r0; supported if adaptive SGA is better than GA
  and not worse than SGA r0, refuted if it is worse than either, unresolved otherwise.
- Claim 2, stability: the highest SGD rung at which no seed diverged, SGA r0 against GA; supported if SGA's is
  higher, refuted if lower, unresolved if equal or if no method diverged (the ladder then decides nothing).

A single benchmark's verdict is not a general claim: :func:`overall` is "supported" only where every benchmark is.
"""

from __future__ import annotations

import math
from typing import Mapping

import pandas as pd

from sga.stats import POOLED

VERDICT = {1: "supported", -1: "refuted", 0: "unresolved"}  # of a comparison's direction (:func:`_direction`)


def _direction(row: pd.Series, higher_better: bool, alpha: float) -> int:
    """+1 when the label is significantly better than the baseline (Holm), -1 when worse, 0 otherwise."""
    if not (row["p_holm"] < alpha):  # NaN (untestable) counts as not significant
        return 0
    better = row["mean"] > 0 if higher_better else row["mean"] < 0
    return 1 if better else -1


def _evidence(row: pd.Series) -> str:
    value = f"ratio {row['ratio']:.3g}" if row["scale"] == "log ratio" else f"{row['mean']:+.3g}"
    return f"{value} (n={row['n']:.0f}, d_z={row['d_z']:+.2f}, Holm p={row['p_holm']:.3g})"


def _row(table: pd.DataFrame, benchmark: str, label: str, baseline: str, world: object) -> pd.Series:
    found = table[(table.benchmark == benchmark) & (table.label == label) & (table.baseline == baseline) & (table.world == world)]
    if len(found) != 1:
        raise ValueError(f"The family holds {len(found)} comparisons of {label!r} with {baseline!r} on {benchmark} (world {world}); expected 1.")
    return found.iloc[0]


def claims(family: pd.DataFrame, stable: pd.DataFrame, higher_better: Mapping[str, bool], arms: Mapping[str, str],
           alpha: float = 0.05) -> pd.DataFrame:
    """One row per (claim, benchmark): ``verdict`` and ``evidence``. ``family`` is :func:`sga.stats.compare`'s
    table; ``stable`` :func:`sga.stats.stability_ladder`'s, indexed by (benchmark, ladder, method) with the ladder
    ``"SGD ladder"``; ``arms`` names the labels of "GA", "SGA r0", "GradDiff control" and "SGA adaptive"."""
    ga, sga, control, adaptive = (arms[k] for k in ("GA", "SGA r0", "GradDiff control", "SGA adaptive"))
    stable = stable.sort_index()
    out = []
    for b, higher in higher_better.items():
        vs_ga, vs_control = _row(family, b, sga, ga, POOLED), _row(family, b, sga, control, POOLED)
        d1, d1b = _direction(vs_ga, higher, alpha), _direction(vs_control, higher, alpha)
        out.append({"claim": "1. SGA improves on GA", "benchmark": b, "verdict": VERDICT[d1],
                    "evidence": f"SGA - GA {_evidence(vs_ga)}"})
        v1b = "the reweighting" if d1 == 1 and d1b == 0 else VERDICT[d1b]
        out.append({"claim": "1b. by smoothing, not reweighting", "benchmark": b, "verdict": v1b,
                    "evidence": f"SGA - control {_evidence(vs_control)}"})
        a_ga, a_sga = _row(family, b, adaptive, ga, 0), _row(family, b, adaptive, sga, 0)
        da, ds = _direction(a_ga, higher, alpha), _direction(a_sga, higher, alpha)
        v3 = "refuted" if -1 in (da, ds) else "supported" if da == 1 else "unresolved"
        out.append({"claim": "3. the theory's rate (adaptive SGA)", "benchmark": b, "verdict": v3,
                    "evidence": f"adaptive - GA {_evidence(a_ga)}; adaptive - SGA {_evidence(a_sga)}"})
        try:
            ladder = stable.loc[(b, "SGD ladder")]
        except KeyError:
            ladder = None
        out.append({"claim": "2. SGA is more stable (SGD)", "benchmark": b, **_stability(ladder, ga, sga)})
    return pd.DataFrame(out)


def _stability(ladder: pd.DataFrame | None, ga: str, sga: str) -> dict[str, str]:
    if ladder is None or ga not in ladder.index or sga not in ladder.index:
        return {"verdict": "unresolved", "evidence": "no SGD ladder of GA and SGA"}
    g, s = ladder.loc[ga], ladder.loc[sga]
    evidence = (f"highest stable lr: SGA {s['stable_up_to']:g}, GA {g['stable_up_to']:g}; first diverging rung: "
                f"SGA {s['next_rung']:g} ({s['diverged_next']:.0f}/{s['seeds_next']:.0f}), GA {g['next_rung']:g} ({g['diverged_next']:.0f}/{g['seeds_next']:.0f})")
    if ladder["next_rung"].isna().all():
        return {"verdict": "unresolved", "evidence": evidence + "; no method diverged"}
    high = {name: (math.inf if math.isnan(row["next_rung"]) else row["next_rung"],
                   -math.inf if math.isnan(row["stable_up_to"]) else row["stable_up_to"]) for name, row in ((ga, g), (sga, s))}
    verdict = "supported" if high[sga] > high[ga] else "refuted" if high[sga] < high[ga] else "unresolved"
    return {"verdict": verdict, "evidence": evidence}


def overall(table: pd.DataFrame) -> pd.Series:
    """Per claim across benchmarks: "supported" only if every benchmark supports it, "refuted" if every one refutes
    it, else "mixed" (naming each benchmark's verdict)."""
    def one(group: pd.DataFrame) -> str:
        verdicts = set(group.verdict)
        if len(verdicts) == 1:
            return verdicts.pop()
        return "mixed: " + ", ".join(f"{b} {v}" for b, v in zip(group.benchmark, group.verdict))

    return table.groupby("claim", sort=False).apply(one, include_groups=False).rename("across benchmarks")
