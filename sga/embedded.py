"""The embedded world's models: a byte-level BPE tokenizer and tiny Llamas trained from scratch on CPU.

Each is built once and cached in a folder named after a hash of what made it, written to a temporary
folder first and renamed into place, so an interrupted build is never reused. The models load back
through :func:`sga.models.load_model` like any hub checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    get_cosine_schedule_with_warmup,
)

from sga.inference import model_device, to_device
from sga.models import seeded
from sga.optim import optimizer_step, trainable_parameters
from sga.progress import bar as progress_bar
from sga.prompts import Example, collate, encode_examples
from sga.results import params_hash
from sga.specs import EMBEDDED, WorldSpec

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
LOSSES_FILE = "train_losses.json"
# train_causal_lm arguments that do not change the trained weights (left out of cache keys)
_NOT_IN_KEY = ("log_every", "progress")


def build_cached(final: Path, build: Callable[[Path], None]) -> Path:
    """Return ``final`` if it exists; else run ``build(tmp_dir)`` and rename the result into place."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        build(tmp)
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():  # not a concurrent builder finishing first: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def train_tokenizer(texts: Iterable[str], vocab_size: int, seed: int = 0) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with ``<s>``, ``</s>``, ``<pad>``, ``<unk>``.

    Like Llama's tokenizer, encoding with special tokens prepends ``<s>`` (the prompt encoders in
    ``sga.prompts`` add BOS themselves and encode with ``add_special_tokens=False``). BPE training
    has no randomness: ``seed`` only shuffles the text order (the merges do not depend on it) and
    keeps the signature uniform with the other builders.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    texts = list(texts)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    specials = [SPECIAL_TOKENS[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")]
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((texts[i] for i in order), trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def build_or_load_tokenizer(texts: Iterable[str], vocab_size: int, cache_dir: Path, seed: int = 0) -> PreTrainedTokenizerFast:
    """``train_tokenizer`` cached under ``cache_dir / "tokenizer-<hash>"`` (hash of texts, size, seed)."""
    texts = list(texts)
    final = Path(cache_dir) / f"tokenizer-{params_hash([texts, vocab_size, seed], 12)}"
    path = build_cached(final, lambda tmp: train_tokenizer(texts, vocab_size, seed).save_pretrained(tmp))
    return AutoTokenizer.from_pretrained(path)


def tiny_llama(
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> LlamaForCausalLM:
    """A small randomly initialised Llama (seeded); special-token ids come from ``tokenizer`` if given.

    ``intermediate_size`` defaults to Llama's SwiGLU ratio, 8/3 of the hidden size, rounded up to 64.
    """
    if intermediate_size is None:
        intermediate_size = 64 * math.ceil(8 * hidden_size / 3 / 64)
    token_ids = {}
    if tokenizer is not None:
        token_ids = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if len(tokenizer) > vocab_size:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens.")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        **token_ids,
    )
    with seeded(seed):
        return LlamaForCausalLM(config)


def train_causal_lm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    template: str,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    max_length: int = 256,
    log_every: int = 0,
    progress: bool = True,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
) -> list[float]:
    """Fine-tune ``model`` on examples of any kind; the loss covers their scored tokens only.

    AdamW, linear warmup over ``warmup_ratio`` of the steps then cosine decay to 0, gradient
    clipping, batches reshuffled every epoch by a seeded generator. Returns the per-step losses;
    the model is left in eval mode. A non-finite loss or gradient raises.
    """
    if not examples:
        raise ValueError("train_causal_lm needs at least one example.")
    features = encode_examples(tokenizer, examples, template, max_length)
    steps_per_epoch = math.ceil(len(features) / batch_size)
    total_steps = epochs * steps_per_epoch
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(warmup_ratio * total_steps), total_steps)
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    losses: list[float] = []
    model.train()
    with progress_bar(total=total_steps, desc="train", disable=not progress, unit="step") as bar:
        for _ in range(epochs):
            order = torch.randperm(len(features), generator=generator).tolist()
            for start in range(0, len(order), batch_size):
                batch = collate([features[i] for i in order[start : start + batch_size]], tokenizer.pad_token_id)
                loss = model(**to_device(batch, device)).loss
                loss.backward()
                losses.append(loss.item())
                norm = optimizer_step(params, optimizer, scheduler, max_grad_norm, losses[-1])
                if not math.isfinite(norm * losses[-1]):
                    raise RuntimeError(f"Training diverged at step {len(losses)} (loss {losses[-1]}, gradient norm {norm}); lower lr.")
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if log_every and len(losses) % log_every == 0:
                    logger.info("step %d/%d loss %.4f", len(losses), total_steps, losses[-1])
    model.eval()
    return losses


def build_or_load_tiny_model(
    name: str,
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: Path,
    template: str,
    model_kwargs: dict,
    train_kwargs: dict,
) -> Path:
    """Train a ``tiny_llama`` on ``examples`` and save it with its tokenizer, or reuse the cached one.

    The folder is ``cache_dir / f"{name}-{hash}"``, the hash covering the examples, model and training
    arguments, template, tokenizer vocabulary and torch's CPU thread count (it changes float summation
    order, hence the weights); it also holds the per-step losses as JSON.
    """
    weight_args = {k: v for k, v in train_kwargs.items() if k not in _NOT_IN_KEY}
    vocab = sorted(tokenizer.get_vocab().items())
    threads = None if torch.cuda.is_available() else torch.get_num_threads()
    data = [[type(e).__name__, *dataclasses.astuple(e)] for e in examples]
    key = params_hash([data, model_kwargs, weight_args, template, vocab, threads], 12)

    def build(tmp: Path) -> None:
        model = tiny_llama(len(tokenizer), tokenizer=tokenizer, **model_kwargs)
        losses = train_causal_lm(model, tokenizer, examples, template=template, **train_kwargs)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / LOSSES_FILE).write_text(json.dumps(losses))

    return build_cached(Path(cache_dir) / f"{name}-{key}", build)




def generated_data(cache_dir: Path, prefix: str, spec: dict, generate: Callable[..., Path]) -> Path:
    """``cache_dir / f"{prefix}-{hash(spec)}"``, written by ``generate(path, **spec)`` the first time (the
    generators write their hub-layout folder atomically)."""
    path = Path(cache_dir) / f"{prefix}-{params_hash(spec)}"
    if not path.exists():
        generate(path, **spec)
    return path


def data_source(world: WorldSpec, cache_dir: Path, prefix: str, generate: Callable[..., Path]) -> str:
    """The world's dataset location: its ``data_source`` as given, or for ``"embedded"`` the data ``generate`` writes
    from the world's generator sizes and seed, made once and cached (:func:`generated_data`)."""
    if world.data_source != EMBEDDED:
        return world.data_source
    return str(generated_data(cache_dir, prefix, {**world.data.to_dict(), "seed": world.world_seed}, generate))
