"""GPU speed and memory: the `paper` code path on a Llama-2-7B-shaped model in 4-bit, a few unlearning steps.

A random-weight model with Llama-2-7B's shape is saved locally and loaded through
``sga.models.load_model`` exactly as a hub checkpoint would be (NF4, double quantisation, bf16
compute), then ``sga.experiment.start_model`` adds LoRA r=16 on all linear layers with gradient
checkpointing, and ``sga.unlearn.unlearn`` runs GA and SGA steps. Prints and writes a JSON of
seconds per step, tokens per second and peak GPU memory per variant.

    python perf/gpu_qlora_step.py --out results.json [--layers 32] [--seq-len 512]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sga import presets
from sga.experiment import start_model
from sga.inference import generate
from sga.embedded import train_tokenizer
from sga.methods import make_loss
from sga.models import count_parameters
from sga.prompts import QA
from sga.results import environment_info
from sga.unlearn import UnlearnConfig, unlearn

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
WORDS = "author novel city prize mother father garden winter river letter silent house story north light year".split()


def synthetic_pairs(n: int, words: int, seed: int) -> list[QA]:
    rng = random.Random(seed)
    return [QA(f"Tell me about item {i}.", " ".join(rng.choice(WORDS) for _ in range(words))) for i in range(n)]


def save_random_llama(path: Path, layers: int, hidden: int, vocab: int, tokenizer) -> int:
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 11008 // 4096, num_hidden_layers=layers,
                         num_attention_heads=hidden // 128, num_key_value_heads=hidden // 128, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path)
    del model
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return n_params


def _sync_and_peak(reset: bool = False) -> float:
    if DEVICE != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return peak


def measure(model, tokenizer, method: str, forget, pool, seq_len: int, batch: int, per_forward: int | None, steps: int, warmup: int) -> dict:
    loss = make_loss(method, **({"rate": -0.4, "k": 4} if method == "sga" else {}))
    n_extra = loss.extra_per_forget()
    index = np.arange(len(forget) * n_extra).reshape(len(forget), n_extra) % len(pool) if n_extra else None
    cfg = UnlearnConfig(lr=1e-5, epochs=1, batch_size=batch, forget_per_forward=per_forward, max_length=seq_len,
                        template="llama2_chat", progress=False)
    _sync_and_peak(reset=True)
    log = unlearn(model, tokenizer, loss, forget[: batch * (steps + warmup)], cfg, pool, index[: batch * (steps + warmup)] if n_extra else None)
    peak = _sync_and_peak()
    times = [s["elapsed"] for s in log.steps]
    if log.status != "completed" or len(times) <= warmup:
        return {"method": method, "status": log.status, "message": log.message, "first_step": log.steps[0] if log.steps else None}
    per_step = (times[-1] - times[warmup - 1]) / (len(times) - warmup)
    sequences = batch * (1 + n_extra)
    return {"method": method, "sequences_per_step": sequences, "tokens_per_sequence": seq_len, "forget_per_forward": per_forward,
            "s_per_step": round(per_step, 3), "tokens_per_s": round(sequences * seq_len / per_step), "status": log.status,
            "peak_gib": round(peak, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    report: dict = {"environment": environment_info(), "layers": args.layers, "hidden": args.hidden, "seq_len": args.seq_len, "runs": []}
    pairs = synthetic_pairs(200, 2 * args.seq_len, seed=0)
    tokenizer = train_tokenizer([e.question + " " + e.answer for e in pairs], vocab_size=1000)
    forget, pool = pairs[:100], pairs[100:]
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        began = time.perf_counter()
        report["parameters"] = save_random_llama(Path(tmp), args.layers, args.hidden, 32000, tokenizer)
        tokenizer.save_pretrained(tmp)
        report["save_seconds"] = round(time.perf_counter() - began, 1)
        params = presets.resolve("tofu", "paper")
        began = time.perf_counter()
        model = start_model(tmp, params)  # nf4 + double quant, bf16 compute, LoRA r=16 all-linear, checkpointing
        report["load_nf4_lora_seconds"] = round(time.perf_counter() - began, 1)
    report["weights_gib_4bit_with_lora"] = round(torch.cuda.memory_allocated() / 2**30, 2) if DEVICE == "cuda" else None
    report["lora_parameters"] = count_parameters(model)["trainable"]
    variants = [("ga", 4, None), ("sga", 4, None), ("sga", 4, 1), ("ga", 1, None)]
    for method, batch, per_forward in variants:
        result = measure(model, tokenizer, method, forget, pool, args.seq_len, batch, per_forward, args.steps, warmup=1)
        report["runs"].append(result)
        print(json.dumps(result), flush=True)
    began = time.perf_counter()
    texts = generate(model, tokenizer, [e.question for e in forget[:8]], "llama2_chat", max_new_tokens=64, batch_size=8)
    report["generate_8x64_seconds"] = round(time.perf_counter() - began, 2)
    report["generated_chars"] = sum(len(t) for t in texts)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ("runs", "environment")}, indent=1))

if __name__ == "__main__":
    main()
