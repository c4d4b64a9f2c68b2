"""Rerun a notebook over a set of papermill parameter files, one output folder per run.

    python -m sga.batch notebooks/02_tofu_unlearning.ipynb notebooks/params/tofu/*.yaml --out outputs

Each run gets ``OUT/<notebook>/<params file stem>/`` holding the executed notebook; the notebook's
``output_dir`` and ``figures_dir`` parameters (when it has them) point inside that folder, so its
result JSONs and figures land there too. A failed run does not stop the others; failures are
listed at the end and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import papermill as pm
import yaml


def run_batch(notebook: Path, param_files: list[Path], out: Path, base: Path | None = None, kernel: str = "python3") -> list[tuple[Path, str]]:
    """Execute ``notebook`` once per parameter file; return the (file, error) pairs of failed runs."""
    declared = {p for p in pm.inspect_notebook(str(notebook))}
    defaults = yaml.safe_load(base.read_text()) if base else {}
    failures: list[tuple[Path, str]] = []
    for param_file in param_files:
        run_dir = (out / notebook.stem / param_file.stem).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        params = {**(defaults or {}), **(yaml.safe_load(param_file.read_text()) or {})}
        unknown = sorted(set(params) - declared)
        if unknown:  # papermill would inject them and the notebook would silently ignore them
            failures.append((param_file, f"ValueError: unknown parameters {unknown}; {notebook.name} declares {sorted(declared)}"))
            print(f"[batch] {notebook.name} with {param_file.name}: FAILED, unknown parameters {unknown}", flush=True)
            continue
        for key, sub in (("output_dir", "runs"), ("figures_dir", "figures")):
            if key in declared:
                params.setdefault(key, str(run_dir / sub))
        began = time.perf_counter()
        print(f"[batch] {notebook.name} with {param_file.name} -> {run_dir}", flush=True)
        try:
            pm.execute_notebook(str(notebook), str(run_dir / notebook.name), parameters=params, kernel_name=kernel, cwd=str(notebook.parent))
            print(f"[batch]   done in {time.perf_counter() - began:.0f} s", flush=True)
        except Exception as error:  # a failed run must not stop the batch
            detail = getattr(error, "evalue", None) or (str(error).strip().splitlines() or [""])[0]
            failures.append((param_file, f"{getattr(error, 'ename', type(error).__name__)}: {detail}"))
            print(f"[batch]   FAILED after {time.perf_counter() - began:.0f} s (the executed notebook keeps the traceback)", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("params", type=Path, nargs="+", help="papermill parameter files (YAML)")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    parser.add_argument("--base", type=Path, help="YAML of parameters shared by every run (each file overrides it)")
    parser.add_argument("--kernel", default="python3")
    args = parser.parse_args(argv)
    failures = run_batch(args.notebook, args.params, args.out, args.base, args.kernel)
    print(f"[batch] {len(args.params) - len(failures)} of {len(args.params)} runs succeeded")
    for param_file, error in failures:
        print(f"[batch] FAILED {param_file}: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
