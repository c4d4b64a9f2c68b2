"""Unlearning objectives: one small class per method, each turning a fused batch into a loss.

A fused batch holds the forget sequences first and the method's extra sequences after them
(retain samples for GradDiff/KL/NPO/SimNPO, the K-1 normal samples of each forget sample for SGA, in
forget-major order), so one forward pass serves both. ``l(x)`` is always the mean per-token NLL of
the answer tokens of ``x`` (:func:`sga.inference.label_nll`).

Reference models (KL, NPO) are the same network with its LoRA adapter disabled, so they cost no
extra memory; they therefore need a peft model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sga.inference import label_nll
from sga.theory import adaptive_rate, check_rate, normal_mass, sga_weights

__all__ = ["FusedBatch", "UnlearningLoss", "GradientAscent", "GradDiff", "KLRetain", "NPO", "SimNPO",
           "SmoothedGradientAscent", "AdaptiveSGA", "sga_weights"]

@dataclass
class FusedBatch:
    """Collated tensors of forget rows followed by ``n_extra_per_forget`` extra rows per forget row."""

    tensors: dict[str, torch.Tensor]
    n_forget: int
    n_extra_per_forget: int


def _per_sequence(model: torch.nn.Module, batch: FusedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits of the fused batch, and the per-sequence summed NLL and token counts."""
    t = batch.tensors
    logits = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits
    total, counts = label_nll(logits, t["labels"])
    return logits, total, counts


def _mean_nll(model: torch.nn.Module, batch: FusedBatch) -> torch.Tensor:
    """The per-sequence mean per-token NLL of a fused batch, l(x) of each row."""
    _, total, counts = _per_sequence(model, batch)
    return total / counts


