"""Table 6: the controlled comparisons among training runs, classified from their settings.

A run's settings are the flat ``{key: value}`` of :class:`utilann.train.spec.RunSpec` that the
workflow passes to the report (``label_source``, ``loss``, ``init_from``, ``query_ratio``, ...).
Runs that differ only in the keys of one of the paper's components (annotation strategy, loss,
adding human labels, UtilRank threshold, handling of the human positive) form one comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from utilann.annotate.steps import STEPS, uses_threshold
from utilann.report.cells import grid, metric_values, significance_markers, target_label
from utilann.report.table import ReportTable
from utilann.train.settings import REPLUG

LABEL_NAMES = {"human": "Human", REPLUG: "REPLUG"}
"""Names of the label sources that are not annotation steps."""


def label_name(label_source: str) -> str:
    """A label source's name in tables: Human, REPLUG, or the annotation step's title."""
    if label_source in LABEL_NAMES:
        return LABEL_NAMES[label_source]
    step = STEPS.get(label_source)
    return step.title if step is not None and step.title else label_source


@dataclass(frozen=True)
class Component:
    """A setting of Table 6 and the run keys that make it up.

    Runs belong to one comparison when they pass ``member`` and agree on every key outside
    ``keys``; ``one_per`` keeps one run per value of those keys: the first (config order) for
    which ``prefer`` is true, else the first.
    """

    name: str
    keys: frozenset[str]
    member: Callable[[Mapping[str, Any]], bool]
    one_per: tuple[str, ...] = ()
    prefer: Callable[[Mapping[str, Any]], bool] = lambda spec: True


def single_stage(spec: Mapping[str, Any]) -> bool:
    """Trained once on all pool queries from one label source (no human-label add-on)."""
    return (
        spec.get("init_from") is None
        and not spec.get("union_ratio")
        and float(spec.get("query_ratio", 1.0)) == 1.0
    )


def _uses_human_labels(spec: Mapping[str, Any]) -> bool:
    """A curriculum stage 2 or a Positive Union run (LLM labels plus some human labels)."""
    return spec.get("init_from") is not None or float(spec.get("union_ratio") or 0) > 0


def _llm_labels(spec: Mapping[str, Any]) -> bool:
    return spec.get("label_source") != "human"


PAPER_LOSS = {
    "human": "SingleLH",
    "relsel": "SumMargLH",
    "utilsel": "SumMargLH",
    "utilrank": "Rand1LH",
    REPLUG: "KLDiv",
}
"""The loss the paper trains each label source with (Table 6's strategy rows; App. D.2)."""


def _paper_loss(spec: Mapping[str, Any]) -> bool:
    return spec.get("loss") == PAPER_LOSS.get(str(spec.get("label_source")))


COMPONENTS = (
    Component(
        "annotation strategy",
        frozenset({"label_source", "utilrank_threshold", "loss", "positive_sampling"}),
        lambda s: single_stage(s) and s.get("human_positive", "random") == "random",
        one_per=("label_source",),
        prefer=_paper_loss,
    ),
    Component("loss", frozenset({"loss", "positive_sampling"}), lambda s: True),
    Component(
        "+ human labels",
        frozenset(
            {
                "init_from",
                "label_source",
                "loss",
                "positive_sampling",
                "query_ratio",
                "query_selection",
                "union_ratio",
                "epochs",
                "lr",
                "warmup_ratio",
            }
        ),
        _uses_human_labels,
    ),
    Component(
        "UtilRank threshold",
        frozenset({"utilrank_threshold"}),
        lambda s: s.get("label_source") == "utilrank",
    ),
    Component("human positive in LLM labels", frozenset({"human_positive"}), _llm_labels),
)
"""Table 6's components, in the paper's order (the LLM annotator is fixed per experiment)."""


@dataclass(frozen=True)
class ControlledGroup:
    """Runs that differ only in the keys of one component."""

    component: str
    runs: tuple[str, ...]
    varying: tuple[str, ...]


def normalize_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings with the keys that cannot matter blanked (a threshold where the label
    source is not cut by one)."""
    out = dict(spec)
    if not uses_threshold(str(out.get("label_source"))):
        out["utilrank_threshold"] = None
    return out


def controlled_groups(
    specs: Mapping[str, Mapping[str, Any]], exclude: Iterable[str] = ()
) -> list[ControlledGroup]:
    """The controlled comparisons among training runs (Table 6), in component order.

    For each :data:`COMPONENTS` entry, the member runs are partitioned by their values on every
    key outside the component; a part of two or more runs is one comparison. A comparison with
    exactly the runs of an earlier one is not repeated. ``exclude`` (the reference run, shown
    on its own row) takes part in none.
    """
    excluded = set(exclude)
    normal = {name: normalize_spec(s) for name, s in specs.items() if name not in excluded}
    all_keys = sorted({k for s in normal.values() for k in s})
    groups: list[ControlledGroup] = []
    seen: set[frozenset[str]] = set()
    for component in COMPONENTS:
        parts: dict[tuple, list[str]] = {}
        for name, spec in normal.items():
            if not component.member(spec):
                continue
            fixed = tuple(repr(spec.get(k)) for k in all_keys if k not in component.keys)
            parts.setdefault(fixed, []).append(name)
        for members in parts.values():
            if component.one_per:
                chosen: dict[tuple, str] = {}
                ranked = sorted(members, key=lambda n: not component.prefer(normal[n]))  # stable
                for name in ranked:
                    chosen.setdefault(
                        tuple(repr(normal[name].get(k)) for k in component.one_per), name
                    )
                members = [n for n in members if n in chosen.values()]
            if len(members) < 2 or frozenset(members) in seen:
                continue
            varying = tuple(
                k
                for k in sorted(component.keys)
                if len({repr(normal[m].get(k)) for m in members}) > 1
            )
            seen.add(frozenset(members))
            groups.append(ControlledGroup(component.name, tuple(members), varying))
    return groups


def _pct(ratio: Any) -> str:
    return f"{float(ratio) * 100:g} %"


def describe_variant(spec: Mapping[str, Any], varying: Sequence[str]) -> str:
    """A short name for a run within its comparison (what sets it apart)."""
    spec = normalize_spec(spec)
    parts: list[str] = []
    covered = {"init_from", "query_ratio", "union_ratio", "label_source", "utilrank_threshold"}
    if spec.get("init_from"):
        parts.append(f"CL {_pct(spec.get('query_ratio', 1.0))} human after {spec['init_from']}")
        covered |= {"epochs", "lr", "warmup_ratio", "loss", "positive_sampling"}
    elif float(spec.get("union_ratio") or 0) > 0:
        parts.append(f"Positive Union {_pct(spec['union_ratio'])}")
        covered |= {"loss", "positive_sampling"}
    elif {"label_source", "utilrank_threshold", "query_ratio", "union_ratio", "init_from"} & set(
        varying
    ):
        name = label_name(str(spec.get("label_source")))
        if (
            uses_threshold(str(spec.get("label_source")))
            and spec.get("utilrank_threshold") is not None
        ):
            name += f" (k = {float(spec['utilrank_threshold']):g} %)"
        if float(spec.get("query_ratio", 1.0)) < 1.0:
            name += f", {_pct(spec['query_ratio'])} of queries"
        parts.append(name)
    if "loss" in varying and "loss" not in covered:
        parts.append(str(spec.get("loss")))
    elif "positive_sampling" in varying and "positive_sampling" not in covered:
        parts.append(str(spec.get("positive_sampling")))
    covered |= {"loss", "positive_sampling"}
    parts += [f"{k} = {spec.get(k)}" for k in varying if k not in covered]
    return ", ".join(parts) or "(same settings)"


def controlled_table(
    specs: Mapping[str, Mapping[str, Any]],
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    target: tuple[str, str],
    measures: Sequence[str],
    *,
    reference: str | None = None,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Table 6: the controlled comparisons, on one evaluation target (the paper: MS MARCO Dev).

    Rows are (component, variant, run); ``reference`` (the Human run) comes first on its own.
    """
    reference = reference if reference in specs else None
    groups = controlled_groups(specs, exclude=[reference] if reference else [])
    rows: list[tuple[str, str, str]] = []
    if reference:
        rows.append(("—", label_name(str(specs[reference].get("label_source"))), reference))
    for group in groups:
        rows += [
            (group.component, describe_variant(specs[r], group.varying), r) for r in group.runs
        ]
    values, markers = metric_values(metrics), significance_markers(significance)
    data, marks = grid(
        values, markers, rows, list(measures), lambda row, m: (row[2], target[0], target[1], m)
    )
    index = (
        pd.MultiIndex.from_tuples(rows, names=["component", "variant", "run"])
        if rows
        else pd.MultiIndex.from_tuples([], names=["component", "variant", "run"])
    )
    data.index = marks.index = index
    return ReportTable(
        title=f"Table 6: controlled comparisons on {target_label(*target)}",
        values=data,
        markers=marks,
        notes=list(notes),
        bold_best=False,
    )
