"""SGA's ``embedding_model``: a sentence-embedding model (hub id or local path) picks the embedding-nearest
normal samples. A tiny BERT with a WordPiece vocabulary, saved in the hub layout, stands in for
sentence-transformers/all-MiniLM-L6-v2."""

import numpy as np
import pytest
import torch

from sga import methods, presets
from sga.experiment import extra_index, normal_embedder
from sga.inference import sentence_embedder
from sga.normal_data import select_normal
from sga.prompts import Text

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "barked", "loudly",
         "chased", "mouse", "stock", "prices", "fell", "rain", "in", "spain"]
POOL = ["the cat sat on the mat", "a dog barked loudly", "the cat chased a mouse", "stock prices fell", "rain in spain"]


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("embedder")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=32))
    out = root / "tiny-minilm"
    BertTokenizer(str(root / "vocab.txt")).save_pretrained(out)
    model.save_pretrained(out)
    return out


def direct(path, text):
    """One text alone (no padding): masked mean of the last hidden state, L2-normalised."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
    mean = hidden.mean(dim=0)
    return (mean / mean.norm()).numpy()


def test_vectors_are_the_masked_mean_normalised_and_padding_changes_nothing(embedder_dir):
    texts = ["rain", "the cat chased a mouse on the mat"]  # of different lengths: the first is padded in a batch
    embed = sentence_embedder(str(embedder_dir), batch_size=2, max_length=64)
    both = embed(texts)
    assert both.shape == (2, 32) and both.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, rtol=1e-6)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(both[i], direct(embedder_dir, text), atol=1e-5)
        np.testing.assert_allclose(both[i], embed([text])[0], atol=1e-5)  # batch and single agree
    long = " ".join(["the cat sat on the mat"] * 20)  # 120 words: cut at the model's 32 positions, not an error
    assert embed([long]).shape == (1, 32)


def test_select_normal_with_the_embedder_picks_the_expected_neighbours(embedder_dir):
    embed = sentence_embedder(str(embedder_dir))
    forget = ["stock prices fell", "a dog barked loudly"]  # each also in the pool: its own copy is nearest
    idx = select_normal(forget, POOL, 2, "embedding", embed=embed)
    assert idx[:, 0].tolist() == [3, 1]
    sim = embed(forget) @ embed(POOL).T  # unit vectors: the dot product is the cosine
    assert idx.tolist() == np.argsort(-sim, axis=1, kind="stable")[:, :2].tolist()


def test_missing_model_fails_with_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="No local model directory"):
        sentence_embedder(str(tmp_path / "no-such-model"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    named = r"'nobody/no-such-embedder'.*HF_HUB_OFFLINE(.|\n)*hf download nobody/no-such-embedder(.|\n)*local directory"
    with pytest.raises(OSError, match=named):  # names the id, and says to download it or pass a local copy
        sentence_embedder("nobody/no-such-embedder")


def test_runs_use_the_embedding_model_only_when_set(embedder_dir, tiny_llama, tiny_tokenizer):
    settings = presets.resolve("tofu", "smoke", normal_source="embedding", embedding_model=str(embedder_dir), k=2)
    run = settings.run("sga")
    loss = methods.method("sga").build(run.options)
    forget, pool = [Text("stock prices fell"), Text("a dog barked loudly")], [Text(t) for t in POOL]
    embed = normal_embedder(tiny_llama, tiny_tokenizer, loss, run)
    np.testing.assert_allclose(embed(POOL), sentence_embedder(str(embedder_dir))(POOL), atol=1e-6)
    assert extra_index(loss, run, forget, pool, embed)[:, 0].tolist() == [3, 1]
    unset = settings.run("sga", embedding_model="none")
    own = normal_embedder(tiny_llama, tiny_tokenizer, loss, unset)
    assert own(["Paris"]).shape == (1, tiny_llama.config.hidden_size)  # the start model's hidden states
    assert "emb_" in run.name() and "emb_" not in unset.name() and unset.key() != run.key()
    with pytest.raises(ValueError, match="embedding_model"):
        presets.resolve("tofu", "smoke", embedding_model=" ")


@pytest.mark.parametrize("notebook", ["02_tofu_unlearning.ipynb", "03_harry_potter.ipynb", "04_muse_news.ipynb"])
def test_embedding_model_is_a_parameter_of_every_notebook_with_sga_options(notebook):
    import papermill

    from pathlib import Path

    declared = papermill.inspect_notebook(str(Path(__file__).parents[1] / "notebooks" / notebook))
    assert "embedding_model" in declared and "normal_source" in declared
