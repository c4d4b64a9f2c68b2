import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from sga.inference import sequence_nll
from sga.losses import FusedBatch, sga_weights
from sga.methods import make_loss
from sga.prompts import collate, encode
from sga.theory import check_rate

from conftest import QA


def fused(tokenizer, forget, extra):
    feats = [encode(tokenizer, example, "phi") for example in list(forget) + list(extra)]
    per = len(extra) // len(forget) if forget else 0
    return FusedBatch(collate(feats, tokenizer.pad_token_id), len(forget), per)


def single_nll(model, tokenizer, pair):
    batch = collate([encode(tokenizer, pair, "phi")], tokenizer.pad_token_id)
    return sequence_nll(model, batch).item()


@pytest.mark.parametrize("rate,k,expected", [(0.0, 4, (1.0, 0.0)), (-0.4, 4, (1.3, -0.1)), (1.0, 4, (0.25, 0.25)), (0.5, 2, (0.75, 0.25)), (0.3, 1, (1.0, 0.3))])
def test_sga_weights_exact(rate, k, expected):
    wf, wn = sga_weights(rate, k)
    assert wf == pytest.approx(expected[0]) and wn == pytest.approx(expected[1])
    assert wf + (k - 1) * wn == pytest.approx(1.0)  # a smoothed label sums to one


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_sga_weights_rejects_bad_k(k):
    with pytest.raises(ValueError, match="K must be an integer >= 1"):
        sga_weights(0.1, k)


def test_rate_ranges_and_readings():
    check_rate(-3.0, "gls")  # negative label smoothing has no lower bound
    check_rate(0.7, "descent")
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        check_rate(-0.2, "descent")
    check_rate(1.3, "gls", 4)  # over-smoothing: the forget sample keeps weight 1 - 1.3 * 3/4 = 0.025 > 0
    with pytest.raises(ValueError, match=r"outside \(-inf, 1.33333\), the valid range of the 'gls' reading at K = 4"):
        check_rate(4 / 3, "gls", 4)  # forget weight 0: nothing is ascended any more
    with pytest.raises(ValueError, match=r"outside \(-inf, 2\)"):
        check_rate(2.5, "gls", 2)
    check_rate(0.99, "gls")  # K -> inf: r < 1
    check_rate(9.0, "gls", 1)  # K = 1 has no normal samples: every rate is GA
    with pytest.raises(ValueError, match="weight 1 - r"):
        make_loss("sga", rate=1.4, k=4)
    with pytest.raises(ValueError, match="choose one of"):
        check_rate(0.1, "other")
    with pytest.raises(ValueError, match=r"choose one of \['ga', 'graddiff', 'kl', 'npo', 'simnpo', 'flat', 'sga', 'sga_adaptive'\]"):
        make_loss("rmu")


