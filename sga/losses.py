"""Unlearning objectives: one small class per method, each turning a fused batch into a loss.

A fused batch holds the forget sequences first and the method's extra sequences after them
(retain samples for GradDiff/KL/NPO/SimNPO, the K-1 normal samples of each forget sample for SGA, in
forget-major order, each forget sample's template answer for FLAT), so one forward pass serves both.
``l(x)`` is always the mean per-token NLL of the answer tokens of ``x`` (:func:`sga.inference.label_nll`).

Reference models (KL, NPO) are the same network with its LoRA adapter disabled, so they cost no
extra memory; they therefore need a peft model.

FLAT keeps five of the eight f-divergences of its public code (KL, Pearson, Jeffrey, Jensen-Shannon,
total variation). Reverse-KL, squared-Hellinger and Neyman are left out (:data:`FLAT_EXCLUDED`): their
activations there use exp(u) where the f-GAN ones (Nowozin et al. 2016) use exp(-v), so minimising
the loss lowers the template answer's probability (and, for the first two, raises the forget answer's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from sga.inference import label_nll, label_prob
from sga.theory import adaptive_rate, check_rate, normal_mass, sga_weights

__all__ = ["FusedBatch", "UnlearningLoss", "GradientAscent", "GradDiff", "KLRetain", "NPO", "SimNPO",
           "SmoothedGradientAscent", "AdaptiveSGA", "FLAT", "sga_weights"]

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
    """Base: ``extra`` names the data the method needs beside the forget batch (None, 'retain', 'normal', 'template');
    ``reference`` the rows it also runs through the reference model, the adapter disabled (None, 'forget', 'extra');
    ``backward_passes`` how many backward passes over the fused batch one call takes (compute counting)."""

    extra: str | None = None
    reference: str | None = None
    backward_passes: int = 1
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

    name, backward_passes = "sga_adaptive", 2  # g_f and ḡ; the returned loss's own backward reaches no activation

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
        products = (dot(g_f, g_f), dot(g_f, g_n), dot(g_n, g_n))
        if not all(math.isfinite(v) for v in products):  # no rate for non-finite gradients: a non-finite step, so the
            nan = sum((p * math.nan).sum() for p in params)  # run stops as diverged like any other method's
            return nan, {"forget_nll": forget_nll.item(), "normal_nll": normal_nll.item(), "rate": math.nan, "safe": 0.0}
        rate, safe = adaptive_rate(*products, self.k, self.reading)
        forget_weight, normal_weight = sga_weights(rate, self.k)
        # per forget sample: -w_f l_f + sign w_n sum_k l_k; the batch mean of sum_k l_k is (K-1) x the mean normal NLL
        sign = -1.0 if self.reading == "gls" else 1.0
        coef_f, coef_n = -forget_weight, sign * normal_weight * (self.k - 1)
        value = coef_f * forget_nll.detach() + coef_n * normal_nll.detach()
        surrogate = sum((p * (coef_f * a + coef_n * b)).sum() for p, a, b in zip(params, g_f, g_n))
        loss = surrogate - surrogate.detach() + value  # value: the loss at r_t; gradient: its gradient
        return loss, {"forget_nll": forget_nll.item(), "normal_nll": normal_nll.item(), "rate": rate, "safe": float(safe)}


# FLAT's f-divergences as its public code writes them: name -> (activation of the template score,
# conjugate of the forget score); the loss is act(P_e) - conj(P_f).
_Fn = Callable[[torch.Tensor], torch.Tensor]
_LOG2 = math.log(2.0)
FLAT_DIVERGENCES: dict[str, tuple[_Fn, _Fn]] = {
    "kl": (lambda u: -u, lambda u: -torch.exp(u - 1)),
    "pearson": (lambda u: -u, lambda u: -(u**2 / 4 + u)),
    "jeffrey": (lambda u: -u, lambda u: -(u + u**2 / 4 + u**3 / 16)),
    "js": (lambda u: F.softplus(-u) - _LOG2, lambda u: -(u + F.softplus(-u)) + _LOG2),
    "tv": (lambda u: -torch.tanh(u) / 2, lambda u: -torch.tanh(u) / 2),
}
# Left out: as the public code writes them (exp(u) where the f-GAN activations of Nowozin et al. 2016
# have exp(-v)), minimising these moves the scores the wrong way.
FLAT_EXCLUDED: dict[str, str] = {
    "reverse_kl": "act(u) = exp(u), conj(u) = 1 + u: minimising lowers P_e and raises P_f",
    "squared_hellinger": "act(u) = exp(u) - 1, conj(u) = 1 - exp(-u): minimising lowers P_e and raises P_f",
    "neyman": "act(u) = exp(u) - 1, conj(u) = -(2 - 2 sqrt(1 - u)): minimising lowers P_e",
}


class FLAT(UnlearningLoss):
    """FLAT (Wang et al., ICLR 2025): forget data only; minimise act(P_e) - conj(P_f) for an f-divergence.

    Each forget row is paired with one template row, the same prompt with a template answer
    (:func:`sga.templates.template_examples`). P_f and P_e are the mean token probabilities (softmax, not
    log) of the forget and template answers: the mean over each sequence's scored tokens
    (:func:`sga.inference.label_prob`), then over the batch. The public code instead averages over every
    position of the padded batch, prompt and padding counting as 0, which is this answer-token mean
    times a per-batch constant. Divergences: :data:`FLAT_DIVERGENCES` (default ``tv``, the public
    repository's default); reverse-KL, squared-Hellinger and Neyman are left out (:data:`FLAT_EXCLUDED`).
    """

    name, extra = "flat", "template"

    def __init__(self, divergence: str = "tv"):
        if divergence not in FLAT_DIVERGENCES:
            why = f" ({FLAT_EXCLUDED[divergence]})" if divergence in FLAT_EXCLUDED else ""
            raise ValueError(f"Unknown FLAT divergence {divergence!r}{why}; choose one of {list(FLAT_DIVERGENCES)}.")
        self.divergence = divergence

    def __call__(self, model, batch):
        t, n = batch.tensors, batch.n_forget
        logits = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits
        probs = label_prob(logits, t["labels"])
        forget_prob, template_prob = probs[:n].mean(), probs[n:].mean()
        act, conj = FLAT_DIVERGENCES[self.divergence]
        loss = act(template_prob) - conj(forget_prob)
        with torch.no_grad():
            total, counts = label_nll(logits[:n], t["labels"][:n])
        logs = {"forget_nll": (total / counts).mean().item(), "forget_prob": forget_prob.item(), "template_prob": template_prob.item()}
        return loss, logs
