"""The one run path every benchmark plugs into: a :class:`Benchmark` spec says what is particular to a
benchmark; the steps here do the rest, the same way for all of them.

    params (presets.resolve)  ->  prepare: World (data, examples, tokenizer, model sources)
        ->  reference(world, "target" | "retain")        evaluated as they are
        ->  run_method(world, method, **overrides)       unlearn from the target, evaluate
        ->  one result JSON per run, reused unless ``overwrite``  ->  results_table

The world (data and models) is fixed by ``prepare``; a run's hyperparameters are the world's parameters
with per-run overrides, checked by the same :func:`sga.presets.check` as a preset.
"""

from __future__ import annotations

import gc
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from sga import presets
from sga.inference import mean_hidden_states, sentence_embedder
from sga.losses import UnlearningLoss
from sga.methods import OPTION_KEYS, method, run_options
from sga.models import add_lora, load_model
from sga.normal_data import select_normal
from sga.prompts import Example, example_text
from sga.results import environment_info, read_json, run_name, write_json_atomic
from sga.unlearn import UnlearnConfig, UnlearnLog, retain_index, unlearn


@dataclass(frozen=True)
class WorldParts:
    """What a benchmark's loader returns: loaded splits, the forget examples, the retain/normal pool,
    the tokenizer, and the source of each model (``target`` and the reference models)."""

    data: dict[str, Any]
    forget: list[Example]
    pool: list[Example]
    tokenizer: Any
    models: dict[str, str]


@dataclass(frozen=True)
class Benchmark:
    """What is particular to a benchmark.

    - ``load(params, cache_dir)``: load or generate the data, load or train the models -> :class:`WorldParts`.
    - ``evaluate(world, model, params, reference_stat)``: the benchmark's metrics of ``model``; with
      ``reference_stat=None`` the model is its own reference (the retain/retrain model's row).
    - ``reference_statistic(metrics)``: what the metrics need from the reference model (TOFU: its truth
      ratios on the forget split), taken from that model's metrics.
    - ``summary(metrics)``: the flat numbers of a results table.
    - ``world_keys``: parameters that define the world (data, models, their format); runs cannot override them.
    - ``name_keys``: parameters shown in run names after the benchmark's name.
    - ``evaluate_along(world, model, params, reference_stat)``: cheaper numbers read after every epoch
      when ``trajectory`` is set (the path of a run, not only its end).
    - ``axes(params)``: its forgetting and utility readings (:class:`sga.comparison.Axes`), for comparisons
      across benchmarks.
    """

    name: str
    load: Callable[[Mapping[str, Any], Path], WorldParts]
    evaluate: Callable[..., dict[str, Any]]
    reference_statistic: Callable[[Mapping[str, Any]], Any]
    summary: Callable[[Mapping[str, Any]], dict[str, Any]]
    world_keys: tuple[str, ...]
    name_keys: tuple[str, ...] = ()
    reference_model: str = "retain"
    evaluate_along: Callable[..., dict[str, Any]] | None = None
    axes: Callable[[Mapping[str, Any]], Any] | None = None


@dataclass
class World:
    """A prepared benchmark: its parameters, data, examples, tokenizer, model sources and result folder."""

    benchmark: Benchmark
    params: dict[str, Any]
    data: dict[str, Any]
    forget: list[Example]
    pool: list[Example]
    tokenizer: Any
    models: dict[str, str]
    out_dir: Path


def prepare(benchmark: Benchmark, params: Mapping[str, Any], cache_dir: str | Path, out_dir: str | Path) -> World:
    """Check the parameters, then load (or generate) the data and load (or train) the models.

    Every check runs before any work: invalid values, and hub ids while ``HF_HUB_OFFLINE`` is set. On a
    CPU this also fixes torch's thread count to ``cpu_threads`` (results depend on it).
    """
    params = dict(params)
    if params.get("benchmark") != benchmark.name:
        raise ValueError(f"These parameters are for {params.get('benchmark')!r}, not {benchmark.name!r}; "
                         f"resolve them with presets.resolve({benchmark.name!r}, preset).")
    presets.check(params)
    presets.check_sources(params)
    if not torch.cuda.is_available() and params["cpu_threads"]:
        torch.set_num_threads(params["cpu_threads"])
    parts = benchmark.load(params, Path(cache_dir))
    return World(benchmark, params, parts.data, parts.forget, parts.pool, parts.tokenizer, parts.models,
                 Path(out_dir) / benchmark.name)


