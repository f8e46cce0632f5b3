"""Parquet and TREC I/O shared by every stage.

Every artifact the pipeline writes goes through :func:`write_table`, so that three promises
hold everywhere: the table matches its declared schema (``utilann.schemas``), the
hyper-parameters that produced it travel inside the file as key-value metadata, and a crash
never leaves a half-written file behind (write to a temporary sibling, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"utilann"


class SchemaError(ValueError):
    """A table does not match the schema declared for its artifact."""


class CorruptArtifactError(ValueError):
    """A Parquet file cannot be read: truncated, overwritten or not Parquet at all.

    Files this pipeline writes appear atomically, so a damaged one was cut short elsewhere (an
    interrupted copy or sync, a full disk) or edited by hand; the message says how to rebuild it.
    """


@contextmanager
def _reading(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn pyarrow's errors for a damaged Parquet file into one that names it and the fix.

    A missing file stays a FileNotFoundError: that is a different problem.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as err:
        raise CorruptArtifactError(
            f"{path}: not a readable Parquet file ({err}). It was probably cut short (an "
            "interrupted copy, a full disk) or changed by hand: delete it and rerun "
            "Snakemake, which rebuilds it with the rule that writes it (or run "
            f"`snakemake --forcerun {path}`)"
        ) from None


def conform(df: pd.DataFrame, schema: pa.Schema, what: str = "table") -> pa.Table:
    """Convert ``df`` to ``schema`` (column order and dtypes), or say exactly what is wrong."""
    missing = [name for name in schema.names if name not in df.columns]
    if missing:
        raise SchemaError(f"{what}: missing column(s) {missing}; expected {schema.names}")
    try:
        return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise SchemaError(f"{what}: cannot convert to {schema}: {err}") from err


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and move it into place only on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_table(
    data: pd.DataFrame | pa.Table,
    path: str | os.PathLike[str],
    schema: pa.Schema | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write ``data`` as Parquet, checked against ``schema``, with JSON metadata.

    The metadata (hyper-parameters, model names, code versions) is stored under the
    ``utilann`` key of the Parquet footer: ``utilann inspect`` and :func:`read_metadata`
    show it, and pyarrow exposes it as ``schema.metadata``.
    """
    if isinstance(data, pd.DataFrame):
        table = (
            conform(data, schema, str(path))
            if schema is not None
            else pa.Table.from_pandas(data, preserve_index=False)
        )
    else:
        table = data.select(schema.names).cast(schema) if schema is not None else data
    if metadata:
        existing = dict(table.schema.metadata or {})
        existing[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(existing)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def parquet_files(path: str | os.PathLike[str]) -> list[Path]:
    """A Parquet file, or the ``*.parquet`` shards of a directory in name order."""
    path = Path(path)
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]


def read_arrow(path: str | os.PathLike[str], columns: Iterable[str] | None = None) -> pa.Table:
    """Read a Parquet file or a directory of Parquet shards as one Arrow table.

    Shards are read one by one, so that a damaged one is named (:class:`CorruptArtifactError`).
    """
    cols = list(columns) if columns else None
    tables = []
    for file in parquet_files(path):
        with _reading(file):
            tables.append(pq.read_table(file, columns=cols))
    if not tables:
        raise FileNotFoundError(f"{path}: no Parquet files")
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def read_table(path: str | os.PathLike[str], columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file or a directory of Parquet shards into pandas."""
    return read_arrow(path, columns).to_pandas()


def parquet_rows(path: str | os.PathLike[str]) -> int:
    """Row count of a Parquet file from its footer (nothing else is read)."""
    with _reading(path):
        return pq.ParquetFile(path).metadata.num_rows


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``utilann`` metadata of a Parquet file ({} when it has none)."""
    with _reading(path):
        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def write_trec_run(run: pd.DataFrame, path: str | os.PathLike[str], tag: str) -> Path:
    """Write a run table (query_id, doc_id, rank, score) in the six-column TREC format."""
    ordered = run.sort_values(["query_id", "rank"], kind="stable")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for qid, did, rank, score in ordered[["query_id", "doc_id", "rank", "score"]].itertuples(
            index=False
        ):
            out.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")
    return Path(path)
