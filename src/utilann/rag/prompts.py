"""Versioned RAG prompt templates (package data under ``utilann/prompts/rag/``).

A template is a JSON file ``<name>.v<version>.json`` holding a chat conversation whose
contents may use two placeholders, ``{passages}`` (the top-k passages, one per line, each
``title text``) and ``{question}``. Templates are files rather than strings in code so that a
wording change is a new version, visible in review and recorded (name, version, SHA-256) in
the metadata of every generation table; the LLM-call cache key hashes the rendered
conversation, so a changed wording is never answered from an old cache.

Shipped templates (digest 3.3.2 and 6.3: role turn, canned assistant acknowledgement, then
passages and question):

* ``short_answer`` - "a few words", for factoid QA (NQ, HotpotQA);
* ``sentence`` - "one or a few sentences", for MS MARCO QA (the paper's committed wording).
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

PLACEHOLDERS = frozenset({"passages", "question"})
ROLES = frozenset({"system", "user", "assistant"})
_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>[0-9]+)\.json$")


class TemplateError(ValueError):
    """A prompt template is missing or malformed."""


@dataclass(frozen=True)
class PromptTemplate:
    """A chat conversation with ``{passages}`` and ``{question}`` placeholders."""

    name: str
    version: int
    messages: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        """``name.vN``: what generation metadata and logs name."""
        return f"{self.name}.v{self.version}"

    @property
    def sha256(self) -> str:
        """Hash of the conversation itself, for rerun triggers and metadata."""
        canonical = json.dumps([self.name, self.version, self.messages], ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def render(self, question: str, passages: Sequence[str]) -> list[dict[str, str]]:
        """The conversation for one query; passages are joined by newlines, as in the paper."""
        values = {"passages": "\n".join(passages), "question": question.strip()}
        return [
            {"role": role, "content": content.format(**values)} for role, content in self.messages
        ]


def format_passage(title: str | None, text: str) -> str:
    """``title text``, stripped: how the authors show a passage to the LLM."""
    return f"{(title or '').strip()} {text.strip()}".strip()


def _template_dir() -> Traversable:
    return files("utilann").joinpath("prompts").joinpath("rag")


def _versions() -> dict[str, dict[int, Traversable]]:
    found: dict[str, dict[int, Traversable]] = {}
    for entry in _template_dir().iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.setdefault(match["name"], {})[int(match["version"])] = entry
    return found


def available_templates() -> list[str]:
    """Every shipped template id (``name.vN``), sorted."""
    return sorted(f"{name}.v{v}" for name, versions in _versions().items() for v in versions)


def _parse(entry: Traversable, name: str, version: int) -> PromptTemplate:
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
        messages = tuple((m["role"], m["content"]) for m in data["messages"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise TemplateError(
            f"{entry.name}: not a template ({err!r}); expected 'messages'"
        ) from None
    if (data.get("name"), data.get("version")) != (name, version):
        raise TemplateError(f"{entry.name}: declares {data.get('name')}.v{data.get('version')}")
    if not messages:
        raise TemplateError(f"{entry.name}: empty conversation")
    used: set[str] = set()
    for role, content in messages:
        if role not in ROLES:
            raise TemplateError(
                f"{entry.name}: unknown role {role!r}; expected one of {sorted(ROLES)}"
            )
        used |= {field for _, field, _, _ in string.Formatter().parse(content) if field is not None}
    if used != PLACEHOLDERS:
        raise TemplateError(
            f"{entry.name}: placeholders {sorted(used)}; expected {sorted(PLACEHOLDERS)}"
        )
    return PromptTemplate(name=name, version=version, messages=messages)


def load_template(template: str) -> PromptTemplate:
    """Load ``name.vN``, or the highest version of ``name``.

    Raises:
        TemplateError: unknown name or version (the message lists the shipped ones), or a
            malformed file.
    """
    name, _, version = template.partition(".v")
    versions = _versions().get(name, {})
    if not versions or (version and (not version.isdigit() or int(version) not in versions)):
        raise TemplateError(
            f"unknown RAG prompt template {template!r}; shipped: {available_templates()}"
        )
    number = int(version) if version else max(versions)
    return _parse(versions[number], name, number)
