"""Measure the theory's r*(t) on a real model: forget and normal LoRA gradients along an SGA run.

At every step the forget gradient g_f (of the mean forget NLL) and the mean normal gradient ḡ (of the
mean normal NLL) are computed by two backward passes over the trainable (LoRA) parameters. Their inner
products give r*(t) and the first-order safe range through :mod:`sga.theory`; then the step itself is
taken with SGA's gradient at the run's fixed rate, assembled from the same two gradients.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from sga import theory
from sga.inference import model_device, sequence_nll, to_device
from sga.optim import optimizer_step, trainable_parameters
from sga.prompts import Example, collate, encode_examples
from sga.specs import RunSpec
from sga.unlearn import epoch_batches


def _mean_nll_grads(
    model: torch.nn.Module, params: list[torch.nn.Parameter], feats: Sequence[dict], pad_id: int, chunk: int
) -> tuple[list[torch.Tensor], float]:
    """Gradients of the mean sequence NLL of ``feats`` with respect to ``params``, and that mean.

    The sequences go through the model ``chunk`` at a time and the gradients are accumulated, so the
    memory is that of one chunk.
    """
    device = model_device(model)
    grads = [torch.zeros_like(p) for p in params]
    mean = 0.0
    for lo in range(0, len(feats), chunk):
        part = feats[lo : lo + chunk]
        nll = sequence_nll(model, to_device(collate(part, pad_id), device)).mean()
        weight = len(part) / len(feats)
        for total, grad in zip(grads, torch.autograd.grad(nll * weight, params)):
            total += grad
        mean += weight * nll.item()
    return grads, mean


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))


def measure_rate_dynamics(
    model: torch.nn.Module,
    tokenizer,
    forget: Sequence[Example],
    normal: Sequence[Example],
    normal_index: np.ndarray,
    run: RunSpec,
) -> list[dict[str, float]]:
    """Run SGA at the run's fixed rate and record, per step, the gradient inner products and r*(t).

    Uses the run's SGA options (rate, K, reading), its training (lr, epochs, batch size, micro-batches of
    ``forget_per_forward`` forget samples, or their normal samples, per forward), its world's template and
    ``max_length`` and its seed; AdamW as in :func:`sga.unlearn.unlearn` (without gradient clipping). Returns one
    dict per step with ``forget_nll``, ``normal_nll``, ``ff``, ``fn``, ``nn``, ``cosine`` and, for each reading,
    ``r_star_<reading>`` and the safe range ``safe_lo_<reading>`` / ``safe_hi_<reading>`` (NaN when empty).
    """
    options, training = run.options, run.training
    k, reading, rate = int(options.k), options.reading, float(options.rate)
    theory.check_rate(rate, reading, k)
    if k < 2 or normal_index.shape != (len(forget), k - 1):
        raise ValueError(f"K must be >= 2 and normal_index of shape ({len(forget)}, {k - 1}).")
    forget_weight, normal_weight = theory.sga_weights(rate, k)
    sign = -1.0 if reading == "gls" else 1.0
    forget_feats = encode_examples(tokenizer, forget, run.world.template, run.world.max_length)
    normal_feats = encode_examples(tokenizer, normal, run.world.template, run.world.max_length)
    chunk = training.forget_per_forward or training.batch_size
    trainable = trainable_parameters(model)
    optimizer = torch.optim.AdamW(trainable, lr=training.lr, weight_decay=0.01)
    torch.manual_seed(run.seed)
    model.train()
    records: list[dict[str, float]] = []
    for epoch in range(training.epochs):
        for rows in epoch_batches(len(forget), training.batch_size, run.seed, epoch):
            g_f, forget_nll = _mean_nll_grads(model, trainable, [forget_feats[i] for i in rows], tokenizer.pad_token_id, chunk)
            g_n, normal_nll = _mean_nll_grads(model, trainable, [normal_feats[j] for i in rows for j in normal_index[i]],
                                              tokenizer.pad_token_id, chunk * (k - 1))
            ff, fn, nn = _dot(g_f, g_f), _dot(g_f, g_n), _dot(g_n, g_n)
            record = {"step": len(records) + 1, "forget_nll": forget_nll, "normal_nll": normal_nll,
                      "ff": ff, "fn": fn, "nn": nn, "cosine": fn / math.sqrt(ff * nn) if ff * nn > 0 else float("nan")}
            for name in theory.READINGS:
                record[f"r_star_{name}"] = theory.optimal_rate_from_gram(ff, fn, nn, k, name)
                f_vec, n_vec = theory.gram_vectors(ff, fn, nn)
                safe = theory.first_order_safe_range(f_vec, n_vec, k, name)
                record[f"safe_lo_{name}"] = safe.lo if safe else float("nan")
                record[f"safe_hi_{name}"] = safe.hi if safe else float("nan")
            records.append(record)
            # SGA's loss per forget sample is -w_f l_f + sign * w_n * sum_k l_k; batch means give these grads
            for p, gf, gn in zip(trainable, g_f, g_n):
                p.grad = -forget_weight * gf + sign * normal_weight * (k - 1) * gn
            optimizer_step(trainable, optimizer)
    return records


def measure_along_run(world, **overrides) -> list[dict[str, float]]:
    """:func:`measure_rate_dynamics` along an SGA run of a prepared world (:mod:`sga.experiment`), from its
    4-bit target with a fresh LoRA adapter and the normal samples the world's SGA runs use."""
    from sga.experiment import extra_index, free, normal_embedder, start_model
    from sga.methods import method

    run = world.settings.run("sga", **overrides)
    model = start_model(world.models["target"], run)
    loss = method("sga").build(run.options)
    normal_index = extra_index(loss, run, world.forget, world.pool, normal_embedder(model, world.tokenizer, loss, run))
    records = measure_rate_dynamics(model, world.tokenizer, world.forget, world.pool, normal_index, run)
    free(model)
    return records
