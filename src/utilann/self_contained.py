"""A paper-kind experiment must set its own data, RAG and generator sections.

``--configfile`` files merge key by key into the embedded demo config (config/config.yaml), so
a key the paper config forgets silently keeps the demo's value: a paper run would answer the
demo's NQ-oracle sample with the annotator as generator. ``experiment_kind: paper`` marks a
config that must be complete on its own; the Snakefile calls :func:`check_self_contained` with
what the user's own files set (Snakemake's ``overwrite_config``: every ``--configfile`` and
``--config`` merged) and refuses to plan when one of :data:`PAPER_SECTIONS`, or the entry of
a dataset the experiment uses, is not among them. Those sections (and ``datasets``) are then
*replaced* by the experiment's own, not merged into the demo's: the demo's datasets and runs do
not leak in, and the runs keep the experiment's order (the paper's row order of Tables 2-5).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from typing import Any

PAPER_SECTIONS: tuple[tuple[str, ...], ...] = (
    ("train",),
    ("evaluation", "targets"),
    ("llm", "model"),
    ("training", "runs"),
    ("rag", "runs"),
    ("rag", "targets"),
    ("rag", "max_queries"),
    ("rag", "generators"),
    ("rag", "generator", "sampling"),
)
"""Keys a paper-kind experiment sets itself (the demo's value is never the paper's)."""


def _is_set(own: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = own
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def used_datasets(config: Mapping[str, Any]) -> list[str]:
    """Datasets the experiment reads: training, evaluation, RAG and Hybrid-Test targets."""
    names = [config["train"]["dataset"]]
    # Also before validation: sections may still lack their defaults.
    names += [t["dataset"] for t in config["evaluation"].get("targets", [])]
    names += [t["dataset"] for t in config.get("rag", {}).get("targets", [])]
    hybrid = config["evaluation"].get("hybrid") or {}
    if hybrid.get("dataset"):
        names.append(hybrid["dataset"])
    return list(dict.fromkeys(names))


def inherited_sections(config: Mapping[str, Any], own: Mapping[str, Any]) -> list[str]:
    """Dotted keys of :data:`PAPER_SECTIONS` and ``datasets.<used>`` that ``own`` lacks.

    Args:
        config: the merged config (demo defaults plus the user's files).
        own: what the user's config files and ``--config`` set, merged.
    """
    missing = [".".join(path) for path in PAPER_SECTIONS if not _is_set(own, path)]
    missing += [
        f"datasets.{name}" for name in used_datasets(config) if not _is_set(own, ("datasets", name))
    ]
    return missing


def check_self_contained(config: MutableMapping[str, Any], own: Mapping[str, Any]) -> None:
    """Refuse a paper-kind experiment (``experiment_kind: paper``) that inherits a section
    from the demo config, then give it its own sections whole (in place); other kinds may
    inherit anything and are left as merged.

    Call it on the merged config before schema validation (the schema's defaults then fill
    what the experiment's sections leave out).
    """
    if config.get("experiment_kind") != "paper":
        return
    missing = inherited_sections(config, own)
    if missing:
        raise ValueError(
            f"experiment {config.get('experiment')!r} has experiment_kind: paper but does not "
            f"set {', '.join(missing)}: these would silently keep the demo's values from "
            "config/config.yaml; set them in the experiment's config file"
        )
    for path in [*PAPER_SECTIONS, ("datasets",)]:
        node: Any = config
        mine: Any = own
        for key in path[:-1]:
            node, mine = node[key], mine[key]
        node[path[-1]] = copy.deepcopy(mine[path[-1]])
