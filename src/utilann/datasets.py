"""Dataset ingestion: BEIR, MS MARCO TSV and Tevatron jsonl layouts -> Parquet tables.

Each reader validates while it reads, because a bad line found hours later inside a training
job is far more expensive than a clear error at ingestion: every error names the file, the
line (or the id) and what is wrong. Ingestion writes into a temporary directory that is renamed
into place only when everything succeeded, so no half-written dataset is ever left behind.

Rules for text files (all layouts):

* UTF-8, with or without a byte-order mark; CRLF line ends are read as LF. A byte that is not
  UTF-8 is an error naming the file, the line and the byte's offset in the file.
* Ids are strings and are compared as strings: ``"01"`` and ``"1"`` are different ids, the
  JSON number ``1`` and the string ``"1"`` are the same one (a second definition is an
  error). An unknown id in the qrels that equals a known id up to leading zeros says so.
* A document with an empty title and text is kept (BEIR's official loader keeps them, and
  qrels may name them), counted and warned about with its first ids.
* Qrels: a (query, document) pair judged twice with different grades is an error naming both
  lines; an exact repetition is dropped and counted.
* MS MARCO TSV lines have exactly two tab-separated columns (``id<TAB>text``): a tab inside
  a passage or query cannot be told from a column break, so it is an error naming the line.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
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
from .io import read_table, write_table
from .qa import load_beir_answers

log = logging.getLogger(__name__)

FORMATS = ("beir", "msmarco", "tevatron")

LAYOUT_HELP = {
    "beir": "corpus.jsonl ({_id, title, text} per line), queries.jsonl ({_id, text}) and "
    "qrels/<split>.tsv (header 'query-id corpus-id score'); queries and qrels are optional "
    "(a corpus-only dataset)",
    "msmarco": "collection.tsv (pid<TAB>text), queries.<split>.tsv (qid<TAB>text) and "
    "qrels.<split>.tsv (TREC 'qid 0 pid rel' or 'qid<TAB>pid<TAB>rel')",
    "tevatron": "train.jsonl ({query_id, query, positive_passages: [{docid, title, text}], "
    "negative_passages: [...]} per line)",
}
SHOWN_IDS = 5
"""How many example ids a warning lists."""


class DatasetError(ValueError):
    """Malformed dataset input; the message names the file and line."""


@dataclass
class Dataset:
    """An ingested dataset held in memory: corpus rows, queries and qrels.

    ``qrel_sources`` holds the ``file:line`` of each qrel, for errors found after reading.
    """

    corpus: list[tuple[str, str, str]] = field(default_factory=list)
    queries: dict[str, str] = field(default_factory=dict)
    qrels: list[tuple[str, str, int, str]] = field(default_factory=list)
    qrel_sources: list[str] = field(default_factory=list)
    answers: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["query_id", "answers"])
    )
    negatives: list[tuple[str, str, int]] = field(default_factory=list)
    query_sources: dict[str, str] = field(default_factory=dict)
    doc_sources: dict[str, str] = field(default_factory=dict)

    def add_qrel(self, qid: str, did: str, rel: int, split: str, where: str) -> None:
        self.qrels.append((qid, did, rel, split))
        self.qrel_sources.append(where)


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without its line end) of a UTF-8 text file.

    Read as bytes and decoded line by line, so that a bad byte is reported with its line and
    offset, and so that only ``\\n`` ends a line (a U+2028 inside a JSON string does not).
    """
    offset = 0
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            start = len(codecs.BOM_UTF8) if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
            try:
                text = raw[start:].decode("utf-8")
            except UnicodeDecodeError as err:
                at = start + err.start
                raise DatasetError(
                    f"{path}:{lineno}: byte 0x{raw[at]:02x} at byte offset {offset + at} of the "
                    f"file (column {at + 1} of the line) is not UTF-8; convert the file to "
                    "UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            offset += len(raw)
            yield lineno, text.rstrip("\r\n")


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in text_lines(path):
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


def _tsv(path: Path, columns: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of a two-column MS MARCO TSV (``columns`` names them for the error)."""
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DatasetError(
                f"{path}:{lineno}: expected 2 tab-separated columns ({columns}), got "
                f"{len(parts)}; a tab inside the text cannot be told from a column break: "
                "replace it with a space"
            )
        yield lineno, parts


def _add_id(seen: dict[str, str], key: str, where: str, what: str, raw: object = None) -> None:
    """Record where id ``key`` is defined; a second definition is an error naming both.

    ``raw`` is the JSON value the id came from: when it (or the first one) may have been a
    number, the message says why ``1`` and ``"1"`` collide.
    """
    if key in seen:
        numeric = raw is not None and (not isinstance(raw, str) or key.lstrip("-").isdigit())
        note = (
            f"; ids are compared as strings, so the JSON number {key} and the string "
            f"{json.dumps(key)} are one id"
            if numeric
            else ""
        )
        raise DatasetError(
            f"{where}: duplicate {what} id {key!r} (first seen at {seen[key]}){note}"
        )
    seen[key] = where


def _require(items: object, path: Path, what: str) -> None:
    if not items:
        raise DatasetError(f"{path}: no {what} in the file")


def read_beir(root: Path) -> Dataset:
    """Read a BEIR directory (corpus.jsonl, queries.jsonl, qrels/*.tsv, optional answers.jsonl).

    Without a ``qrels/`` folder the dataset has no judgements: ``corpus.jsonl`` alone is a
    corpus-only dataset (the new-corpus mode generates its training queries), and with a
    ``queries.jsonl`` beside it the queries are unlabelled (e.g. a query log). Qrels need the
    queries they name, so ``qrels/`` without ``queries.jsonl`` is an error.
    """
    data = Dataset()
    corpus = root / "corpus.jsonl"
    for lineno, rec in tqdm(_jsonl(corpus), desc=f"corpus {root.name}", unit=" docs"):
        doc_id = _field(rec, "_id", corpus, lineno)
        _add_id(data.doc_sources, doc_id, f"{corpus}:{lineno}", "document", rec["_id"])
        data.corpus.append(
            (doc_id, str(rec.get("title") or ""), _field(rec, "text", corpus, lineno))
        )
    _require(data.corpus, corpus, "documents")
    queries = root / "queries.jsonl"
    if not (root / "qrels").exists() and not queries.exists():
        log.info("%s: corpus only (no queries.jsonl, no qrels/)", root)
        return data
    for lineno, rec in _jsonl(queries):
        qid = _field(rec, "_id", queries, lineno)
        _add_id(data.query_sources, qid, f"{queries}:{lineno}", "query", rec["_id"])
        data.queries[qid] = _field(rec, "text", queries, lineno)
    _require(data.queries, queries, "queries")
    if not (root / "qrels").exists():
        log.info("%s: %d queries without judgements (no qrels/)", root, len(data.queries))
        return data
    qrel_files = sorted((root / "qrels").glob("*.tsv"))
    if not qrel_files:
        raise DatasetError(f"{root / 'qrels'}: no <split>.tsv qrels files")
    for path in qrel_files:
        for lineno, line in text_lines(path):
            if not line.strip():
                continue
            row = next(csv.reader([line], delimiter="\t"))  # BEIR's loader reads csv
            if lineno == 1 and row and row[0] == "query-id":
                continue
            data.add_qrel(*_qrel(row, path, lineno), path.stem, f"{path}:{lineno}")
    if (root / "answers.jsonl").exists():
        data.answers = load_beir_answers(root / "answers.jsonl")
    return data


def _qrel(row: list[str], path: Path, lineno: int) -> tuple[str, str, int]:
    if len(row) == 3:
        qid, did, rel = row
    elif len(row) == 4:  # TREC: qid iteration docid rel
        qid, _, did, rel = row
    else:
        raise DatasetError(f"{path}:{lineno}: expected 3 or 4 columns, got {len(row)}: {row!r}")
    try:
        return qid.strip(), did.strip(), int(rel)
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: relevance {rel!r} is not an integer") from None


def read_msmarco(root: Path) -> Dataset:
    """Read the MS MARCO passage TSV layout (collection, queries.<split>, qrels.<split>)."""
    data = Dataset()
    collection = root / "collection.tsv"
    for lineno, (pid, text) in tqdm(_tsv(collection, "pid, text"), desc="collection", unit=" docs"):
        _add_id(data.doc_sources, pid, f"{collection}:{lineno}", "document")
        data.corpus.append((pid, "", text))
    _require(data.corpus, collection, "passages")
    for path in sorted(root.glob("queries.*.tsv")):
        for lineno, (qid, text) in _tsv(path, "qid, text"):
            _add_id(data.query_sources, qid, f"{path}:{lineno}", "query")
            data.queries[qid] = text
    qrel_files = sorted(root.glob("qrels.*.tsv"))
    if not qrel_files:
        raise DatasetError(f"{root}: no qrels.<split>.tsv files")
    for path in qrel_files:
        split = path.name[len("qrels.") : -len(".tsv")]
        for lineno, line in text_lines(path):
            if line.strip():
                data.add_qrel(*_qrel(line.split(), path, lineno), split, f"{path}:{lineno}")
    return data


def read_tevatron(root: Path) -> Dataset:
    """Read a Tevatron training file; its passages form the corpus, its positives the qrels.

    A passage may appear under many queries: it must then carry the same text each time. A
    query must have at least one positive passage (it is a training query).
    """
    data = Dataset()
    texts: dict[str, tuple[str, str]] = {}
    path = root / "train.jsonl"
    for lineno, rec in tqdm(_jsonl(path), desc="tevatron", unit=" queries"):
        where = f"{path}:{lineno}"
        qid = _field(rec, "query_id", path, lineno)
        _add_id(data.query_sources, qid, where, "query", rec["query_id"])
        data.queries[qid] = _field(rec, "query", path, lineno)
        if not rec.get("positive_passages"):
            raise DatasetError(f"{where}: query {qid!r} has no positive_passages")
        n_negatives = 0
        for key in ("positive_passages", "negative_passages"):
            for passage in rec.get(key) or []:
                did = _field(passage, "docid", path, lineno)
                content = (str(passage.get("title") or ""), _field(passage, "text", path, lineno))
                if texts.setdefault(did, content) != content:
                    raise DatasetError(f"{where}: document {did!r} has two different texts")
                data.doc_sources.setdefault(did, where)
                if key == "positive_passages":
                    data.add_qrel(qid, did, 1, "train", where)
                else:
                    n_negatives += 1
                    data.negatives.append((qid, did, n_negatives))
    _require(data.queries, path, "queries")
    data.corpus = [(did, title, text) for did, (title, text) in texts.items()]
    return data


READERS = {"beir": read_beir, "msmarco": read_msmarco, "tevatron": read_tevatron}


def _leading_zero_hint(key: str, known: Iterable[str]) -> str:
    """Say so when ``key`` equals a known id up to leading zeros (``"01"`` vs ``"1"``)."""
    if not key.isdigit():
        return ""
    twins = [k for k in known if k.isdigit() and int(k) == int(key) and k != key]
    if not twins:
        return ""
    return f" (there is {twins[0]!r}: ids are compared as strings, leading zeros included)"


def check_consistency(data: Dataset, source: Path) -> None:
    """Every qrel must name a known query and a known document (the error names its line)."""
    for (qid, did, _, _), where in zip(data.qrels, data.qrel_sources, strict=True):
        if did not in data.doc_sources:
            hint = _leading_zero_hint(did, data.doc_sources)
            raise DatasetError(
                f"{where}: unknown document {did!r} (query {qid!r}): not in the corpus of "
                f"{source}{hint}"
            )
        if qid not in data.queries:
            hint = _leading_zero_hint(qid, data.queries)
            raise DatasetError(
                f"{where}: unknown query {qid!r}: not in the queries of {source}{hint}"
            )


def drop_duplicate_qrels(data: Dataset) -> int:
    """Drop exact repetitions of a judgement (counted); different grades are an error."""
    first: dict[tuple[str, str, str], tuple[int, str]] = {}
    kept: list[int] = []
    for i, ((qid, did, rel, split), where) in enumerate(
        zip(data.qrels, data.qrel_sources, strict=True)
    ):
        key = (split, qid, did)
        if key not in first:
            first[key] = (rel, where)
            kept.append(i)
        elif first[key][0] != rel:
            raise DatasetError(
                f"{where}: query {qid!r} and document {did!r} are judged {rel}, but "
                f"{first[key][0]} at {first[key][1]}: one judgement per pair"
            )
    dropped = len(data.qrels) - len(kept)
    if dropped:
        log.warning("dropped %d repeated qrels lines (same query, document and grade)", dropped)
        data.qrels = [data.qrels[i] for i in kept]
        data.qrel_sources = [data.qrel_sources[i] for i in kept]
    return dropped


def count_empty_documents(data: Dataset) -> int:
    """Documents whose title and text are both empty: kept, counted and warned about."""
    empty = [
        doc_id for doc_id, title, text in data.corpus if not title.strip() and not text.strip()
    ]
    if empty:
        log.warning(
            "%d document(s) with an empty title and text, kept (e.g. %s)",
            len(empty),
            ", ".join(f"{d!r} at {data.doc_sources[d]}" for d in empty[:SHOWN_IDS]),
        )
    return len(empty)


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
    for the log (also stored in each table's metadata). Nothing is written unless the whole
    input is valid.
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
    counts = {
        "documents": len(data.corpus),
        "queries": len(data.queries),
        "empty_documents": count_empty_documents(data),
        "repeated_qrels_dropped": drop_duplicate_qrels(data),
        "qrels": len(data.qrels),
    }
    meta = {"source": str(root), "format": fmt, "shard_size": shard_size, "counts": counts}
    write_corpus_shards(data.corpus, corpus_dir, shard_size, meta)
    queries = pd.DataFrame(list(data.queries.items()), columns=["query_id", "text"])
    write_table(queries, queries_path, schemas.QUERIES, meta)
    qrels = pd.DataFrame(data.qrels, columns=["query_id", "doc_id", "relevance", "split"])
    write_table(qrels, qrels_path, schemas.QRELS, meta)
    write_table(data.answers, answers_path, schemas.ANSWERS, meta)
    negatives = pd.DataFrame(data.negatives, columns=["query_id", "doc_id", "rank"])
    write_table(negatives, negatives_path, schemas.NEGATIVES, meta)
    return counts


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
    return pd.concat([read_table(s) for s in shards], ignore_index=True)


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


def download_beir(
    name: str, url: str, dest: str | os.PathLike[str], subsets: Iterable[str] = ()
) -> None:
    """Fetch an official BEIR zip and unpack it into ``dest`` (atomically).

    With ``subsets`` (CQADupStack) the archive holds one BEIR folder per subset, and ``dest``
    becomes the folder that holds them all (``dest/<subset>/corpus.jsonl``).
    """
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
        inner = _beir_root(tmp / "unzipped", list(subsets))
        if inner is None:
            wanted = f"a folder with {sorted(subsets)}" if subsets else "a corpus.jsonl"
            raise DatasetError(f"{url}: the archive holds no {wanted}")
        os.replace(inner, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _beir_root(unzipped: Path, subsets: list[str]) -> Path | None:
    """The unpacked folder that is the dataset: the one with corpus.jsonl, or with subsets the
    one holding every ``<subset>/corpus.jsonl``."""
    for corpus in sorted(unzipped.rglob("corpus.jsonl")):
        if not subsets:
            return corpus.parent
        root = corpus.parent.parent
        if all((root / sub / "corpus.jsonl").is_file() for sub in subsets):
            return root
    return None


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
