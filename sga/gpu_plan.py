"""GPU memory and time planner for 4-bit QLoRA unlearning steps (pure arithmetic, no torch).

A user with a 12 GB card asks: does this setting fit, and how long does the run take? Everything here is
arithmetic on the model's shape (:class:`ModelShape`) and the step's settings (:class:`StepShape`), following
what the code path of the ``paper`` preset allocates (``sga.models.load_model`` with bitsandbytes,
``sga.models.add_lora``, ``sga.unlearn.unlearn``), with three constants fitted on the one measurement,
``perf/results/gpu_h100_qlora_7b.json`` (``perf/gpu_qlora_step.py``: a random-weight Llama-2-7B-shaped
model, NF4 + double quantisation, bf16 compute, LoRA r=16 on the seven projections, gradient checkpointing,
AdamW; one H100 80GB, torch 2.11, transformers 5.17, peft 0.21, bitsandbytes 0.50.2).

Memory (:func:`plan_memory`, GiB as ``torch.cuda.max_memory_allocated`` reads them)
-----------------------------------------------------------------------------------
* base weights: the decoder's linear layers quantised (NF4/FP4: half a byte per weight plus one absmax
  per block of 64, an fp32 absmax without double quantisation, a uint8 one with it plus an fp32 one per
  256 blocks and a 256-entry code per layer; int8: a byte plus an fp32 scale per output row). Embeddings,
  lm_head and the norms are not quantised (transformers' ``get_keys_to_not_convert`` keeps the output
  embedding; an ``nn.Embedding`` is not a linear layer), and peft's ``prepare_model_for_kbit_training``
  casts every bf16/fp16 parameter that is not 4-bit to **fp32**: for Llama-2-7B the embedding and
  lm_head take 0.98 GiB, not 0.49. That is the measured 3.61 GiB after the load becoming 4.25 GiB with
  LoRA: 3.02 (NF4) + 0.10 (constants) + 0.98 (fp32 embeddings) + 0.15 (LoRA) = 4.24 predicted.
* LoRA: rank x (in + out) per adapted layer, fp32 (peft's ``autocast_adapter_dtype``); AdamW's two
  moments, fp32, exist from the first step on. Gradients (fp32) are counted only when a step
  accumulates several forwards: a single forward's peak comes before its first LoRA gradient.
  (The measured micro-batched SGA step, 6.58 GiB, is the fused 4 x 512 forward's 6.44 plus 0.15 of them.)
* activations: because of that fp32 upcast the whole residual stream is fp32 outside the 4-bit matmuls
  (bnb's Linear4bit returns its input's dtype), so a checkpoint is 4 bytes x hidden per token and layer:
  512 KiB per token for Llama-2-7B. Without checkpointing every layer keeps its saved tensors
  (:func:`_layer_elements`).
* the two transient peaks, which never coexist (``total = static + activations + max(...)``):
  - logits: ``LOGIT_COPIES = 3`` fp32 [sequences, tokens, vocab] tensors: lm_head's output, the
    contiguous copy ``log_softmax`` makes of ``sga.inference.label_nll``'s transposed input and its
    output (forward); log_softmax's saved output, the gradient into it and the one out of it (backward);
    plus the final norm's two saved h-wide tensors. 375 + 32 KiB per token for Llama-2-7B.
  - one layer's recompute and backward: its saved tensors and the gradients in flight
    (:func:`_layer_elements`, an accounting of the modules, not a fit): 407 KiB per token for
    Llama-2-7B, so the 7B's two phases are within 1% of each other; for OPT-2.7B (vocab 50272) and
    Llama-3.2-1B (128256) the logits dominate.
* ``ALLOCATOR_OVERHEAD_GIB = 0.13`` (fitted): what the four measured steps hold beyond these terms (mean
  residual 0.132 GiB, spread 0.10-0.19): cuBLAS workspaces, a dequantised bf16 weight in flight, small tensors.

Per token of one forward the 7B thus needs 919 KiB against the measured slopes of 908 (GA 1 -> 4 x 512),
912 (4 -> 16 x 512) and 911-915 KiB (512 -> 1024 tokens, held out); the fixed part comes out right
because the weights do (4.24 vs 4.25). For a card, :func:`device_gib` adds what the measurement did not
read: ``CUDA_CONTEXT_GIB = 0.6`` (context, kernels, cuBLAS handles; assumed) and ``FRAGMENTATION = 0.05``
(the caching allocator's reserved-over-allocated headroom; assumed). A card's nominal size is read as GiB
(a 12 GB card reports 12288 MiB). Not modelled: the 4-D padding mask (<1% at 2048 tokens), KL's extra
reference logits (NPO's no-gradient reference forward is: ``reference_sequences``), the optimizer step's
own temporaries (a few x the LoRA size, never the peak).

Time (:func:`estimate_step_seconds`)
------------------------------------
Per forward: the larger of the GPU time and the host's dispatch time (eager PyTorch queues kernels
asynchronously and ``sga.unlearn`` synchronises once per forward on ``loss.item()``, so a short forward
costs its Python/launch overhead, however few its tokens: GA 1 x 512 and 4 x 512 take the same time).
* GPU time = FLOPs / (``EFFICIENCY`` x datasheet peak) + dequantisation bytes / (0.7 x bandwidth). FLOPs per
  token: the frozen 4-bit linear layers 2 N_lin per pass, 3 passes with checkpointing (forward, recompute,
  backward to the inputs only: the base gets no weight gradient), so ~6 N rather than the 8 N of full
  training, at the bf16 matrix rate; LoRA (4 passes: its weight gradients too) and lm_head (forward and
  input gradient) at the plain fp32 rate (fp32 weights, TF32 off); causal attention, 2 T a per token and
  layer forward, 2.5x that backward, at a sixth of the bf16 rate (fp32 activations run PyTorch's
  memory-efficient kernel, which multiplies fp32 as three TF32 products: ``TF32X3_SLOWDOWN``); each pass
  dequantises every 4-bit weight (read 0.5 B, write and read 2 B).
* ``EFFICIENCY = 0.27`` and ``DISPATCH_S_PER_LINEAR = 3.1 ms`` (per linear layer of the model, per
  forward with recompute and backward: 0.69 s for the 7B's 224) are fitted together, least squares on
  the log of the four s/step of the JSON. Datasheet peaks in :data:`DEVICES`; cards other than the H100
  are extrapolations at the H100's efficiency, and the dispatch time belongs to the measuring host.

Calibration (Llama-2-7B shape, H100; memory: peak GiB allocated; time: s/step)
------------------------------------------------------------------------------
======================================  ==============  =============  ======  =====  ======  ======
point                                   memory planned  measured       error   s      meas.   error
======================================  ==============  =============  ======  =====  ======  ======
weights 4-bit with LoRA                 4.24            4.25           -0.3%
GA 1 x 512                              5.11            5.11           +0.1%   0.69   0.744   -7%
GA 4 x 512                              6.46            6.44           +0.3%   0.69   0.646   +7%
SGA K=4 fused 16 x 512                  11.85           11.91          -0.5%   1.72   1.73    -0%
SGA K=4 micro-batched 4 x (4 x 512)     6.61            6.58           +0.5%   2.78   2.731   +2%
earlier run: GA 1 x 512                 5.11            5.11           +0.1%   0.69   0.50    +39%
earlier run: GA 4 x 512                 6.46            6.40           +1.0%   0.69   0.52    +34%
earlier run: SGA fused 16 x 512         11.85           11.75          +0.8%   1.72   1.66    +4%
earlier run: SGA micro 4 x (4 x 512)    6.61            6.54           +1.1%   2.78   2.06    +35%
held out: GA 4 x 1024                   8.26            8.18           +0.9%   0.94   0.94    -0%
held out: SGA fused 16 x 1024           19.03           18.90          +0.7%   3.63   3.49    +4%
======================================  ==============  =============  ======  =====  ======  ======

The earlier run's host dispatched faster (about 0.5 s per forward against 0.69): dispatch-bound steps
(short forwards, micro-batching) vary by that much between runs of the same machine type; GPU-bound ones
(many tokens per forward) agree within 5%.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sga.specs import RunSpec

__all__ = [
    "GIB", "ModelShape", "StepShape", "MemoryPlan", "DeviceSpec", "DEVICES",
    "LLAMA2_7B", "OPT_2_7B", "LLAMA32_1B",
    "plan_memory", "device_gib", "fits", "largest_forward_that_fits", "fit_message",
    "estimate_step_seconds", "estimate_run_hours", "steps_per_run", "run_steps", "run_hours",
]

GIB = 2**30

# ---------------------------------------------------------------- constants (see the module docstring)
# derived from the libraries (not fitted)
NF4_BLOCKSIZE = 64  # bitsandbytes Params4bit's default blocksize: one absmax per 64 weights
DOUBLE_QUANT_BLOCKSIZE = 256  # quantize_4bit(compress_statistics=True) quantises the absmaxes in blocks of 256
LOGIT_COPIES = 3  # fp32 [sequences, tokens, vocab] tensors alive at once around the loss
TF32X3_SLOWDOWN = 6.0  # fp32 memory-efficient attention: 3 TF32 products, TF32 at half the bf16 rate
# fitted on perf/results/gpu_h100_qlora_7b.json
ALLOCATOR_OVERHEAD_GIB = 0.13  # peak allocated beyond the modelled terms (mean residual of the 4 steps)
EFFICIENCY = 0.27  # achieved fraction of the datasheet FLOP/s (log least squares on the 4 s/step)
DISPATCH_S_PER_LINEAR = 0.0031  # host seconds per linear layer per forward+recompute+backward (same fit)
# assumed (the measurement reads torch.cuda.max_memory_allocated only)
CUDA_CONTEXT_GIB = 0.6  # CUDA context, loaded kernels, cuBLAS handles: outside the caching allocator
FRAGMENTATION = 0.05  # the caching allocator's reserved-over-allocated headroom
BANDWIDTH_EFFICIENCY = 0.7  # achieved fraction of the datasheet bandwidth for the dequantisation traffic

QUANTIZATIONS = ("nf4", "fp4", "int8", "none")
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
ARCHS = ("llama", "opt")


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


# ---------------------------------------------------------------- the model
@dataclass(frozen=True)
class ModelShape:
    """The shape of a decoder-only causal LM: what memory and time depend on.

    ``arch`` is ``'llama'`` (RMSNorm, rotary, gated MLP, no biases: Llama, Mistral, Qwen2-like) or
    ``'opt'`` (LayerNorm, learned positions, ReLU MLP, biases, tied embeddings). ``head_dim`` defaults
    to ``hidden_size // num_heads``; ``word_embed_proj_dim`` (OPT) to ``hidden_size``;
    ``max_position_embeddings`` counts only for OPT's learned positions; ``final_norm``: OPT-350m has none.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    arch: str = "llama"
    head_dim: int | None = None  # filled in: hidden_size // num_heads
    tie_word_embeddings: bool = False
    word_embed_proj_dim: int | None = None
    max_position_embeddings: int = 2048
    final_norm: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"Unknown arch {self.arch!r}; choose one of {list(ARCHS)}.")
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads.")
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.word_embed_proj_dim is None:
            object.__setattr__(self, "word_embed_proj_dim", self.hidden_size)

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """From a transformers config object (LlamaConfig, OPTConfig, ...) or a dict of its fields."""
        model_type = _get(config, "model_type", "")
        if model_type == "opt" or _get(config, "ffn_dim") is not None:
            hidden = int(_get(config, "hidden_size"))
            heads = int(_get(config, "num_attention_heads"))
            return cls(
                hidden_size=hidden, num_layers=int(_get(config, "num_hidden_layers")), num_heads=heads,
                num_kv_heads=heads, intermediate_size=int(_get(config, "ffn_dim")),
                vocab_size=int(_get(config, "vocab_size")), arch="opt",
                tie_word_embeddings=bool(_get(config, "tie_word_embeddings", True)),
                word_embed_proj_dim=int(_get(config, "word_embed_proj_dim", hidden) or hidden),
                max_position_embeddings=int(_get(config, "max_position_embeddings", 2048)),
                final_norm=bool(_get(config, "do_layer_norm_before", True)) and not _get(config, "_remove_final_layer_norm", False),
            )
        heads = int(_get(config, "num_attention_heads"))
        hidden = int(_get(config, "hidden_size"))
        return cls(
            hidden_size=hidden, num_layers=int(_get(config, "num_hidden_layers")), num_heads=heads,
            num_kv_heads=int(_get(config, "num_key_value_heads") or heads),
            intermediate_size=int(_get(config, "intermediate_size")), vocab_size=int(_get(config, "vocab_size")),
            arch="llama", head_dim=int(_get(config, "head_dim") or hidden // heads),
            tie_word_embeddings=bool(_get(config, "tie_word_embeddings", False)),
            max_position_embeddings=int(_get(config, "max_position_embeddings", 2048)),
        )

    # ---- derived sizes
    @property
    def attention_dim(self) -> int:
        """num_heads x head_dim: the width of q and of the attention output."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def embed_dim(self) -> int:
        """Width of the token embedding and of lm_head (OPT's word_embed_proj_dim)."""
        return self.word_embed_proj_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer of one decoder layer, by module name."""
        h, i, a, kv = self.hidden_size, self.intermediate_size, self.attention_dim, self.kv_dim
        if self.arch == "opt":
            return {"q_proj": (h, h), "k_proj": (h, h), "v_proj": (h, h), "out_proj": (h, h), "fc1": (h, i), "fc2": (i, h)}
        return {"q_proj": (h, a), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (a, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def _extra_linear_shapes(self) -> list[tuple[int, int]]:
        """Linear layers outside the decoder layers that bitsandbytes quantises (OPT's project_in/out)."""
        if self.arch == "opt" and self.embed_dim != self.hidden_size:
            return [(self.embed_dim, self.hidden_size), (self.hidden_size, self.embed_dim)]
        return []

    @property
    def linear_params(self) -> int:
        """Weights of the linear layers that a 4-bit/8-bit load quantises (all but embeddings and lm_head)."""
        per_layer = sum(i * o for i, o in self.linear_shapes().values())
        return self.num_layers * per_layer + sum(i * o for i, o in self._extra_linear_shapes())

    @property
    def linear_bias_params(self) -> int:
        """Biases of those linear layers (OPT has them, Llama not)."""
        if self.arch != "opt":
            return 0
        return self.num_layers * sum(o for _, o in self.linear_shapes().values())

    @property
    def unquantized_params(self) -> int:
        """Parameters kept unquantised: token (and position) embeddings, lm_head unless tied, norms, biases."""
        h = self.hidden_size
        embed = self.vocab_size * self.embed_dim
        head = 0 if self.tie_word_embeddings else self.vocab_size * self.embed_dim
        if self.arch == "opt":
            positions = (self.max_position_embeddings + 2) * h  # OPTLearnedPositionalEmbedding's offset of 2
            norms = (2 * self.num_layers + int(self.final_norm)) * 2 * h  # LayerNorm weight and bias
            return embed + head + positions + norms + self.linear_bias_params
        norms = (2 * self.num_layers + int(self.final_norm)) * h  # RMSNorm weight
        return embed + head + norms

    @property
    def n_params(self) -> int:
        """All parameters (a tied lm_head counted once), as ``sum(p.numel() for p in model.parameters())``."""
        return self.linear_params + self.unquantized_params

    def lora_targets(self, targets: str | Sequence[str]) -> dict[str, tuple[int, int]]:
        """The per-layer linear layers a LoRA ``targets`` setting adapts ('all-linear': all but lm_head)."""
        shapes = self.linear_shapes()
        if isinstance(targets, str):
            if targets == "all-linear":
                return shapes
            targets = [targets]
        return {name: shape for name, shape in shapes.items() if name in targets}

    def lora_params(self, rank: int, targets: str | Sequence[str] = "all-linear") -> int:
        """Trainable LoRA parameters: rank x (in + out) per adapted layer."""
        return self.num_layers * sum(rank * (i + o) for i, o in self.lora_targets(targets).values())


LLAMA2_7B = ModelShape(4096, 32, 32, 32, 11008, 32000, max_position_embeddings=4096)
OPT_2_7B = ModelShape(2560, 32, 32, 32, 10240, 50272, arch="opt", tie_word_embeddings=True)
LLAMA32_1B = ModelShape(2048, 16, 32, 8, 8192, 128256, head_dim=64, tie_word_embeddings=True, max_position_embeddings=131072)


# ---------------------------------------------------------------- the step
@dataclass(frozen=True)
class StepShape:
    """One optimizer step: ``forwards_per_step`` forwards (gradients accumulated) of
    ``sequences_per_forward`` sequences padded to ``tokens_per_sequence`` tokens.

    ``reference_sequences``: sequences per forward also run through the frozen reference model
    without gradient (NPO: the forget ones). ``lora_targets``: 'all-linear' or module names.
    """

    sequences_per_forward: int = 1
    tokens_per_sequence: int = 512
    forwards_per_step: int = 1
    quantization: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "bfloat16"
    lora_rank: int = 16
    lora_targets: str | tuple[str, ...] = "all-linear"
    gradient_checkpointing: bool = True
    optimizer: str = "adamw"
    reference_sequences: int = 0

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"Unknown quantization {self.quantization!r}; choose one of {list(QUANTIZATIONS)}.")
        if self.compute_dtype not in DTYPE_BYTES:
            raise ValueError(f"Unknown compute_dtype {self.compute_dtype!r}; choose one of {list(DTYPE_BYTES)}.")
        if self.optimizer != "adamw":
            raise ValueError(f"Only optimizer='adamw' is modelled, got {self.optimizer!r}.")
        for name in ("sequences_per_forward", "tokens_per_sequence", "forwards_per_step", "lora_rank"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.reference_sequences < 0:
            raise ValueError("reference_sequences must be >= 0.")
        if not isinstance(self.lora_targets, str):
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

    @classmethod
    def for_unlearning(cls, batch_size: int, forget_per_forward: int | None, sequences_per_forget: int,
                       tokens_per_sequence: int, **settings: Any) -> StepShape:
        """The step ``sga.unlearn.unlearn`` runs: ``batch_size`` forget samples per step, split into
        forwards of ``forget_per_forward`` (None: all in one), each forget sample bringing
        ``sequences_per_forget`` sequences (1 for GA, K for SGA, 2 for GradDiff/NPO pairs)."""
        chunk = min(forget_per_forward or batch_size, batch_size)
        return cls(sequences_per_forward=chunk * sequences_per_forget, tokens_per_sequence=tokens_per_sequence,
                   forwards_per_step=math.ceil(batch_size / chunk), **settings)

    def replace(self, **changes: Any) -> StepShape:
        return dataclasses.replace(self, **changes)

    @property
    def tokens_per_forward(self) -> int:
        return self.sequences_per_forward * self.tokens_per_sequence

    @property
    def tokens_per_step(self) -> int:
        return self.tokens_per_forward * self.forwards_per_step


# ---------------------------------------------------------------- memory
@dataclass(frozen=True)
class MemoryPlan:
    """Peak GPU memory of one step, by term (GiB, as ``torch.cuda.max_memory_allocated``).

    ``total_gib = base_weights + lora_params + lora_grads + optimizer_states + overhead + activations
    + max(layer_working, logits)``: the working set of one layer's recompute/backward and the logits
    never coexist (the logits are freed before the first layer's backward); ``peak_phase`` names the
    larger. ``device_gib`` adds the CUDA context and allocator fragmentation: what the card must hold.
    """

    base_weights_gib: float
    lora_params_gib: float
    lora_grads_gib: float
    optimizer_states_gib: float
    activations_gib: float
    layer_working_gib: float
    logits_gib: float
    overhead_gib: float
    total_gib: float
    device_gib: float
    peak_phase: str

    def as_dict(self) -> dict[str, float | str]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        terms = [f"{f.name.removesuffix('_gib')} {getattr(self, f.name):.2f}" for f in dataclasses.fields(self)
                 if f.name.endswith("_gib") and f.name not in ("total_gib", "device_gib")]
        return (f"peak {self.total_gib:.2f} GiB allocated ({', '.join(terms)}; peak in the {self.peak_phase} phase), "
                f"about {self.device_gib:.2f} GiB on the card")


def _quantized_linear_bytes(model: ModelShape, step: StepShape) -> float:
    """Bytes of the quantised linear weights with their quantisation constants."""
    shapes = [s for s in model.linear_shapes().values() for _ in range(model.num_layers)] + model._extra_linear_shapes()
    total = 0.0
    for i, o in shapes:
        n = i * o
        if step.quantization in ("nf4", "fp4"):
            blocks = math.ceil(n / NF4_BLOCKSIZE)
            if step.double_quant:  # uint8 absmax per block, fp32 absmax per 256 blocks, 256-entry fp32 code, offset
                constants = blocks + 4 * math.ceil(blocks / DOUBLE_QUANT_BLOCKSIZE) + 4 * 256 + 4
            else:
                constants = 4 * blocks  # fp32 absmax per block
            total += math.ceil(n / 2) + constants
        elif step.quantization == "int8":
            total += n + 4 * o  # int8 weight and an fp32 scale per output row (SCB)
        else:
            total += n * DTYPE_BYTES[step.compute_dtype]
    return total


def _activation_bytes(step: StepShape) -> int:
    """Bytes per element of the residual stream: peft's prepare_model_for_kbit_training casts the embeddings
    (and norms, lm_head) of a quantised model to fp32, so every activation outside the 4-bit matmuls is fp32."""
    return 4 if step.quantization != "none" else DTYPE_BYTES[step.compute_dtype]


def _layer_elements(model: ModelShape) -> tuple[int, int]:
    """Elements per token of one decoder layer: (saved for its backward, transient during its backward).

    Saved (beyond the layer's input): Llama: 2 RMSNorms x (normalised, output) 4h, q/k/v after rotary
    3a (k, v counted at full width: transformers repeats GQA heads when a padding mask is given),
    attention output and its reshaped copy 2a, residual h, MLP gate/up/act(gate)/product 4I.
    OPT: 2 LayerNorm outputs 2h, q/k/v 3h, attention output + copy 2h, residual h, fc1 and ReLU outputs 2I.
    Transient: one I-wide gradient plus the incoming and outgoing residual gradients (I + 2h).
    """
    h, i, a = model.hidden_size, model.intermediate_size, model.attention_dim
    if model.arch == "opt":
        saved = 8 * h + 2 * i
    else:
        saved = 5 * h + 5 * a + 4 * i
    return saved, i + 2 * h


def plan_memory(model: ModelShape, step: StepShape) -> MemoryPlan:
    """Peak GPU memory of one unlearning step of ``model`` under ``step`` (see the module docstring)."""
    act = _activation_bytes(step)
    kbit = step.quantization != "none"
    unquantized_bytes = 4 if kbit else DTYPE_BYTES[step.compute_dtype]
    weights = _quantized_linear_bytes(model, step) + model.unquantized_params * unquantized_bytes
    n_lora = model.lora_params(step.lora_rank, step.lora_targets)
    lora = 4 * n_lora  # peft keeps adapter weights in fp32 (autocast_adapter_dtype=True)
    grads = lora if step.forwards_per_step > 1 else 0  # a single forward's peak comes before any LoRA gradient exists
    optimizer = 2 * lora  # AdamW exp_avg and exp_avg_sq, fp32
    tokens = step.tokens_per_forward
    h = model.hidden_size
    saved, transient = _layer_elements(model)
    if step.gradient_checkpointing:
        activations = tokens * model.num_layers * h * act  # one checkpoint (the layer input) per layer
        working = tokens * (saved + transient) * act  # one layer recomputed with its backward
    else:
        activations = tokens * model.num_layers * (h + saved) * act
        working = tokens * transient * act
    # logits: lm_head's output, log_softmax's contiguous input and output (forward); log_softmax's saved output,
    # the gradient into it and the gradient out of it (backward): 3 fp32 copies, plus the final norm's 2 saved
    # h-wide tensors. A half-precision lm_head (no quantisation) adds its own output before label_nll's .float().
    logit_bytes = LOGIT_COPIES * 4 + (0 if unquantized_bytes == 4 else unquantized_bytes)
    # a no-gradient reference forward (NPO) after the main one: the main logits and log_softmax output stay
    # alive while the reference's logits go through label_nll
    held_bytes = unquantized_bytes + 4
    reference = step.reference_sequences * step.tokens_per_sequence
    logits = max(tokens * logit_bytes, tokens * held_bytes + reference * logit_bytes) * model.vocab_size
    logits += tokens * 2 * h * act
    overhead = ALLOCATOR_OVERHEAD_GIB * GIB
    static = weights + lora + grads + optimizer + overhead
    total = static + activations + max(working, logits)

    def to_gib(n_bytes: float) -> float:
        return n_bytes / GIB

    total_gib = to_gib(total)
    return MemoryPlan(
        base_weights_gib=to_gib(weights), lora_params_gib=to_gib(lora), lora_grads_gib=to_gib(grads),
        optimizer_states_gib=to_gib(optimizer), activations_gib=to_gib(activations),
        layer_working_gib=to_gib(working), logits_gib=to_gib(logits), overhead_gib=to_gib(overhead),
        total_gib=total_gib, device_gib=device_gib(total_gib),
        peak_phase="logits" if logits >= working else "layer backward",
    )


def device_gib(allocated_gib: float, context_gib: float = CUDA_CONTEXT_GIB, fragmentation: float = FRAGMENTATION) -> float:
    """What a card must hold for a peak of ``allocated_gib``: plus allocator headroom and the CUDA context."""
    return allocated_gib * (1.0 + fragmentation) + context_gib


def fits(plan: MemoryPlan, gpu_memory_gb: float) -> bool:
    """Whether ``plan`` fits a card of ``gpu_memory_gb`` (its nominal size, read as GiB: a 12 GB card
    reports 12288 MiB)."""
    return plan.device_gib <= gpu_memory_gb


def largest_forward_that_fits(model: ModelShape, step: StepShape, gpu_memory_gb: float, sequences_per_sample: int = 1,
                              reference_per_sample: int = 0, limit: int = 4096) -> int | None:
    """The most samples per forward that fit ``gpu_memory_gb`` (None if even one does not).

    Each sample brings ``sequences_per_sample`` sequences to the forward (1 for GA, K for SGA, 2 for
    GradDiff/NPO pairs) and ``reference_per_sample`` to the reference forward (NPO: 1). ``step``'s
    ``sequences_per_forward`` and ``reference_sequences`` are ignored; its other settings are kept
    (``forwards_per_step > 1`` counts the accumulated gradients). :func:`fit_message` says what would fit.
    """
    if sequences_per_sample < 1:
        raise ValueError("sequences_per_sample must be >= 1.")

    def ok(n: int) -> bool:
        trial = step.replace(sequences_per_forward=n * sequences_per_sample, reference_sequences=n * reference_per_sample)
        return fits(plan_memory(model, trial), gpu_memory_gb)

    if not ok(1):
        return None
    lo, hi = 1, limit
    if ok(hi):
        return hi
    while hi - lo > 1:  # ok(lo), not ok(hi); memory grows with n
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def fit_message(model: ModelShape, step: StepShape, gpu_memory_gb: float, sequences_per_sample: int = 1,
                reference_per_sample: int = 0) -> str:
    """A sentence saying how many samples per forward fit, or, if none does, which settings would."""
    n = largest_forward_that_fits(model, step, gpu_memory_gb, sequences_per_sample, reference_per_sample)
    one = step.replace(sequences_per_forward=sequences_per_sample, reference_sequences=reference_per_sample)
    plan = plan_memory(model, one)
    if n is not None:
        best = plan_memory(model, step.replace(sequences_per_forward=n * sequences_per_sample,
                                               reference_sequences=n * reference_per_sample))
        return (f"Up to {n} sample(s) of {sequences_per_sample} x {step.tokens_per_sequence} tokens per forward fit "
                f"{gpu_memory_gb:g} GB (about {best.device_gib:.1f} GiB on the card; one sample: {plan.device_gib:.1f}).")
    advice = []
    lo, hi = 0, step.tokens_per_sequence  # longest sequence at which one sample fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(plan_memory(model, one.replace(tokens_per_sequence=mid)), gpu_memory_gb) else (lo, mid)
    if lo >= 1:
        advice.append(f"sequences of at most {lo} tokens (max_length / chunk_tokens)")
    if sequences_per_sample > 1:
        k = max((s for s in range(1, sequences_per_sample) if fits(plan_memory(model, one.replace(sequences_per_forward=s)), gpu_memory_gb)), default=0)
        if k:
            advice.append(f"at most {k} sequences per sample (a smaller K)")
    if not step.gradient_checkpointing and fits(plan_memory(model, one.replace(gradient_checkpointing=True)), gpu_memory_gb):
        advice.append("gradient_checkpointing=True")
    if step.quantization != "nf4" and fits(plan_memory(model, one.replace(quantization="nf4", double_quant=True)), gpu_memory_gb):
        advice.append("quantization='nf4' with double quantisation")
    hint = "; or ".join(advice) if advice else "a smaller model or a larger card"
    return (f"Even one sample of {sequences_per_sample} x {step.tokens_per_sequence} tokens does not fit {gpu_memory_gb:g} GB: "
            f"it needs about {plan.device_gib:.1f} GiB ({plan}). What would fit: {hint}.")


# ---------------------------------------------------------------- time
@dataclass(frozen=True)
class DeviceSpec:
    """Datasheet peaks of a card: dense bf16 matrix and plain fp32 TFLOP/s, memory bandwidth (TB/s), memory (GiB)."""

    name: str
    bf16_tflops: float
    fp32_tflops: float
    bandwidth_tbs: float
    memory_gib: float


DEVICES: dict[str, DeviceSpec] = {
    "h100": DeviceSpec("NVIDIA H100 80GB SXM (calibrated)", 989.0, 67.0, 3.35, 79.6),
    "h200": DeviceSpec("NVIDIA H200 SXM", 989.0, 67.0, 4.8, 139.8),
    "a100": DeviceSpec("NVIDIA A100 80GB SXM", 312.0, 19.5, 2.04, 79.2),
    "l4": DeviceSpec("NVIDIA L4", 121.0, 30.3, 0.30, 22.5),
    "rtx3060": DeviceSpec("NVIDIA GeForce RTX 3060 12GB", 25.4, 12.7, 0.36, 12.0),
    "rtx4070": DeviceSpec("NVIDIA GeForce RTX 4070 12GB", 58.3, 29.1, 0.50, 12.0),
}


def _forward_work(model: ModelShape, step: StepShape, sequences: int, reference: int) -> tuple[float, float, float, float]:
    """Work of one forward with its backward (and recompute under checkpointing), plus a no-gradient reference
    forward over ``reference`` sequences: (FLOPs at the matrix rate of the compute dtype, fp32 FLOPs at the plain
    fp32 rate, fp32 attention FLOPs at the 3xTF32 rate, bytes of 4-bit dequantisation traffic)."""
    t = step.tokens_per_sequence
    tokens, ref_tokens = sequences * t, reference * t
    passes = 3 if step.gradient_checkpointing else 2  # forward, recompute, backward (input gradients only: frozen base)
    base = 2 * model.linear_params * (passes * tokens + ref_tokens)
    n_lora = model.lora_params(step.lora_rank, step.lora_targets)
    lora = 2 * n_lora * (passes + 1) * tokens  # the backward also forms the LoRA weight gradients
    head = 2 * model.vocab_size * model.embed_dim * (2 * tokens + ref_tokens)  # forward + input gradient, not recomputed
    # causal attention: 2 T a FLOPs per token and layer forward (QK^T and AV over T/2 keys on average); backward 2.5x
    attn = 2 * t * model.attention_dim * model.num_layers * ((passes - 1) * tokens + 2.5 * tokens + ref_tokens)
    kbit = step.quantization != "none"
    half = DTYPE_BYTES[step.compute_dtype] == 2
    fast = base if half else 0.0
    slow = lora + (0.0 if half else base)  # LoRA runs in fp32 (fp32 adapters, inputs upcast)
    attention32 = 0.0
    if half and not kbit:  # a half-precision model: lm_head and flash attention at the matrix rate
        fast += head + attn
    else:  # fp32 lm_head (kbit upcast); fp32 activations, so attention runs the fp32 memory-efficient kernel
        slow += head
        attention32 = attn
    traffic = 0.0
    if kbit:
        q_bytes = 1.0 if step.quantization == "int8" else 0.5
        # each pass dequantises every weight: read it packed, write it and read it back in the compute dtype
        traffic = (passes + (1 if reference else 0)) * model.linear_params * (q_bytes + 2 * DTYPE_BYTES[step.compute_dtype])
    return fast, slow, attention32, traffic


def _device(device: str | DeviceSpec) -> DeviceSpec:
    if isinstance(device, DeviceSpec):
        return device
    try:
        return DEVICES[device]
    except KeyError:
        raise ValueError(f"Unknown device {device!r}; choose one of {list(DEVICES)} or pass a DeviceSpec.") from None


def estimate_step_seconds(model: ModelShape, step: StepShape, device: str | DeviceSpec = "h100") -> float:
    """Seconds of one optimizer step: per forward, the larger of its GPU time (FLOPs and dequantisation
    traffic at ``EFFICIENCY`` of the datasheet peaks) and the host's dispatch time (eager PyTorch launches
    kernels asynchronously, so a short forward is bound by the Python/launch overhead), summed over forwards."""
    spec = _device(device)
    fast, slow, attention32, traffic = _forward_work(model, step, step.sequences_per_forward, step.reference_sequences)
    flops_per_s = EFFICIENCY * 1e12
    gpu = (fast / (flops_per_s * spec.bf16_tflops) + slow / (flops_per_s * spec.fp32_tflops)
           + attention32 / (flops_per_s * spec.bf16_tflops / TF32X3_SLOWDOWN)
           + traffic / (BANDWIDTH_EFFICIENCY * spec.bandwidth_tbs * 1e12))
    passes = 3 if step.gradient_checkpointing else 2
    dispatch = DISPATCH_S_PER_LINEAR * model.num_layers * len(model.linear_shapes()) * passes / 3
    if step.reference_sequences:
        dispatch *= 4 / 3  # one more forward pass
    return step.forwards_per_step * max(gpu, dispatch)


def run_step(run: RunSpec, tokens_per_sequence: int | None = None) -> StepShape:
    """The step a run's spec makes: its method's sequences per forget sample (the forget sample and its extras) and
    reference forwards, its training's batch, micro-batches and LoRA, its loading's quantisation; sequences of
    ``tokens_per_sequence`` tokens (default: the world's ``max_length``, the longest a sequence is cut to)."""
    from sga.methods import method

    if run.training is None:
        raise ValueError(f"{run.method!r} is a model evaluated as it is: it has no training step to plan.")
    loss, training = method(run.method).build(run.options), run.training
    chunk = min(training.forget_per_forward or training.batch_size, training.batch_size)
    reference = {"forget": chunk, "extra": chunk * loss.extra_per_forget()}.get(loss.reference or "", 0)
    return StepShape.for_unlearning(
        training.batch_size, training.forget_per_forward, 1 + loss.extra_per_forget(), tokens_per_sequence or run.world.max_length,
        quantization=run.loading.quantization, compute_dtype=run.loading.compute_dtype, lora_rank=training.lora_rank,
        lora_targets=training.lora_targets, gradient_checkpointing=training.gradient_checkpointing, reference_sequences=reference)


def fit_run(run: RunSpec, model: ModelShape, gpu_memory_gb: float | None = None,
            tokens_per_sequence: int | None = None) -> tuple[RunSpec, str]:
    """``run`` with, for a card of ``gpu_memory_gb``, the largest ``forget_per_forward`` that fits it (the run as it is
    without a card size), and a line with its memory plan and step time on an H100. A ValueError says what would fit
    when even one forget sample per forward does not."""
    from sga.methods import method

    step = run_step(run, tokens_per_sequence)
    if gpu_memory_gb is not None:
        loss = method(run.method).build(run.options)
        per_sample = 1 + loss.extra_per_forget()
        reference = {"forget": 1, "extra": loss.extra_per_forget()}.get(loss.reference or "", 0)
        n = largest_forward_that_fits(model, step, gpu_memory_gb, per_sample, reference)
        if n is None:
            raise ValueError(f"{run.method}: {fit_message(model, step, gpu_memory_gb, per_sample, reference)}")
        training = dataclasses.replace(run.training, forget_per_forward=min(n, run.training.batch_size))
        run = dataclasses.replace(run, training=training)
        step = run_step(run, tokens_per_sequence)
    plan = plan_memory(model, step)
    line = (f"GPU plan for {run.method}: {step.forwards_per_step} forward(s) of {step.sequences_per_forward} x "
            f"{step.tokens_per_sequence} tokens per step; {plan}; about {estimate_step_seconds(model, step):.2f} s per step on an H100")
    return run, line


def steps_per_run(n_forget: int, batch_size: int, epochs: int = 1) -> int:
    """Optimizer steps of an unlearning run: ceil(n_forget / batch_size) per epoch, as sga.unlearn batches."""
    return epochs * math.ceil(n_forget / batch_size)


def estimate_run_hours(model: ModelShape, step: StepShape, steps: int, device: str | DeviceSpec = "h100") -> float:
    """Hours of ``steps`` optimizer steps (training only: no evaluation, loading or saving)."""
    return steps * estimate_step_seconds(model, step, device) / 3600.0


def run_steps(run: RunSpec, n_forget: int) -> int:
    """Optimizer steps of ``run`` over ``n_forget`` forget samples: its epochs, cut at its ``max_steps`` (the most a
    located run takes: it may stop earlier, after its crossing)."""
    steps = steps_per_run(n_forget, run.training.batch_size, run.training.epochs)
    return min(steps, run.training.max_steps or steps)


def run_hours(run: RunSpec, model: ModelShape, n_forget: int, steps: int | None = None,
              device: str | DeviceSpec = "h100") -> float:
    """Hours of ``run``'s training steps on ``device`` (``steps``, default :func:`run_steps`), each the step of its spec
    (:func:`run_step`) on ``model``; the run as it is (no card fitting), no evaluation, loading or saving."""
    return estimate_run_hours(model, run_step(run), run_steps(run, n_forget) if steps is None else steps, device)
