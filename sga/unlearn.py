"""The unlearning loop: fused forget+extra batches, per-step logs, divergence stop, checkpoint/resume.

Why a plain loop and not a ``transformers.Trainer`` subclass: every method here needs batches that
pair each forget sample with its own extra rows (retain samples, or its K-1 normal samples), a
per-step log of quantities the loss computes (forget NLL, normal/retain NLL, gradient norm), a
stop-and-record on NaN/inf rather than a crash, and exact resume from an adapter checkpoint. A
Trainer would need a custom collator, sampler, callback and checkpoint hook for each of those;
the loop below is shorter than those overrides and reads top to bottom.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from sga.inference import model_device, to_device
from sga.losses import FusedBatch, UnlearningLoss
from sga.optim import make_optimizer, optimizer_step, trainable_parameters
from sga.progress import bar as progress_bar
from sga.prompts import Example, collate, encode_examples
from sga.results import read_json, write_json_atomic


@dataclass
class UnlearnConfig:
    """Optimisation settings of one unlearning run (batch_size counts forget samples per step)."""

    lr: float = 1e-4
    epochs: int = 5
    batch_size: int = 4
    forget_per_forward: int | None = None  # micro-batching: forget samples (with their extras) per forward
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    max_length: int = 256
    template: str = "phi"
    seed: int = 0
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0 = never
    progress: bool = True
    max_steps: int | None = None  # stop after this many steps at the latest (None: every step of the epochs)
    optimizer: str = "adamw"  # or "sgd": plain SGD (sga.optim.make_optimizer)
    diverge_above: float | None = None  # forget NLL (nats per token) above which the run counts as diverged and stops

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise ValueError("batch_size must be >= 1, epochs >= 0 and lr > 0.")


@dataclass
class UnlearnLog:
    """What a run did: status ('completed' or 'diverged'), one dict per optimizer step, wall time, one dict per
    epoch from the caller's ``on_epoch_end`` with the seconds it took (not counted in ``seconds``), and the token
    passes it spent."""

    status: str = "running"
    steps: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""
    epochs: list[dict] = field(default_factory=list)  # what ``on_epoch_end`` returned after each epoch
    # token passes through the model so far: forward and backward, by kind of row (forget, the loss's extra kind,
    # and "reference" for rows also run through the reference model without gradient)
    tokens: dict[str, dict[str, int]] = field(default_factory=lambda: {"forward": {}, "backward": {}})


def retain_index(n_forget: int, n_pool: int, seed: int) -> np.ndarray:
    """One retain row per forget sample, shape [n_forget, 1]: a seeded permutation of the pool, cycled."""
    if n_pool < 1:
        raise ValueError("The method needs retain data, but the retain pool is empty.")
    order = np.random.default_rng(seed).permutation(n_pool)
    return order[np.arange(n_forget) % n_pool][:, None].astype(np.int64)


def count_tokens(tokens: dict[str, dict[str, int]], loss_fn: UnlearningLoss, attention_mask: torch.Tensor, n_forget: int) -> None:
    """Add one fused forward (and its backward passes) to ``tokens``: the forget rows' tokens, the extra rows'
    under the loss's extra kind, and the rows the loss also runs through the reference model (forward only)."""
    rows = attention_mask.sum(dim=1).tolist()
    by_kind = {"forget": sum(rows[:n_forget])}
    if loss_fn.extra:
        by_kind[loss_fn.extra] = sum(rows[n_forget:])
    for kind, n in by_kind.items():
        tokens["forward"][kind] = tokens["forward"].get(kind, 0) + n
        tokens["backward"][kind] = tokens["backward"].get(kind, 0) + loss_fn.backward_passes * n
    if loss_fn.reference:
        n = by_kind["forget" if loss_fn.reference == "forget" else loss_fn.extra]
        tokens["forward"]["reference"] = tokens["forward"].get("reference", 0) + n


