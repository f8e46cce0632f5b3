"""Label one run's training queries from the pools (and LLM labels): a TRAINSET table."""

import pandas as pd

from utilann import schemas
from utilann.io import read_table, write_table
from utilann.logs import script_logging
from utilann.train.data import build_trainset
from utilann.train.settings import TrainsetSettings

params = dict(snakemake.params.labels)
code_version = params.pop("code_version")  # utilrank_threshold is None where it does not apply
drop_useful = params.pop("drop_judged_useful")  # training.negatives, not a run's own setting
with script_logging(snakemake.log[0], "build_trainset") as log:
    pools = pd.concat([read_table(p) for p in snakemake.input.pools], ignore_index=True)
    given = snakemake.input.keys()
    labels = read_table(snakemake.input.labels) if "labels" in given else None
    replug = (
        pd.concat([read_table(p) for p in snakemake.input.replug], ignore_index=True)
        if "replug" in given
        else None
    )
    selected = None
    if "selection" in given:  # a human share chosen beforehand
        selection = read_table(snakemake.input.selection)
        selected = selection.loc[selection["selected"], "query_id"].tolist()
    audit = read_table(snakemake.input.audit) if drop_useful else None
    rows, stats = build_trainset(
        pools, labels, TrainsetSettings(**params), selected=selected, replug=replug, audit=audit
    )
    meta = {
        "run": snakemake.wildcards.run,
        "settings": params,
        "drop_judged_useful": drop_useful,
        "code_version": code_version,
        **stats,
    }
    write_table(rows, snakemake.output.trainset, schemas.TRAINSET, meta)
    log.info(
        "%d queries (%d dropped without a positive), %.2f positives per query",
        stats["queries"],
        stats["queries_dropped"],
        stats["mean_positives"],
    )
