"""LoRA gradients through bitsandbytes 4-bit layers against a dequantised plain-Linear reference.

A "loss went up" check cannot see the AVX512-BF16 CPU trap (wrong LoRA gradients after any eval
forward); comparing gradients with the same computation on dequantised weights can. The LoRA B
matrices are set to random values so that gradients reach A and flow through the adapters.
"""

from __future__ import annotations

import pytest
import torch

import sga.models as models
from sga.embedded import tiny_llama

bnb = pytest.importorskip("bitsandbytes")

HAS_AVX512_BF16 = bnb.functional.has_avx512bf16()
needs_avx512_bf16 = pytest.mark.skipif(not HAS_AVX512_BF16, reason="the trap needs a CPU with AVX512-BF16")
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
AUTOGRAD_WARNING = "autograd kernel was not registered"
VOCAB = 300


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(VOCAB, hidden_size=128, num_layers=2, num_heads=4, seed=0).save_pretrained(path)
    return str(path)


def _inputs(device: str) -> torch.Tensor:
    return torch.randint(4, VOCAB, (2, 16), generator=torch.Generator().manual_seed(0)).to(device)


def _eval_forward(model, ids: torch.Tensor) -> None:
    """What evaluation / generate() does first: the forward that triggers the CPU repacking."""
    model.eval()
    with torch.no_grad():
        model(ids)


def _lora_gradients(model, ids: torch.Tensor, lora_weights: dict[str, torch.Tensor] | None = None):
    """Add LoRA (B random unless ``lora_weights`` are given), backprop the LM loss.

    Returns (LoRA gradients, LoRA weights), both keyed by parameter name, gradients as fp32 on CPU.
    """
    peft_model = models.add_lora(model, rank=4, seed=0)
    lora = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in lora.items():
            if lora_weights is not None:
                param.copy_(lora_weights[name])
            elif "lora_B" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    peft_model.train()
    peft_model(ids, labels=ids).loss.backward()
    grads = {name: p.grad.detach().float().cpu() for name, p in lora.items()}
    return grads, {name: p.detach().clone() for name, p in lora.items()}


def _dequantized_reference(path: str, quantization: str, compute_dtype: str, device: str) -> torch.nn.Module:
    """The fp32 model whose Linear weights are the dequantised 4-bit weights of a fresh load."""
    quantized = models.load_model(path, quantization=quantization, compute_dtype=compute_dtype, device=device)
    quantized_modules = dict(quantized.named_modules())
    reference = models.load_model(path, device=device)
    for name, module in reference.named_modules():
        source = quantized_modules.get(name)
        if isinstance(source, bnb.nn.Linear4bit):
            module.weight.data = bnb.functional.dequantize_4bit(source.weight.data, source.weight.quant_state).float()
    assert not models.is_quantized(reference)
    return reference


def _max_relative_error(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    assert len(reference) == 2 * 7 * 2  # A and B on 7 projections in each of 2 layers
    return max(((grads[n] - reference[n]).norm() / reference[n].norm()).item() for n in reference)


def _quantized_and_reference_gradients(path: str, quantization: str, compute_dtype: str, device: str):
    """LoRA gradients of the quantized model after an eval forward, and of its dequantised twin."""
    ids = _inputs(device)
    model = models.load_model(path, quantization=quantization, compute_dtype=compute_dtype, device=device)
    _eval_forward(model, ids)
    grads, lora_weights = _lora_gradients(model, ids)
    reference, _ = _lora_gradients(_dequantized_reference(path, quantization, compute_dtype, device), ids, lora_weights)
    return grads, reference


@pytest.mark.parametrize("quantization", ["nf4", "fp4"])
def test_4bit_lora_gradients_match_dequantized_reference_on_cpu(saved_model, quantization):
    grads, reference = _quantized_and_reference_gradients(saved_model, quantization, "float32", "cpu")
    for name in reference:
        torch.testing.assert_close(grads[name], reference[name], rtol=1e-4, atol=1e-7, msg=name)


@needs_avx512_bf16
def test_without_the_guard_the_gradients_are_wrong(saved_model, monkeypatch):
    """Proof that the parity test above detects the trap: disable the guard and it must fail."""
    monkeypatch.setattr(models, "guard_bnb_cpu", lambda model: 0)
    with pytest.warns(UserWarning, match=AUTOGRAD_WARNING):
        grads, reference = _quantized_and_reference_gradients(saved_model, "nf4", "float32", "cpu")
    assert _max_relative_error(grads, reference) > 0.5


@needs_avx512_bf16
def test_guard_turns_the_trap_warning_into_an_error(saved_model):
    model = models.load_model(saved_model, quantization="nf4", compute_dtype="float32", device="cpu")
    for module in model.modules():  # a layer the flag missed, e.g. one added after loading
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = True
    ids = _inputs("cpu")
    _eval_forward(model, ids)
    peft_model = models.add_lora(model, rank=4)
    peft_model.train()
    with pytest.raises(UserWarning, match=AUTOGRAD_WARNING):
        peft_model(ids, labels=ids).loss.backward()


@needs_avx512_bf16
def test_guard_refuses_a_model_already_repacked(saved_model, monkeypatch):
    monkeypatch.setattr(models, "guard_bnb_cpu", lambda model: 0)
    model = models.load_model(saved_model, quantization="nf4", compute_dtype="float32", device="cpu")
    _eval_forward(model, _inputs("cpu"))
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="reload the model"):
        models.guard_bnb_cpu(model)


def test_guard_counts_4bit_layers(saved_model):
    model = models.load_model(saved_model, quantization="nf4", device="cpu")
    assert models.is_quantized(model)
    assert models.guard_bnb_cpu(model) == 2 * 7  # lm_head stays unquantized
    assert all(not m.support_avx512bf16_for_cpu for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    full = models.count_parameters(models.load_model(saved_model, device="cpu"))
    assert models.count_parameters(model)["total"] == full["total"]


@gpu
@needs_cuda
@pytest.mark.parametrize(("compute_dtype", "tolerance"), [("float32", 1e-4), ("bfloat16", 5e-2)])
def test_4bit_lora_gradients_match_dequantized_reference_on_cuda(saved_model, compute_dtype, tolerance):
    """Seen on an H100: 0.0 with fp32 compute, 0.020 with bf16 compute."""
    grads, reference = _quantized_and_reference_gradients(saved_model, "nf4", compute_dtype, "cuda")
    assert _max_relative_error(grads, reference) < tolerance


@gpu
@needs_cuda
def test_int8_loads_and_trains_lora_on_cuda(saved_model):
    """Against the unquantized fp32 model; seen on an H100: logits 0.018, LoRA gradients 0.031."""
    ids = _inputs("cuda")
    model = models.load_model(saved_model, quantization="int8", compute_dtype="float16", device="cuda")
    assert sum(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules()) == 2 * 7
    full = models.load_model(saved_model, compute_dtype="float32", device="cuda")
    with torch.no_grad():
        logits, full_logits = model(ids).logits.float(), full(ids).logits
    logits_error = ((logits - full_logits).norm() / full_logits.norm()).item()
    grads, lora_weights = _lora_gradients(model, ids)
    grads_error = _max_relative_error(grads, _lora_gradients(full, ids, lora_weights)[0])
    assert logits_error < 0.05 and grads_error < 0.1, (logits_error, grads_error)
