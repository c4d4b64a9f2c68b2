import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from sga import theory
from sga.inference import sequence_nll
from sga.methods import make_loss
from sga.presets import resolve
from sga.prompts import collate, encode
from sga.rate_dynamics import measure_rate_dynamics
from sga.unlearn import UnlearnConfig, unlearn

from conftest import QA, make_tiny_llama

SETTINGS = resolve("tofu", "smoke", k=3, reading="gls", rate=-0.5, lr=1e-2, epochs=2, batch_size=2, template="phi", max_length=64, seed=0)
RUN = SETTINGS.run("sga")
NORMAL = np.array([[4, 5], [5, 4]])


def peft_model(tokenizer):
    return get_peft_model(make_tiny_llama(tokenizer, seed=5), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))


def flat_grad(model, pairs, tokenizer):
    model.zero_grad()
    batch = collate([encode(tokenizer, example, "phi", 64) for example in pairs], tokenizer.pad_token_id)
    sequence_nll(model, batch).mean().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]).double().numpy()


def test_first_step_rate_matches_flattened_gradients(tiny_tokenizer):
    model = peft_model(tiny_tokenizer)
    forget = QA[:2]
    g_f = flat_grad(model, forget, tiny_tokenizer)
    g_n = flat_grad(model, [QA[j] for i in range(2) for j in NORMAL[i]], tiny_tokenizer)
    model.zero_grad()
    records = measure_rate_dynamics(model, tiny_tokenizer, forget, QA, NORMAL, SETTINGS.run("sga", epochs=1, batch_size=2))
    assert len(records) == 1
    for reading in theory.READINGS:
        assert records[0][f"r_star_{reading}"] == pytest.approx(theory.optimal_rate(g_f, g_n, 3, reading), rel=1e-6)
        safe = theory.first_order_safe_range(g_f, g_n, 3, reading)
        lo = safe.lo if safe else float("nan")
        assert records[0][f"safe_lo_{reading}"] == pytest.approx(lo, rel=1e-6, nan_ok=True)
    assert records[0]["cosine"] == pytest.approx(g_f @ g_n / np.linalg.norm(g_f) / np.linalg.norm(g_n), rel=1e-6)


def test_steps_follow_the_fused_sga_loss(tiny_tokenizer):
    """Assembling SGA's gradient from the two measured gradients moves the weights exactly like the fused loss."""
    measured = peft_model(tiny_tokenizer)
    forget = QA[:2]
    measure_rate_dynamics(measured, tiny_tokenizer, forget, QA, NORMAL, RUN)
    fused = peft_model(tiny_tokenizer)
    cfg = UnlearnConfig(lr=RUN.training.lr, epochs=2, batch_size=2, max_grad_norm=None, max_length=64, progress=False)
    unlearn(fused, tiny_tokenizer, make_loss("sga", rate=-0.5, k=3), forget, cfg, QA, NORMAL)
    for (name, a), (_, b) in zip(measured.named_parameters(), fused.named_parameters()):
        if a.requires_grad:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_micro_batches_measure_the_same_gradients(tiny_tokenizer):
    """forget_per_forward only changes how many sequences go through the model at once."""
    forget = QA[:2]
    whole = measure_rate_dynamics(peft_model(tiny_tokenizer), tiny_tokenizer, forget, QA, NORMAL, RUN)
    model, rows_per_forward = peft_model(tiny_tokenizer), []
    model.get_input_embeddings().register_forward_hook(lambda module, args, out: rows_per_forward.append(args[0].shape[0]))
    chunked = measure_rate_dynamics(model, tiny_tokenizer, forget, QA, NORMAL, SETTINGS.run("sga", forget_per_forward=1))
    assert rows_per_forward == [1, 1, 2, 2] * 2  # per step: two forget chunks, then two chunks of K-1 = 2 normal rows
    assert len(whole) == len(chunked) == 2
    for a, b in zip(whole, chunked):
        for key in ("forget_nll", "normal_nll", "ff", "fn", "nn", "r_star_gls", "r_star_descent"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), key


def test_rejects_bad_k(tiny_tokenizer):
    with pytest.raises(ValueError, match="K must be >= 2"):
        measure_rate_dynamics(peft_model(tiny_tokenizer), tiny_tokenizer, QA[:2], QA, NORMAL, SETTINGS.run("sga", k=4))
