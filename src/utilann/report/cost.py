"""Table 17: what each run's labels cost, next to what they buy (paper App. F, Table 17).

The paper prices human labels at the MTurk rate per judged passage (491,007 queries x 31
pool passages x $0.09 = $1,369,910) and LLM labels at GPU-hours x $0.8 (Qwen-2.5-32B-Int8:
53 h on 8 A800 GPUs = $339); a curriculum run pays for both stages (UtilSel (CL 20%) =
$339 + 20 % of the human cost = $274,321).

Here the figures come from the experiment itself:

* LLM time = the annotation manifests' measured generation time (engine seconds of every
  cascade step the run's label source needs: RelSel, pseudo-answer, UtilSel for UtilSel;
  cached calls count with the seconds they cost when generated), GPU-hours = that time x the
  GPUs of one annotation job, cost = GPU-hours x ``report.cost.gpu_hour_usd``;
* human cost = annotated pool passages (the manifests' count) x
  ``report.cost.human_label_usd`` x the share of queries whose human labels the run uses
  (1 for Human, ``query_ratio`` of a curriculum stage 2, ``union_ratio`` of Positive Union);
* a run started from another (``init_from``) adds that run's cost.

A label source that is neither human nor an annotation strategy (REPLUG's LM-likelihood
labels) has no cost here unless its own manifests are added; its cells stay empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utilann.annotate.steps import STEPS, cascade_steps
from utilann.report.cells import metric_values
from utilann.report.table import ReportTable

#: Table 17's LLM row (paper App. F): UtilSel labels of 491,007 queries x 31 pool passages
#: with Qwen-2.5-32B-Int8, 53 h on one node of 8 A800 GPUs, at $0.8 per GPU-hour.
PAPER_TABLE17: dict[str, dict[str, Any]] = {
    "utilsel": {
        "hours": 53.0,
        "gpus": 8,
        "gpu_hour_usd": 0.8,
        "usd": 339,
        "queries": 491_007,
        "pool": 31,
        "hardware": "8 x A800 80GB",
        "model": "Qwen-2.5-32B-Instruct-GPTQ-Int8",
    }
}

COST_COLUMNS = {"cost": "cost ($)", "hours": "LLM time (h)", "gpu_hours": "GPU-hours"}


def step_seconds(manifests: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Generation seconds per annotation step, summed over the shards' manifests."""
    total: dict[str, float] = {}
    for manifest in manifests:
        for step, stats in (manifest.get("steps") or {}).items():
            total[step] = total.get(step, 0.0) + float(stats.get("gen_seconds") or 0.0)
    return total


def pool_passages(manifests: Sequence[Mapping[str, Any]]) -> int:
    """Annotated (query, passage) pairs: what human labels of the same pools would cost."""
    return sum(int((m.get("queries") or {}).get("passages") or 0) for m in manifests)


def run_cost(
    run: str,
    specs: Mapping[str, Mapping[str, Any]],
    seconds: Mapping[str, float],
    passages: int,
    gpus: int,
    gpu_hour_usd: float,
    human_label_usd: float,
) -> dict[str, float]:
    """``{cost, hours, gpu_hours}`` of one run's labels (module docstring); NaN when unknown."""
    spec = specs[run]
    source = spec["label_source"]
    hours = 0.0
    human_share = 0.0
    if source == "human":
        human_share = float(spec.get("query_ratio") or 1.0)
    elif source in STEPS and STEPS[source].is_strategy:
        hours = sum(seconds.get(step, 0.0) for step in cascade_steps([source])) / 3600
        human_share = float(spec.get("union_ratio") or 0.0)
    else:
        return {k: math.nan for k in COST_COLUMNS}
    gpu_hours = hours * max(gpus, 1)
    cost = {
        "cost": gpu_hours * gpu_hour_usd + human_share * passages * human_label_usd,
        "hours": hours,
        "gpu_hours": gpu_hours,
    }
    parent = spec.get("init_from")
    if parent and parent in specs:
        earlier = run_cost(parent, specs, seconds, passages, gpus, gpu_hour_usd, human_label_usd)
        cost = {k: cost[k] + earlier[k] for k in cost}
    return cost


def cost_table(
    specs: Mapping[str, Mapping[str, Any]],
    manifests: Sequence[Mapping[str, Any]],
    metrics: pd.DataFrame,
    target: tuple[str, str],
    measures: Sequence[str],
    cost: Mapping[str, Any],
    *,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Table 17: training runs x (cost, LLM time, GPU-hours, then ``measures`` on ``target``).

    ``cost``: ``gpu_hour_usd``, ``human_label_usd`` and ``gpus`` (GPUs of one annotation job,
    0 = a CPU run, priced as one device).
    """
    seconds, passages = step_seconds(manifests), pool_passages(manifests)
    values = metric_values(metrics)
    rows = {}
    for run in specs:
        figures = run_cost(
            run,
            specs,
            seconds,
            passages,
            int(cost["gpus"]),
            float(cost["gpu_hour_usd"]),
            float(cost["human_label_usd"]),
        )
        row = {COST_COLUMNS[k]: v for k, v in figures.items()}
        for m in measures:
            row[m] = values.get((run, target[0], target[1], m), math.nan)
        rows[run] = row
    data = pd.DataFrame.from_dict(rows, orient="index", columns=[*COST_COLUMNS.values(), *measures])
    data.index.name = "run"
    formats = {"cost ($)": "int", "LLM time (h)": "float", "GPU-hours": "float"}
    return ReportTable(
        title="Table 17: cost of each run's labels and what they buy",
        values=data,
        formats=formats,
        notes=list(notes),
        decimals=1,
    )
