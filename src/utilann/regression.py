"""Compare an experiment's results with a reference run of the same experiment.

A refactoring must not change what the pipeline produces. Byte comparison of Parquet files
says nothing useful (metadata, row order and float noise differ), so :func:`compare_results`
compares the artifacts that carry the experiment's findings as tables, matched on their keys,
with a numeric tolerance:

* the LLM labels (``annotation/labels.parquet`` and each shard's),
* every run's training set (``train/<run>/trainset.parquet``),
* the metrics table (``metrics.parquet``: every retrieval and RAG figure).

Booleans and strings must be equal, numbers equal within ``atol + rtol * |reference|``, and
both sides must hold the same rows and the same files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from utilann.io import read_table


@dataclass(frozen=True)
class Artifact:
    """A family of result files and the columns that identify a row in them."""

    pattern: str
    keys: tuple[str, ...]


ARTIFACTS = (
    Artifact("annotation/labels.parquet", ("query_id", "doc_id", "strategy")),
    Artifact("annotation/shard-*/labels.parquet", ("query_id", "doc_id", "strategy")),
    Artifact("train/*/trainset.parquet", ("query_id", "doc_id")),
    Artifact("metrics.parquet", ("run", "dataset", "split", "measure")),
)


@dataclass(frozen=True)
class Difference:
    """One way a result differs from the reference."""

    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def compare_tables(
    reference: pd.DataFrame,
    result: pd.DataFrame,
    keys: Sequence[str],
    atol: float = 1e-6,
    rtol: float = 1e-6,
    max_examples: int = 3,
) -> list[str]:
    """What differs between two tables whose rows are identified by ``keys`` (empty: equal)."""
    problems = []
    if sorted(reference.columns) != sorted(result.columns):
        return [f"columns differ: {sorted(reference.columns)} vs {sorted(result.columns)}"]
    ref, new = (t.set_index(list(keys)).sort_index() for t in (reference, result))
    for name, frame in (("reference", ref), ("result", new)):
        if frame.index.has_duplicates:
            return [f"the {name} has duplicate keys {list(keys)}"]
    missing, extra = ref.index.difference(new.index), new.index.difference(ref.index)
    if len(missing):
        problems.append(f"{len(missing)} rows missing (e.g. {list(missing[:max_examples])})")
    if len(extra):
        problems.append(
            f"{len(extra)} rows not in the reference (e.g. {list(extra[:max_examples])})"
        )
    common = ref.index.intersection(new.index)
    ref, new = ref.loc[common], new.loc[common]
    for column in ref.columns:
        a, b = ref[column], new[column]
        if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a):
            x, y = a.astype(float).to_numpy(), b.astype(float).to_numpy()
            same = np.isclose(y, x, atol=atol, rtol=rtol, equal_nan=True)
        else:
            same = np.array([_equal(u, v) for u, v in zip(a, b, strict=True)], dtype=bool)
        if not same.all():
            bad = np.flatnonzero(~same)
            examples = [
                f"{common[i]}: {_show(a.iloc[i])} -> {_show(b.iloc[i])}" for i in bad[:max_examples]
            ]
            problems.append(
                f"{column}: {len(bad)} of {len(same)} rows differ ({'; '.join(examples)})"
            )
    return problems


def _show(value: object) -> str:
    """A cell for a message: numpy scalars as Python values."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _equal(u: object, v: object) -> bool:
    if isinstance(u, (list, tuple, np.ndarray)) or isinstance(v, (list, tuple, np.ndarray)):
        return list(u) == list(v)  # type: ignore[arg-type]
    if pd.isna(u) and pd.isna(v):  # type: ignore[arg-type]
        return True
    return bool(u == v)


def compare_results(
    reference: str | os.PathLike[str],
    results: str | os.PathLike[str],
    atol: float = 1e-6,
    rtol: float = 1e-6,
    artifacts: Sequence[Artifact] = ARTIFACTS,
) -> list[Difference]:
    """Every difference between two ``results/<experiment>`` directories (empty: the same).

    Raises:
        FileNotFoundError: ``reference`` holds none of the compared artifacts (a wrong path).
    """
    ref_root, new_root = Path(reference), Path(results)
    found = {
        a.pattern: (
            {p.relative_to(ref_root).as_posix() for p in ref_root.glob(a.pattern)},
            {p.relative_to(new_root).as_posix() for p in new_root.glob(a.pattern)},
        )
        for a in artifacts
    }
    if not any(ref_files for ref_files, _ in found.values()):
        raise FileNotFoundError(f"{ref_root} holds none of {[a.pattern for a in artifacts]}")
    differences: list[Difference] = []
    for artifact in artifacts:
        ref_files, new_files = found[artifact.pattern]
        for path in sorted(ref_files - new_files):
            differences.append(Difference(path, "missing from the results"))
        for path in sorted(new_files - ref_files):
            differences.append(Difference(path, "not in the reference"))
        for path in sorted(ref_files & new_files):
            problems = compare_tables(
                read_table(ref_root / path), read_table(new_root / path), artifact.keys, atol, rtol
            )
            differences += [Difference(path, p) for p in problems]
    return differences
