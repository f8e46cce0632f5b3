"""Figure 3 of the paper for this experiment: which runs it draws, its data, and the plots.

* Figure 3b: the UtilRank threshold k against annotation precision/recall (from the annotation
  report) and against the retrieval quality of the runs trained on UtilRank labels at k.
* Figure 3a: the share of human labels in the curriculum stage against retrieval quality.

Which runs a figure draws is decided from the runs' flat settings (as for Table 6, see
:mod:`utilann.report.controlled`); PNG files are drawn with matplotlib (imported only to plot).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from utilann.report.cells import metric_values
from utilann.report.controlled import single_stage

Settings = Mapping[str, Mapping[str, Any]]
"""Every training run's flat settings, ``{run: {key: value}}``."""


def annotation_sweep(report: pd.DataFrame) -> pd.DataFrame:
    """UtilRank precision / recall / positives per threshold k (%), sorted by k."""
    rows = report[(report["strategy"] == "utilrank") & report["threshold"].notna()]
    out = rows[["threshold", "precision", "recall", "avg_positives"]].astype(float)
    return out.sort_values("threshold").reset_index(drop=True)


def utilrank_runs(specs: Settings) -> dict[str, float]:
    """Single-stage runs trained on UtilRank labels -> their threshold k (%)."""
    return {
        name: float(spec["utilrank_threshold"])
        for name, spec in specs.items()
        if spec.get("label_source") == "utilrank"
        and spec.get("utilrank_threshold") is not None
        and single_stage(spec)
    }


def retrieval_by_threshold(
    specs: Settings,
    metrics: pd.DataFrame,
    target: tuple[str, str],
    measure: str,
) -> pd.DataFrame:
    """(run, threshold, loss, value) of every UtilRank-trained run evaluated on ``target``."""
    values = metric_values(metrics)
    rows = []
    for name, threshold in utilrank_runs(specs).items():
        value = values.get((name, target[0], target[1], measure))
        if value is not None:
            rows.append((name, threshold, str(specs[name].get("loss")), value))
    frame = pd.DataFrame(rows, columns=["run", "threshold", "loss", "value"])
    return frame.sort_values(["loss", "threshold"]).reset_index(drop=True)


def cl_ratio_runs(specs: Settings) -> dict[str, dict[str, float]]:
    """Curriculum runs by curve: ``{curve: {run: human ratio in %}}``.

    A curriculum run is a stage 2 trained on human labels from its parent's checkpoint; a
    curve is one parent and one way of choosing the human share: named for the parent when
    the share is random (the paper), ``<parent>, <query_selection>`` when it is chosen
    actively (:mod:`utilann.selection`).
    """
    curves: dict[str, dict[str, float]] = {}
    for name, spec in specs.items():
        parent = spec.get("init_from")
        if parent and spec.get("label_source") == "human":
            selection = spec.get("query_selection", "random")
            curve = str(parent) if selection == "random" else f"{parent}, {selection}"
            curves.setdefault(curve, {})[name] = float(spec.get("query_ratio", 1.0)) * 100
    return curves


def _parent(specs: Settings, runs: Mapping[str, float]) -> str:
    """The run a curve's CL runs continue (they share it)."""
    return str(specs[next(iter(runs))]["init_from"])


def has_ratio_curves(specs: Settings) -> bool:
    """Whether some run is continued with human labels at two or more ratios (Figure 3a)."""
    return any(len(set(runs.values())) >= 2 for runs in cl_ratio_runs(specs).values())


def utilrank_settings(specs: Settings) -> dict[str, Mapping[str, Any]]:
    """The settings of the runs Figure 3b draws (:func:`utilrank_runs`)."""
    return {name: specs[name] for name in utilrank_runs(specs)}


def cl_settings(specs: Settings) -> dict[str, Mapping[str, Any]]:
    """The settings of the curriculum runs and their parents (Figure 3a), in config order."""
    names = {n for runs in cl_ratio_runs(specs).values() for n in [_parent(specs, runs), *runs]}
    return {name: spec for name, spec in specs.items() if name in names}


