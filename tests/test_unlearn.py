import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from sga.inference import example_nll
from sga.losses import UnlearningLoss
from sga.methods import make_loss
from sga.unlearn import UnlearnConfig, retain_index, unlearn

from conftest import QA, make_tiny_llama


def peft_model(tokenizer):
    model = make_tiny_llama(tokenizer, seed=3)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))


def lora_weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_ga_raises_forget_nll_and_logs_every_step(tiny_tokenizer):
    model = peft_model(tiny_tokenizer)
    cfg = UnlearnConfig(lr=1e-2, epochs=3, batch_size=2, progress=False)
    before = example_nll(model, tiny_tokenizer, QA[:4], "phi").mean()
    log = unlearn(model, tiny_tokenizer, make_loss("ga"), QA[:4], cfg)
    assert log.status == "completed" and len(log.steps) == 6
    assert [s["step"] for s in log.steps] == list(range(1, 7)) and log.steps[-1]["epoch"] == 3
    assert example_nll(model, tiny_tokenizer, QA[:4], "phi").mean() > before + 0.1
    assert all(s["grad_norm"] > 0 for s in log.steps)


def test_micro_batching_matches_one_forward(tiny_tokenizer):
    """Chunked forwards accumulate the same gradient as the fused forward."""
    logs = []
    for chunk in (None, 1):
        model = peft_model(tiny_tokenizer)
        cfg = UnlearnConfig(lr=1e-2, epochs=1, batch_size=2, forget_per_forward=chunk, max_grad_norm=None, progress=False)
        normal = np.array([[2, 3], [3, 4], [4, 5], [5, 2]])
        logs.append(unlearn(model, tiny_tokenizer, make_loss("sga", rate=-0.5, k=3), QA[:4], cfg, QA, normal))
    for a, b in zip(logs[0].steps, logs[1].steps):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_divergence_stops_and_keeps_the_log(tiny_tokenizer):
    class Exploding(UnlearningLoss):
        name, extra = "boom", None

        def __init__(self):
            self.calls = 0

        def extra_per_forget(self):
            return 0

        def __call__(self, model, batch):
            self.calls += 1
            loss, logs = make_loss("ga")(model, batch)
            return (loss * float("nan") if self.calls == 3 else loss), logs

    model = peft_model(tiny_tokenizer)
    log = unlearn(model, tiny_tokenizer, Exploding(), QA[:4], UnlearnConfig(epochs=5, batch_size=2, progress=False))
    assert log.status == "diverged" and len(log.steps) == 3 and "step 3" in log.message


