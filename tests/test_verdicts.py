"""Notebook 05's verdicts follow the criteria stated in its design, on runs whose differences are known."""

import numpy as np
import pandas as pd

from sga import stats, verdicts

ARMS = {"GA": "GA", "SGA r0": "SGA", "GradDiff control": "control", "SGA adaptive": "adaptive"}


def rows(shift: dict[str, float], seeds: int = 12) -> pd.DataFrame:
    """Utility per run: a per-seed base shared by every arm, plus the arm's shift and a small seeded noise."""
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, size=seeds)
    out = []
    for world in (0, 1):
        for label, delta in shift.items():
            for seed in range(seeds):
                out.append({"benchmark": "b", "world": world, "label": label, "seed": seed,
                            "u": base[seed] + delta + rng.normal(0, 0.01)})
    return pd.DataFrame(out)


def family(table: pd.DataFrame) -> pd.DataFrame:
    comps = [stats.Comparison("b", "SGA", "GA", "u"), stats.Comparison("b", "SGA", "control", "u"),
             stats.Comparison("b", "adaptive", "GA", "u", world=0), stats.Comparison("b", "adaptive", "SGA", "u", world=0)]
    return stats.compare(table, comps)


def ladder(ga_first: float, sga_first: float) -> pd.DataFrame:
    runs = pd.DataFrame([{"method": m, "lr": lr, "diverged": lr >= first} for m, first in (("GA", ga_first), ("SGA", sga_first))
                         for lr in (1.0, 3.0, 10.0)])
    table = stats.stability_ladder(runs, rung="lr")
    return pd.concat({("b", "SGD ladder"): table}, names=["benchmark", "ladder", "method"])


def verdict(table: pd.DataFrame, claim: str) -> str:
    return table.set_index("claim").loc[claim, "verdict"]


def test_a_clear_gain_is_supported_and_a_tie_with_the_control_is_the_reweighting():
    table = verdicts.claims(family(rows({"GA": 0.0, "SGA": 0.1, "control": 0.1, "adaptive": 0.1})), ladder(3.0, 10.0), {"b": True}, ARMS)
    assert verdict(table, "1. SGA improves on GA") == "supported"
    assert verdict(table, "1b. by smoothing, not reweighting") == "the reweighting"
    assert verdict(table, "3. the theory's rate (adaptive SGA)") == "supported"  # better than GA, not worse than SGA
    assert verdict(table, "2. SGA is more stable (SGD)") == "supported"  # GA diverges at 3, SGA only at 10


def test_lower_is_better_flips_the_direction_and_a_loss_is_refuted():
    table = verdicts.claims(family(rows({"GA": 0.0, "SGA": 0.1, "control": 0.0, "adaptive": 0.0})), ladder(10.0, 3.0), {"b": False}, ARMS)
    assert verdict(table, "1. SGA improves on GA") == "refuted"  # higher perplexity is worse
    assert verdict(table, "1b. by smoothing, not reweighting") == "refuted"
    assert verdict(table, "3. the theory's rate (adaptive SGA)") == "unresolved"  # adaptive = GA, better than SGA
    assert verdict(table, "2. SGA is more stable (SGD)") == "refuted"


def test_no_difference_and_a_ladder_that_never_diverges_are_unresolved():
    table = verdicts.claims(family(rows({"GA": 0.0, "SGA": 0.0, "control": 0.0, "adaptive": 0.0})), ladder(np.inf, np.inf), {"b": True}, ARMS)
    assert set(table.verdict) == {"unresolved"}
    assert "no method diverged" in table.set_index("claim").loc["2. SGA is more stable (SGD)", "evidence"]


def test_a_claim_holds_across_benchmarks_only_where_every_benchmark_supports_it():
    table = pd.DataFrame({"claim": ["1", "1", "2", "2"], "benchmark": ["a", "b", "a", "b"],
                          "verdict": ["supported", "supported", "supported", "unresolved"]})
    assert verdicts.overall(table).to_dict() == {"1": "supported", "2": "mixed: a supported, b unresolved"}
