"""The bi-encoder: one shared HF transformer encodes queries and passages alike.

The paper's retriever (App. E.3; the authors' bi-encode/arguments.py) is a tied encoder with
[CLS] pooling, no normalisation and a raw dot product (temperature 1). The embedded demo
backbone, all-MiniLM-L6-v2, was trained by sentence-transformers with *mean* pooling, L2
normalisation and a scale of 20 (temperature 0.05), so its defaults differ: both are settings of
:class:`BiEncoderConfig`, saved next to the checkpoint as ``biencoder.json`` so that a
checkpoint says how it must be used.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from utilann.io import write_json
from utilann.train.settings import POOLINGS

CONFIG_FILE = "biencoder.json"


@dataclass(frozen=True)
class BiEncoderConfig:
    """How token states become a vector and vectors become a score.

    Attributes:
        pooling: ``cls`` (first token, the paper) or ``mean`` (mask-weighted mean).
        normalize: L2-normalise embeddings (cosine similarity); off in the paper.
        temperature: scores are ``q . d / temperature``; 1.0 in the paper. It only scales the
            training logits: retrieval rankings do not depend on it.
    """

    pooling: str = "cls"
    normalize: bool = False
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> BiEncoderConfig:
        """Build from a dict that may hold other keys (a run spec, a saved json)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


class BiEncoder(nn.Module):
    """Shared-encoder bi-encoder over any ``transformers.AutoModel`` backbone."""

    def __init__(self, encoder: PreTrainedModel, config: BiEncoderConfig):
        super().__init__()
        # Pooling reads last_hidden_state: a BERT-style pooler head would get no gradient,
        # which DDP rejects (and the authors' default is add_pooler=False).
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        self.encoder = encoder
        self.config = config

    @classmethod
    def from_pretrained(
        cls, path: str | Path, config: BiEncoderConfig | None = None, **model_kwargs: Any
    ) -> BiEncoder:
        """Load a backbone or a checkpoint directory.

        ``config`` wins when given (a workflow passes the run's settings explicitly); otherwise
        the directory's ``biencoder.json`` is used, and a bare backbone gets the paper defaults.
        """
        if config is None:
            saved = Path(path) / CONFIG_FILE
            config = (
                BiEncoderConfig.from_mapping(json.loads(saved.read_text()))
                if saved.exists()
                else BiEncoderConfig()
            )
        return cls(AutoModel.from_pretrained(str(path), **model_kwargs), config)

    def pool(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Pool token states ``[B, T, H]`` to ``[B, H]`` and normalise if configured."""
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1) if self.config.normalize else pooled

    def encode(self, input_ids: Tensor, attention_mask: Tensor, **extra: Tensor) -> Tensor:
        """Embed one tokenised batch (queries or passages: the encoder is shared)."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return self.pool(out.last_hidden_state, attention_mask)

    def forward(
        self, queries: dict[str, Tensor], passages: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Embed a training batch's queries and passages in one module call.

        One call (not two) so that DDP sees every use of the shared weights within a single
        forward before the backward pass.
        """
        return self.encode(**queries), self.encode(**passages)

    def similarity(self, queries: Tensor, passages: Tensor) -> Tensor:
        """Scores ``[n_queries, n_passages]`` = dot product / temperature."""
        return (queries @ passages.T) / self.config.temperature

    def save_pretrained(
        self,
        path: str | Path,
        tokenizer: PreTrainedTokenizerBase,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write an HF checkpoint (model + tokenizer) plus ``biencoder.json``.

        ``extra`` (the training spec, data statistics) is stored in the same json so that the
        checkpoint documents how it was made.
        """
        out = Path(path)
        self.encoder.save_pretrained(out)
        tokenizer.save_pretrained(out)
        write_json({**asdict(self.config), **(extra or {})}, out / CONFIG_FILE)


def read_json_field(path: str | Path, *keys: str) -> Any:
    """``data[keys[0]][keys[1]]...`` of a JSON file such as ``biencoder.json``; None when the
    file or a key is absent."""
    path = Path(path)
    if not path.exists():
        return None
    value: Any = json.loads(path.read_text())
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a backbone or checkpoint directory."""
    return AutoTokenizer.from_pretrained(str(path))


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
    device: torch.device | str = "cpu",
) -> dict[str, Tensor]:
    """Tokenise a batch with [CLS]/[SEP], truncated to ``max_length``, padded to the longest."""
    batch = tokenizer(
        texts, max_length=max_length, truncation=True, padding=True, return_tensors="pt"
    )
    return {k: v.to(device) for k, v in batch.items()}
