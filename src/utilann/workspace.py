"""What lives where in a working directory, and what cleaning it may delete.

Three kinds of state, with different costs of losing them:

* ``results/`` (outputs of the workflow's rules): rebuilt by Snakemake. ``make clean`` deletes
  them, including training runs' resume checkpoints (``results/<exp>/train/<run>/resume/``),
  which only save time for a run that was interrupted.
* the LLM cache (``llm.cache_dir``, formerly ``annotation.cache_dir``; default
  ``results/cache/llm``): every LLM generation ever made, content-keyed. It is the most
  expensive artifact (hours of GPU time for the paper's annotation), so ``make clean`` keeps it
  even when it lies inside ``results/``; only ``make clean-cache`` deletes it, after saying
  what it holds.
* ``.snakemake/`` (Snakemake's bookkeeping: job metadata, locks, conda envs): deleted by
  ``make clean`` with the results.

The cache location is read from the same config files the workflow reads (the embedded
``config/config.yaml`` overlaid by ``--configfile`` files, key by key as Snakemake merges
them), so the Makefile names no path.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from utilann.config import migrate_deprecated

BASE_CONFIG = Path("config/config.yaml")
SCHEMA = Path("config/schema.yaml")
RESULTS = Path("results")
SNAKEMAKE_DIR = Path(".snakemake")


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake's ``update_config``: nested mappings merge, everything else replaces."""
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(configfiles: Sequence[str | Path] = (), root: Path = Path(".")) -> dict:
    """The embedded config overlaid by ``configfiles`` in order (what the workflow sees)."""
    config: dict[str, Any] = {}
    for path in [root / BASE_CONFIG, *map(Path, configfiles)]:
        if not path.exists():
            raise FileNotFoundError(f"config file {path} not found")
        _merge(config, yaml.safe_load(path.read_text()) or {})
    migrate_deprecated(config)  # as the Snakefile does: old keys are read at their new place
    return config


def llm_cache_dir(config: Mapping[str, Any], root: Path = Path(".")) -> Path:
    """``llm.cache_dir`` of a :func:`load_config` config, else the schema's default."""
    value = (config.get("llm") or {}).get("cache_dir")
    if value:
        return root / value
    schema = yaml.safe_load((root / SCHEMA).read_text())["properties"]
    prop = schema.get("llm", {}).get("properties", {}).get("cache_dir")
    if prop and "default" in prop:
        return root / prop["default"]
    raise ValueError("the config names no LLM cache directory (llm.cache_dir)")


@dataclass(frozen=True)
class CacheFile:
    """One writer's file in the LLM cache."""

    path: Path
    size: int
    entries: int | None  # None: not a readable cache database


def _entries(path: Path) -> int | None:
    """Generations stored in one writer's SQLite file (read-only; None if unreadable)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def cache_files(cache_dir: Path) -> list[CacheFile]:
    """Every file in the cache directory (SQLite journals included, counted as size only)."""
    if not cache_dir.is_dir():
        return []
    return [
        CacheFile(p, p.stat().st_size, _entries(p) if p.suffix == ".sqlite" else None)
        for p in sorted(cache_dir.rglob("*"))
        if p.is_file()
    ]


def remove_tree_except(root: Path, keep: Path) -> list[Path]:
    """Delete ``root`` except ``keep`` (and its ancestors); return what was deleted.

    When ``keep`` is not inside ``root`` the whole of ``root`` goes; when it is ``root``
    itself, nothing does.
    """
    if not root.exists():
        return []
    root, keep = root.resolve(), keep.resolve()
    if keep == root:
        return []
    if root in keep.parents:
        removed = []
        for child in sorted(root.iterdir()):
            if child == keep:
                continue
            if child in keep.parents:
                removed += remove_tree_except(child, keep)
            else:
                shutil.rmtree(
                    child
                ) if child.is_dir() and not child.is_symlink() else child.unlink()
                removed.append(child)
        return removed
    shutil.rmtree(root)
    return [root]