def test_resume_after_interruption_gives_the_same_run(tiny_tokenizer, tmp_path):
    cfg = UnlearnConfig(lr=1e-2, epochs=3, batch_size=2, warmup_steps=3, checkpoint_every=2, progress=False)
    extra = retain_index(4, 2, seed=0)
    full_model = peft_model(tiny_tokenizer)
    full = unlearn(full_model, tiny_tokenizer, make_loss("graddiff"), QA[:4], cfg, QA[4:], extra)

    class Interrupt(Exception):
        pass

    class Crashing(UnlearningLoss):
        name, extra = "graddiff", "retain"

        def __init__(self):
            self.inner, self.calls = make_loss("graddiff"), 0

        def extra_per_forget(self):
            return 1

        def __call__(self, model, batch):
            self.calls += 1
            if self.calls == 4:
                raise Interrupt
            return self.inner(model, batch)

    with pytest.raises(Interrupt):
        unlearn(peft_model(tiny_tokenizer), tiny_tokenizer, Crashing(), QA[:4], cfg, QA[4:], extra, checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint" / "state.pt").exists()
    resumed_model = peft_model(tiny_tokenizer)
    resumed = unlearn(resumed_model, tiny_tokenizer, make_loss("graddiff"), QA[:4], cfg, QA[4:], extra, checkpoint_dir=tmp_path)
    assert resumed.status == "completed" and len(resumed.steps) == len(full.steps) == 6
    for a, b in zip(full.steps, resumed.steps):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["lr"] == b["lr"]  # warm-up resumes where it was
    for name, value in lora_weights(full_model).items():
        torch.testing.assert_close(value, lora_weights(resumed_model)[name], rtol=1e-5, atol=1e-6)


def test_bad_inputs(tiny_tokenizer, tiny_llama):
    with pytest.raises(ValueError, match="no trainable parameters"):
        for p in tiny_llama.parameters():
            p.requires_grad_(False)
        unlearn(tiny_llama, tiny_tokenizer, make_loss("ga"), QA[:2], UnlearnConfig(progress=False))
    with pytest.raises(ValueError, match=r"extra_index of shape \(2, 3\)"):
        unlearn(peft_model(tiny_tokenizer), tiny_tokenizer, make_loss("sga", k=4), QA[:2], UnlearnConfig(progress=False))
    with pytest.raises(ValueError, match="retain pool is empty"):
        retain_index(3, 0, seed=0)


def test_on_epoch_end_is_called_after_each_epoch_without_changing_training(tiny_tokenizer):
    cfg = UnlearnConfig(lr=1e-2, epochs=3, batch_size=3, progress=False)  # 4 samples: 2 steps per epoch
    plain_model, watched_model = peft_model(tiny_tokenizer), peft_model(tiny_tokenizer)
    plain = unlearn(plain_model, tiny_tokenizer, make_loss("ga"), QA[:4], cfg)
    calls = []
    watched = unlearn(watched_model, tiny_tokenizer, make_loss("ga"), QA[:4], cfg,
                      on_epoch_end=lambda epoch: calls.append(epoch) or {"nll": float(example_nll(watched_model, tiny_tokenizer, QA[:4], "phi").mean())})
    assert calls == [1, 2, 3] and [e["step"] for e in watched.epochs] == [2, 4, 6] and watched_model.training
    assert [s["loss"] for s in watched.steps] == [s["loss"] for s in plain.steps]  # evaluating in between changes nothing
    assert watched.epochs[-1]["nll"] == pytest.approx(float(example_nll(watched_model, tiny_tokenizer, QA[:4], "phi").mean()))


@pytest.mark.parametrize("method,options,per_forget,extra,backward,reference", [
    ("ga", {}, 0, None, 1, None),
    ("sga", {"rate": -0.5, "k": 3}, 2, "normal", 1, None),
    ("sga_adaptive", {"k": 3}, 2, "normal", 2, None),  # g_f and the mean normal gradient: two backward passes
    ("graddiff", {}, 1, "retain", 1, None),
    ("npo", {}, 1, "retain", 1, "forget"),  # the forget rows again through the reference model
    ("kl", {}, 1, "retain", 1, "extra"),  # the retain rows again through the reference model
])
def test_each_run_counts_the_token_passes_it_spends(tiny_tokenizer, method, options, per_forget, extra, backward, reference):
    """Forward and backward token passes by kind of row, against the encoded lengths of the rows each step holds."""
    from sga.prompts import encode

    index = np.array([[(i + 1 + j) % 6 for j in range(per_forget)] for i in range(4)]) if per_forget else None
    cfg = UnlearnConfig(lr=1e-2, epochs=2, batch_size=2, forget_per_forward=1, progress=False)
    log = unlearn(peft_model(tiny_tokenizer), tiny_tokenizer, make_loss(method, **options), QA[:4], cfg, QA, index)
    length = lambda example: len(encode(tiny_tokenizer, example, "phi", 256)["input_ids"])  # noqa: E731
    forget = 2 * sum(length(e) for e in QA[:4])  # two epochs
    extra_tokens = 2 * sum(length(QA[j]) for row in (index if per_forget else []) for j in row)
    expected_forward = {"forget": forget, **({extra: extra_tokens} if extra else {})}
    if reference:
        expected_forward["reference"] = forget if reference == "forget" else extra_tokens
    assert log.tokens["forward"] == expected_forward
    assert log.tokens["backward"] == {kind: backward * n for kind, n in expected_forward.items() if kind != "reference"}
    assert log.steps[-1]["forward_tokens"] == sum(expected_forward.values())
    assert [s["backward_tokens"] for s in log.steps] == sorted(s["backward_tokens"] for s in log.steps)  # cumulative


def test_plain_sgd_steps_by_the_gradient_and_a_forget_loss_bound_stops_the_run(tiny_tokenizer):
    """The stability ladder's optimiser: w <- w - lr g exactly; a forget NLL above the stated bound is a divergence."""
    model = peft_model(tiny_tokenizer)
    before = lora_weights(model)
    grads = {}
    loss_fn = make_loss("ga")

    class Watching(UnlearningLoss):
        name, extra = "ga", None

        def __call__(self, model, batch):
            loss, logs = loss_fn(model, batch)
            loss.backward(retain_graph=True)
            grads.update({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None})
            model.zero_grad()
            return loss, logs

    cfg = UnlearnConfig(lr=0.5, epochs=1, batch_size=2, max_grad_norm=None, optimizer="sgd", progress=False)
    unlearn(model, tiny_tokenizer, Watching(), QA[:2], cfg)
    for name, value in lora_weights(model).items():
        if name in grads:
            torch.testing.assert_close(value, before[name] - 0.5 * grads[name])
    bounded = UnlearnConfig(lr=1.0, epochs=20, batch_size=2, max_grad_norm=None, optimizer="sgd", diverge_above=3.0, progress=False)
    log = unlearn(peft_model(tiny_tokenizer), tiny_tokenizer, make_loss("ga"), QA[:2], bounded)
    assert log.status == "diverged" and "above 3" in log.message and log.steps[-1]["forget_nll"] > 3.0
    assert all(s["forget_nll"] <= 3.0 for s in log.steps[:-1])
