"""The one run path every benchmark plugs into: a :class:`~sga.world.Benchmark` spec says what is particular to a
benchmark; the steps here do the rest, the same way for all of them.

    settings (presets.resolve)  ->  prepare: World (data, examples, tokenizer, model sources)
        ->  reference(world, "target" | "retain")        evaluated as they are
        ->  run_method(world, method, **overrides)       a RunSpec: unlearn from the target, evaluate
        ->  one result JSON per run (named by RunSpec.name), reused unless ``overwrite``  ->  results_table

The world (data and models) is fixed by ``prepare``; a run's spec is made from the world's settings with
per-run overrides (:meth:`sga.presets.Settings.run`), checked when it is made.
"""

from __future__ import annotations

import functools
import gc
import math
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from sga import benchmarks, gpu_plan, methods
from sga.crossing import Crossing
from sga.inference import mean_hidden_states, sentence_embedder
from sga.losses import UnlearningLoss
from sga.models import add_lora, load_model
from sga.normal_data import select_normal
from sga.presets import Settings, check_sources
from sga.prompts import Example, example_text
from sga.results import environment_info, read_json, write_json_atomic
from sga.templates import template_examples
from sga.specs import EMBEDDED, RunSpec
from sga.unlearn import UnlearnConfig, UnlearnLog, retain_index, unlearn
from sga.world import World


def prepare(settings: Settings, cache_dir: str | Path, out_dir: str | Path) -> World:
    """Load (or generate) the settings' world: its data, and its models (loaded, or trained and cached).

    The settings were checked when they were made; hub ids while ``HF_HUB_OFFLINE`` is set fail here, before
    any work. On a CPU this also fixes torch's thread count to ``cpu_threads`` (results depend on it).
    """
    benchmark = benchmarks.get(settings.benchmark)
    check_sources(settings.world)
    if not torch.cuda.is_available() and settings.world.cpu_threads:
        torch.set_num_threads(settings.world.cpu_threads)
    parts = benchmark.load(settings.world, Path(cache_dir), settings.plan.progress)
    return World(benchmark, settings, parts.data, parts.forget, parts.pool, parts.tokenizer, parts.models,
                 Path(out_dir) / benchmark.name)


def fitted(world: World, run: RunSpec) -> tuple[RunSpec, str | None]:
    """``run`` as the world's GPU runs it, and its memory and time plan (:func:`sga.gpu_plan.fit_run`): for a hub or
    local model with the settings' ``gpu_memory_gb``, the largest ``forget_per_forward`` that fits the card. The
    embedded tiny models are run as they are (no plan)."""
    if run.training is None or world.spec.target_model == EMBEDDED:
        return run, None
    return gpu_plan.fit_run(run, _model_shape(world.models["target"]), world.settings.plan.gpu_memory_gb)


@functools.lru_cache(maxsize=None)
def _model_shape(source: str) -> gpu_plan.ModelShape:
    from transformers import AutoConfig

    return gpu_plan.ModelShape.from_config(AutoConfig.from_pretrained(source))


def forgetting_level(world: World, which: str | None = None) -> float:
    """The forgetting axis of the world's reference model (or model ``which``), read from its full evaluation on the
    scale of the readings along a run (:class:`sga.world.Axes`)."""
    axes = world.benchmark.axes(world.spec)
    return axes.read_full(world, reference(world, which or axes.reference))[axes.forget]


def search(world: World, model: torch.nn.Module, run: RunSpec, read_full: Callable[[], dict[str, Any]]) -> Crossing:
    """The search for where ``run`` first reaches the reference model's forgetting (:class:`sga.crossing.Crossing`),
    reading the axis every ``check_every`` steps (default: one epoch) and stopping ``stop_after_level`` steps after."""
    ev = run.evaluation
    every = ev.check_every or math.ceil(len(world.forget) / run.training.batch_size)
    return Crossing(model, forgetting_level(world), forgetting_level(world, "target"), every, ev.stop_after_level,
                    lambda: world.benchmark.read_forget(world, model, run), read_full, ev.read_at)


