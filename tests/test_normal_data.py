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


def test_embedding_source_ranks_by_cosine_of_the_given_vectors():
    vectors = {"f": [1.0, 0.0], POOL[0]: [0.0, 1.0], POOL[1]: [0.9, 0.1], POOL[2]: [-1.0, 0.0], POOL[3]: [0.5, 0.5], POOL[4]: [0.1, 0.9]}
    embed = lambda texts: np.array([vectors[t] for t in texts])  # noqa: E731
    assert select_normal(["f"], POOL, 3, "embedding", embed=embed).tolist() == [[1, 3, 4]]
    with pytest.raises(ValueError, match="needs an embed function"):
        select_normal(["f"], POOL, 1, "embedding")


def test_mean_hidden_states_average_over_real_tokens(tiny_llama, tiny_tokenizer):
    from sga.inference import mean_hidden_states

    texts = ["Ana Brook was born in Lisbon.", "Paris"]
    both = mean_hidden_states(tiny_llama, tiny_tokenizer, texts, batch_size=2)
    alone = mean_hidden_states(tiny_llama, tiny_tokenizer, texts[1:], batch_size=1)
    assert both.shape == (2, tiny_llama.config.hidden_size)
    np.testing.assert_allclose(both[1], alone[0], rtol=1e-4, atol=1e-5)  # padding does not leak into the mean
