"""Benchmark-independent steps of one run: load the start model with LoRA, pick extra data, unlearn,
and keep exactly one result JSON per run (reused unless ``overwrite``)."""

from __future__ import annotations

import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from sga.losses import UnlearningLoss, make_loss
from sga.models import add_lora, load_model
from sga.normal_data import select_normal
from sga.results import environment_info, read_json, write_json_atomic
from sga.unlearn import UnlearnConfig, UnlearnLog, retain_index, unlearn

_SGA_ONLY = ("rate", "k", "reading", "normal_source")
_DISPLAY_ONLY = ("methods", "progress")


def run_params(params: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The parameters that define one method's run: the preset's, with ``methods`` replaced by ``method``
    and SGA-only options dropped for other methods (so changing r does not invalidate a GA result)."""
    run = {k: v for k, v in params.items() if k not in _DISPLAY_ONLY}
    run["method"] = method
    if method != "sga":
        for key in _SGA_ONLY:
            run.pop(key, None)
    return run


def peak_memory_gb() -> float:
    """Peak memory of this process so far: GPU memory allocated if on CUDA, else resident CPU memory."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def cached_result(path: Path, compute: Callable[[], dict[str, Any]], overwrite: bool = False) -> dict[str, Any]:
    """Read the result at ``path`` if it exists (and not ``overwrite``), else compute and write it atomically."""
    if path.exists() and not overwrite:
        return read_json(path)
    result = compute()
    result.setdefault("environment", environment_info())
    write_json_atomic(path, result)
    return result


def start_model(source: str, params: Mapping[str, Any]) -> torch.nn.Module:
    """The model to unlearn: ``source`` loaded with the run's quantisation, plus a fresh LoRA adapter."""
    model = load_model(source, quantization=params["quantization"], compute_dtype=params["compute_dtype"])
    return add_lora(
        model,
        rank=params["lora_rank"],
        alpha=params["lora_alpha"],
        target_modules=params["lora_targets"],
        gradient_checkpointing=params["gradient_checkpointing"],
        seed=params["seed"],
    )


def method_loss(method: str, params: Mapping[str, Any]) -> UnlearningLoss:
    """``method``'s loss object built from the run parameters (SGA takes rate, K and reading from them)."""
    options = {"rate": params["rate"], "k": params["k"], "reading": params["reading"]} if method == "sga" else {}
    return make_loss(method, **options)


def extra_index(
    loss: UnlearningLoss,
    params: Mapping[str, Any],
    forget_pairs: Sequence[tuple[str, str]],
    pool_pairs: Sequence[tuple[str, str]],
) -> np.ndarray | None:
    """Which pool rows go with each forget sample: K-1 normal samples (SGA), one retain sample, or none.

    Normal samples are chosen on the question and answer text together (``normal_source``, ``seed``).
    """
    if loss.extra == "normal":
        texts = lambda pairs: [f"{q} {a}" for q, a in pairs]  # noqa: E731
        return select_normal(texts(forget_pairs), texts(pool_pairs), loss.extra_per_forget(), params["normal_source"], params["seed"])
    if loss.extra == "retain":
        return retain_index(len(forget_pairs), len(pool_pairs), params["seed"])
    return None


def run_unlearning(
    model: torch.nn.Module,
    tokenizer,
    method: str,
    params: Mapping[str, Any],
    forget_pairs: Sequence[tuple[str, str]],
    pool_pairs: Sequence[tuple[str, str]],
    run_dir: Path,
    progress: bool = True,
) -> UnlearnLog:
    """Unlearn ``forget_pairs`` with ``method``, using ``pool_pairs`` as retain/normal data.

    Resumable: checkpoints go to ``run_dir/checkpoint``; a completed run leaves its LoRA adapter in
    ``run_dir/adapter``.
    """
    loss = method_loss(method, params)
    index = extra_index(loss, params, forget_pairs, pool_pairs)
    config = UnlearnConfig(
        lr=params["lr"],
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        forget_per_forward=params["forget_per_forward"],
        max_length=params["max_length"],
        template=params["template"],
        seed=params["seed"],
        checkpoint_every=10,
        progress=progress,
    )
    log = unlearn(model, tokenizer, loss, forget_pairs, config, pool_pairs, index, checkpoint_dir=run_dir)
    if log.status == "completed":  # keep the finished adapter; the resume checkpoint is no longer needed
        model.save_pretrained(run_dir / "adapter")
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    return log


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds."""
    began = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - began

