"""Run names, atomic result files (one JSON per run) and loading many runs into a table."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "numpy", "scipy", "sga")


def params_hash(params: Any, length: int = 8) -> str:
    """Short sha256 of the parameters (any JSON-able value) as canonical JSON (key order does not matter)."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, sort_keys=True, default=_jsonable)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON.")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    with open(path) as handle:
        return json.load(handle)


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The checkout's commit (with '+dirty' if it has uncommitted changes), or None outside git."""
    here = Path(cwd or Path(__file__).parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


def environment_info() -> dict[str, Any]:
    """Python, platform, package versions, device and git commit, recorded with every result."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = getattr(__import__(name), "__version__", None)
        except ImportError:
            versions[name] = None
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "packages": versions,
        "git_commit": git_commit(),
    }


def load_results(directory: str | Path, pattern: str = "*.json") -> pd.DataFrame:
    """One row per result JSON under ``directory``: its name, status, parameters (nested ones as ``part.field``)
    and summary metrics."""
    rows = []
    for path in sorted(Path(directory).rglob(pattern)):
        payload = read_json(path)
        if not isinstance(payload, dict) or "params" not in payload:
            continue
        row = {"run": payload.get("name", path.stem), "status": payload.get("status")}
        row.update(pd.json_normalize(payload["params"], sep=".").iloc[0].to_dict())
        row.update(payload.get("summary", {}))
        rows.append(row)
    return pd.DataFrame(rows)


def compare_results(before: str | Path, after: str | Path) -> pd.DataFrame:
    """Whether two folders of result JSONs hold the same numbers: one row per run name (the same parameters
    give the same name), with whether its metrics and its per-step log (wall times aside) are identical.
    Runs found on one side only have None there."""

    def runs(directory: str | Path) -> dict[str, dict]:
        found = {}
        for path in sorted(Path(directory).rglob("*.json")):
            payload = read_json(path)
            if isinstance(payload, dict) and "params" in payload and "name" in payload:
                found[payload["name"]] = payload
        return found

    def steps(result: Mapping[str, Any]) -> list[dict]:
        return [{k: v for k, v in step.items() if k != "elapsed"} for step in result.get("log", [])]

    a, b = runs(before), runs(after)
    rows = []
    for name in sorted(set(a) | set(b)):
        both = name in a and name in b
        rows.append({"run": name, "metrics_identical": a[name].get("metrics") == b[name].get("metrics") if both else None,
                     "steps_identical": steps(a[name]) == steps(b[name]) if both else None})
    return pd.DataFrame(rows).set_index("run")
