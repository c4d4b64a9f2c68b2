"""CPU throughput at 1 vs 2 torch threads, on the `mini` worlds (their tiny models cached in ``--cache``).

``runs``: a few GA / SGA runs of notebook 05's sweep (``trajectory=True``, ``final_evaluation=False``) per benchmark,
once in one 2-thread process, once split over two 1-thread processes side by side; prints each run's wall time and
each variant's runs per hour. ``train``: one TOFU tiny model (the target) trained for a few epochs at 1 and at 2
threads; prints seconds per epoch and the extrapolation to the preset's epochs. Timings only: the runs are made in a
world prepared at the preset's threads, their results are thrown away, and no preset changes.

    python perf/cpu_threads.py runs --cache .cache [--benchmarks tofu harry_potter] [--seeds 0 1]
    python perf/cpu_threads.py train --cache .cache [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(benchmark: str, cache: str, threads: int, runs: list[tuple[str, int]]) -> None:
    """Prepare ``benchmark``'s mini world from the cache, then time each (method, seed) run at ``threads`` threads."""
    import torch

    from sga import presets
    from sga.experiment import execute, prepare

    settings = presets.resolve(benchmark, "mini", progress=False)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        world = prepare(settings, cache, out)  # the preset's threads: the cached models' key
        print(json.dumps({"benchmark": benchmark, "threads": threads, "prepare_s": round(time.perf_counter() - began, 2)}), flush=True)
        torch.set_num_threads(threads)
        for method, seed in runs:
            began = time.perf_counter()
            execute(world, settings.run(method, seed=seed, trajectory=True, final_evaluation=False))
            print(json.dumps({"benchmark": benchmark, "threads": threads, "run": f"{method}-seed{seed}",
                              "seconds": round(time.perf_counter() - began, 2)}), flush=True)


def spawn(benchmark: str, cache: str, threads: int, runs: list[tuple[str, int]]) -> subprocess.Popen:
    spec = ",".join(f"{m}:{s}" for m, s in runs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, __file__, "worker", benchmark, cache, str(threads), spec], env=env)


def runs(cache: str, benchmarks: list[str], seeds: list[int]) -> None:
    """Per benchmark: all runs in one 2-thread process, then half each in two 1-thread processes at once."""
    todo = [(method, seed) for seed in seeds for method in ("ga", "sga")]
    for benchmark in benchmarks:
        for label, groups in (("one 2-thread process", [(2, todo)]), ("two 1-thread processes", [(1, todo[0::2]), (1, todo[1::2])])):
            began = time.perf_counter()
            for process in [spawn(benchmark, cache, threads, part) for threads, part in groups]:
                process.wait()
            wall = time.perf_counter() - began
            print(json.dumps({"benchmark": benchmark, "variant": label, "runs": len(todo), "wall_s": round(wall, 1),
                              "runs_per_hour": round(3600 * len(todo) / wall, 1), "load": os.getloadavg()}), flush=True)


def train(cache: str, epochs: int) -> None:
    """One TOFU target model (the mini shape and data), ``epochs`` epochs at 1 then 2 threads, in fresh processes."""
    for threads in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, __file__, "train-worker", cache, str(threads), str(epochs)], env=env, check=True)


def train_worker(cache: str, threads: int, epochs: int) -> None:
    import torch

    from sga import presets
    from sga.data.tofu import split_examples
    from sga.embedded import tiny_llama, train_causal_lm
    from sga.experiment import prepare

    settings = presets.resolve("tofu", "mini", progress=False)
    with tempfile.TemporaryDirectory() as out:
        world = prepare(settings, cache, out)
    torch.set_num_threads(threads)
    spec = settings.world
    examples = split_examples(world.data, "full") + split_examples(world.data, "real_authors") + split_examples(world.data, "world_facts")
    shape = {k: v for k, v in spec.tiny_model.to_dict().items() if k != "vocab_size"}
    model = tiny_llama(len(world.tokenizer), tokenizer=world.tokenizer, seed=spec.world_seed, max_position_embeddings=spec.max_length, **shape)
    began = time.perf_counter()
    train_causal_lm(model, world.tokenizer, examples, spec.template, epochs=epochs, lr=spec.tiny_training.lr,
                    batch_size=spec.tiny_training.batch_size, seed=spec.world_seed, max_length=spec.max_length, progress=False)
    per_epoch = (time.perf_counter() - began) / epochs
    print(json.dumps({"threads": threads, "examples": len(examples), "epochs": epochs, "s_per_epoch": round(per_epoch, 1),
                      "preset_epochs": spec.tiny_training.epochs, "extrapolated_s": round(per_epoch * spec.tiny_training.epochs),
                      "load": os.getloadavg()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("runs")
    run_parser.add_argument("--cache", required=True)
    run_parser.add_argument("--benchmarks", nargs="+", default=["tofu", "harry_potter"])
    run_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    train_parser = sub.add_parser("train")
    train_parser.add_argument("--cache", required=True)
    train_parser.add_argument("--epochs", type=int, default=2)
    for name, nargs in (("worker", 4), ("train-worker", 3)):
        sub.add_parser(name).add_argument("args", nargs=nargs)
    args = parser.parse_args()
    if args.command == "runs":
        runs(str(Path(args.cache).resolve()), args.benchmarks, args.seeds)
    elif args.command == "train":
        train(str(Path(args.cache).resolve()), args.epochs)
    elif args.command == "worker":
        benchmark, cache, threads, spec = args.args
        worker(benchmark, cache, int(threads), [(m, int(s)) for m, s in (item.split(":") for item in spec.split(","))])
    else:
        cache, threads, epochs = args.args
        train_worker(cache, int(threads), int(epochs))


if __name__ == "__main__":
    main()