def run_params(world: World, method_name: str, **overrides: Any) -> dict[str, Any]:
    """The parameters that define one run: the world's, with ``overrides`` applied and checked, ``methods``
    replaced by ``method`` and the other methods' options dropped (changing r does not invalidate a GA result)."""
    method(method_name)
    fixed = sorted(set(overrides) & set(world.benchmark.world_keys))
    if fixed:
        raise ValueError(f"{fixed} define the world (data and models); prepare a new world to change them.")
    params = {**world.params, **presets.given(overrides, world.params)}
    unknown = sorted(set(params) - set(world.params))
    if unknown:
        raise ValueError(f"Unknown parameters {unknown}; valid ones: {sorted(world.params)}.")
    presets.check(params, (method_name,))  # the other methods' options are dropped below
    run = identity(run_options(method_name, params))
    run["method"] = method_name
    if not run.get("final_evaluation", True) and not run["trajectory"]:
        raise ValueError("final_evaluation=False needs trajectory=True: the last per-epoch reading is then the run's end.")
    return run


def reference_params(world: World, which: str) -> dict[str, Any]:
    """The parameters that name an evaluation of the ``target`` or a reference model as it is."""
    if which not in world.models:
        raise ValueError(f"which must be one of {list(world.models)}; got {which!r}.")
    run = identity({k: v for k, v in world.params.items() if k not in OPTION_KEYS and k != "final_evaluation"})
    run["method"] = which
    return run


