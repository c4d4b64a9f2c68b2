"""Loading causal LMs (full precision, 4-bit or 8-bit) from a local directory or a hub id, and LoRA.

Everything offline works from local directories written by ``save_pretrained``; a hub id goes
through the same loading code. The embedded world's tokenizer and tiny models are built in
:mod:`sga.embedded`.

CPU trap (see ``guard_bnb_cpu``): on CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight on
its first eval-mode no-grad forward into a layout whose kernel has no autograd; LoRA gradients are
silently wrong afterwards. ``load_model`` applies the guard to every 4-bit model it puts on a CPU.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # per-shard "Loading weights" bars would flood notebook outputs
from sga import OFFLINE_TRUST_NOTICE  # noqa: F401,E402 (the notices are silenced in sga/__init__.py, before any import)

QUANTIZATIONS: tuple[str, ...] = ("none", "nf4", "fp4", "int8")
COMPUTE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
BNB_CPU_AUTOGRAD_WARNING = "bitsandbytes::gemv_4bit: an autograd kernel was not registered"


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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


DEQUANTIZED_CACHE_MAX_BYTES = 2**30  # a CPU model whose dequantised 4-bit weights would take more keeps dequantising


def _dequantized_forward(self, x: torch.Tensor) -> torch.Tensor:
    """``Linear4bit.forward`` on the guarded CPU path, with the weight dequantised once instead of on every call.

    bitsandbytes' CPU path dequantises the whole weight on every forward (``gemm_4bit``: ``dequantize_4bit`` then
    ``F.linear``) and again in every backward (``MatMul4Bit.backward``: ``grad @ dequantize_4bit(W)``). Here the
    weight is dequantised once (``bnb.functional.dequantize_4bit``, in the quantisation dtype), kept, and used
    in ``F.linear``, whose autograd computes the same ``grad @ W``: the same float operations on the same operands,
    so outputs and gradients are bitwise those of the uncached path (tests/test_dequantized_cache.py). Anything
    else (not on the CPU, a compute dtype other than the quantisation dtype, a layer the AVX512-BF16 repacking may
    reach) goes through bitsandbytes' own forward. A new weight (a merge, a reload) is dequantised again.
    """
    import bitsandbytes as bnb
    from bitsandbytes.nn.modules import fix_4bit_weight_quant_state_from_module

    fix_4bit_weight_quant_state_from_module(self)
    state = self.weight.quant_state
    dtype = self.compute_dtype if self.compute_dtype is not None else x.dtype
    if (x.device.type != "cpu" or self.support_avx512bf16_for_cpu or getattr(state, "packing_format_for_cpu", False)
            or not self.compute_type_is_set or dtype != state.dtype):
        return type(self).forward(self, x)
    cached = getattr(self, "_sga_dequantized", None)  # (weight, its quant state, its data pointer, dequantised)
    if cached is None or cached[0] is not self.weight or cached[1] is not state or cached[2] != self.weight.data_ptr():
        with torch.no_grad():
            cached = (self.weight, state, self.weight.data_ptr(), bnb.functional.dequantize_4bit(self.weight.data, state))
        self._sga_dequantized = cached
    inp_dtype = x.dtype
    x = x.to(dtype)
    bias = self.bias
    if bias is not None:
        if bias.dtype != x.dtype:
            bias.data = bias.data.to(x.dtype)
        bias = bias.to(dtype)
    return torch.nn.functional.linear(x, cached[3], bias).to(inp_dtype)


def cache_dequantized_weights(model: torch.nn.Module, max_bytes: int = DEQUANTIZED_CACHE_MAX_BYTES) -> int:
    """Let every 4-bit layer of a CPU model keep its dequantised weight (see :func:`_dequantized_forward`) when they
    all fit in ``max_bytes``; return how many layers do. Apply after :func:`guard_bnb_cpu`.

    The frozen base weights of LoRA never change, and on the CPU dequantising them is most of a small model's
    forward; a big model keeps bitsandbytes' memory-saving path.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    size = sum(m.weight.quant_state.shape.numel() * m.weight.quant_state.dtype.itemsize for m in layers)
    if not layers or size > max_bytes:
        return 0
    for layer in layers:
        layer.forward = _dequantized_forward.__get__(layer)
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
    defaults to CUDA when available. 4-bit models on CPU get ``guard_bnb_cpu``, then keep their dequantised
    weights (``cache_dequantized_weights``: the same numbers, without dequantising on every call). Returns eval mode.
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
        cache_dequantized_weights(model)
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
    with seeded(seed):
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
