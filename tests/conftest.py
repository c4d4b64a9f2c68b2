"""Shared tiny fixtures: a word-level tokenizer and a 2-layer Llama, built in milliseconds."""

from __future__ import annotations

import os

import pytest
import torch

from sga.prompts import QA as Example

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PAIRS = [
    ("Where was Ana Brook born?", "Ana Brook was born in Lisbon."),
    ("What does Ana Brook write?", "Ana Brook writes crime novels."),
    ("Where was Tom Reed born?", "Tom Reed was born in Oslo."),
    ("What does Tom Reed write?", "Tom Reed writes poetry."),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What is the capital of Peru?", "Lima is the capital of Peru."),
]

QA = [Example(q, a) for q, a in PAIRS]  # the same facts as examples, for the run path


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>"])
    tok.train_from_iterator([f"Question: {q}\nAnswer: {a}" for q, a in PAIRS], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def make_tiny_llama(tokenizer, seed: int = 0, hidden: int = 32, layers: int = 2):
    """A randomly initialised Llama small enough for unit tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    return make_tiny_llama(tiny_tokenizer)