def result_path(world: World, run: RunSpec) -> Path:
    """Where ``run``'s result is: the first of :meth:`RunSpec.answered_by` that exists, else its own file (of the run
    as :func:`fitted` makes it)."""
    paths = [world.out_dir / f"{spec.name()}.json" for spec in fitted(world, run)[0].answered_by()]
    return next((path for path in paths if path.exists()), paths[0])


def reference(world: World, which: str, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate the target or a reference model as it is (the reference rows of a results table)."""
    return execute(world, world.settings.reference(which), overwrite)


def reference_statistic(world: World) -> Any:
    """What the metrics need from the reference model (e.g. TOFU's retain truth ratios), from its cached row."""
    return world.benchmark.reference_statistic(reference(world, world.benchmark.reference_model)["metrics"])


def run_method(world: World, method_name: str, overwrite: bool = False, **overrides: Any) -> dict[str, Any]:
    """Unlearn the world's forget set from the target with ``method_name``, evaluate, keep one result JSON.

    ``overrides`` change run parameters for this run only (e.g. ``rate=0.4`` or ``graddiff_forget_weight=1.3``),
    checked like a preset (:meth:`sga.presets.Settings.run`); the world's parameters cannot be overridden.
    """
    return execute(world, world.settings.run(method_name, **overrides), overwrite)


def execute(world: World, run: RunSpec, overwrite: bool = False) -> dict[str, Any]:
    """The result of ``run`` in ``world``: read if it exists (and not ``overwrite``), else computed and kept as
    one JSON. A run without training evaluates the world's model ``run.method`` as it is."""
    if run.world != world.spec:
        raise ValueError(f"This run is of another world than {world.benchmark.name}'s prepared one; prepare its world first.")
    path = result_path(world, run)
    run, plan = fitted(world, run)

    def evaluated(model, stat: Any) -> dict[str, Any]:
        metrics, seconds = timed(lambda: world.benchmark.evaluate(world, model, run, stat))
        return {"summary": world.benchmark.summary(metrics), "metrics": metrics, "eval_seconds": seconds}

    def as_it_is() -> dict[str, Any]:
        stat = None if run.method == world.benchmark.reference_model else reference_statistic(world)
        model = load_model(world.models[run.method], quantization=run.loading.quantization, compute_dtype=run.loading.compute_dtype)
        result = {"name": run.name(), "params": run.to_dict(), "status": "completed", **evaluated(model, stat), "peak_memory_gb": peak_memory_gb()}
        free(model)
        return result

    def unlearned() -> dict[str, Any]:
        began = time.perf_counter()
        if plan:
            print(plan, flush=True)
        stat = reference_statistic(world)
        model = start_model(world.models["target"], run)
        along = lambda: world.benchmark.evaluate_along(world, model, run, stat)  # noqa: E731
        crossing = search(world, model, run, along) if run.evaluation.locate else None
        log = run_unlearning(model, world.tokenizer, run, world.forget, world.pool, world.out_dir / run.name(),
                             world.settings.plan.progress, (lambda epoch: along()) if run.evaluation.trajectory else None,
                             crossing.on_step_end if crossing else None)
        result = {"name": run.name(), "params": run.to_dict(), "status": log.status, "message": log.message,
                  "log": log.steps, "train_seconds": log.seconds, "trajectory": log.epochs, "tokens": log.tokens,
                  "readings_seconds": sum(e["seconds"] for e in log.epochs)}
        if crossing:
            result["crossing"] = crossing.record()
            result["readings_seconds"] += crossing.seconds
            if log.status == "completed" and not run.evaluation.final_evaluation:  # the end: its forgetting (what followed)
                end, seconds = timed(lambda: crossing.forgetting_at_end(len(log.steps)))
                result.update(end={"step": len(log.steps), world.benchmark.axes(world.spec).forget: end},
                              readings_seconds=result["readings_seconds"] + seconds)
        if log.status == "completed" and run.evaluation.final_evaluation:
            result.update(evaluated(model, stat))
        result.update(peak_memory_gb=peak_memory_gb(), wall_seconds=time.perf_counter() - began)
        free(model)
        return result

    return cached_result(path, as_it_is if run.training is None else unlearned, overwrite)


def results_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: its status and the benchmark's summary numbers."""
    rows = [{"model": label, "status": r["status"], **r.get("summary", {})} for label, r in results.items()]
    return pd.DataFrame(rows).set_index("model")


# ------------------------------------------------------------------ the steps of one run


def start_model(source: str, run: RunSpec) -> torch.nn.Module:
    """The model to unlearn: ``source`` loaded with the run's quantisation, plus a fresh LoRA adapter."""
    model = load_model(source, quantization=run.loading.quantization, compute_dtype=run.loading.compute_dtype)
    training = run.training
    return add_lora(model, rank=training.lora_rank, alpha=training.lora_alpha, target_modules=training.lora_targets,
                    gradient_checkpointing=training.gradient_checkpointing, seed=run.seed)


def extra_index(
    loss: UnlearningLoss,
    run: RunSpec,
    forget: Sequence[Example],
    pool: Sequence[Example],
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> np.ndarray | None:
    """Which pool rows go with each forget sample: K-1 normal samples (SGA), one retain sample, or none.

    Normal samples are chosen on the examples' whole text (the run's ``normal_source`` and seed; ``embed`` for
    the ``embedding`` source).
    """
    if loss.extra == "normal":
        texts = lambda examples: [example_text(e) for e in examples]  # noqa: E731
        return select_normal(texts(forget), texts(pool), loss.extra_per_forget(), run.options.normal_source, run.seed, embed)
    if loss.extra == "retain":
        return retain_index(len(forget), len(pool), run.seed)
    return None


def extra_rows(
    loss: UnlearningLoss,
    run: RunSpec,
    forget: Sequence[Example],
    pool: Sequence[Example],
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> tuple[Sequence[Example], np.ndarray | None]:
    """The examples that go with the forget samples, and which of them go with each: the pool with K-1 normal or one
    retain row per forget sample (:func:`extra_index`), FLAT's template answers (one per forget sample, the same
    prompt with a refusal: :func:`sga.templates.template_examples`), or none."""
    if loss.extra == "template":
        return template_examples(forget, run.seed), np.arange(len(forget), dtype=np.int64)[:, None]
    return pool, extra_index(loss, run, forget, pool, embed)


def normal_embedder(model: torch.nn.Module, tokenizer, loss: UnlearningLoss, run: RunSpec) -> Callable[[Sequence[str]], np.ndarray]:
    """The ``embed`` of the ``embedding`` normal source: the sentence-embedding model ``embedding_model`` if set
    (loaded only when that source is used), else the start model's mean-pooled hidden states."""
    length, batch = run.world.max_length, run.evaluation.eval_batch_size
    if loss.extra == "normal" and run.options.normal_source == "embedding" and run.options.embedding_model:
        return sentence_embedder(run.options.embedding_model, batch, length)
    return lambda texts: mean_hidden_states(model, tokenizer, texts, length, batch)


def run_unlearning(
    model: torch.nn.Module,
    tokenizer,
    run: RunSpec,
    forget: Sequence[Example],
    pool: Sequence[Example],
    run_dir: Path,
    progress: bool = True,
    on_epoch_end: Callable[[int], dict] | None = None,
    on_step_end: Callable[[int], bool] | None = None,
) -> UnlearnLog:
    """Unlearn ``forget`` with the run's method, using ``pool`` as retain/normal data.

    Resumable: checkpoints go to ``run_dir/checkpoint``; a completed run leaves its LoRA adapter in
    ``run_dir/adapter``. ``on_epoch_end`` and ``on_step_end`` as in :func:`sga.unlearn.unlearn`.
    """
    loss = methods.method(run.method).build(run.options)
    extra, index = extra_rows(loss, run, forget, pool, normal_embedder(model, tokenizer, loss, run))
    training = run.training
    config = UnlearnConfig(
        lr=training.lr,
        epochs=training.epochs,
        batch_size=training.batch_size,
        forget_per_forward=training.forget_per_forward,
        max_grad_norm=training.max_grad_norm,
        max_length=run.world.max_length,
        template=run.world.template,
        seed=run.seed,
        checkpoint_every=10,
        progress=progress,
        max_steps=training.max_steps,
        optimizer=training.optimizer,
        diverge_above=training.diverge_above,
    )
    log = unlearn(model, tokenizer, loss, forget, config, extra, index, checkpoint_dir=run_dir, on_epoch_end=on_epoch_end,
                  on_step_end=on_step_end)
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
