"""Dense retrieval: encode corpus shards and queries, exact inner-product search with faiss.

The corpus is encoded by ``N`` independent jobs, each taking one contiguous slice of the
corpus directory's rows (``N`` comes from config, so Snakemake can ``expand`` it: no
checkpoint). Search is exact (``faiss.IndexFlatIP``), as in the paper; on GPU the flat index is
copied to all GPUs in fp32 (the authors' bi-encode/faiss_retriever.py shards it in fp16, which
is not exact).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from utilann.hardware import choose_precision
from utilann.io import parquet_files, parquet_rows, read_arrow, read_metadata
from utilann.passages import format_passage, title_share
from utilann.train.model import (
    CONFIG_FILE,
    BiEncoder,
    BiEncoderConfig,
    load_tokenizer,
    read_json_field,
    tokenize,
)

log = logging.getLogger(__name__)
# faiss's loader logs each SIMD build it cannot load (a ModuleNotFoundError traceback per
# level) at INFO before falling back: noise in job logs that reads like a failure.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)


@dataclass(frozen=True)
class EncodeSettings:
    """How texts are embedded (must match the run's training pooling/normalisation).

    ``precision`` is what the config asks (``auto``, ``fp32``, ``bf16``, ``fp16``); the dtype
    the weights get is resolved on the machine that encodes (:mod:`utilann.hardware`) and
    recorded as :attr:`TextEncoder.dtype` in each output's metadata. ``passage_title`` and
    ``passage_separator`` are the run's passage format (the one its training passages had),
    used when encoding passages.
    """

    pooling: str = "cls"
    normalize: bool = False
    max_length: int = 140
    batch_size: int = 128
    precision: str = "auto"
    passage_title: bool = True
    passage_separator: str = " "


def limit_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch and faiss (a job must not take the cores of others)."""
    import faiss

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def device() -> torch.device:
    """The device dense encoding runs on: the first GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TextEncoder:
    """A run's encoder and tokenizer, in eval mode on the best device, in the dtype the
    machine computes fastest for the asked precision (bf16 weights also on CPU: oneDNN)."""

    def __init__(self, model_dir: str | Path, settings: EncodeSettings) -> None:
        self.settings = settings
        self.model_dir = Path(model_dir)
        self.precision = choose_precision(settings.precision, device(), "encoding")
        self.tokenizer = load_tokenizer(model_dir)
        config = BiEncoderConfig(pooling=settings.pooling, normalize=settings.normalize)
        model = BiEncoder.from_pretrained(model_dir, config=config).to(device()).eval()
        self.model = model.to(self.precision.dtype)

    @property
    def dtype(self) -> str:
        """The resolved precision (``fp32``, ``bf16``, ``fp16``), for output metadata."""
        return self.precision.name

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], desc: str = "encode") -> np.ndarray:
        """Embed ``texts`` (float32 ``[n, dim]``, input order), in length-sorted batches.

        Sorting by length keeps padding small, which matters on CPU (2-3x on SciFact abstracts).
        """
        if not texts:
            raise ValueError("nothing to encode")
        size = self.settings.batch_size
        order = np.argsort([-len(t) for t in texts], kind="stable")
        blocks = []
        for start in tqdm(range(0, len(texts), size), desc=desc, unit="batch"):
            idx = order[start : start + size]
            batch = tokenize(
                self.tokenizer, [texts[i] for i in idx], self.settings.max_length, device()
            )
            blocks.append(self.model.encode(**batch).float().cpu().numpy())
        out = np.empty((len(texts), blocks[0].shape[1]), dtype=np.float32)
        out[order] = np.vstack(blocks)
        return out


def corpus_slice(corpus_dir: str | Path, shard: int, n_shards: int) -> pd.DataFrame:
    """Rows ``[shard * n / N, (shard + 1) * n / N)`` of the corpus (files in name order).

    Row counts come from the Parquet footers, so a job only reads the files its slice touches.
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"encode shard {shard} out of range for {n_shards} shards")
    files = parquet_files(corpus_dir)
    if not files:
        raise FileNotFoundError(f"no Parquet shards in corpus directory {corpus_dir}")
    sizes = [parquet_rows(f) for f in files]
    total = sum(sizes)
    lo, hi = shard * total // n_shards, (shard + 1) * total // n_shards
    parts, offset = [], 0
    for path, size in zip(files, sizes, strict=True):
        if offset < hi and offset + size > lo:
            table = read_arrow(path, columns=["doc_id", "title", "text"]).to_pandas()
            parts.append(table.iloc[max(lo - offset, 0) : hi - offset])
        offset += size
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["doc_id", "title", "text"])
    )


TITLE_SHARE_GAP = 0.5
"""A corpus whose share of titled passages differs from the training passages' by more than
this is reported (:func:`check_title_agreement`)."""


