"""The embedded world (``sga.embedded``: tokenizer, tiny-model training, caching) and loading (``sga.models``)."""

from __future__ import annotations

import json
import os

import pytest
import torch

import sga.embedded as embedded
import sga.models as models
from sga.prompts import QA, encode_prompt

PAIRS = [
    ("Where was Amara Okafor born?", "Amara Okafor was born in Lagos to a baker."),
    ("What does Basil Novak write?", "Basil Novak writes quiet poems about winter rivers."),
    ("Which prize did Corin Varga win?", "Corin Varga won the Copper Lantern Prize in 1994."),
    ("Who raised Dalia Moreau?", "Dalia Moreau was raised by her grandmother, a sailor."),
]
TEXTS = [f"{q} {a}" for q, a in PAIRS]
EXAMPLES = [QA(q, a) for q, a in PAIRS]
TEMPLATE = "llama2_chat"
TINY = {"hidden_size": 64, "num_layers": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def tokenizer():
    return embedded.train_tokenizer(TEXTS, vocab_size=320)


def test_tokenizer_is_deterministic_and_round_trips(tokenizer, tmp_path):
    again = embedded.train_tokenizer(TEXTS, vocab_size=320)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert len(tokenizer) == 320
    assert [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id] == [0, 1, 2, 3]

    tokenizer.save_pretrained(tmp_path)
    loaded = models.load_tokenizer(str(tmp_path))
    assert loaded.get_vocab() == tokenizer.get_vocab()
    for text in TEXTS + ["unseen wörds ✓ and digits 12345"]:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id  # BOS prepended, like Llama's tokenizer
        assert loaded(text)["input_ids"] == ids
        assert loaded.decode(ids, skip_special_tokens=True) == text


def test_tiny_llama_is_seeded_and_takes_token_ids_from_tokenizer(tokenizer):
    rng_before = torch.random.get_rng_state()
    first = embedded.tiny_llama(len(tokenizer), tokenizer=tokenizer, seed=3, **TINY)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG is untouched
    second = embedded.tiny_llama(len(tokenizer), tokenizer=tokenizer, seed=3, **TINY)
    other = embedded.tiny_llama(len(tokenizer), tokenizer=tokenizer, seed=4, **TINY)
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(first.state_dict()[weight], second.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
    assert (first.config.bos_token_id, first.config.eos_token_id, first.config.pad_token_id) == (0, 1, 2)
    assert first.config.intermediate_size == 192  # 8/3 * 64 rounded up to a multiple of 64
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        embedded.tiny_llama(100, tokenizer=tokenizer)


def _train(tokenizer, **kwargs) -> tuple[torch.nn.Module, list[float]]:
    model = embedded.tiny_llama(len(tokenizer), tokenizer=tokenizer, seed=0, **TINY)
    return model, embedded.train_causal_lm(model, tokenizer, EXAMPLES, TEMPLATE, progress=False, **kwargs)


def test_tiny_model_memorises_toy_pairs(tokenizer):
    model, losses = _train(tokenizer, epochs=60, lr=1e-2, batch_size=4, seed=0)
    assert len(losses) == 60
    assert losses[-1] < 0.01 * losses[0]
    for question, answer in PAIRS:
        prompt = torch.tensor([encode_prompt(tokenizer, question, TEMPLATE)])
        out = model.generate(prompt, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert out[0, -1] == tokenizer.eos_token_id
        assert tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True) == answer


def test_training_is_deterministic_given_the_seed(tokenizer):
    settings = {"epochs": 2, "lr": 1e-3, "batch_size": 2}
    losses = _train(tokenizer, seed=0, **settings)[1]
    assert len(losses) == 4
    assert _train(tokenizer, seed=0, **settings)[1] == losses
    assert _train(tokenizer, seed=1, **settings)[1] != losses  # another batch order


def test_qa_model_cache_reuses_and_rebuilds(tokenizer, tmp_path, monkeypatch):
    calls = []
    real_train = embedded.train_causal_lm
    monkeypatch.setattr(embedded, "train_causal_lm", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    train_kwargs = {"epochs": 2, "lr": 1e-3, "batch_size": 2, "seed": 0, "progress": False}

    def build(**changes):
        return embedded.build_or_load_tiny_model(
            "target", EXAMPLES, tokenizer, tmp_path, TEMPLATE, TINY, {**train_kwargs, **changes}
        )

    path = build()
    assert path.parent == tmp_path and path.name.startswith("target-")
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert len(json.loads((path / embedded.LOSSES_FILE).read_text())) == 2 * 2
    assert build(progress=True) == path  # display-only arguments do not change the key
    assert len(calls) == 1 and (path / "model.safetensors").stat().st_mtime_ns == mtime
    assert build(epochs=3) != path
    assert len(calls) == 2
    threads = torch.get_num_threads()
    try:  # the thread count changes float summation order, hence the weights: part of the key on a CPU
        torch.set_num_threads(threads + 1)
        assert build() != path and len(calls) == 3
    finally:
        torch.set_num_threads(threads)
    assert models.load_tokenizer(str(path)).get_vocab() == tokenizer.get_vocab()
    assert models.load_model(str(path)).config.num_hidden_layers == TINY["num_layers"]


def test_interrupted_build_is_not_reused(tokenizer, tmp_path, monkeypatch):
    def interrupted(model, *args, **kwargs):
        model.save_pretrained(tmp_path / "unused")  # leave something half-written behind
        raise KeyboardInterrupt

    args = ("target", EXAMPLES, tokenizer, tmp_path / "cache", TEMPLATE, TINY, {"epochs": 1, "lr": 1e-3, "batch_size": 2, "seed": 0})
    monkeypatch.setattr(embedded, "train_causal_lm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embedded.build_or_load_tiny_model(*args)
    assert os.listdir(tmp_path / "cache") == []  # the temporary folder was removed, nothing renamed
    (tmp_path / "cache" / ".target-stale.tmp-x").mkdir()  # what a killed process leaves behind
    monkeypatch.undo()
    path = embedded.build_or_load_tiny_model(*args)
    assert path.name.startswith("target-") and (path / embedded.LOSSES_FILE).is_file()


def test_tokenizer_cache_trains_once(tmp_path, monkeypatch):
    calls = []
    real_train = embedded.train_tokenizer
    monkeypatch.setattr(embedded, "train_tokenizer", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    first = embedded.build_or_load_tokenizer(TEXTS, 300, tmp_path, seed=0)
    second = embedded.build_or_load_tokenizer(TEXTS, 300, tmp_path, seed=0)
    assert len(calls) == 1 and first.get_vocab() == second.get_vocab() == real_train(TEXTS, 300).get_vocab()
    embedded.build_or_load_tokenizer(TEXTS, 310, tmp_path, seed=0)
    assert len(calls) == 2 and len(list(tmp_path.iterdir())) == 2


def test_lora_counts_and_seeded_init(tokenizer):
    base = embedded.tiny_llama(len(tokenizer), tokenizer=tokenizer, **TINY)
    total = sum(p.numel() for p in base.parameters())
    assert models.count_parameters(base) == {"trainable": total, "total": total}
    assert not models.is_quantized(base)

    peft_model = models.add_lora(base, rank=4, seed=1)
    hidden, inter, layers = 64, 192, 2
    per_layer = 4 * 4 * (hidden + hidden) + 2 * 4 * (hidden + inter) + 4 * (inter + hidden)
    assert models.count_parameters(peft_model) == {"trainable": layers * per_layer, "total": total + layers * per_layer}

    twin = models.add_lora(embedded.tiny_llama(len(tokenizer), tokenizer=tokenizer, **TINY), rank=4, seed=1)
    name = "base_model.model.model.layers.1.mlp.down_proj.lora_A.default.weight"
    assert torch.equal(dict(peft_model.named_parameters())[name], dict(twin.named_parameters())[name])


def test_bad_choices_name_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'nf4', 'fp4', 'int8'"):
        models.load_model(str(tmp_path), quantization="int4")
    with pytest.raises(ValueError, match=r"'float32', 'bfloat16', 'float16'"):
        models.load_model(str(tmp_path), compute_dtype="fp8")
    with pytest.raises(FileNotFoundError, match="No local model directory"):
        models.load_model(str(tmp_path / "missing"))


def test_offline_hub_id_points_to_mini_preset_or_local_path(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for load in (models.load_tokenizer, models.load_model):
        with pytest.raises(OSError, match=r"(?s)HF_HUB_OFFLINE is set.*`mini` preset.*local directory"):
            load("no-such-owner/no-such-model")


def test_generated_data_is_written_once_under_its_parameters(tmp_path):
    calls = []

    def generate(path, size, seed):
        calls.append((size, seed))
        path.mkdir()
        (path / "rows.txt").write_text("x" * size)
        return path

    first = embedded.generated_data(tmp_path, "toy-data", {"size": 3, "seed": 0}, generate)
    assert embedded.generated_data(tmp_path, "toy-data", {"seed": 0, "size": 3}, generate) == first  # key order does not matter
    assert first.name.startswith("toy-data-") and calls == [(3, 0)]
    assert embedded.generated_data(tmp_path, "toy-data", {"size": 4, "seed": 0}, generate) != first and len(calls) == 2


def test_only_the_offline_kernel_trust_notice_is_silenced(caplog):
    """The `kernels` package's offline notice about bitsandbytes' CPU kernel is dropped, its other records are not."""
    import logging

    log = logging.getLogger("kernels._internals.hf_hub")
    with caplog.at_level(logging.WARNING, logger=log.name):
        log.warning(f"{models.OFFLINE_TRUST_NOTICE} because Hugging Face Hub is in offline mode.")
        log.warning("Skipping publisher trust check for 'someone/else' because Hugging Face Hub is in offline mode.")
        log.warning("Kernel repository 'x/y' could not verify publisher trust status.")
    assert [r.getMessage() for r in caplog.records] == [
        "Skipping publisher trust check for 'someone/else' because Hugging Face Hub is in offline mode.",
        "Kernel repository 'x/y' could not verify publisher trust status."]


def test_importing_bitsandbytes_offline_after_sga_models_prints_no_trust_notice():
    """What a notebook showed as a stderr box in JupyterLab: bitsandbytes asks `kernels` for its CPU kernel at import."""
    import subprocess
    import sys

    pytest.importorskip("bitsandbytes")
    code = "import sga.models, bitsandbytes"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "publisher trust check" not in result.stderr, result.stderr