def test_ga_is_negative_mean_forget_nll(tiny_llama, tiny_tokenizer):
    batch = fused(tiny_tokenizer, QA[:3], [])
    loss, logs = make_loss("ga")(tiny_llama, batch)
    expected = sum(single_nll(tiny_llama, tiny_tokenizer, p) for p in QA[:3]) / 3
    assert loss.item() == pytest.approx(-expected, rel=1e-5)
    assert logs["forget_nll"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("reading,sign", [("gls", -1.0), ("descent", 1.0)])
def test_sga_loss_matches_independent_per_sequence_nll(tiny_llama, tiny_tokenizer, reading, sign):
    forget, normal = QA[:2], [QA[2], QA[3], QA[4], QA[5], QA[3], QA[4]]  # K-1 = 3 per forget sample
    rate, k = (-0.4 if reading == "gls" else 0.6), 4
    loss, _ = make_loss("sga", rate=rate, k=k, reading=reading)(tiny_llama, fused(tiny_tokenizer, forget, normal))
    wf, wn = sga_weights(rate, k)
    lf = [single_nll(tiny_llama, tiny_tokenizer, p) for p in forget]
    ln = [single_nll(tiny_llama, tiny_tokenizer, p) for p in normal]
    expected = sum(-wf * lf[i] + sign * wn * sum(ln[3 * i : 3 * i + 3]) for i in range(2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_sga_reduces_to_ga_at_rate_zero(tiny_llama, tiny_tokenizer):
    batch = fused(tiny_tokenizer, QA[:2], QA[2:6])
    sga, _ = make_loss("sga", rate=0.0, k=3)(tiny_llama, batch)
    ga, _ = make_loss("ga")(tiny_llama, fused(tiny_tokenizer, QA[:2], []))
    assert sga.item() == pytest.approx(ga.item(), rel=1e-5)


def test_graddiff_value(tiny_llama, tiny_tokenizer):
    loss, logs = make_loss("graddiff", gamma=2.0, alpha=0.5)(tiny_llama, fused(tiny_tokenizer, QA[:2], QA[4:6]))
    lf = [single_nll(tiny_llama, tiny_tokenizer, p) for p in QA[:2]]
    lr = [single_nll(tiny_llama, tiny_tokenizer, p) for p in QA[4:6]]
    assert loss.item() == pytest.approx(-2.0 * sum(lf) / 2 + 0.5 * sum(lr) / 2, rel=1e-5)


def lora(model, init_b=False):
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    if init_b:
        torch.manual_seed(1)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.5)
    return peft_model


def test_kl_and_npo_at_the_reference(tiny_llama, tiny_tokenizer):
    model = lora(tiny_llama)  # LoRA B = 0: the model equals its reference
    batch = fused(tiny_tokenizer, QA[:2], QA[4:6])
    _, kl_logs = make_loss("kl")(model, batch)
    assert kl_logs["kl"] == pytest.approx(0.0, abs=1e-6)
    _, npo_logs = make_loss("npo", beta=0.1)(model, batch)
    assert npo_logs["npo"] == pytest.approx((2 / 0.1) * math.log(2), rel=1e-5)


def test_kl_positive_and_needs_peft(tiny_llama, tiny_tokenizer):
    batch = fused(tiny_tokenizer, QA[:2], QA[4:6])
    with pytest.raises(TypeError, match="peft"):
        make_loss("kl")(tiny_llama, batch)
    _, logs = make_loss("kl")(lora(tiny_llama, init_b=True), batch)
    assert logs["kl"] > 1e-4


def test_simnpo_value(tiny_llama, tiny_tokenizer):
    loss, logs = make_loss("simnpo", beta=4.5, delta=0.5, alpha=0.7)(tiny_llama, fused(tiny_tokenizer, QA[:2], QA[4:6]))
    lf = [single_nll(tiny_llama, tiny_tokenizer, p) for p in QA[:2]]
    lr = [single_nll(tiny_llama, tiny_tokenizer, p) for p in QA[4:6]]
    log_sigmoid = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
    simnpo = -(2 / 4.5) * sum(log_sigmoid(4.5 * (nll - 0.5)) for nll in lf) / 2
    assert logs["simnpo"] == pytest.approx(simnpo, rel=1e-5)
    assert loss.item() == pytest.approx(simnpo + 0.7 * sum(lr) / 2, rel=1e-5)


def test_sga_equals_graddiff_with_its_weights_on_the_same_normal_samples(tiny_llama, tiny_tokenizer):
    """The algebra behind notebook 02's control: SGA(r, K) is GradDiff(gamma, alpha) over the same K-1 samples."""
    from sga.theory import graddiff_weights

    batch = fused(tiny_tokenizer, QA[:2], [QA[2], QA[3], QA[4], QA[5], QA[3], QA[4]])
    for reading, rate in (("gls", -0.4), ("descent", 0.6)):
        gamma, alpha = graddiff_weights(rate, 4, reading)
        sga, _ = make_loss("sga", rate=rate, k=4, reading=reading)(tiny_llama, batch)
        graddiff, _ = make_loss("graddiff", gamma=gamma, alpha=alpha)(tiny_llama, batch)
        assert sga.item() == pytest.approx(graddiff.item(), rel=1e-5)


@pytest.mark.parametrize("reading", ["gls", "descent"])
def test_adaptive_sga_steps_along_sga_at_the_safe_optimal_rate(tiny_llama, tiny_tokenizer, reading):
    """Adaptive SGA's gradient is SGA's at r_t, and r_t is r* moved into the safe range of the measured gradients."""
    import numpy as np

    from sga import theory

    forget, normal = QA[:2], [QA[2], QA[3], QA[4], QA[5], QA[3], QA[4]]
    params = [p for p in tiny_llama.parameters() if p.requires_grad]
    loss, logs = make_loss("sga_adaptive", k=4, reading=reading)(tiny_llama, fused(tiny_tokenizer, forget, normal))
    grads = torch.autograd.grad(loss, params)
    fixed, _ = make_loss("sga", rate=logs["rate"], k=4, reading=reading)(tiny_llama, fused(tiny_tokenizer, forget, normal))
    assert loss.item() == pytest.approx(fixed.item(), rel=1e-5)
    for got, want in zip(grads, torch.autograd.grad(fixed, params)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)

    def flat_grad(examples):  # independently: each set's mean NLL on its own batch
        nll = sequence_nll(tiny_llama, collate([encode(tiny_tokenizer, e, "phi") for e in examples], tiny_tokenizer.pad_token_id)).mean()
        return np.concatenate([g.detach().double().ravel().numpy() for g in torch.autograd.grad(nll, params)])

    expected = theory.safe_optimal_rate(flat_grad(forget), flat_grad(normal), 4, reading, clip=True)
    assert logs["safe"] == 1.0 and logs["rate"] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_adaptive_sga_on_non_finite_gradients_returns_a_non_finite_loss_instead_of_failing(tiny_llama, tiny_tokenizer):
    """A blown-up model (e.g. plain SGD at a high rate) has no r*: the step is non-finite, so the run stops as diverged."""
    import copy
    import math

    model = copy.deepcopy(tiny_llama)
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).fill_(math.inf)
    params = [p for p in model.parameters() if p.requires_grad]
    loss, logs = make_loss("sga_adaptive", k=4)(model, fused(tiny_tokenizer, QA[:2], [QA[2], QA[3], QA[4], QA[5], QA[3], QA[4]]))
    assert not math.isfinite(loss.item()) and math.isnan(logs["rate"]) and logs["safe"] == 0.0
    assert all(not torch.isfinite(g).all() for g in torch.autograd.grad(loss, params))
