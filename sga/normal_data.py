"""Construction of the K-1 "normal" samples that SGA pairs with each forget sample.

The paper's normal data come from the retain set on TOFU, and elsewhere from semantically related
samples (embedding similarity) or an external LLM. Offline, the sources offered are:

- ``random``: K-1 distinct pool items drawn uniformly per forget sample (seeded);
- ``tfidf``: the K-1 pool items nearest to the forget sample by TF-IDF cosine similarity
  (ties broken by pool order);
- ``embedding``: the K-1 pool items nearest by cosine similarity of an embedding ``embed(texts)``
  (the runs pass the start model's mean-pooled hidden states, :func:`sga.inference.mean_hidden_states`, or
  with SGA's ``embedding_model`` a sentence-embedding model's, :func:`sga.inference.sentence_embedder`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

NORMAL_SOURCES: tuple[str, ...] = ("random", "tfidf", "embedding")


def select_normal(
    forget_texts: Sequence[str],
    pool_texts: Sequence[str],
    n_per_forget: int,
    source: str = "random",
    seed: int = 0,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> np.ndarray:
    """Indices into ``pool_texts``, shape [len(forget_texts), n_per_forget], distinct within each row.

    ``embed`` maps texts to vectors [N, D]; the ``embedding`` source needs it.
    """
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
    if source == "embedding":
        if embed is None:
            raise ValueError("The 'embedding' normal-data source needs an embed function (texts -> vectors).")
        sim = cosine_similarity(embed(list(forget_texts)), embed(list(pool_texts)))
    else:
        vectorizer = TfidfVectorizer().fit(list(pool_texts) + list(forget_texts))
        sim = cosine_similarity(vectorizer.transform(forget_texts), vectorizer.transform(pool_texts))
    return np.argsort(-sim, axis=1, kind="stable")[:, :n_per_forget].astype(np.int64)
