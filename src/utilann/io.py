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


def read_table(path: str | os.PathLike[str], columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file or a directory of Parquet shards into pandas."""
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``utilann`` metadata of a Parquet file ({} when it has none)."""
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