def epoch_batches(n_forget: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The forget-sample indices of each step of one epoch (a seeded shuffle per epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_forget)
    return [order[i : i + batch_size] for i in range(0, n_forget, batch_size)]


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(ckpt: Path, model, optimizer, scheduler, log: UnlearnLog, step: int) -> None:
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {"trainable": _trainable_state(model), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step}
    torch.save(state, tmp / "state.pt")
    write_json_atomic(tmp / "log.json", asdict(log))
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


def _load_checkpoint(ckpt: Path, model, optimizer, scheduler) -> tuple[int, UnlearnLog]:
    state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    log = UnlearnLog(**read_json(ckpt / "log.json"))
    return int(state["step"]), log


def unlearn(
    model: torch.nn.Module,
    tokenizer,
    loss_fn: UnlearningLoss,
    forget: Sequence[Example],
    config: UnlearnConfig,
    extra: Sequence[Example] = (),
    extra_index: np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
    on_epoch_end: Callable[[int], dict] | None = None,
    on_step_end: Callable[[int], bool] | None = None,
) -> UnlearnLog:
    """Run ``loss_fn`` over the forget set for ``config.epochs`` epochs and return the log.

    ``forget`` and ``extra`` are examples of any kind (:mod:`sga.prompts`). ``extra_index[i]`` lists the
    rows of ``extra`` that go with forget sample ``i`` (its retain sample, or its K-1 normal samples);
    it must have ``loss_fn.extra_per_forget()`` columns. With a
    ``checkpoint_dir``, the trainable weights, optimizer and log are saved every
    ``config.checkpoint_every`` steps, and a rerun resumes from the last checkpoint.
    A non-finite loss or gradient, or a forget NLL above ``config.diverge_above``, stops the run with status 'diverged'
    (the log is kept).
    ``on_epoch_end(epoch)`` is called after each epoch's last step (e.g. to evaluate along training);
    what it returns is kept in ``log.epochs``. ``on_step_end(step)`` is called after every step (and its epoch's
    reading); it returning True ends the run there, completed (e.g. a stopping rule). The time both take is not
    counted as training time.
    """
    n_extra = loss_fn.extra_per_forget()
    if n_extra:
        if extra_index is None or extra_index.shape != (len(forget), n_extra):
            raise ValueError(f"{loss_fn.name} needs extra_index of shape ({len(forget)}, {n_extra}).")
    torch.manual_seed(config.seed)
    device = model_device(model)
    forget_feats = encode_examples(tokenizer, forget, config.template, config.max_length)
    extra_feats = encode_examples(tokenizer, extra, config.template, config.max_length) if n_extra else []

    params = trainable_parameters(model)
    optimizer = make_optimizer(config.optimizer, params, config.lr, config.weight_decay)
    warmup = max(config.warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    batches = [b for e in range(config.epochs) for b in epoch_batches(len(forget), config.batch_size, config.seed, e)]
    batches = batches[: config.max_steps]
    steps_per_epoch = math.ceil(len(forget) / config.batch_size)

    ckpt = Path(checkpoint_dir) / "checkpoint" if checkpoint_dir else None
    start, log = 0, UnlearnLog()
    if ckpt is not None and (ckpt / "state.pt").exists():
        start, log = _load_checkpoint(ckpt, model, optimizer, scheduler)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    began = time.perf_counter() - log.seconds
    chunk = config.forget_per_forward or config.batch_size
    bar = progress_bar(range(start, len(batches)), desc=f"unlearn[{loss_fn.name}]", disable=not config.progress, initial=start, total=len(batches), unit="step")
    for step in bar:
        rows = batches[step]
        totals: dict[str, float] = {}
        for lo in range(0, len(rows), chunk):
            part = rows[lo : lo + chunk]
            feats = [forget_feats[i] for i in part]
            if n_extra:
                feats += [extra_feats[j] for i in part for j in extra_index[i]]
            tensors = to_device(collate(feats, tokenizer.pad_token_id), device)
            count_tokens(log.tokens, loss_fn, tensors["attention_mask"], len(part))
            loss, parts = loss_fn(model, FusedBatch(tensors, len(part), n_extra))
            weight = len(part) / len(rows)
            (loss * weight).backward()
            for key, value in {"loss": loss.item(), **parts}.items():
                totals[key] = totals.get(key, 0.0) + weight * value
        lr = scheduler.get_last_lr()[0]
        grad_norm = optimizer_step(params, optimizer, scheduler, config.max_grad_norm, totals["loss"])
        entry = {"step": step + 1, "epoch": step // steps_per_epoch + 1, **totals, "grad_norm": grad_norm,
                 "lr": lr, "forward_tokens": sum(log.tokens["forward"].values()),
                 "backward_tokens": sum(log.tokens["backward"].values()), "elapsed": time.perf_counter() - began}
        log.steps.append(entry)
        if not all(math.isfinite(v) for v in (totals["loss"], grad_norm)):
            log.status, log.message = "diverged", f"non-finite loss or gradient at step {step + 1}"
            break
        if config.diverge_above is not None and totals["forget_nll"] > config.diverge_above:
            log.status, log.message = "diverged", f"forget NLL {totals['forget_nll']:.4g} above {config.diverge_above:g} at step {step + 1}"
            break
        bar.set_postfix(loss=f"{totals['loss']:.3f}", forget_nll=f"{totals['forget_nll']:.2f}")
        if on_epoch_end is not None and ((step + 1) % steps_per_epoch == 0 or step + 1 == len(batches)):
            paused = time.perf_counter()
            reading = on_epoch_end(entry["epoch"])
            log.epochs.append({"epoch": entry["epoch"], "step": step + 1, **reading, "seconds": time.perf_counter() - paused})
            began += time.perf_counter() - paused  # evaluation time is not training time
            model.train()
        if on_step_end is not None:
            paused = time.perf_counter()
            stop = on_step_end(step + 1)
            began += time.perf_counter() - paused
            model.train()
            if stop:
                log.status = "completed"
                break
        log.seconds = time.perf_counter() - began
        if ckpt is not None and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < len(batches):
            _save_checkpoint(ckpt, model, optimizer, scheduler, log, step + 1)
    else:
        log.status = "completed"
    log.seconds = time.perf_counter() - began
    return log
