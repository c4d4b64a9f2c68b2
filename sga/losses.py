"""Unlearning objectives: one small class per method, each turning a fused batch into a loss.

A fused batch holds the forget sequences first and the method's extra sequences after them
(retain samples for GradDiff/KL/NPO, the K-1 normal samples of each forget sample for SGA, in
forget-major order), so one forward pass serves both. ``l(x)`` is always the mean per-token NLL of
the answer tokens of ``x`` (:func:`sga.inference.label_nll`).

Reference models (KL, NPO) are the same network with its LoRA adapter disabled, so they cost no
extra memory; they therefore need a peft model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from sga.inference import label_nll

READINGS: dict[str, str] = {
    "gls": "label smoothing applied to GA: minimise -w_f l(x_f) - w_n sum_k l(x_k); r < 0 learns normal data",
    "descent": "minimise -w_f l(x_f) + w_n sum_k l(x_k) with 0 <= r <= 1: normal data always learned",
}
# gls: r <= 1 keeps the forget sample's label mass (1 - r + r/K) at least each normal sample's (r/K);
# any r < 0 is negative label smoothing. descent: the reading is defined on [0, 1].
RATE_RANGES: dict[str, tuple[float, float]] = {"gls": (-math.inf, 1.0), "descent": (0.0, 1.0)}


def sga_weights(rate: float, k: int) -> tuple[float, float]:
    """(forget weight, per-normal weight) = (1 - r + r/K, r/K) of the smoothed label over K sequences."""
    if int(k) != k or k < 1:
        raise ValueError(f"K must be an integer >= 1 (the forget sample plus K-1 normal samples); got {k}.")
    return 1.0 - rate + rate / k, rate / k


def check_rate(rate: float, reading: str) -> None:
    """Raise if ``reading`` is unknown or ``rate`` lies outside its valid range."""
    if reading not in READINGS:
        raise ValueError(f"Unknown SGA reading {reading!r}; choose one of {list(READINGS)}.")
    lo, hi = RATE_RANGES[reading]
    if not lo <= rate <= hi:
        raise ValueError(f"Smoothing rate {rate} is outside [{lo}, {hi}], the valid range of the {reading!r} reading.")


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


def _reference_logits(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the reference model: the same network with its LoRA adapter disabled, no gradient."""
    if not hasattr(model, "disable_adapter"):
        raise TypeError("KL and NPO use the model with its adapter disabled as reference: pass a peft (LoRA) model.")
    with torch.no_grad(), model.disable_adapter():
        return model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"]).logits


class UnlearningLoss:
    """Base: ``extra`` names the data the method needs beside the forget batch (None, 'retain', 'normal')."""

    extra: str | None = None
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
        _, total, counts = _per_sequence(model, batch)
        nll = total / counts
        forget_nll, retain_nll = nll[: batch.n_forget].mean(), nll[batch.n_forget :].mean()
        loss = -self.gamma * forget_nll + self.alpha * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}


class KLRetain(UnlearningLoss):
    """KL: minimise -l(x_f) + alpha KL(ref || model) over the answer tokens of retain samples."""

    name, extra = "kl", "retain"

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

    name, extra = "npo", "retain"

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


class SmoothedGradientAscent(UnlearningLoss):
    """SGA: GA on the forget sample under a label smoothed over it and its K-1 normal samples.

    Per forget sample, with (w_f, w_n) = :func:`sga_weights`: the ``gls`` reading minimises
    -w_f l(x_f) - w_n sum_k l(x_k); the ``descent`` reading flips the sign of the normal term.
    K = 1 (or r = 0) is plain GA.
    """

    name, extra = "sga", "normal"

    def __init__(self, rate: float = -0.4, k: int = 4, reading: str = "gls"):
        check_rate(rate, reading)
        self.forget_weight, self.normal_weight = sga_weights(rate, k)
        self.rate, self.k, self.reading = rate, int(k), reading

    def extra_per_forget(self) -> int:
        return self.k - 1

    def __call__(self, model, batch):
        _, total, counts = _per_sequence(model, batch)
        nll = total / counts
        n = batch.n_forget
        forget_nll = nll[:n]
        logs = {"forget_nll": forget_nll.mean().item()}
        loss = -self.forget_weight * forget_nll.mean()
        if self.k > 1:
            normal_sum = nll[n:].view(n, self.k - 1).sum(dim=1).mean()
            sign = -1.0 if self.reading == "gls" else 1.0
            loss = loss + sign * self.normal_weight * normal_sum
            logs["normal_nll"] = nll[n:].mean().item()
        return loss, logs


METHODS: dict[str, Callable[..., UnlearningLoss]] = {
    "ga": GradientAscent,
    "graddiff": GradDiff,
    "kl": KLRetain,
    "npo": NPO,
    "sga": SmoothedGradientAscent,
}


def make_loss(method: str, **options) -> UnlearningLoss:
    """The loss object of ``method`` (options: see each class), with a clear error for unknown names."""
    try:
        factory = METHODS[method]
    except KeyError:
        raise ValueError(f"Unknown unlearning method {method!r}; choose one of {list(METHODS)}.") from None
    return factory(**options)
