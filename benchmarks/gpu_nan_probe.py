"""Probe: NaN LoRA gradients on a random Llama-shaped model, with the BOS id equal to the padding row or not."""
import json, sys, tempfile, types, torch
sys.path.insert(0, "benchmarks")
from gpu_qlora_step import save_random_llama, synthetic_pairs
from sga.models import load_model, add_lora, train_tokenizer
from sga.prompts import collate, encode_qa
from sga.inference import sequence_nll

pairs = synthetic_pairs(8, 300, 0)
tok = train_tokenizer([q + " " + a for q, a in pairs], 1000)
for pad_is_bos in (True, False):
    ids = types.SimpleNamespace(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                pad_token_id=tok.bos_token_id if pad_is_bos else tok.pad_token_id)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        save_random_llama(tmp, 2, 4096, 32000, ids)
        for attn in ("sdpa", "eager"):
            model = load_model(tmp, quantization="none", compute_dtype="float32")
            model.set_attn_implementation(attn)
            model = add_lora(model, rank=16, alpha=32)
            model.train()
            batch = {k: v.cuda() for k, v in collate([encode_qa(tok, q, a, "llama2_chat", 128) for q, a in pairs[:2]], tok.pad_token_id).items()}
            nll = sequence_nll(model, batch).mean()
            (-nll).backward()
            bad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None and not torch.isfinite(p.grad).all()]
            print(f"pad_is_bos={pad_is_bos} {attn}", json.dumps({"nll": nll.item(), "nan_grads": len(bad), "bad": bad[:2]}), flush=True)
            del model; torch.cuda.empty_cache()
