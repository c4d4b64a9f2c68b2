"""Load a benchmark from the Hugging Face hub or from a local copy laid out like the hub repository,
and write such local copies.

A local directory loads exactly like the hub id when it carries the same README.md YAML ``configs:``
block as the hub repository: ``datasets.load_dataset(dir, config, split=...)`` then resolves the same
data files, so the same code path serves the hub id and the offline copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from huggingface_hub.errors import LocalEntryNotFoundError

datasets.disable_progress_bars()  # a bar per small split would flood notebook outputs


class DataUnavailableError(RuntimeError):
    """The requested hub dataset cannot be reached (offline, or the hub is unreachable)."""


def load_hub_dataset(
    source: str, config: str, split: str = "train", cache_dir: str | os.PathLike | None = None
) -> datasets.Dataset:
    """Load ``config``/``split`` from a hub id (e.g. ``"locuslab/TOFU"``) or a local hub-layout directory.

    ``cache_dir`` is handed to ``datasets.load_dataset`` for a hub id (``None``: the datasets default cache); a
    local directory is read into memory through a private cache that is removed afterwards.
    """
    local = Path(source).expanduser()
    if local.is_dir():
        valid = hub_configs(local)
        if config not in valid:
            raise ValueError(f"Unknown config {config!r} in {local}; valid configs: {list(valid)}.")
        # datasets keys its cache for a local repository on its name and README configs, not on the files'
        # contents or place, so two directories of one layout (the mini and smoke worlds, read by parallel
        # sweep tasks) would share, and race on, one cache entry: build each load in a private cache, in memory.
        with tempfile.TemporaryDirectory(prefix="sga-datasets-") as private:
            return datasets.load_dataset(str(local), config, split=split, cache_dir=private, keep_in_memory=True)
    try:
        return datasets.load_dataset(source, config, split=split, cache_dir=cache_dir)
    except (ConnectionError, LocalEntryNotFoundError) as error:
        raise DataUnavailableError(
            f"Cannot load {source!r} (config {config!r}): it is not a local directory and the Hugging Face "
            f"hub is unreachable or HF_HUB_OFFLINE=1 ({error}). Use the 'mini' preset, which generates its "
            "data offline, or pass a local directory laid out as the hub repository (a README.md with the "
            "YAML `configs:` block next to the data files)."
        ) from error


def hub_configs(repo_dir: str | os.PathLike) -> tuple[str, ...]:
    """Config names declared in the README.md YAML ``configs:`` block of a local hub-layout directory."""
    readme = Path(repo_dir) / "README.md"
    header = _yaml_header(readme.read_text(encoding="utf-8")) if readme.is_file() else None
    configs = (header or {}).get("configs")
    if not configs:
        raise ValueError(
            f"{repo_dir} is not laid out as a hub dataset repository: it needs a README.md whose YAML "
            "header has a `configs:` block (see sga.data.hub.write_jsonl_repo / write_parquet_repo)."
        )
    return tuple(entry["config_name"] for entry in configs)


def _yaml_header(text: str) -> dict | None:
    if not text.startswith("---\n"):
        return None
    end = text.find("\n---", 4)
    return yaml.safe_load(text[4:end]) if end != -1 else None


def write_jsonl_repo(
    out_dir: str | os.PathLike,
    tables: Mapping[str, Sequence[Mapping]],
    default_config: str,
    description: str = "",
) -> Path:
    """Write the TOFU layout: ``<config>.json`` (JSON Lines) at the root, one ``train`` split each.

    The README's ``configs:`` block lists the configs in the order of ``tables`` and marks
    ``default_config`` with ``default: true``. Returns ``out_dir``.
    """
    if default_config not in tables:  # also refuses an empty ``tables``
        raise ValueError(f"default_config {default_config!r} is not one of the tables {list(tables)}.")
    entries = []
    for name in tables:
        entry = f"- config_name: {name}\n  data_files: {name}.json\n"
        entries.append(entry + ("  default: true\n" if name == default_config else ""))

    def fill(tmp: Path) -> None:
        for name, rows in tables.items():
            _check_table(name, rows)
            lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            (tmp / f"{name}.json").write_text("".join(lines), encoding="utf-8")
        _write_readme(tmp, entries, description)

    return _write_atomically(Path(out_dir), fill)


def write_parquet_repo(
    out_dir: str | os.PathLike,
    tables: Mapping[str, Mapping[str, Sequence[Mapping]]],
    description: str = "",
) -> Path:
    """Write the MUSE layout: ``<config>/<split>-00000-of-00001.parquet`` per config and split.

    The README's ``configs:`` block gives each config ``data_files: [{split: S, path: C/S-*}]``.
    Returns ``out_dir``.
    """
    if not tables or not all(tables.values()):
        raise ValueError("write_parquet_repo needs at least one config, each with at least one split.")
    entries = []
    for name, splits in tables.items():
        files = "".join(f"  - split: {split}\n    path: {name}/{split}-*\n" for split in splits)
        entries.append(f"- config_name: {name}\n  data_files:\n{files}")

    for name, splits in tables.items():  # every name checked before anything is written
        for split, rows in splits.items():
            _check_table(f"{name}/{split}", rows)

    def fill(tmp: Path) -> None:
        for name, splits in tables.items():
            (tmp / name).mkdir()
            for split, rows in splits.items():
                table = pa.Table.from_pylist(list(rows))
                pq.write_table(table, tmp / name / f"{split}-00000-of-00001.parquet")
        _write_readme(tmp, entries, description)

    return _write_atomically(Path(out_dir), fill)


def _check_table(name: str, rows: Sequence[Mapping]) -> None:
    # config and split names as the hub spells them, e.g. ``wikitext-2-raw-v1``: no path separators or dot-names
    if not re.fullmatch(r"\w[\w.-]*(/\w[\w.-]*)?", name):
        raise ValueError(f"Table name {name!r} must be letters, digits, underscores, hyphens and dots, starting with a "
                         "letter, digit or underscore (a config or split name).")
    if not rows:
        raise ValueError(f"Table {name!r} has no rows; the hub layout needs at least one row per file.")


def _write_readme(repo_dir: Path, config_entries: Sequence[str], description: str) -> None:
    body = f"\n{description.strip()}\n" if description.strip() else ""
    text = "---\nconfigs:\n" + "".join(config_entries) + "---\n" + body
    (repo_dir / "README.md").write_text(text, encoding="utf-8")


def _write_atomically(out_dir: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling directory, then swap it in, so ``out_dir`` is never half written."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the repository is an ordinary readable folder
    try:
        fill(tmp)
        _swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left there once swapped in
    return out_dir


def _swap_in(new: Path, target: Path) -> None:
    if not target.exists():
        new.rename(target)
        return
    old = new.with_name(new.name + "-old")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old)