def human_reference(specs: Settings, baseline: str | None) -> str | None:
    """The run drawn as Figure 3a's 100 %-human line: the baseline, when it is a single-stage
    run on human labels (the paper's Human), else none."""
    spec = specs.get(baseline) if baseline else None
    if spec is not None and spec.get("label_source") == "human" and spec.get("init_from") is None:
        return baseline
    return None


def metric_value(
    metrics: pd.DataFrame, run: str, target: tuple[str, str], measure: str
) -> float | None:
    """One aggregate figure of METRICS, None when it is not there."""
    return metric_values(metrics).get((run, target[0], target[1], measure))


def human_ratio_curves(
    specs: Settings,
    metrics: pd.DataFrame,
    target: tuple[str, str],
    measure: str,
) -> pd.DataFrame:
    """(parent, ratio, run, value): each curve's parent at 0 % and its CL runs at their human
    ratio; ``parent`` is the curve's name (:func:`cl_ratio_runs`).

    Only curves with two or more ratios are drawn.
    """
    values = metric_values(metrics)
    rows = []
    for curve, runs in cl_ratio_runs(specs).items():
        if len(set(runs.values())) < 2:
            continue
        points = [(_parent(specs, runs), 0.0)] + sorted(runs.items(), key=lambda kv: kv[1])
        for run, ratio in points:
            value = values.get((run, target[0], target[1], measure))
            if value is not None:
                rows.append((curve, ratio, run, value))
    return pd.DataFrame(rows, columns=["parent", "ratio", "run", "value"])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    from utilann.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(
            tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=130, bbox_inches="tight"
        )


def plot_threshold_sweep(
    sweep: pd.DataFrame,
    retrieval: pd.DataFrame,
    measure: str,
    target: str,
    path: str | Path,
) -> None:
    """Figure 3b: UtilRank threshold k against annotation precision/recall and retrieval."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if len(sweep):
        left.plot(sweep["threshold"], 100 * sweep["precision"], "o-", label="precision")
        left.plot(sweep["threshold"], 100 * sweep["recall"], "s-", label="recall")
        left.legend()
    else:
        left.text(
            0.5, 0.5, "no UtilRank annotation", ha="center", va="center", transform=left.transAxes
        )
    left.set(xlabel="UtilRank threshold k (%)", ylabel="vs human positives (%)", title="annotation")
    if len(retrieval):
        for loss, rows in retrieval.groupby("loss", sort=True):
            right.plot(rows["threshold"], 100 * rows["value"], "o-", label=f"trained with {loss}")
            for run, x, y in zip(rows["run"], rows["threshold"], rows["value"]):
                right.annotate(
                    run, (x, 100 * y), textcoords="offset points", xytext=(4, 4), fontsize=8
                )
        right.legend()
    else:
        right.text(
            0.5,
            0.5,
            "no run trained on UtilRank labels",
            ha="center",
            va="center",
            transform=right.transAxes,
        )
    right.set(
        xlabel="UtilRank threshold k (%)", ylabel=f"{measure} (%)", title=f"retrieval on {target}"
    )
    ticks = sorted(set(sweep["threshold"]) | set(retrieval["threshold"]))
    for ax in (left, right):
        if ticks:
            ax.set_xticks(ticks)
            ax.set_xlim(min(ticks) - 5, max(ticks) + 5)
        ax.grid(alpha=0.3)
    fig.suptitle("Figure 3b: UtilRank threshold")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_human_ratio(
    curves: pd.DataFrame,
    measure: str,
    target: str,
    path: str | Path,
    reference: tuple[str, float] | None = None,
) -> None:
    """Figure 3a: human-label ratio of the curriculum stage against retrieval quality."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for parent, rows in curves.groupby("parent", sort=True):
        ax.plot(rows["ratio"], 100 * rows["value"], "o-", label=f"{parent} + CL")
    if reference is not None:
        ax.axhline(
            100 * reference[1], color="grey", linestyle="--", label=f"{reference[0]} (100 % human)"
        )
    if len(curves) or reference is not None:
        ax.legend()
    ax.set(
        xlabel="human labels in the curriculum stage (%)",
        ylabel=f"{measure} (%)",
        title=f"retrieval on {target}",
    )
    ax.grid(alpha=0.3)
    fig.suptitle("Figure 3a: human-label ratio")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
