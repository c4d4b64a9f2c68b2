"""The cached QLoRA fine-tune of a base model (sga.finetune) and the Harry Potter target it makes with
``finetune_target``: a tiny random Llama saved in the hub layout plays the base (facebook/opt-2.7b in paper)."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sga import finetune, presets
from sga.embedded import LOSSES_FILE, tiny_llama, train_causal_lm, train_tokenizer
from sga.inference import example_nll
from sga.models import load_model, load_tokenizer
from sga.benchmarks import harry_potter as hp
from sga.prompts import Text

TEXTS = ["The owl carried a letter across the grey lake at dawn.",
         "A silver key opened the door under the old clock tower.",
         "Seven brooms leaned against the wall of the cold stone hall."]
GENERAL = ["The river rose after a week of rain and the markets by the bridge closed early.",
           "Prices of grain fell in the autumn while the weather stayed mild across the valley.",
           "A new road was built between the two towns, and traffic on the old one slowed.",
           "The weather office said the storm would pass to the north by the evening."]
SETTINGS = finetune.FinetuneSettings(epochs=12, lr=1e-2, batch_size=3, lora_rank=8, quantization="nf4", compute_dtype="float32")
SHAPE = {"max_length": 64, "seed": 0}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny Llama "pretrained" for a moment on general text, and its byte-level BPE tokenizer, saved as a hub
    checkpoint is. (At its random init the frozen output layer and final norm bound the logits near zero: no
    adapter could lower the NLL much.)"""
    tokenizer = train_tokenizer(TEXTS + GENERAL, vocab_size=300)
    model = tiny_llama(len(tokenizer), hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=256, tokenizer=tokenizer)
    train_causal_lm(model, tokenizer, [Text(t) for t in GENERAL], "raw", epochs=30, lr=1e-2, batch_size=4, seed=0,
                    max_length=64, progress=False)
    path = tmp_path_factory.mktemp("base") / "tiny-base"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tuned(base, tmp_path_factory):
    cache = tmp_path_factory.mktemp("finetune-cache")
    return cache, finetune.finetune_cached(base, TEXTS, SETTINGS, cache, **SHAPE, progress=False, name="tiny-tuned")


def nll(source, quantization="none"):
    model = load_model(source, quantization=quantization)
    return example_nll(model, load_tokenizer(source), [Text(t) for t in TEXTS], "raw").mean()


def test_fine_tuning_lowers_the_nll_and_leaves_a_plain_checkpoint(base, tuned):
    cache, path = tuned
    assert Path(path).parent == cache and Path(path).name.startswith("tiny-tuned-")
    before = nll(base)
    assert nll(path) < before - 1.0  # the merged model, loaded as any checkpoint is, learned the texts
    assert nll(path, "nf4") < before - 1.0  # and so it does quantised again, as the runs load it
    assert (Path(path) / finetune.ADAPTER_DIR / "adapter_config.json").is_file() and (Path(path) / LOSSES_FILE).is_file()
    assert not (Path(path) / "adapter_config.json").exists()  # merged: no loader has to apply an adapter
    assert load_tokenizer(path).get_vocab() == load_tokenizer(base).get_vocab()


def test_the_second_call_hits_the_cache_and_a_changed_setting_misses_it(base, tuned, monkeypatch):
    cache, path = tuned

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(finetune, "train_causal_lm", no_training)
    assert finetune.finetune_cached(base, TEXTS, SETTINGS, cache, **SHAPE, name="tiny-tuned") == path
    assert finetune.finetune_cached(base, [Text(t) for t in TEXTS], SETTINGS, cache, **SHAPE, name="tiny-tuned") == path
    for changed, shape in ((replace(SETTINGS, lr=2e-2), SHAPE), (replace(SETTINGS, quantization="none"), SHAPE), (SETTINGS, {**SHAPE, "seed": 1})):
        other = finetune.finetune_path(base, TEXTS, changed, cache, **shape, name="tiny-tuned")
        assert str(other) != path
        with pytest.raises(AssertionError, match="trained again"):  # a cache miss trains...
            finetune.finetune_cached(base, TEXTS, changed, cache, **shape, name="tiny-tuned")
        assert not other.exists() and sorted(p.name for p in cache.iterdir()) == [Path(path).name]  # ...and a failed build leaves nothing
    assert finetune.finetune_path(base, TEXTS[:2], SETTINGS, cache, **SHAPE, name="tiny-tuned") != Path(path)  # other data
    # a template no Text uses keeps the cache
    assert finetune.finetune_path(base, TEXTS, SETTINGS, cache, **SHAPE, template="soul", name="tiny-tuned") == Path(path)


def test_harry_potter_target_is_the_fine_tuned_base(base, tmp_path):
    world = presets.resolve("harry_potter", "smoke", target_model=base, reference_model=base, finetune_target=True,
                            target_finetune={"epochs": 1, "batch_size": 8, "compute_dtype": "float32"}).world
    parts = hp.load(world, tmp_path, progress=False)
    books = parts.data["passages"] + parts.data["domain_passages"]
    expected = finetune.finetune_path(base, books, world.target_finetune, tmp_path, max_length=world.max_length, seed=world.world_seed,
                                      template=world.template, name="hp-target-finetuned")
    assert parts.models == {"target": str(expected), "reference": base} and expected.is_dir()
    tuned_weights = load_model(parts.models["target"]).state_dict()
    base_weights = load_model(base).state_dict()
    assert any(not torch.equal(tuned_weights[k], base_weights[k]) for k in base_weights)
    assert len(json.loads((expected / LOSSES_FILE).read_text())) == math.ceil(len(books) / 8)  # one epoch of steps
    assert {"finetune_target", "target_finetune"} <= set(hp.HarryPotterWorld.field_names())  # they define the world


def test_finetune_parameters_are_checked():
    assert presets.resolve("harry_potter", "paper").world.finetune_target is True
    assert presets.resolve("harry_potter", "mini").world.finetune_target is False
    with pytest.raises(ValueError, match=r"target_finetune.lr must be a positive number"):
        presets.resolve("harry_potter", "smoke", target_finetune={"lr": -1.0})
    with pytest.raises(ValueError, match="Unknown keys"):
        presets.resolve("harry_potter", "smoke", target_finetune={"rank": 4})
    with pytest.raises(ValueError, match="finetune_target fine-tunes target_model"):
        presets.resolve("harry_potter", "smoke", finetune_target=True)  # the embedded target is trained on the books