def check_title_agreement(model_dir: str | Path, settings: EncodeSettings, share: float) -> None:
    """Warn when the model reads titles here but its training passages had none, or back.

    ``share`` is the corpus slice's fraction of titled passages; the checkpoint records its
    training passages' (``stats.passage_title_share`` in ``biencoder.json``). A bare backbone
    (zero-shot) records none and is not checked.
    """
    trained = read_json_field(Path(model_dir) / CONFIG_FILE, "stats", "passage_title_share")
    if trained is None or not settings.passage_title:
        return
    if abs(float(trained) - share) > TITLE_SHARE_GAP:
        log.warning(
            "passage titles differ between training and this corpus: %.0f %% of the training "
            "passages had a title, %.0f %% here, and the run's passage format (passage_title: "
            "true) shows them: the encoder reads differently formatted passages than it was "
            "trained on. Set passage_title: false for this run to train and search on the "
            "text alone",
            100 * float(trained),
            100 * share,
        )


def encode_corpus_shard(
    encoder: TextEncoder, corpus_dir: str | Path, shard: int, n_shards: int
) -> pa.Table:
    """Embed one corpus slice with ``encoder``; an EMBEDDINGS table (doc_id, embedding).

    Passages are written in the run's passage format (``encoder.settings``), the share of
    titled passages is logged and compared with the training passages'.
    """
    rows = corpus_slice(corpus_dir, shard, n_shards)
    s = encoder.settings
    share = title_share(list(rows["title"]))
    log.info(
        "encode shard %d/%d: %d passages, %.0f %% with a title; passage format: %s",
        shard,
        n_shards,
        len(rows),
        100 * share,
        f"title{s.passage_separator!r}text" if s.passage_title else "text only",
    )
    check_title_agreement(encoder.model_dir, s, share)
    texts = [
        format_passage(t, x, with_title=s.passage_title, separator=s.passage_separator)
        for t, x in rows[["title", "text"]].itertuples(index=False)
    ]
    matrix = (
        encoder.encode(texts, desc=f"encode shard {shard}")
        if texts
        else np.empty((0, 0), dtype=np.float32)
    )
    return embeddings_table(rows["doc_id"].astype(str).tolist(), matrix)


def embeddings_table(doc_ids: list[str], matrix: np.ndarray) -> pa.Table:
    """Pack ids and a ``[n, dim]`` float32 matrix as an EMBEDDINGS table (64-bit offsets)."""
    n = len(doc_ids)
    dim = matrix.shape[1] if n else 0
    offsets = pa.array(np.arange(0, n * dim + 1, max(dim, 1), dtype=np.int64)[: n + 1])
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    vectors = pa.LargeListArray.from_arrays(offsets, flat)
    return pa.table({"doc_id": pa.array(doc_ids, pa.string()), "embedding": vectors})


def read_embeddings(paths: Sequence[str | Path]) -> tuple[list[str], np.ndarray]:
    """Concatenate EMBEDDINGS shards into (doc ids, float32 matrix)."""
    ids: list[str] = []
    blocks = []
    for path in paths:
        table = read_arrow(path)
        if table.num_rows == 0:
            continue
        column = table.column("embedding").combine_chunks()
        blocks.append(column.flatten().to_numpy().reshape(table.num_rows, -1))
        ids.extend(table.column("doc_id").to_pylist())
    if not blocks:
        raise ValueError("no passage embeddings in the given shards")
    return ids, np.ascontiguousarray(np.vstack(blocks), dtype=np.float32)


def passage_dtypes(paths: Sequence[str | Path]) -> list[str]:
    """The precisions the EMBEDDINGS shards were encoded in (their metadata), sorted.

    More than one means the shards ran on machines that resolved ``auto`` differently (a
    heterogeneous cluster): the vectors then differ slightly between shards, which is logged.
    """
    dtypes = sorted({str(read_metadata(path).get("dtype", "unrecorded")) for path in paths})
    if len(dtypes) > 1:
        log.warning("corpus shards were encoded in different precisions: %s", dtypes)
    return dtypes


def build_index(matrix: np.ndarray, use_gpu: bool = True):  # -> faiss.Index
    """Exact inner-product index; on all GPUs (fp32) when faiss-gpu and a GPU are present."""
    import faiss

    index = faiss.IndexFlatIP(matrix.shape[1])
    index.add(matrix)
    if use_gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        log.info("searching on %d GPU(s)", faiss.get_num_gpus())
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def search(
    index,
    doc_ids: Sequence[str],
    query_ids: Sequence[str],
    query_matrix: np.ndarray,
    depth: int,
    batch_size: int = 512,
) -> pd.DataFrame:
    """Top-``depth`` passages per query as a RUN table (rank from 1, float32 scores)."""
    depth = min(depth, len(doc_ids))
    doc_array = np.asarray(doc_ids, dtype=object)
    frames = []
    for start in tqdm(range(0, len(query_ids), batch_size), desc="search", unit="batch"):
        scores, idx = index.search(query_matrix[start : start + batch_size], depth)
        n = idx.shape[0]
        valid = idx >= 0
        frames.append(
            pd.DataFrame(
                {
                    "query_id": np.repeat(np.asarray(query_ids[start : start + n], object), depth)[
                        valid.reshape(-1)
                    ],
                    "doc_id": doc_array[idx[valid]],
                    "rank": np.tile(np.arange(1, depth + 1, dtype=np.int32), n)[valid.reshape(-1)],
                    "score": scores[valid].astype(np.float32),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
