"""TOFU end to end: data, target/retain models, reference rows, one run per method, a results table.

The embedded world (``"embedded"`` data and models) and the hub world (``locuslab/TOFU`` and the
open-unlearning checkpoints, or local copies of them) go through the same functions.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch

from sga.data.tofu import generate_tofu, load_tofu, tofu_splits
from sga.experiment import cached_result, peak_memory_gb, run_params, run_unlearning, start_model, timed
from sga.metrics.tofu import evaluate_tofu, forget_quality, summary_row
from sga.models import build_or_load_tiny_qa_model, build_or_load_tokenizer, load_model, load_tokenizer
from sga.presets import EMBEDDED
from sga.results import params_hash, run_name

_EVAL_SPLITS = {"forget": "forget_perturbed", "retain": "retain_perturbed", "real_authors": "real_authors", "world_facts": "world_facts"}


@dataclass
class TofuSetup:
    """Everything the runs share: parameters, loaded splits, tokenizer, start/retain model sources, folders."""

    params: dict[str, Any]
    data: dict[str, Any]
    tokenizer: Any
    target_model: str
    retain_model: str
    out_dir: Path

    def pairs(self, split: str) -> list[tuple[str, str]]:
        """(question, answer) pairs of one loaded split."""
        rows = self.data[split]
        return list(zip(rows["question"], rows["answer"]))

    def eval_splits(self) -> dict[str, Any]:
        """The four evaluation splits, cut to ``eval_max_items`` rows when set."""
        limit = self.params["eval_max_items"]
        splits = {kind: self.data[name] for kind, name in _EVAL_SPLITS.items()}
        return {k: (v.select(range(min(limit, len(v)))) if limit else v) for k, v in splits.items()}


def data_source(params: Mapping[str, Any], cache_dir: Path) -> str:
    """The dataset location: the generated mini TOFU (made once, cached by its parameters) or the given source."""
    if params["data_source"] != EMBEDDED:
        return params["data_source"]
    spec = {**params["data"], "seed": params["seed"]}
    path = Path(cache_dir) / f"tofu-data-{params_hash(spec)}"
    if not path.exists():
        generate_tofu(path, **spec)
    return str(path)


def _tiny_models(params: Mapping[str, Any], data: dict[str, Any], cache_dir: Path) -> tuple[Any, str, str]:
    """Tokenizer, target and retain models of the embedded world, trained once and cached."""
    background = [*zip(data["real_authors"]["question"], data["real_authors"]["answer"]),
                  *zip(data["world_facts"]["question"], data["world_facts"]["answer"])]
    full = list(zip(data["full"]["question"], data["full"]["answer"]))
    retain = list(zip(data["retain"]["question"], data["retain"]["answer"]))
    corpus = [f"{q} {a}" for q, a in full + background]
    for name in ("forget_perturbed", "retain_perturbed", "real_authors", "world_facts"):
        corpus += [f"{row['paraphrased_answer'] if 'paraphrased_answer' in row else ''} {' '.join(row['perturbed_answer'])}" for row in data[name]]
    model_cfg, train_cfg = dict(params["tiny_model"]), dict(params["tiny_training"])
    tokenizer = build_or_load_tokenizer(corpus, model_cfg.pop("vocab_size"), cache_dir, seed=params["seed"])
    model_kwargs = {**model_cfg, "seed": params["seed"], "max_position_embeddings": params["max_length"]}
    train_kwargs = {**train_cfg, "seed": params["seed"], "max_length": params["max_length"], "progress": params["progress"]}
    build = lambda name, pairs: str(build_or_load_tiny_qa_model(name, pairs, tokenizer, cache_dir, params["template"], model_kwargs, train_kwargs))  # noqa: E731
    return tokenizer, build("tofu-target", full + background), build("tofu-retain", retain + background)


def prepare(params: Mapping[str, Any], cache_dir: str | Path, out_dir: str | Path) -> TofuSetup:
    """Load (or generate) the data and load (or train) the tokenizer, target and retain models.

    On a CPU this also fixes torch's thread count to ``cpu_threads`` (results depend on it).
    """
    params = dict(params)
    if not torch.cuda.is_available() and params["cpu_threads"]:
        torch.set_num_threads(params["cpu_threads"])
    source = data_source(params, Path(cache_dir))
    configs = {"full": "full", **tofu_splits(params["forget_split"])}
    data = {name: load_tofu(source, config) for name, config in configs.items()}
    if params["target_model"] == EMBEDDED or params["retain_model"] == EMBEDDED:
        if not params["target_model"] == params["retain_model"] == EMBEDDED:
            raise ValueError("Use 'embedded' for both target_model and retain_model, or hub ids/paths for both.")
        tokenizer, target, retain = _tiny_models(params, data, Path(cache_dir))
    else:
        tokenizer, target, retain = load_tokenizer(params["target_model"]), params["target_model"], params["retain_model"]
    return TofuSetup(params, data, tokenizer, target, retain, Path(out_dir) / "tofu")


def samples(setup: TofuSetup, n: int = 3) -> pd.DataFrame:
    """A few forget questions with their answer, paraphrase and first perturbed answer."""
    rows = setup.data["forget_perturbed"].select(range(min(n, len(setup.data["forget_perturbed"]))))
    return pd.DataFrame({"question": rows["question"], "answer": rows["answer"],
                         "paraphrased_answer": rows["paraphrased_answer"],
                         "perturbed_answer[0]": [p[0] for p in rows["perturbed_answer"]]})


def _evaluate(setup: TofuSetup, model: torch.nn.Module, retain_truth_ratios: Any) -> dict[str, Any]:
    p = setup.params
    return evaluate_tofu(model, setup.tokenizer, setup.eval_splits(), p["template"], retain_truth_ratios,
                         gen_max_new_tokens=p["gen_max_new_tokens"], batch_size=p["eval_batch_size"], max_length=p["max_length"])


def _free(model: torch.nn.Module) -> None:
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reference(setup: TofuSetup, which: str, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate the target or the retain model as they are (the reference rows of the table)."""
    if which not in ("target", "retain"):
        raise ValueError(f"which must be 'target' or 'retain'; got {which!r}.")
    params = run_params(setup.params, which)
    name = run_name(params)

    def compute() -> dict[str, Any]:
        model = load_model(setup.target_model if which == "target" else setup.retain_model,
                           quantization=params["quantization"], compute_dtype=params["compute_dtype"])
        retain_tr = None if which == "retain" else retain_truth_ratios(setup)
        metrics, seconds = timed(lambda: _evaluate(setup, model, retain_tr))
        if which == "retain":  # the retain model against its own truth ratios: p = 1 by construction
            metrics["forget_quality"] = forget_quality(metrics["forget"]["truth_ratios"], metrics["forget"]["truth_ratios"])
        _free(model)
        return {"name": name, "params": params, "status": "completed", "summary": summary_row(metrics),
                "metrics": metrics, "eval_seconds": seconds, "peak_memory_gb": peak_memory_gb()}

    return cached_result(setup.out_dir / f"{name}.json", compute, overwrite)


