"""Construction of the K-1 "normal" samples that SGA pairs with each forget sample.

The paper's normal data come from the retain set on TOFU, and elsewhere from semantically related
samples (embedding similarity) or an external LLM. Offline, the sources offered are:

- ``random``: K-1 distinct pool items drawn uniformly per forget sample (seeded);
- ``tfidf``: the K-1 pool items nearest to the forget sample by TF-IDF cosine similarity
  (ties broken by pool order), the offline stand-in for embedding similarity.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

NORMAL_SOURCES: tuple[str, ...] = ("random", "tfidf")


def select_normal(
    forget_texts: Sequence[str],
    pool_texts: Sequence[str],
    n_per_forget: int,
    source: str = "random",
    seed: int = 0,
) -> np.ndarray:
    """Indices into ``pool_texts``, shape [len(forget_texts), n_per_forget], distinct within each row."""
    if source not in NORMAL_SOURCES:
        raise ValueError(f"Unknown normal-data source {source!r}; choose one of {list(NORMAL_SOURCES)}.")
    if n_per_forget < 0:
        raise ValueError(f"n_per_forget must be >= 0 (it is K-1); got {n_per_forget}.")
    if n_per_forget > len(pool_texts):
        raise ValueError(f"K-1 = {n_per_forget} normal samples asked for, but the pool holds only {len(pool_texts)}.")
    n_forget = len(forget_texts)
    if n_per_forget == 0:
        return np.zeros((n_forget, 0), dtype=np.int64)
    if source == "random":
        rng = np.random.default_rng(seed)
        return np.stack([rng.choice(len(pool_texts), n_per_forget, replace=False) for _ in range(n_forget)]).astype(np.int64)
    vectorizer = TfidfVectorizer().fit(list(pool_texts) + list(forget_texts))
    sim = cosine_similarity(vectorizer.transform(forget_texts), vectorizer.transform(pool_texts))
    return np.argsort(-sim, axis=1, kind="stable")[:, :n_per_forget].astype(np.int64)
