"""Hugging Face hub models, fetched once into ``paths.models`` before any GPU job starts.

On a cluster, every job that names a hub id would otherwise download it on its compute node:
64 annotation jobs pulling Qwen2.5-32B-Instruct-GPTQ-Int8 (~35 GB) at the same time, on nodes
that often have no internet at all. The workflow's local rule ``fetch_model`` downloads each
hub model once on the machine running Snakemake; the jobs load the local copy.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# owner/name, as the hub spells repository ids (a local path never matches by accident once
# existing directories are ruled out first).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is a hub repository id rather than a local model directory."""
    return not os.path.exists(name) and bool(_HUB_ID.match(name))


def hub_slug(repo_id: str) -> str:
    """A directory name for ``repo_id`` (``Qwen/Qwen2.5-7B`` -> ``Qwen--Qwen2.5-7B``)."""
    if not _HUB_ID.match(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hugging Face hub id (owner/name)")
    return repo_id.replace("/", "--")


class ModelUnavailableError(RuntimeError):
    """A hub model that could not be downloaded (offline, gated, unknown)."""


def fetch_model(repo_id: str, dest: str | Path) -> Path:
    """Download ``repo_id`` into ``dest`` (a plain directory ``from_pretrained`` loads).

    Written to a temporary sibling and renamed, so an interrupted download never leaves a
    directory that looks complete. Offline (``HF_HUB_OFFLINE=1``, no network) or for a gated
    model without a token, the error says which model and where to put its files.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    out = Path(dest)
    tmp = out.with_name(f".{out.name}.tmp")
    where = (
        f"download it where the hub is reachable (`hf download {repo_id} --local-dir {out}`) "
        f"or copy its files (config.json, tokenizer, weights) into {out}"
    )
    try:
        snapshot_download(repo_id, local_dir=tmp)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        why = (
            "gated: accept its licence on the hub and set HF_TOKEN (or `hf auth login`)"
            if isinstance(err, GatedRepoError)
            else f"{type(err).__name__}: {err}"
        )
        raise ModelUnavailableError(
            f"cannot download {repo_id} from the Hugging Face hub ({why}); {where}"
        ) from err
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