def retain_truth_ratios(setup: TofuSetup) -> list[float]:
    """The retain model's truth ratios on the forget split: the reference of forget quality."""
    return reference(setup, "retain")["metrics"]["forget"]["truth_ratios"]


def run_method(setup: TofuSetup, method: str, overwrite: bool = False) -> dict[str, Any]:
    """Unlearn the forget split from the target with ``method``, evaluate, and keep one result JSON."""
    params = run_params(setup.params, method)
    name = run_name(params)

    def compute() -> dict[str, Any]:
        retain_tr = retain_truth_ratios(setup)
        model = start_model(setup.target_model, params)
        log, train_seconds = timed(lambda: run_unlearning(model, setup.tokenizer, method, params, setup.pairs("forget"),
                                                          setup.pairs("retain"), setup.out_dir / name,
                                                          progress=setup.params["progress"]))
        result = {"name": name, "params": params, "status": log.status, "message": log.message,
                  "log": log.steps, "train_seconds": train_seconds}
        if log.status == "completed":
            metrics, eval_seconds = timed(lambda: _evaluate(setup, model, retain_tr))
            result.update(summary=summary_row(metrics), metrics=metrics, eval_seconds=eval_seconds)
        result["peak_memory_gb"] = peak_memory_gb()
        _free(model)
        return result

    return cached_result(setup.out_dir / f"{name}.json", compute, overwrite)


def results_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: forget quality, model utility, forget and retain ROUGE-L, status."""
    rows = [{"model": label, "status": r["status"], **r.get("summary", {})} for label, r in results.items()]
    return pd.DataFrame(rows).set_index("model")


def answers_table(results: Mapping[str, Mapping[str, Any]], setup: TofuSetup, n: int = 2) -> pd.DataFrame:
    """The first ``n`` forget questions with each model's generated answer."""
    forget = setup.eval_splits()["forget"]
    table = {"question": forget["question"][:n], "answer": forget["answer"][:n]}
    for label, r in results.items():
        if "metrics" in r:
            table[label] = r["metrics"]["forget"]["generations"][:n]
    return pd.DataFrame(table)

