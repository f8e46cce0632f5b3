"""Dataset ingestion: BEIR, MS MARCO TSV and Tevatron jsonl layouts -> Parquet tables.

Each reader validates while it reads, because a bad line found hours later inside a training
job is far more expensive than a clear error at ingestion: every error names the file, the
line and what is wrong. Ingestion writes into a temporary directory that is renamed into place
only when everything succeeded, so no half-written dataset is ever left behind.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from . import schemas
from .io import write_table
from .qa import load_beir_answers

FORMATS = ("beir", "msmarco", "tevatron")

LAYOUT_HELP = {
    "beir": "corpus.jsonl ({_id, title, text} per line), queries.jsonl ({_id, text}) and "
    "qrels/<split>.tsv (header 'query-id corpus-id score')",
    "msmarco": "collection.tsv (pid<TAB>text), queries.<split>.tsv (qid<TAB>text) and "
    "qrels.<split>.tsv (TREC 'qid 0 pid rel' or 'qid<TAB>pid<TAB>rel')",
    "tevatron": "train.jsonl ({query_id, query, positive_passages: [{docid, title, text}], "
    "negative_passages: [...]} per line)",
}


class DatasetError(ValueError):
    """Malformed dataset input; the message names the file and line."""


@dataclass
class Dataset:
    """An ingested dataset held in memory: corpus rows, queries and qrels."""

    corpus: list[tuple[str, str, str]] = field(default_factory=list)
    queries: dict[str, str] = field(default_factory=dict)
    qrels: list[tuple[str, str, int, str]] = field(default_factory=list)
    answers: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["query_id", "answers"])
    )
    negatives: list[tuple[str, str, int]] = field(default_factory=list)


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {line[:60]!r}")
            yield lineno, record


def _field(record: dict, key: str, path: Path, lineno: int) -> str:
    if key not in record:
        raise DatasetError(f"{path}:{lineno}: missing field {key!r}")
    value = record[key]
    return "" if value is None else str(value)


def _add_doc(seen: dict[str, str], doc_id: str, where: str) -> None:
    if doc_id in seen:
        raise DatasetError(
            f"{where}: duplicate document id {doc_id!r} (first seen at {seen[doc_id]})"
        )
    seen[doc_id] = where


def read_beir(root: Path) -> Dataset:
    """Read a BEIR directory (corpus.jsonl, queries.jsonl, qrels/*.tsv, optional answers.jsonl)."""
    data = Dataset()
    seen: dict[str, str] = {}
    corpus = root / "corpus.jsonl"
    for lineno, rec in tqdm(_jsonl(corpus), desc=f"corpus {root.name}", unit=" docs"):
        doc_id = _field(rec, "_id", corpus, lineno)
        _add_doc(seen, doc_id, f"{corpus}:{lineno}")
        data.corpus.append(
            (doc_id, str(rec.get("title") or ""), _field(rec, "text", corpus, lineno))
        )
    queries = root / "queries.jsonl"
    for lineno, rec in _jsonl(queries):
        data.queries[_field(rec, "_id", queries, lineno)] = _field(rec, "text", queries, lineno)
    qrel_files = sorted((root / "qrels").glob("*.tsv"))
    if not qrel_files:
        raise DatasetError(f"{root / 'qrels'}: no <split>.tsv qrels files")
    for path in qrel_files:
        with open(path, encoding="utf-8") as handle:
            for lineno, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
                if lineno == 1 and row and row[0] == "query-id":
                    continue
                data.qrels.append(_qrel(row, path, lineno, path.stem))
    if (root / "answers.jsonl").exists():
        data.answers = load_beir_answers(root / "answers.jsonl")
    return data


def _qrel(row: list[str], path: Path, lineno: int, split: str) -> tuple[str, str, int, str]:
    if len(row) == 3:
        qid, did, rel = row
    elif len(row) == 4:  # TREC: qid iteration docid rel
        qid, _, did, rel = row
    else:
        raise DatasetError(f"{path}:{lineno}: expected 3 or 4 columns, got {len(row)}: {row!r}")
    try:
        return qid.strip(), did.strip(), int(rel), split
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: relevance {rel!r} is not an integer") from None


def read_msmarco(root: Path) -> Dataset:
    """Read the MS MARCO passage TSV layout (collection, queries.<split>, qrels.<split>)."""
    data = Dataset()
    seen: dict[str, str] = {}
    collection = root / "collection.tsv"
    with open(collection, encoding="utf-8") as handle:
        for lineno, line in enumerate(tqdm(handle, desc="collection", unit=" docs"), start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) not in (2, 3):
                raise DatasetError(f"{collection}:{lineno}: expected pid<TAB>text[<TAB>title]")
            _add_doc(seen, parts[0], f"{collection}:{lineno}")
            data.corpus.append((parts[0], parts[2] if len(parts) == 3 else "", parts[1]))
    for path in sorted(root.glob("queries.*.tsv")):
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 2:
                    raise DatasetError(f"{path}:{lineno}: expected qid<TAB>text")
                data.queries[parts[0]] = parts[1]
    qrel_files = sorted(root.glob("qrels.*.tsv"))
    if not qrel_files:
        raise DatasetError(f"{root}: no qrels.<split>.tsv files")
    for path in qrel_files:
        split = path.name[len("qrels.") : -len(".tsv")]
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                data.qrels.append(_qrel(line.split(), path, lineno, split))
    return data


def read_tevatron(root: Path) -> Dataset:
    """Read a Tevatron training file; its passages form the corpus, its positives the qrels.

    A passage may appear under many queries: it must then carry the same text each time.
    """
    data = Dataset()
    texts: dict[str, tuple[str, str]] = {}
    path = root / "train.jsonl"
    for lineno, rec in tqdm(_jsonl(path), desc="tevatron", unit=" queries"):
        qid = _field(rec, "query_id", path, lineno)
        data.queries[qid] = _field(rec, "query", path, lineno)
        n_negatives = 0
        for key in ("positive_passages", "negative_passages"):
            for passage in rec.get(key) or []:
                did = _field(passage, "docid", path, lineno)
                content = (str(passage.get("title") or ""), _field(passage, "text", path, lineno))
                if texts.setdefault(did, content) != content:
                    raise DatasetError(f"{path}:{lineno}: document {did!r} has two different texts")
                if key == "positive_passages":
                    data.qrels.append((qid, did, 1, "train"))
                else:
                    n_negatives += 1
                    data.negatives.append((qid, did, n_negatives))
    data.corpus = [(did, title, text) for did, (title, text) in texts.items()]
    return data


READERS = {"beir": read_beir, "msmarco": read_msmarco, "tevatron": read_tevatron}


def check_consistency(data: Dataset, source: Path) -> None:
    """Every qrel must name a known query and a known document."""
    doc_ids = {row[0] for row in data.corpus}
    for qid, did, _, split in data.qrels:
        if did not in doc_ids:
            raise DatasetError(
                f"{source}: qrels ({split}) name unknown document {did!r} for query {qid!r}"
            )
        if qid not in data.queries:
            raise DatasetError(f"{source}: qrels ({split}) name unknown query {qid!r}")


def ingest(
    source: str | os.PathLike[str],
    fmt: str,
    corpus_dir: str | os.PathLike[str],
    queries_path: str | os.PathLike[str],
    qrels_path: str | os.PathLike[str],
    shard_size: int,
    answers_path: str | os.PathLike[str],
    negatives_path: str | os.PathLike[str],
) -> dict[str, int]:
    """Read ``source`` in layout ``fmt`` and write corpus shards, queries and qrels Parquet.

    Gold answers (QA datasets) and shipped hard negatives (Tevatron) are always written, empty
    when the layout has none, so that every dataset has the same set of tables. Returns counts
    for the log. Nothing is written unless the whole input is valid.
    """
    if fmt not in READERS:
        raise DatasetError(f"unknown dataset format {fmt!r}; expected one of {FORMATS}")
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory not found; expected {LAYOUT_HELP[fmt]}")
    try:
        data = READERS[fmt](root)
    except FileNotFoundError as err:
        raise DatasetError(
            f"{err.filename}: missing; a {fmt} dataset needs {LAYOUT_HELP[fmt]}"
        ) from None
    check_consistency(data, root)
    meta = {"source": str(root), "format": fmt, "shard_size": shard_size}
    write_corpus_shards(data.corpus, corpus_dir, shard_size, meta)
    queries = pd.DataFrame(list(data.queries.items()), columns=["query_id", "text"])
    write_table(queries, queries_path, schemas.QUERIES, meta)
    qrels = pd.DataFrame(data.qrels, columns=["query_id", "doc_id", "relevance", "split"])
    write_table(qrels, qrels_path, schemas.QRELS, meta)
    write_table(data.answers, answers_path, schemas.ANSWERS, meta)
    negatives = pd.DataFrame(data.negatives, columns=["query_id", "doc_id", "rank"])
    write_table(negatives, negatives_path, schemas.NEGATIVES, meta)
    return {"documents": len(data.corpus), "queries": len(data.queries), "qrels": len(data.qrels)}


def write_corpus_shards(
    rows: list[tuple[str, str, str]],
    corpus_dir: str | os.PathLike[str],
    shard_size: int,
    meta: dict,
) -> int:
    """Write ``rows`` as ``shard-NNNNN.parquet`` files; the directory appears atomically."""
    final = Path(corpus_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        n_shards = 0
        for n_shards, start in enumerate(range(0, max(len(rows), 1), shard_size), start=1):
            chunk = pd.DataFrame(
                rows[start : start + shard_size], columns=["doc_id", "title", "text"]
            )
            write_table(chunk, tmp / f"shard-{n_shards - 1:05d}.parquet", schemas.CORPUS, meta)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return n_shards
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def read_corpus(corpus_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """All corpus shards as one DataFrame (doc_id, title, text)."""
    shards = sorted(Path(corpus_dir).glob("shard-*.parquet"))
    if not shards:
        raise DatasetError(f"{corpus_dir}: no corpus shards")
    return pd.concat([pd.read_parquet(s) for s in shards], ignore_index=True)


def split_qrels(qrels: pd.DataFrame, split: str) -> pd.DataFrame:
    """The judgements of one split (the QRELS table holds every split of a dataset)."""
    judged = qrels[qrels["split"] == split]
    if judged.empty:
        raise DatasetError(
            f"no qrels for split {split!r}; available: {sorted(qrels['split'].unique())}"
        )
    return judged


def offline_help(name: str, fmt: str, dest: Path, url: str | None) -> str:
    return (
        f"could not download dataset {name!r}{f' from {url}' if url else ''}. If this machine "
        f"is offline, place the files yourself in {dest}/ in the {fmt} layout: {LAYOUT_HELP[fmt]}"
    )


def download_beir(name: str, url: str, dest: str | os.PathLike[str]) -> None:
    """Fetch an official BEIR zip and unpack it into ``dest`` (atomically)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        archive = tmp / "download.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as err:
            raise DatasetError(f"{offline_help(name, 'beir', dest, url)} ({err})") from None
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp / "unzipped")
        inner = next((p.parent for p in (tmp / "unzipped").rglob("corpus.jsonl")), None)
        if inner is None:
            raise DatasetError(f"{url}: the archive holds no corpus.jsonl")
        os.replace(inner, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_ir_datasets(name: str, ids: dict[str, str], dest: str | os.PathLike[str]) -> None:
    """Materialise ir_datasets collections (e.g. msmarco-passage/train) in the MS MARCO layout.

    ``ids`` maps a split name to an ir_datasets id; the corpus comes from the first one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        import ir_datasets

        try:
            first = ir_datasets.load(next(iter(ids.values())))
            _write_tsv(tmp / "collection.tsv", ((d.doc_id, d.text) for d in first.docs_iter()))
            for split, ds_id in ids.items():
                ds = ir_datasets.load(ds_id)
                _write_tsv(
                    tmp / f"queries.{split}.tsv", ((q.query_id, q.text) for q in ds.queries_iter())
                )
                _write_tsv(
                    tmp / f"qrels.{split}.tsv",
                    ((q.query_id, "0", q.doc_id, str(q.relevance)) for q in ds.qrels_iter()),
                )
        except Exception as err:  # ir_datasets raises many kinds of network errors
            raise DatasetError(
                f"{offline_help(name, 'msmarco', dest, None)} ({type(err).__name__}: {err})"
            ) from None
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_tsv(path: Path, rows: Iterable[tuple[str, ...]]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write("\t".join(str(c).replace("\t", " ").replace("\n", " ") for c in row) + "\n")
