"""Rename result files written before run specs were typed (one flat dict of parameters per run) to their
:meth:`~sga.specs.RunSpec.name`, and rewrite their ``params`` as the spec's fields; metrics and logs are kept as
they are. Run once on a result folder made before this change:

    python -m sga.migrate runs

Each old file's parameters are resolved again under its preset into the run spec the code now builds for the same
run; its adapter folder moves with it. A file already in the new form is left alone, and an old file whose new name
already exists is removed only if both hold the same metrics (the old names kept some settings that define no run,
such as Harry Potter's list of extra SGA rates, so two old files can be one run now).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

from sga import methods, presets
from sga.results import read_json, write_json_atomic
from sga.specs import RunSpec

# parameters added after results existed, at the value the old files' runs had when they lacked them
_ADDED_LATER = {"final_evaluation": True, "finetune_target": False, "embedding_model": None}


def migrated_spec(old: Mapping[str, Any]) -> RunSpec:
    """The run spec the code now builds for the run that the old flat ``params`` describe."""
    names = set(presets.parameter_names(old["benchmark"]))
    params = {**{k: v for k, v in _ADDED_LATER.items() if k in names}, **old}
    benchmark, preset, method = params.pop("benchmark"), params.pop("preset"), params.pop("method")
    if params.get("finetune_target") and "target_finetune" in params:  # that fine-tune loaded the base as the runs did
        params["target_finetune"] = {**params["target_finetune"], "quantization": params["quantization"], "compute_dtype": params["compute_dtype"]}
    params = {key: "none" if value is None else value for key, value in params.items()}  # None would keep the preset's value
    option_names = set(methods.option_defaults())
    options = {key: params.pop(key) for key in list(params) if key in option_names}
    settings = presets.resolve(benchmark, preset, **params)
    if method in methods.METHODS:
        return settings.run(method, **{key: value for key, value in options.items() if key in methods.options_of(method)})
    return settings.reference(method)


def migrate(directory: str | Path) -> dict[str, int]:
    """Rename every old-form result JSON under ``directory`` (see the module docstring); returns the counts."""
    counts = {"renamed": 0, "already new": 0, "duplicates removed": 0}
    for path in sorted(Path(directory).rglob("*.json")):
        payload = read_json(path)
        if not isinstance(payload, dict) or "params" not in payload or "benchmark" not in payload["params"]:
            counts["already new"] += isinstance(payload, dict) and "params" in payload
            continue
        spec = migrated_spec(payload["params"])
        target = path.with_name(f"{spec.name()}.json")
        if target.exists() and target != path:
            if read_json(target).get("metrics") != payload.get("metrics"):
                raise RuntimeError(f"{path.name} and {target.name} are the same run now but hold different metrics; keep one by hand.")
            path.unlink()
            counts["duplicates removed"] += 1
            continue
        old_run_dir, new_run_dir = path.with_suffix(""), target.with_suffix("")
        if old_run_dir.is_dir() and not new_run_dir.exists():
            shutil.move(old_run_dir, new_run_dir)
        write_json_atomic(target, {**payload, "name": spec.name(), "params": spec.to_dict()})
        if target != path:
            path.unlink()
        counts["renamed"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="a result folder (e.g. runs)")
    args = parser.parse_args(argv)
    print(", ".join(f"{n} {what}" for what, n in migrate(args.directory).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
