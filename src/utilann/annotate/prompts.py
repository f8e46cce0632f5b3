"""Versioned prompt templates: loading, validation and rendering into chat messages.

A template version is a directory holding one YAML file per cascade step (``relsel``,
``answer``, ``utilsel``, ``utilrank``). Version ``v1`` ships inside the package
(``utilann/prompts/v1``); a user swaps wording by pointing ``annotation.prompts.dir`` to a
directory with their own ``<version>/`` folder. Each step's hash (of its file bytes) goes into
manifests, and the rendered messages go into the cache key, so a wording change reruns exactly
the steps whose messages changed.

Template file keys:

``turns``          fixed opening messages (``role`` + ``content``), e.g. role setting + ack.
``passage_turns``  true: one user message per passage, each followed by ``passage_ack``
                   (RankGPT style); false: passages joined by newlines into ``{passages}``.
``passage``        how one passage is written (``{index}`` 1-based, ``{passage}``).
``passage_ack``    the canned assistant reply after each passage turn.
``final``          the closing user message with the instruction and the answer format.

Placeholders: ``{num}`` ``{query}`` ``{answer}`` ``{passages}`` ``{index}`` ``{passage}``;
write ``{{``/``}}`` for literal braces. Passage and query text are substituted as values, never
re-parsed, so braces or instructions inside a passage stay plain text in its own turn.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from typing import Any

import yaml

STEPS = ("relsel", "answer", "utilsel", "utilrank")
ROLES = ("system", "user", "assistant")
FIELDS = frozenset({"num", "query", "answer", "passages", "index", "passage"})
_KEYS = {"step", "turns", "passage_turns", "passage", "passage_ack", "final"}

Message = dict[str, str]


class TemplateError(ValueError):
    """A prompt template file is malformed."""


@dataclass(frozen=True)
class PromptTemplate:
    """One step's conversation template (see the module docstring for the fields)."""

    step: str
    version: str
    sha256: str
    turns: tuple[tuple[str, str], ...]
    passage_turns: bool
    passage: str
    passage_ack: str
    final: str

    def render(self, query: str, passages: Sequence[str], answer: str = "") -> list[Message]:
        """The chat messages for ``query`` over ``passages`` (already truncated)."""
        common = {"num": len(passages), "query": query, "answer": answer}
        messages = [{"role": r, "content": _fill(c, common)} for r, c in self.turns]
        shown = [
            _fill(self.passage, {**common, "index": i, "passage": p})
            for i, p in enumerate(passages, start=1)
        ]
        if self.passage_turns:
            for i, text in enumerate(shown, start=1):
                messages.append({"role": "user", "content": text})
                messages.append(
                    {
                        "role": "assistant",
                        "content": _fill(self.passage_ack, {**common, "index": i}),
                    }
                )
        messages.append(
            {"role": "user", "content": _fill(self.final, {**common, "passages": "\n".join(shown)})}
        )
        return messages


def _fill(template: str, values: Mapping[str, Any]) -> str:
    """``str.format`` restricted to known fields (validated at load time)."""
    return template.format_map(values)


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name is not None}


def parse_template(raw: bytes, step: str, version: str) -> PromptTemplate:
    """Validate one template file's content and build a :class:`PromptTemplate`."""
    where = f"prompt template {version}/{step}.yaml"
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise TemplateError(f"{where}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise TemplateError(f"{where}: expected a mapping at top level")
    unknown = set(data) - _KEYS
    if unknown:
        raise TemplateError(f"{where}: unknown key(s) {sorted(unknown)}; allowed {sorted(_KEYS)}")
    if data.get("step", step) != step:
        raise TemplateError(f"{where}: declares step {data['step']!r}")
    for key in ("passage", "final"):
        if not isinstance(data.get(key), str):
            raise TemplateError(f"{where}: `{key}` must be a string")
    passage_turns = bool(data.get("passage_turns", False))
    if passage_turns and not isinstance(data.get("passage_ack"), str):
        raise TemplateError(f"{where}: `passage_ack` is required when passage_turns is true")
    turns = []
    for turn in data.get("turns") or []:
        if (
            not isinstance(turn, dict)
            or turn.get("role") not in ROLES
            or not isinstance(turn.get("content"), str)
        ):
            raise TemplateError(f"{where}: each turn needs role in {ROLES} and a string content")
        turns.append((turn["role"], turn["content"]))
    texts = [c for _, c in turns] + [data["passage"], data["final"], data.get("passage_ack", "")]
    bad = set().union(*(_placeholders(t) for t in texts)) - FIELDS
    if bad:
        raise TemplateError(
            f"{where}: unknown placeholder(s) {sorted(bad)}; allowed {sorted(FIELDS)}"
        )
    if "{passage}" not in data["passage"]:
        raise TemplateError(f"{where}: `passage` must contain {{passage}}")
    if not passage_turns and "{passages}" not in data["final"]:
        raise TemplateError(
            f"{where}: `final` must contain {{passages}} when passage_turns is false"
        )
    return PromptTemplate(
        step=step,
        version=version,
        sha256=hashlib.sha256(raw).hexdigest(),
        turns=tuple(turns),
        passage_turns=passage_turns,
        passage=data["passage"],
        passage_ack=data.get("passage_ack", ""),
        final=data["final"],
    )


def load_templates(
    version: str, directory: str | Path | None = None, steps: Sequence[str] = STEPS
) -> dict[str, PromptTemplate]:
    """Load ``steps`` of template ``version`` from ``directory`` (default: package data)."""
    root = (
        Path(directory) / version
        if directory is not None
        else importlib.resources.files("utilann") / "prompts" / version
    )
    templates = {}
    for step in steps:
        if step not in STEPS:
            raise TemplateError(f"unknown step {step!r}; expected one of {STEPS}")
        path = root / f"{step}.yaml"
        if not path.is_file():
            raise TemplateError(f"prompt template {path} not found (version {version!r})")
        templates[step] = parse_template(path.read_bytes(), step, version)
    return templates


def passage_text(title: str | None, text: str | None, max_words: int) -> str:
    """``title + " " + text``, stripped, cut to ``max_words`` whitespace tokens (digest 3.3)."""
    words = f"{title or ''} {text or ''}".split()
    return " ".join(words[:max_words])
