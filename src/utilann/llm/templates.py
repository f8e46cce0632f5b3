"""Prompt templates of every LLM step (annotation and RAG alike): one file format, one class.

A template set is a folder named for its version holding one YAML file per template::

    <dir>/<version>/<name>.yaml        e.g. prompts/v1/relsel.yaml, prompts/v1/short_answer.yaml

The packaged sets live in ``utilann/prompts/`` (``v1``: the paper's annotation prompts and the
RAG prompts; ``v1-small``: annotation wording for sub-1B models). A user swaps wording by
copying a version folder into a directory of their own, editing it, and pointing the config at
it (``annotation.prompts.dir`` / ``.version``). The file's SHA-256 goes into params and
artifact metadata (with the id ``<name>.<version>``) and, with the name, into the cache keys
(:attr:`PromptTemplate.fingerprint`), so a wording change reruns exactly the jobs and LLM calls
it touches and is never answered from an old cache entry, while the unchanged templates of a
copied set are still served from the cache.

Keys of a template file (the shape of rank_llm's templates: opening turns, one body per
passage, a closing instruction):

``name``           optional; must equal the file name.
``description``    optional free text.
``answer_format``  what the LLM is asked to answer: ``selection`` (passage numbers, e.g.
                   ``My selection: [1],[4]``), ``ranking`` (``[2] > [1] > [3]``) or ``text``
                   (free text). It picks the parser of the answer and is the metadata from
                   which constrained decoding can build a grammar.
``turns``          fixed opening messages (``role`` + ``content``), e.g. role setting + ack.
``passage_turns``  true: one user message per passage, each followed by ``passage_ack``
                   (RankGPT style); false: passages joined by newlines into ``{passages}``.
``passage``        how one passage is written (``{index}`` 1-based, ``{passage}``).
``passage_ack``    the canned assistant reply after each passage turn.
``example``        optional ``{user, assistant}``: how one few-shot example is shown, as a user
                   turn and the assistant's reply after the opening turns (``{passage}`` and
                   ``{query}`` are the example's); the examples themselves are data (config),
                   so one template serves any set of them.
``final``          the closing user message with the instruction and the answer format.
``answer``         optional: how the requested answer is written, the metadata constrained
                   decoding builds its grammar from (:mod:`utilann.llm.grammar`): ``prefix``
                   (selection default ``"My selection: "``), ``item`` (how one passage number
                   is written, default ``"[{id}]"``), ``separator`` (``","`` for a selection,
                   ``" > "`` for a ranking), ``suffix`` (after the last id, default ``""``),
                   ``empty`` (what follows ``prefix`` in an empty selection, default ``"[]"``;
                   null = the template does not allow one), ``max_chars`` (a text answer's
                   length bound, default 1000). The defaults are what the v1 templates ask
                   for; every form is one the parser (:mod:`utilann.annotate.parse`) reads.

Placeholders: ``{num}`` ``{query}`` ``{answer}`` ``{passages}`` ``{index}`` ``{passage}``;
write ``{{``/``}}`` for literal braces. Query, passage and answer text are substituted as
values, never re-parsed, so braces or instructions inside a passage stay plain text in its own
turn.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Formatter
from typing import Any

import yaml

ANSWER_FORMATS = ("selection", "ranking", "text")
ROLES = ("system", "user", "assistant")
FIELDS = frozenset({"num", "query", "answer", "passages", "index", "passage"})
_KEYS = {
    "name",
    "description",
    "answer_format",
    "turns",
    "passage_turns",
    "passage",
    "passage_ack",
    "example",
    "final",
    "answer",
}
_NAME = re.compile(r"^[a-z0-9_]+$")
_NUMBERED_VERSION = re.compile(r"^v(\d+)$")

Message = dict[str, str]


class TemplateError(ValueError):
    """A prompt template is missing or malformed."""


@dataclass(frozen=True)
class AnswerSyntax:
    """How a template asks for its answer to be written (the template key ``answer``).

    Kept beside the wording because the instruction spells the format out ("My selection:
    [i],[j]"); constrained decoding turns it into a grammar, so the grammar admits exactly the
    format the prompt asks for.
    """

    answer_format: str
    prefix: str = ""
    item: str = "[{id}]"
    separator: str = ","
    suffix: str = ""
    empty: str | None = None
    max_chars: int = 1000

    @classmethod
    def default(cls, answer_format: str) -> AnswerSyntax:
        """What the packaged templates of ``answer_format`` ask for."""
        if answer_format == "selection":
            return cls(answer_format, prefix="My selection: ", separator=",", empty="[]")
        if answer_format == "ranking":
            return cls(answer_format, separator=" > ")
        return cls(answer_format)

    @classmethod
    def parse(cls, answer_format: str, raw: Any, where: str) -> AnswerSyntax:
        """The template's ``answer`` mapping over the defaults of its answer format."""
        base = cls.default(answer_format)
        if raw is None:
            return base
        allowed = {"prefix", "item", "separator", "suffix", "empty", "max_chars"}
        if not isinstance(raw, dict) or set(raw) - allowed:
            raise TemplateError(f"{where}: `answer` must be a mapping with keys {sorted(allowed)}")
        syntax = cls(**{**vars(base), **raw, "answer_format": answer_format})
        head, _, tail = syntax.item.partition("{id}")
        if not (head and tail) or head[-1].isdigit() or tail[0].isdigit():
            # ids must be delimited on both sides: "[1]" must never be read inside "[11]"
            raise TemplateError(f"{where}: `answer.item` must wrap {{id}} in non-digit characters")
        if not isinstance(syntax.max_chars, int) or syntax.max_chars < 1:
            raise TemplateError(f"{where}: `answer.max_chars` must be a positive integer")
        return syntax


@dataclass(frozen=True)
class PromptTemplate:
    """One step's conversation template (see the module docstring for the fields)."""

    name: str
    version: str
    sha256: str
    answer_format: str
    turns: tuple[tuple[str, str], ...]
    passage_turns: bool
    passage: str
    passage_ack: str
    final: str
    description: str = ""
    example: tuple[str, str] | None = None
    answer: AnswerSyntax | None = None

    @property
    def answer_syntax(self) -> AnswerSyntax:
        """How the answer is written (the ``answer`` key over its format's defaults)."""
        return self.answer or AnswerSyntax.default(self.answer_format)

    @property
    def id(self) -> str:
        """``name.version``: what configs, metadata and logs name."""
        return f"{self.name}.{self.version}"

    @property
    def fingerprint(self) -> str:
        """``name@sha256``: the template's identity in LLM cache keys.

        The version folder is left out on purpose: a set copied to a new version with one file
        reworded regenerates that step's calls only.
        """
        return f"{self.name}@{self.sha256}"

    @property
    def fields(self) -> frozenset[str]:
        """The placeholders the template uses (e.g. whether it shows a reference answer)."""
        texts = [c for _, c in self.turns] + [self.passage, self.passage_ack, self.final]
        texts += list(self.example or ())
        return frozenset().union(*(_placeholders(t) for t in texts))

    def render(
        self,
        query: str,
        passages: Sequence[str],
        answer: str = "",
        examples: Sequence[tuple[str, str]] = (),
    ) -> list[Message]:
        """The chat messages for ``query`` (stripped) over ``passages`` (already formatted),
        after the few-shot ``examples`` ``(passage, query)``, each shown as ``example``."""
        common = {"num": len(passages), "query": query.strip(), "answer": answer}
        messages = [{"role": r, "content": _fill(c, common)} for r, c in self.turns]
        if examples and self.example is None:
            raise TemplateError(f"prompt template {self.id} has no `example` to show examples")
        for passage, example_query in examples:
            shown = {**common, "passage": passage, "query": example_query.strip()}
            user, reply = self.example or ("", "")
            messages.append({"role": "user", "content": _fill(user, shown)})
            messages.append({"role": "assistant", "content": _fill(reply, shown)})
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


def parse_template(raw: bytes, name: str, version: str, where: str | None = None) -> PromptTemplate:
    """Validate one template file's content and build a :class:`PromptTemplate`.

    ``where`` names the file in error messages (default ``<version>/<name>.yaml``).
    """
    where = where or f"prompt template {version}/{name}.yaml"
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise TemplateError(f"{where}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise TemplateError(f"{where}: expected a mapping at top level")
    unknown = set(data) - _KEYS
    if unknown:
        raise TemplateError(f"{where}: unknown key(s) {sorted(unknown)}; allowed {sorted(_KEYS)}")
    if data.get("name", name) != name:
        raise TemplateError(f"{where}: declares name {data['name']!r}")
    if data.get("answer_format") not in ANSWER_FORMATS:
        raise TemplateError(
            f"{where}: `answer_format` must be one of {ANSWER_FORMATS}, "
            f"got {data.get('answer_format')!r}"
        )
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
    example = data.get("example")
    if example is not None and (
        not isinstance(example, dict)
        or set(example) != {"user", "assistant"}
        or not all(isinstance(v, str) for v in example.values())
    ):
        raise TemplateError(f"{where}: `example` needs exactly a string `user` and `assistant`")
    template = PromptTemplate(
        name=name,
        version=version,
        sha256=hashlib.sha256(raw).hexdigest(),
        answer_format=data["answer_format"],
        turns=tuple(turns),
        passage_turns=passage_turns,
        passage=data["passage"],
        passage_ack=data.get("passage_ack", ""),
        final=data["final"],
        description=str(data.get("description") or ""),
        example=(example["user"], example["assistant"]) if example else None,
        answer=AnswerSyntax.parse(data["answer_format"], data.get("answer"), where)
        if "answer" in data
        else None,
    )
    bad = template.fields - FIELDS
    if bad:
        raise TemplateError(
            f"{where}: unknown placeholder(s) {sorted(bad)}; allowed {sorted(FIELDS)}"
        )
    if "{passage}" not in template.passage:
        raise TemplateError(f"{where}: `passage` must contain {{passage}}")
    if not passage_turns and "{passages}" not in template.final:
        raise TemplateError(
            f"{where}: `final` must contain {{passages}} when passage_turns is false"
        )
    return template


def _root(directory: str | Path | None) -> Traversable:
    return (
        Path(directory)
        if directory is not None
        else importlib.resources.files("utilann").joinpath("prompts")
    )


def available_templates(directory: str | Path | None = None) -> list[str]:
    """Ids (``name.version``) of every template in ``directory`` (default: the packaged ones)."""
    root = _root(directory)
    if not root.is_dir():
        return []
    return sorted(
        f"{entry.name[: -len('.yaml')]}.{folder.name}"
        for folder in root.iterdir()
        if folder.is_dir()
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_template(
    name: str, version: str | None = None, directory: str | Path | None = None
) -> PromptTemplate:
    """Load template ``name`` of ``version`` from ``directory`` (default: the packaged ones).

    ``version`` None takes the highest numbered version (``v<N>``) that has the template.

    Raises:
        TemplateError: no such template (the message lists the available ones), or a
            malformed file.
    """
    if not _NAME.match(name):
        raise TemplateError(f"bad template name {name!r}: lowercase letters, digits and _ only")
    root = _root(directory)
    if version is None:
        numbered = []
        for folder in root.iterdir() if root.is_dir() else []:
            match = _NUMBERED_VERSION.match(folder.name)
            if match and folder.joinpath(f"{name}.yaml").is_file():
                numbered.append((int(match.group(1)), folder.name))
        if not numbered:
            raise TemplateError(
                f"no numbered version (v<N>) of prompt template {name!r} in {root}; "
                f"available: {available_templates(directory)}"
            )
        version = max(numbered)[1]
    path = root.joinpath(version).joinpath(f"{name}.yaml")
    if not path.is_file():
        raise TemplateError(
            f"prompt template {path} not found (name {name!r}, version {version!r}); "
            f"available: {available_templates(directory)}"
        )
    return parse_template(path.read_bytes(), name, version, where=f"prompt template {path}")


def load_template_id(template_id: str, directory: str | Path | None = None) -> PromptTemplate:
    """Load ``name.version`` (e.g. ``short_answer.v1``), or the highest version of ``name``."""
    name, _, version = template_id.partition(".")
    return load_template(name, version or None, directory)


def load_templates(
    names: Sequence[str], version: str, directory: str | Path | None = None
) -> dict[str, PromptTemplate]:
    """Templates ``names`` of one ``version`` (an annotation run's step templates)."""
    return {name: load_template(name, version, directory) for name in names}
