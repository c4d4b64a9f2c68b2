"""Tokenizer and tiny-model factory, target/retain training, and 4-bit / 8-bit + LoRA loading.

Everything offline works from local directories written by ``save_pretrained``; a hub id goes
through the same loading code. Caches are folders named after a hash of what made them, written
to a temporary folder first and renamed into place, so an interrupted build is never reused.

CPU trap (see ``guard_bnb_cpu``): on CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight on
its first eval-mode no-grad forward into a layout whose kernel has no autograd; LoRA gradients are
silently wrong afterwards. ``load_model`` applies the guard to every 4-bit model it puts on a CPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    get_cosine_schedule_with_warmup,
)

from transformers.utils import logging as hf_logging

from sga.inference import model_device, to_device
from sga.prompts import collate, encode_pairs
from sga.results import params_hash
from sga.unlearn import trainable_parameters

logger = logging.getLogger(__name__)
hf_logging.disable_progress_bar()  # per-shard "Loading weights" bars would flood notebook outputs

QUANTIZATIONS: tuple[str, ...] = ("none", "nf4", "fp4", "int8")
COMPUTE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
BNB_CPU_AUTOGRAD_WARNING = "bitsandbytes::gemv_4bit: an autograd kernel was not registered"
LOSSES_FILE = "train_losses.json"
# train_causal_lm arguments that do not change the trained weights (left out of cache keys)
_DISPLAY_ONLY_ARGS = ("log_every", "progress")


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _build_cached(final: Path, build: Callable[[Path], None]) -> Path:
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


# --------------------------------------------------------------------------- tokenizer


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
    path = _build_cached(final, lambda tmp: train_tokenizer(texts, vocab_size, seed).save_pretrained(tmp))
    return AutoTokenizer.from_pretrained(path)


def _hub_error(kind: str, source: str, error: Exception) -> OSError:
    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") else ""
    return OSError(
        f"Could not load the {kind} {source!r} from the Hugging Face hub or its local cache{offline}: {error}\n"
        "Use the `mini` preset (offline data and tiny models trained here), or pass a local directory "
        "written by save_pretrained (for example a copy of the hub repository)."
    )


def _resolve(source: str) -> str:
    """A local directory as a string, or a hub id; a path-like source that does not exist is an error."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path)
    if source.startswith(("/", ".", "~")) or source.count("/") > 1:
        raise FileNotFoundError(f"No local model directory {source!r}; give an existing directory or a hub id like 'owner/name'.")
    return source


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local directory or a hub id; pad token falls back to EOS."""
    resolved = _resolve(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
    except OSError as error:
        if Path(resolved).exists():
            raise
        raise _hub_error("tokenizer", source, error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# --------------------------------------------------------------------------- tiny models and training


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
    with _seeded(seed):
        return LlamaForCausalLM(config)


def train_causal_lm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
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
    """Fine-tune ``model`` on (question, answer) pairs; the loss covers answer tokens + EOS only.

    AdamW, linear warmup over ``warmup_ratio`` of the steps then cosine decay to 0, gradient
    clipping, batches reshuffled every epoch by a seeded generator. Returns the per-step losses;
    the model is left in eval mode.
    """
    if not pairs:
        raise ValueError("train_causal_lm needs at least one (question, answer) pair.")
    features = encode_pairs(tokenizer, pairs, template, max_length)
    steps_per_epoch = math.ceil(len(features) / batch_size)
    total_steps = epochs * steps_per_epoch
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(warmup_ratio * total_steps), total_steps)
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    losses: list[float] = []
    model.train()
    with tqdm(total=total_steps, desc="train", disable=not progress) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(features), generator=generator).tolist()
            for start in range(0, len(order), batch_size):
                batch = collate([features[i] for i in order[start : start + batch_size]], tokenizer.pad_token_id)
                loss = model(**to_device(batch, device)).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if log_every and len(losses) % log_every == 0:
                    logger.info("step %d/%d loss %.4f", len(losses), total_steps, losses[-1])
    model.eval()
    return losses


def build_or_load_tiny_qa_model(
    name: str,
    pairs: Sequence[tuple[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: Path,
    template: str,
    model_kwargs: dict,
    train_kwargs: dict,
) -> Path:
    """Train a ``tiny_llama`` on ``pairs`` and save it with its tokenizer, or reuse the cached one.

    The folder is ``cache_dir / f"{name}-{hash}"``, the hash covering pairs, model and training
    arguments, template, tokenizer vocabulary and torch's CPU thread count (it changes float summation
    order, hence the weights); it also holds the per-step losses as JSON.
    """
    weight_args = {k: v for k, v in train_kwargs.items() if k not in _DISPLAY_ONLY_ARGS}
    vocab = sorted(tokenizer.get_vocab().items())
    threads = None if torch.cuda.is_available() else torch.get_num_threads()
    key = params_hash([[list(p) for p in pairs], model_kwargs, weight_args, template, vocab, threads], 12)

    def build(tmp: Path) -> None:
        model = tiny_llama(len(tokenizer), tokenizer=tokenizer, **model_kwargs)
        losses = train_causal_lm(model, tokenizer, pairs, template=template, **train_kwargs)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / LOSSES_FILE).write_text(json.dumps(losses))

    return _build_cached(Path(cache_dir) / f"{name}-{key}", build)


# --------------------------------------------------------------------------- quantized loading and LoRA


def guard_bnb_cpu(model: torch.nn.Module) -> int:
    """Keep bitsandbytes 4-bit layers on the autograd-capable CPU path; return how many were set.

    Sets ``support_avx512bf16_for_cpu = False`` on every ``Linear4bit`` so an eval-mode forward never
    repacks the weight for the AVX512-BF16 kernel (which has no autograd: LoRA gradients would be
    silently wrong), and turns bitsandbytes' "autograd kernel was not registered" warning into an
    error so any path the flag misses fails loudly instead. Call it before the first forward.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        if getattr(layer.weight.quant_state, "packing_format_for_cpu", False):
            raise RuntimeError(
                "A 4-bit layer was already repacked for the AVX512-BF16 CPU kernel (an eval forward ran "
                "before guard_bnb_cpu); reload the model with sga.models.load_model."
            )
        layer.support_avx512bf16_for_cpu = False
    if layers:
        warnings.filterwarnings("error", message=BNB_CPU_AUTOGRAD_WARNING)
    return len(layers)


