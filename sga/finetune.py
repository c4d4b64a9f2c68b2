"""A base model QLoRA-fine-tuned on a corpus, merged and cached: the Harry Potter ``paper`` target (the
FLAT / SOUL setting, OPT-2.7B fine-tuned on the books) when no fine-tuned checkpoint is at hand.

The route, and why:

1. the base is loaded as every start model is (:func:`sga.models.load_model` with the run's
   ``quantization``, NF4 in ``paper``; on a CPU that applies :func:`sga.models.guard_bnb_cpu`), wrapped in a
   LoRA adapter on all linear layers (:func:`sga.models.add_lora`, rank ``lora_rank``, alpha twice the rank)
   and trained on the texts' causal-LM NLL by the trainer of the embedded world's tiny models
   (:func:`sga.embedded.train_causal_lm`: AdamW, warmup then cosine decay, clipping, seeded order);
2. the adapter is saved, the quantised model dropped, and the adapter merged on the CPU into the base
   loaded *unquantised* in ``compute_dtype`` (``merge_and_unload``), the usual QLoRA recipe; the merged
   model is saved with the base's tokenizer as a plain checkpoint, which :func:`sga.models.load_model`
   (and every other loader) takes as it takes a hub model, quantising it again if asked.

Merging into 4-bit weights instead would round ``W + BA`` back to the 4-bit grid (lossy) and on CPUs with
AVX512-BF16 is corrupted after an eval forward (see :mod:`sga.models`); keeping only the adapter would need
every loader to apply it. The merged route is not exact either: the adapter was trained against the
dequantised NF4 weights and is added to the original ones (the difference is the base's quantisation
error, the same one any 4-bit load of the merged model then makes). The merge runs on the CPU so a 7B base
(13 GB in bfloat16) never has to fit a 12 GB GPU.

The result is cached under ``cache_dir / f"{name}-{hash}"``, the hash covering the base (its id, or for a
local folder its files' names, sizes and modification times), the examples, the fine-tune settings, the
quantisation and compute dtype, ``max_length``, the seed and (on a CPU) torch's thread count; it is built in
a temporary folder and renamed into place (:func:`sga.embedded.build_cached`), so an interrupted build is
never reused. ``gradient_checkpointing`` and ``progress`` are left out of the hash (they change memory and
display, not the arithmetic).
"""

from __future__ import annotations

import dataclasses
import gc
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from sga.embedded import LOSSES_FILE, build_cached, train_causal_lm
from sga.models import add_lora, load_model, load_tokenizer
from sga.prompts import QA, Example, Text
from sga.results import params_hash

FINETUNE_KEYS: tuple[str, ...] = ("epochs", "lr", "batch_size", "lora_rank")
ADAPTER_DIR = "adapter"  # inside the cached folder: the LoRA adapter before the merge, for inspection


def source_key(source: str) -> Any:
    """What identifies a model source in a cache key: a hub id as it is; a local folder by its files' names,
    sizes and modification times (a checkpoint rewritten in place gets a new key)."""
    path = Path(source).expanduser()
    if not path.is_dir():
        return source
    return sorted([str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns] for f in path.rglob("*") if f.is_file())


def finetune_cached(
    base_source: str,
    examples_or_texts: Sequence[Example | str],
    params: Mapping[str, Any],
    cache_dir: str | Path,
    name: str = "finetuned",
) -> str:
    """``base_source`` QLoRA-fine-tuned on ``examples_or_texts`` (strings are :class:`~sga.prompts.Text`: every
    token scored), merged and saved with its tokenizer; returns the cached folder, a path ``load_model`` accepts.

    ``params`` holds ``target_finetune`` (``epochs``, ``lr``, ``batch_size`` in sequences per step,
    ``lora_rank``), ``quantization`` and ``compute_dtype`` of the base during training, ``max_length``
    (tokens per sequence), ``template`` (for QA examples), ``world_seed`` (LoRA init and batch order), and
    optionally ``gradient_checkpointing`` and ``progress``. See the module docstring for the route and the cache.
    """
    settings, examples, template = _settings(params), _examples(examples_or_texts), _template(examples_or_texts, params)
    seed = params["world_seed"]

    def build(tmp: Path) -> None:
        tokenizer = load_tokenizer(base_source)
        model = add_lora(
            load_model(base_source, quantization=params["quantization"], compute_dtype=params["compute_dtype"]),
            rank=settings["lora_rank"],
            alpha=2 * settings["lora_rank"],
            target_modules="all-linear",
            gradient_checkpointing=bool(params.get("gradient_checkpointing", False)),
            seed=seed,
        )
        losses = train_causal_lm(model, tokenizer, examples, template=template or "raw", epochs=settings["epochs"],
                                 lr=settings["lr"], batch_size=settings["batch_size"], seed=seed,
                                 max_length=params["max_length"], progress=bool(params.get("progress", True)))
        model.save_pretrained(tmp / ADAPTER_DIR)
        del model
        _release()
        merge_adapter(base_source, tmp / ADAPTER_DIR, params["compute_dtype"]).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / LOSSES_FILE).write_text(json.dumps(losses))
        _release()

    return str(build_cached(finetune_path(base_source, examples, params, cache_dir, name), build))


def finetune_path(
    base_source: str,
    examples_or_texts: Sequence[Example | str],
    params: Mapping[str, Any],
    cache_dir: str | Path,
    name: str = "finetuned",
) -> Path:
    """The folder :func:`finetune_cached` keeps that fine-tune in (whether or not it is built yet)."""
    settings, examples = _settings(params), _examples(examples_or_texts)
    threads = None if torch.cuda.is_available() else torch.get_num_threads()  # float summation order on a CPU
    data = [[type(e).__name__, *dataclasses.astuple(e)] for e in examples]
    key = params_hash([source_key(base_source), data, settings, params["quantization"], params["compute_dtype"],
                       params["max_length"], _template(examples, params), params["world_seed"], threads], 12)
    return Path(cache_dir) / f"{name}-{key}"


def _settings(params: Mapping[str, Any]) -> dict[str, Any]:
    settings = params["target_finetune"]
    missing = sorted(set(FINETUNE_KEYS) - set(settings))
    if missing:
        raise ValueError(f"target_finetune lacks {missing}; it needs {list(FINETUNE_KEYS)}.")
    return {key: settings[key] for key in FINETUNE_KEYS}


def _examples(examples_or_texts: Sequence[Example | str]) -> list[Example]:
    examples = [Text(e) if isinstance(e, str) else e for e in examples_or_texts]
    if not examples:
        raise ValueError("A fine-tune needs at least one text.")
    return examples


def _template(examples_or_texts: Sequence[Example | str], params: Mapping[str, Any]) -> str | None:
    """The prompt template, which only a QA example uses (None otherwise: a template change keeps the cache)."""
    return params["template"] if any(isinstance(e, QA) for e in examples_or_texts) else None


def merge_adapter(base_source: str, adapter_dir: str | Path, compute_dtype: str = "float32") -> torch.nn.Module:
    """The base loaded unquantised on the CPU in ``compute_dtype`` with the LoRA adapter at ``adapter_dir``
    merged into its weights (a plain ``PreTrainedModel``)."""
    from peft import PeftModel

    base = load_model(base_source, quantization="none", compute_dtype=compute_dtype, device="cpu")
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
