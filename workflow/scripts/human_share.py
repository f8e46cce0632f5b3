"""The human share of a curriculum run: choose its queries (rule select_human_queries) or
label them with the oracle's qrels (rule oracle_human_labels)."""

import pandas as pd

from utilann import schemas
from utilann.datasets import read_corpus
from utilann.io import read_table, write_table
from utilann.logs import script_logging
from utilann.oracle import oracle_pools
from utilann.selection import select_queries


def read_pools(paths):
    return pd.concat([read_table(p) for p in paths], ignore_index=True)


def select(smk, log):
    p = dict(smk.params.selection)
    population = read_pools(smk.input.pools)[["query_id"]].drop_duplicates()
    if "candidates" in smk.input.keys():  # new-corpus mode: each query's origin
        origins = read_table(smk.input.candidates).set_index("query_id")["origin"]
        population["origin"] = population["query_id"].map(origins)
    else:
        population["origin"] = None
    if p["origins"] is not None:
        population = population[population["origin"].isin(p["origins"])]
    labels = read_table(smk.input.labels) if "labels" in smk.input.keys() else None
    table = select_queries(population, p["ratio"], p["seed"], p["selector"], labels, p["threshold"])
    write_table(table, smk.output.selection, schemas.SELECTION, {**p, "population": len(table)})
    log.info(
        "%s: %d of %d queries chosen by %s",
        smk.wildcards.run,
        int(table["selected"].sum()),
        len(table),
        p["selector"],
    )


def label(smk, log):
    selection = read_table(smk.input.selection)
    pools, counts = oracle_pools(
        read_pools(smk.input.pools),
        read_table(smk.input.qrels),
        read_corpus(smk.input.corpus),
        selection.loc[selection["selected"], "query_id"],
    )
    meta = {"oracle": smk.params.oracle, "counts": counts}
    write_table(pools, smk.output.pools, schemas.POOLS, meta)
    log.info("%s: oracle %s labelled %s", smk.wildcards.run, smk.params.oracle, counts)


if __name__ == "__main__":
    action = {"select_human_queries": select, "oracle_human_labels": label}[snakemake.rule]
    with script_logging(snakemake.log[0], snakemake.rule) as log:
        action(snakemake, log)