def _quantization_config(quantization: str, dtype: torch.dtype, double_quant: bool) -> BitsAndBytesConfig | None:
    if quantization == "none":
        return None
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=double_quant,
    )


def load_model(
    source: str,
    quantization: str = "none",
    compute_dtype: str = "float32",
    device: str | None = None,
    double_quant: bool = True,
) -> PreTrainedModel:
    """Load a causal LM from a local directory or hub id, optionally 4-bit (nf4/fp4) or 8-bit (int8).

    ``compute_dtype`` is the dtype of the unquantized weights and of 4-bit matmuls; ``device``
    defaults to CUDA when available. 4-bit models on CPU get ``guard_bnb_cpu``. Returns eval mode.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}; choose one of {list(QUANTIZATIONS)}.")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"Unknown compute_dtype {compute_dtype!r}; choose one of {list(COMPUTE_DTYPES)}.")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = COMPUTE_DTYPES[compute_dtype]
    resolved = _resolve(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolved,
            dtype=dtype,
            quantization_config=_quantization_config(quantization, dtype, double_quant),
            device_map={"": device},
        )
    except torch.cuda.OutOfMemoryError as error:
        raise torch.cuda.OutOfMemoryError(
            f"Out of GPU memory loading {source!r} with quantization={quantization!r}: use a smaller model, "
            "quantization='nf4', or free the GPU (and use a smaller batch size when training). "
            f"Original error: {error}"
        ) from error
    except OSError as error:
        if Path(resolved).exists():
            raise
        raise _hub_error("model", source, error) from error
    if torch.device(device).type == "cpu":
        guard_bnb_cpu(model)
    return model.eval()


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether any layer is a bitsandbytes 4-bit or 8-bit linear layer."""
    import bitsandbytes as bnb

    return any(isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)) for m in model.modules())


def add_lora(
    model: PreTrainedModel,
    rank: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] | str = "all-linear",
    gradient_checkpointing: bool = False,
    seed: int = 0,
):
    """Wrap ``model`` in a peft LoRA adapter (seeded init; B starts at zero, as peft does).

    Quantized models first go through ``prepare_model_for_kbit_training`` (which freezes the base
    and upcasts norms / embeddings to fp32). Returns the ``PeftModel``.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if is_quantized(model):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        task_type="CAUSAL_LM",
    )
    with _seeded(seed):
        return get_peft_model(model, config)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts; a packed 4-bit weight counts its unpacked elements."""
    trainable = total = 0
    for param in model.parameters():
        quant_state = getattr(param, "quant_state", None)
        n = quant_state.shape.numel() if quant_state is not None else param.numel()
        total += n
        trainable += n if param.requires_grad else 0
    return {"trainable": trainable, "total": total}