def identity(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without what does not change a run's results: display-only keys, and keys at their neutral value."""
    return {k: v for k, v in params.items()
            if k not in presets.DISPLAY_ONLY and not (k in presets.NEUTRAL and v == presets.NEUTRAL[k])}


def reference(world: World, which: str, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate the target or a reference model as it is (the reference rows of a results table)."""
    params = reference_params(world, which)
    name = run_name(params, world.benchmark.name_keys)

    def compute() -> dict[str, Any]:
        own = which == world.benchmark.reference_model
        stat = None if own else reference_statistic(world)
        model = load_model(world.models[which], quantization=params["quantization"], compute_dtype=params["compute_dtype"])
        metrics, seconds = timed(lambda: world.benchmark.evaluate(world, model, params, stat))
        free(model)
        return {"name": name, "params": params, "status": "completed", "summary": world.benchmark.summary(metrics),
                "metrics": metrics, "eval_seconds": seconds, "peak_memory_gb": peak_memory_gb()}

    return cached_result(world.out_dir / f"{name}.json", compute, overwrite)


def reference_statistic(world: World) -> Any:
    """What the metrics need from the reference model (e.g. TOFU's retain truth ratios), from its cached row."""
    return world.benchmark.reference_statistic(reference(world, world.benchmark.reference_model)["metrics"])


def run_method(world: World, method_name: str, overwrite: bool = False, **overrides: Any) -> dict[str, Any]:
    """Unlearn the world's forget set from the target with ``method_name``, evaluate, keep one result JSON.

    ``overrides`` change run parameters for this run only (e.g. ``rate=0.4`` or
    ``graddiff_forget_weight=1.3``), checked like a preset; the world's parameters cannot be overridden.
    """
    params = run_params(world, method_name, **overrides)
    name = run_name(params, world.benchmark.name_keys)

    def compute() -> dict[str, Any]:
        stat = reference_statistic(world)
        model = start_model(world.models["target"], params)
        along = world.benchmark.evaluate_along if params["trajectory"] else None
        on_epoch_end = (lambda epoch: along(world, model, params, stat)) if along else None
        log, train_seconds = timed(lambda: run_unlearning(model, world.tokenizer, method_name, params, world.forget, world.pool,
                                                          world.out_dir / name, world.params["progress"], on_epoch_end))
        result = {"name": name, "params": params, "status": log.status, "message": log.message,
                  "log": log.steps, "train_seconds": log.seconds, "trajectory": log.epochs}
        if log.status == "completed" and params.get("final_evaluation", True):
            metrics, eval_seconds = timed(lambda: world.benchmark.evaluate(world, model, params, stat))
            result.update(summary=world.benchmark.summary(metrics), metrics=metrics, eval_seconds=eval_seconds)
        result["peak_memory_gb"] = peak_memory_gb()
        free(model)
        return result

    return cached_result(world.out_dir / f"{name}.json", compute, overwrite)


def results_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: its status and the benchmark's summary numbers."""
    rows = [{"model": label, "status": r["status"], **r.get("summary", {})} for label, r in results.items()]
    return pd.DataFrame(rows).set_index("model")


# ------------------------------------------------------------------ the steps of one run


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


def extra_index(
    loss: UnlearningLoss,
    params: Mapping[str, Any],
    forget: Sequence[Example],
    pool: Sequence[Example],
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> np.ndarray | None:
    """Which pool rows go with each forget sample: K-1 normal samples (SGA), one retain sample, or none.

    Normal samples are chosen on the examples' whole text (``normal_source``, ``seed``; ``embed`` for
    the ``embedding`` source).
    """
    if loss.extra == "normal":
        texts = lambda examples: [example_text(e) for e in examples]  # noqa: E731
        return select_normal(texts(forget), texts(pool), loss.extra_per_forget(), params["normal_source"], params["seed"], embed)
    if loss.extra == "retain":
        return retain_index(len(forget), len(pool), params["seed"])
    return None


def normal_embedder(model: torch.nn.Module, tokenizer, loss: UnlearningLoss, params: Mapping[str, Any]) -> Callable[[Sequence[str]], np.ndarray]:
    """The ``embed`` of the ``embedding`` normal source: the sentence-embedding model ``embedding_model`` if set
    (loaded only when that source is used), else the start model's mean-pooled hidden states."""
    if loss.extra == "normal" and params.get("normal_source") == "embedding" and params.get("embedding_model"):
        return sentence_embedder(params["embedding_model"], params["eval_batch_size"], params["max_length"])
    return lambda texts: mean_hidden_states(model, tokenizer, texts, params["max_length"], params["eval_batch_size"])


def run_unlearning(
    model: torch.nn.Module,
    tokenizer,
    method_name: str,
    params: Mapping[str, Any],
    forget: Sequence[Example],
    pool: Sequence[Example],
    run_dir: Path,
    progress: bool = True,
    on_epoch_end: Callable[[int], dict] | None = None,
) -> UnlearnLog:
    """Unlearn ``forget`` with ``method_name``, using ``pool`` as retain/normal data.

    Resumable: checkpoints go to ``run_dir/checkpoint``; a completed run leaves its LoRA adapter in
    ``run_dir/adapter``. ``on_epoch_end`` as in :func:`sga.unlearn.unlearn`.
    """
    loss = method(method_name).build(params)
    index = extra_index(loss, params, forget, pool, normal_embedder(model, tokenizer, loss, params))
    config = UnlearnConfig(
        lr=params["lr"],
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        forget_per_forward=params["forget_per_forward"],
        max_grad_norm=params["max_grad_norm"],
        max_length=params["max_length"],
        template=params["template"],
        seed=params["seed"],
        checkpoint_every=10,
        progress=progress,
    )
    log = unlearn(model, tokenizer, loss, forget, config, pool, index, checkpoint_dir=run_dir, on_epoch_end=on_epoch_end)
    if log.status == "completed":  # keep the finished adapter; the resume checkpoint is no longer needed
        model.save_pretrained(run_dir / "adapter")
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    return log


def cached_result(path: Path, compute: Callable[[], dict[str, Any]], overwrite: bool = False) -> dict[str, Any]:
    """Read the result at ``path`` if it exists (and not ``overwrite``), else compute and write it atomically."""
    if path.exists() and not overwrite:
        return read_json(path)
    result = compute()
    result.setdefault("environment", environment_info())
    write_json_atomic(path, result)
    return result


def free(model: torch.nn.Module) -> None:
    """Drop the last reference to ``model`` held here and return its memory (CPU and GPU)."""
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_gb() -> float:
    """Peak memory of this process so far: GPU memory allocated if on CUDA, else resident CPU memory."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds."""
    began = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - began
