"""A base model QLoRA-fine-tuned on a corpus, merged and cached: the Harry Potter ``paper`` target (the
FLAT / SOUL setting, OPT-2.7B fine-tuned on the books) when no fine-tuned checkpoint is at hand.

The route, and why:

1. the base is loaded as every start model is (:func:`sga.models.load_model` with the fine-tune's
   ``quantization``, NF4 by default; on a CPU that applies :func:`sga.models.guard_bnb_cpu`), wrapped in a
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
never reused. Gradient checkpointing (on a GPU) and ``progress`` are left out of the hash (they change memory and
display, not the arithmetic).
"""

from __future__ import annotations

import dataclasses
import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from sga.embedded import LOSSES_FILE, build_cached, train_causal_lm
from sga.models import COMPUTE_DTYPES, QUANTIZATIONS, add_lora, load_model, load_tokenizer
from sga.prompts import QA, Example, Text
from sga.results import params_hash
from sga.specs import Spec, integer, one_of, positive, setting

ADAPTER_DIR = "adapter"  # inside the cached folder: the LoRA adapter before the merge, for inspection


@dataclass(frozen=True, kw_only=True)
class FinetuneSettings(Spec):
    """How a base is fine-tuned on a corpus (LoRA alpha is twice the rank; the base is loaded with ``quantization``
    and computes in ``compute_dtype``, in which the merged checkpoint is kept)."""

    epochs: int = setting(3, integer(1), "passes over the corpus")
    lr: float = setting(2e-4, positive(), "learning rate")
    batch_size: int = setting(4, integer(1), "sequences per step (one forward)")
    lora_rank: int = setting(16, integer(1), "LoRA rank")
    quantization: str = setting("nf4", one_of(QUANTIZATIONS), "the base's quantisation during training")
    compute_dtype: str = setting("bfloat16", one_of(tuple(COMPUTE_DTYPES)), "compute dtype, and the merged checkpoint's")


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
    settings: FinetuneSettings,
    cache_dir: str | Path,
    *,
    max_length: int,
    seed: int,
    template: str = "raw",
    progress: bool = True,
    name: str = "finetuned",
) -> str:
    """``base_source`` QLoRA-fine-tuned on ``examples_or_texts`` (strings are :class:`~sga.prompts.Text`: every
    token scored), merged and saved with its tokenizer; returns the cached folder, a path ``load_model`` accepts.

    ``max_length`` tokens per sequence, ``seed`` of the LoRA init and batch order, ``template`` for QA examples. On a
    GPU the base recomputes activations in the backward pass (gradient checkpointing: memory, not arithmetic). See
    the module docstring for the route and the cache.
    """
    examples = _examples(examples_or_texts)

    def build(tmp: Path) -> None:
        tokenizer = load_tokenizer(base_source)
        model = add_lora(
            load_model(base_source, quantization=settings.quantization, compute_dtype=settings.compute_dtype),
            rank=settings.lora_rank,
            alpha=2 * settings.lora_rank,
            target_modules="all-linear",
            gradient_checkpointing=torch.cuda.is_available(),
            seed=seed,
        )
        losses = train_causal_lm(model, tokenizer, examples, template=template, epochs=settings.epochs, lr=settings.lr,
                                 batch_size=settings.batch_size, seed=seed, max_length=max_length, progress=progress)
        model.save_pretrained(tmp / ADAPTER_DIR)
        del model
        _release()
        merge_adapter(base_source, tmp / ADAPTER_DIR, settings.compute_dtype).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / LOSSES_FILE).write_text(json.dumps(losses))
        _release()

    return str(build_cached(finetune_path(base_source, examples, settings, cache_dir, max_length=max_length, seed=seed,
                                          template=template, name=name), build))


def finetune_path(
    base_source: str,
    examples_or_texts: Sequence[Example | str],
    settings: FinetuneSettings,
    cache_dir: str | Path,
    *,
    max_length: int,
    seed: int,
    template: str = "raw",
    name: str = "finetuned",
) -> Path:
    """The folder :func:`finetune_cached` keeps that fine-tune in (whether or not it is built yet)."""
    examples = _examples(examples_or_texts)
    threads = None if torch.cuda.is_available() else torch.get_num_threads()  # float summation order on a CPU
    data = [[type(e).__name__, *dataclasses.astuple(e)] for e in examples]
    used_template = template if any(isinstance(e, QA) for e in examples) else None  # only a QA example uses it
    key = params_hash([source_key(base_source), data, settings.to_dict(), max_length, used_template, seed, threads], 12)
    return Path(cache_dir) / f"{name}-{key}"


def _examples(examples_or_texts: Sequence[Example | str]) -> list[Example]:
    examples = [Text(e) if isinstance(e, str) else e for e in examples_or_texts]
    if not examples:
        raise ValueError("A fine-tune needs at least one text.")
    return examples


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
