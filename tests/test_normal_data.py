import numpy as np
import pytest

from sga.normal_data import select_normal

POOL = ["the cat sat on the mat", "a dog barked loudly", "the cat chased a mouse", "stock prices fell", "rain in spain"]


def test_random_is_seeded_distinct_and_in_range():
    a = select_normal(["x", "y", "z"], POOL, 3, "random", seed=7)
    b = select_normal(["x", "y", "z"], POOL, 3, "random", seed=7)
    c = select_normal(["x", "y", "z"], POOL, 3, "random", seed=8)
    assert a.shape == (3, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert all(len(set(row)) == 3 for row in a) and a.min() >= 0 and a.max() < len(POOL)


def test_tfidf_picks_nearest_first():
    idx = select_normal(["where did the cat sit", "stock market prices"], POOL, 2, "tfidf")
    assert idx[0, 0] == 0 and idx[0, 1] == 2  # the two cat sentences, most shared words first
    assert idx[1, 0] == 3


def test_errors_and_k_one():
    assert select_normal(["x"], POOL, 0).shape == (1, 0)
    with pytest.raises(ValueError, match="choose one of"):
        select_normal(["x"], POOL, 1, "llm")
    with pytest.raises(ValueError, match="pool holds only 5"):
        select_normal(["x"], POOL, 6)
