"""The benchmark registry: each benchmark's name to its :class:`~sga.world.Benchmark` spec."""

from __future__ import annotations

from sga.benchmarks.harry_potter import HARRY_POTTER
from sga.benchmarks.muse_news import MUSE_NEWS
from sga.benchmarks.tofu import TOFU
from sga.world import Benchmark

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (TOFU, HARRY_POTTER, MUSE_NEWS)}


def get(name: str) -> Benchmark:
    """The benchmark called ``name``, or a ValueError naming the valid ones."""
    try:
        return BENCHMARKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown benchmark {name!r}; choose one of {list(BENCHMARKS)}.") from None
