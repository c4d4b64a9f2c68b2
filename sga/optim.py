"""The one optimiser step shared by tiny-model training, unlearning and rate dynamics."""

from __future__ import annotations

import math

import torch


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters an optimizer updates (a LoRA adapter; all weights of a model trained from scratch).

    Raises a clear error if there are none.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters: add a LoRA adapter (sga.models.add_lora) first.")
    return params


OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")


def make_optimizer(name: str, params: list[torch.nn.Parameter], lr: float, weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """AdamW (with ``weight_decay``), or plain SGD: no momentum, no weight decay, the gradient as it is (the stability
    ladder's optimiser, under which nothing rescales a growing gradient)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0)
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}.")


def gradient_norm(params: list[torch.nn.Parameter], max_norm: float | None) -> float:
    """The global gradient norm before clipping; with ``max_norm`` the gradients are clipped to it."""
    if max_norm is not None:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def optimizer_step(
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_grad_norm: float | None = None,
    loss: float = 0.0,
) -> float:
    """Clip (or measure) the gradients, step the optimizer and scheduler, clear the gradients.

    The step is skipped when the gradient norm or ``loss`` is not finite (the caller records the
    divergence). Returns the gradient norm before clipping.
    """
    norm = gradient_norm(params, max_grad_norm)
    if math.isfinite(norm) and math.isfinite(loss):
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm
