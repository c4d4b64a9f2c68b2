"""What a teacher-forced proxy of each benchmark's forgetting reading would cost, against the reading itself.

    HF_HUB_OFFLINE=1 python perf/proxy_cost.py [--benchmarks tofu ...] [--repeats 5]

The forgetting reading (greedy generations scored against references) on the items a per-epoch reading uses:
TOFU, ROUGE-L recall of the greedy answers to the first ``path_rouge_items`` forget questions; Harry Potter,
leakage (BLEU, ROUGE-L recall) of one prompt per forget passage at the shortest prompt length; MUSE-News, VerbMem
on D_f. The proxy reads the same references teacher-forced, in one forward per batch: the share of reference
tokens where the model's argmax is the reference token, and their mean NLL. Both on the target model with a fresh
LoRA adapter (what a reading sees), timed alternately, medians of ``--repeats``; beside them, one whole per-epoch
reading (``evaluate_along``) and the full evaluation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any, Callable

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCHMARKS = ("tofu", "harry_potter", "muse_news")


@torch.no_grad()
def teacher_forced(model, tokenizer, examples, template: str, batch_size: int, max_length: int) -> dict[str, float]:
    """Mean over examples of the share of scored tokens the model's argmax gets right, and of their mean NLL."""
    from sga.inference import label_nll, model_device, to_device
    from sga.prompts import collate, encode_examples

    model.eval()
    accuracy, nll = [], []
    for start in range(0, len(examples), batch_size):
        feats = encode_examples(tokenizer, examples[start : start + batch_size], template, max_length)
        batch = to_device(collate(feats, tokenizer.pad_token_id), model_device(model))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        hits = (logits[:, :-1].argmax(-1) == labels) & mask
        accuracy += (hits.sum(1) / mask.sum(1)).tolist()
        total, count = label_nll(logits, batch["labels"])
        nll += (total / count).tolist()
    return {"token_accuracy": float(np.mean(accuracy)), "answer_nll": float(np.mean(nll))}


def readings(world, model, run) -> tuple[Callable[[], Any], Callable[[], Any], int]:
    """(the forgetting reading, its teacher-forced proxy, items) of ``world``'s benchmark."""
    from sga.inference import generate
    from sga.metrics.harry_potter import completion_leakage
    from sga.metrics.muse_news import evaluate_verbmem, verbmem_reference
    from sga.metrics.text import rouge_l_recall
    from sga.prompts import QA, Completion

    tok, ev, spec = world.tokenizer, run.evaluation, world.spec
    batch = ev.eval_batch_size
    if world.benchmark.name == "tofu":
        rows = list(world.data["forget_perturbed"])[: ev.path_rouge_items]
        questions, answers = [r["question"] for r in rows], [r["answer"] for r in rows]
        real = lambda: np.mean(rouge_l_recall(generate(model, tok, questions, spec.template, ev.gen_max_new_tokens, batch), answers))  # noqa: E731
        examples = [QA(q, a) for q, a in zip(questions, answers)]
    elif world.benchmark.name == "harry_potter":
        from sga.data.harry_potter import INSTRUCTIONS

        rows = world.data["completions"][min(spec.prompt_lengths)][:: len(INSTRUCTIONS)]
        real = lambda: completion_leakage(model, tok, rows, spec.template, ev.leakage_max_new_tokens, batch)["rouge_l_recall"]  # noqa: E731
        examples = [Completion(r["prompt"], " " + r["response"]) for r in rows]
    else:
        rows = list(world.data["verbmem_forget"])
        real = lambda: evaluate_verbmem(model, tok, rows, batch_size=batch)["score"]  # noqa: E731
        examples = [Completion(r["prompt"], verbmem_reference(tok, r["gt"])) for r in rows]
    proxy = lambda: teacher_forced(model, tok, examples, spec.template, batch, spec.max_length)  # noqa: E731
    return real, proxy, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--cache-dir", default="/tmp/base/.cache", help="cached data and tiny models (read only)")
    args = parser.parse_args()

    from sga import experiment, presets

    out_dir = tempfile.mkdtemp(prefix="sga-proxy-")
    lines = [f"{'benchmark':<14}{'items':>6}{'reading s':>11}{'proxy s':>9}{'ratio':>7}{'evaluate_along s':>18}{'evaluate s':>12}  values"]
    for name in args.benchmarks:
        world = experiment.prepare(presets.resolve(name, args.preset, progress=False), args.cache_dir, out_dir)
        stat = experiment.reference_statistic(world)
        run = world.settings.run("ga", seed=0)
        model = experiment.start_model(world.models["target"], run)
        real, proxy, items = readings(world, model, run)
        real(), proxy()  # warm
        times: dict[str, list[float]] = {"real": [], "proxy": []}
        values: dict[str, Any] = {}
        for _ in range(args.repeats):
            for key, fn in (("real", real), ("proxy", proxy)):
                began = time.perf_counter()
                values[key] = fn()
                times[key].append(time.perf_counter() - began)
        whole = {}
        for key, fn in (("along", world.benchmark.evaluate_along), ("full", world.benchmark.evaluate)):
            began = time.perf_counter()
            fn(world, model, run, stat)
            whole[key] = time.perf_counter() - began
        r, p = statistics.median(times["real"]), statistics.median(times["proxy"])
        shown = f"reading {float(values['real']):.3f}, " + ", ".join(f"{k} {v:.3f}" for k, v in values["proxy"].items())
        lines.append(f"{name:<14}{items:>6}{r:>11.2f}{p:>9.2f}{r / p:>7.1f}{whole['along']:>18.2f}{whole['full']:>12.2f}  {shown}")
        print(lines[-1], flush=True)
    print(f"\nmedians of {args.repeats} alternating repeats, seconds per evaluation\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
