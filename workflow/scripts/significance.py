"""Paired two-sided t-tests of every run against the baseline, over all per-query files, and
of the runs of each group against their second baseline (the paper's dagger against REPLUG).

Retrieval (``eval/<run>/...perquery.parquet``) and RAG (``rag/<run>/...perquery.parquet``)
per-query values are tested per (dataset, split, measure); each file names its run, dataset and
split in its metadata. Corpus-level measures (BLEU) have no per-query value and are not tested.
"""

import pandas as pd

from utilann import schemas
from utilann.io import read_metadata, read_table, write_table
from utilann.logs import script_logging
from utilann.significance import paired_ttests

p = snakemake.params
with script_logging(snakemake.log[0], "significance") as log:
    frames = []
    for path in [*snakemake.input.retrieval, *snakemake.input.rag]:
        meta = read_metadata(path)
        frames.append(
            read_table(path).assign(run=meta["run"], dataset=meta["dataset"], split=meta["split"])
        )
    per_query = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    runs = sorted(set(per_query["run"])) if len(per_query) else []
    if p.baseline != p.requested_baseline:
        log.warning(
            "evaluation.significance.baseline %r is not a run of this experiment: "
            "testing against %r instead",
            p.requested_baseline,
            p.baseline,
        )
    if p.baseline is None or p.baseline not in runs:
        log.warning("baseline run %r has no per-query values; nothing is tested", p.baseline)
        table = pd.DataFrame(columns=schemas.SIGNIFICANCE.names)
    else:
        table = paired_ttests(per_query, p.baseline, alpha=p.alpha)
    # The second test (the paper's dagger): each listed run against the runs of its group.
    second = []
    for baseline, tested in p.second_baselines.items():
        group = per_query[per_query["run"].isin([baseline, *tested])]
        if baseline not in runs or not tested:
            log.warning("second baseline %r: no per-query values or no run to test", baseline)
            continue
        rows = paired_ttests(group, baseline, alpha=p.alpha, markers=tuple(p.second_markers))
        log.info("second baseline %s: %d tests of %s", baseline, len(rows), ", ".join(tested))
        second.append(rows)
    table = pd.concat([table, *second], ignore_index=True) if second else table
    log.info(
        "baseline %s, alpha %g: %d tests, %d significant",
        p.baseline,
        p.alpha,
        len(table),
        int(table["significant"].sum()) if len(table) else 0,
    )
    write_table(
        table,
        snakemake.output.table,
        schemas.SIGNIFICANCE,
        {
            "baseline": p.baseline,
            "second_baselines": dict(p.second_baselines),
            "alpha": p.alpha,
            "files": len(frames),
        },
    )
