"""4-bit CPU layers that keep their dequantised weight (``sga.models.cache_dequantized_weights``) give bitwise the
numbers of bitsandbytes' own path, which dequantises on every forward and backward: logits, generations, losses
and LoRA gradients, through optimizer steps; a replaced weight is dequantised again."""

from __future__ import annotations

import pytest
import torch

import sga.models as models
from sga.embedded import tiny_llama

bnb = pytest.importorskip("bitsandbytes")
VOCAB = 300


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(VOCAB, hidden_size=64, num_layers=2, num_heads=4, seed=0).save_pretrained(path)
    return str(path)


def _layers(model) -> list:
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def _pair(path: str, quantization: str = "nf4", double_quant: bool = True):
    """The same 4-bit model twice: as ``load_model`` gives it (cached), and on bitsandbytes' own path."""
    cached = models.load_model(path, quantization=quantization, double_quant=double_quant, device="cpu")
    plain = models.load_model(path, quantization=quantization, double_quant=double_quant, device="cpu")
    for layer in _layers(plain):
        del layer.forward  # back to Linear4bit.forward
    assert all("forward" in vars(layer) for layer in _layers(cached))
    return cached, plain


def _ids(seed: int = 0, shape: tuple[int, int] = (3, 12)) -> torch.Tensor:
    return torch.randint(4, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("quantization", "double_quant"), [("nf4", True), ("nf4", False), ("fp4", True)])
def test_eval_logits_and_generations_are_bitwise_the_uncached_ones(saved_model, quantization, double_quant):
    cached, plain = _pair(saved_model, quantization, double_quant)
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as generation has it
    with torch.no_grad():
        for _ in range(2):  # the first call sets the compute dtype, later ones use the cache
            assert torch.equal(cached(input_ids=ids, attention_mask=mask).logits, plain(input_ids=ids, attention_mask=mask).logits)
        kw = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=2)
        assert torch.equal(cached.generate(input_ids=ids, **kw), plain.generate(input_ids=ids, **kw))
    assert all(getattr(layer, "_sga_dequantized", None) is not None for layer in _layers(cached))


def test_lora_training_is_bitwise_the_uncached_one(saved_model):
    """Losses, every LoRA gradient and the weights after AdamW steps, with an eval forward first (the CPU trap's
    trigger) and eval forwards between the steps."""
    runs = []
    for model in _pair(saved_model):
        peft_model = models.add_lora(model, rank=4, seed=0)
        lora = [p for p in peft_model.parameters() if p.requires_grad]
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:  # nonzero B, so that gradients reach A
                    param.copy_(0.1 * torch.randn(param.shape, generator=generator))
        optimizer = torch.optim.AdamW(lora, lr=1e-2)
        trace = []
        for step in range(3):
            peft_model.eval()
            with torch.no_grad():
                trace.append(peft_model(_ids(10 + step)).logits)
            peft_model.train()
            loss = -peft_model(_ids(step), labels=_ids(step)).loss  # gradient ascent, as GA
            loss.backward()
            trace += [loss.detach()] + [p.grad.clone() for p in lora]
            optimizer.step()
            optimizer.zero_grad()
        runs.append(trace + [p.detach().clone() for p in lora])
    assert len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_a_replaced_weight_is_dequantised_again(saved_model):
    cached, plain = _pair(saved_model)
    ids = _ids()
    with torch.no_grad():
        cached(ids), plain(ids)
        for model in (cached, plain):  # the same new 4-bit weight in the first layer of both
            layer = _layers(model)[0]
            generator = torch.Generator().manual_seed(2)
            weight = torch.randn(layer.weight.quant_state.shape, generator=generator)
            layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4").to("cpu")
        assert torch.equal(cached(ids).logits, plain(ids).logits)


def test_cache_is_applied_by_load_model_on_cpu_and_bounded(saved_model):
    model = models.load_model(saved_model, quantization="nf4", device="cpu")
    assert sum("forward" in vars(layer) for layer in _layers(model)) == 2 * 7
    fresh = models.load_model(saved_model, quantization="nf4", device="cpu")
    for layer in _layers(fresh):
        del layer.forward
    assert models.cache_dequantized_weights(fresh, max_bytes=0) == 0  # too big: bitsandbytes' path stays
    assert not any("forward" in vars(layer) for layer in _layers(fresh))
    assert models.cache_dequantized_weights(models.load_model(saved_model, device="cpu")) == 0  # nothing quantised


def test_a_layer_open_to_the_avx512_repacking_keeps_bitsandbytes_path(saved_model):
    model = models.load_model(saved_model, quantization="nf4", device="cpu")
    layer = _layers(model)[0]
    layer.support_avx512bf16_for_cpu = True
    with torch.no_grad():
        model(_ids())
    assert getattr(layer, "_sga_dequantized", None) is None