def _reference_logits(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the reference model: the same network with its LoRA adapter disabled, no gradient."""
    if not hasattr(model, "disable_adapter"):
        raise TypeError("KL and NPO use the model with its adapter disabled as reference: pass a peft (LoRA) model.")
    with torch.no_grad(), model.disable_adapter():
        return model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"]).logits


class UnlearningLoss:
    """Base: ``extra`` names the data the method needs beside the forget batch (None, 'retain', 'normal');
    ``reference`` the rows it also runs through the reference model, the adapter disabled (None, 'forget', 'extra')."""

    extra: str | None = None
    reference: str | None = None
    name: str = ""

    def extra_per_forget(self) -> int:
        return 1 if self.extra else 0

    def __call__(self, model: torch.nn.Module, batch: FusedBatch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class GradientAscent(UnlearningLoss):
    """GA: minimise -l(x_f)."""

    name = "ga"

    def __call__(self, model, batch):
        _, total, counts = _per_sequence(model, batch)
        forget_nll = (total / counts)[: batch.n_forget].mean()
        return -forget_nll, {"forget_nll": forget_nll.item()}


class GradDiff(UnlearningLoss):
    """GradDiff: minimise -gamma l(x_f) + alpha l(x_r)."""

    name, extra = "graddiff", "retain"

    def __init__(self, gamma: float = 1.0, alpha: float = 1.0):
        self.gamma, self.alpha = gamma, alpha

    def __call__(self, model, batch):
        nll = _mean_nll(model, batch)
        forget_nll, retain_nll = nll[: batch.n_forget].mean(), nll[batch.n_forget :].mean()
        loss = -self.gamma * forget_nll + self.alpha * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}


class KLRetain(UnlearningLoss):
    """KL: minimise -l(x_f) + alpha KL(ref || model) over the answer tokens of retain samples."""

    name, extra, reference = "kl", "retain", "extra"

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def __call__(self, model, batch):
        logits, total, counts = _per_sequence(model, batch)
        nll = total / counts
        n = batch.n_forget
        t = {k: v[n:] for k, v in batch.tensors.items()}
        ref_logits = _reference_logits(model, t)
        mask = (t["labels"][:, 1:] != -100).float()
        ref_logp = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
        logp = F.log_softmax(logits[n:, :-1].float(), dim=-1)
        kl_tok = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
        kl = (kl_tok * mask).sum() / mask.sum()
        forget_nll = nll[:n].mean()
        loss = -forget_nll + self.alpha * kl
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": nll[n:].mean().item(), "kl": kl.item()}


class NPO(UnlearningLoss):
    """NPO: -(2/beta) log sigmoid(-beta (log p - log p_ref)) on forget + alpha l(x_r) (log p summed over tokens)."""

    name, extra, reference = "npo", "retain", "forget"

    def __init__(self, beta: float = 0.1, alpha: float = 1.0):
        self.beta, self.alpha = beta, alpha

    def __call__(self, model, batch):
        _, total, counts = _per_sequence(model, batch)
        n = batch.n_forget
        t = {k: v[:n] for k, v in batch.tensors.items()}
        ref_total, _ = label_nll(_reference_logits(model, t), t["labels"])
        log_ratio = -(total[:n] - ref_total)  # log p_model - log p_ref
        npo = -(2.0 / self.beta) * F.logsigmoid(-self.beta * log_ratio).mean()
        nll = total / counts
        retain_nll = nll[n:].mean()
        loss = npo + self.alpha * retain_nll
        return loss, {"forget_nll": nll[:n].mean().item(), "retain_nll": retain_nll.item(), "npo": npo.item()}


class SimNPO(UnlearningLoss):
    """SimNPO: -(2/beta) log sigmoid(beta (l(x_f) - delta)) on forget + alpha l(x_r) (l: mean per-token NLL).

    NPO without the reference model: the length-normalised NLL replaces the log-ratio to the reference.
    """

    name, extra = "simnpo", "retain"

    def __init__(self, beta: float = 4.5, delta: float = 0.0, alpha: float = 1.0):
        self.beta, self.delta, self.alpha = beta, delta, alpha

    def __call__(self, model, batch):
        nll, n = _mean_nll(model, batch), batch.n_forget
        simnpo = -(2.0 / self.beta) * F.logsigmoid(self.beta * (nll[:n] - self.delta)).mean()
        retain_nll = nll[n:].mean()
        loss = simnpo + self.alpha * retain_nll
        return loss, {"forget_nll": nll[:n].mean().item(), "retain_nll": retain_nll.item(), "simnpo": simnpo.item()}


class _WithNormalSamples(UnlearningLoss):
    """A method that pairs each forget sample with its K-1 normal samples."""

    extra, k = "normal", 1

    def extra_per_forget(self) -> int:
        return self.k - 1


class SmoothedGradientAscent(_WithNormalSamples):
    """SGA: GA on the forget sample under a label smoothed over it and its K-1 normal samples.

    Per forget sample, with (w_f, w_n) = :func:`sga_weights`: the ``gls`` reading minimises
    -w_f l(x_f) - w_n sum_k l(x_k); the ``descent`` reading flips the sign of the normal term.
    K = 1 (or r = 0) is plain GA.
    """

    name = "sga"

    def __init__(self, rate: float = -0.4, k: int = 4, reading: str = "gls"):
        check_rate(rate, reading, k)
        self.forget_weight, self.normal_weight = sga_weights(rate, k)
        self.rate, self.k, self.reading = rate, int(k), reading

    def __call__(self, model, batch):
        nll, n = _mean_nll(model, batch), batch.n_forget
        forget_nll = nll[:n]
        logs = {"forget_nll": forget_nll.mean().item()}
        loss = -self.forget_weight * forget_nll.mean()
        if self.k > 1:
            normal_sum = nll[n:].view(n, self.k - 1).sum(dim=1).mean()
            sign = -1.0 if self.reading == "gls" else 1.0
            loss = loss + sign * self.normal_weight * normal_sum
            logs["normal_nll"] = nll[n:].mean().item()
        return loss, logs


class AdaptiveSGA(_WithNormalSamples):
    """SGA whose rate is chosen at every step (micro-batch) from the measured gradients (beyond the paper).

    From one forward pass: g_f, the gradient of the mean forget NLL, and ḡ, that of the mean normal NLL
    (two backward passes over the trainable parameters); r_t = :func:`sga.theory.adaptive_rate` (r* of the
    one-step analysis, moved into the first-order safe range); the step is SGA's gradient at r_t, assembled
    from g_f and ḡ. The returned loss has SGA's value at r_t and that gradient, so the caller's
    ``backward`` costs no third pass: the extra cost over fixed-rate SGA is one backward pass and three
    inner products per step. Logs r_t (``rate``) and whether it was first-order safe (``safe``, 0 or 1).
    """

    name = "sga_adaptive"

    def __init__(self, k: int = 4, reading: str = "gls"):
        normal_mass(k)  # K >= 2: there is no rate to choose without normal samples
        self.k, self.reading = int(k), reading

    def __call__(self, model, batch):
        nll, n = _mean_nll(model, batch), batch.n_forget
        forget_nll, normal_nll = nll[:n].mean(), nll[n:].mean()
        params = [p for p in model.parameters() if p.requires_grad]
        g_f = torch.autograd.grad(forget_nll, params, retain_graph=True)
        g_n = torch.autograd.grad(normal_nll, params)
        dot = lambda a, b: float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))  # noqa: E731
        rate, safe = adaptive_rate(dot(g_f, g_f), dot(g_f, g_n), dot(g_n, g_n), self.k, self.reading)
        forget_weight, normal_weight = sga_weights(rate, self.k)
        # per forget sample: -w_f l_f + sign w_n sum_k l_k; the batch mean of sum_k l_k is (K-1) x the mean normal NLL
        sign = -1.0 if self.reading == "gls" else 1.0
        coef_f, coef_n = -forget_weight, sign * normal_weight * (self.k - 1)
        value = coef_f * forget_nll.detach() + coef_n * normal_nll.detach()
        surrogate = sum((p * (coef_f * a + coef_n * b)).sum() for p, a, b in zip(params, g_f, g_n))
        loss = surrogate - surrogate.detach() + value  # value: the loss at r_t; gradient: its gradient
        return loss, {"forget_nll": forget_nll.item(), "normal_nll": normal_nll.item(), "rate": rate, "safe": float(safe)}
