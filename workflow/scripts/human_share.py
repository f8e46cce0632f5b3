"""The human share of a curriculum run: choose its queries (rule select_human_queries), label
them with the oracle's qrels (rule oracle_human_labels), or make the LLM evidence two active
selectors read (rules annotate_orders, judge_confidence; vLLM starts inside the library, on a
cache miss only, under ``__main__``)."""

import pandas as pd

from utilann import schemas
from utilann.annotate.job import AnnotationJob
from utilann.datasets import read_corpus
from utilann.evidence import annotate_orders, judge_confidence, population_pools
from utilann.io import read_table, write_table
from utilann.logs import script_logging
from utilann.oracle import oracle_pools
from utilann.selection import Evidence, population, select_queries


def read_pools(paths):
    return pd.concat([read_table(p) for p in paths], ignore_index=True)


def optional(smk, name):
    return smk.input[name] if name in smk.input.keys() else None


def select(smk, log):
    p = dict(smk.params.selection)
    candidates = optional(smk, "candidates")
    pop = population(
        read_pools(smk.input.pools),
        read_table(candidates) if candidates else None,
        p["origins"],
    )
    evidence = Evidence(
        labels=read_table(smk.input.labels) if optional(smk, "labels") else None,
        orders=[read_table(path) for path in optional(smk, "orders") or []],
        confidence=read_table(smk.input.confidence) if optional(smk, "confidence") else None,
    )
    table = select_queries(pop, p["ratio"], p["seed"], p["selector"], evidence, p["threshold"])
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


def annotator(smk):
    """The annotation job's settings with this job's cache file and model directory."""
    params = dict(smk.params.annotator)
    model_path = smk.input.model[0] if smk.input.model else params["model"]
    return AnnotationJob(model_path=model_path, writer=smk.params.writer, **params)


def population_of(smk):
    return population_pools(smk.input.pools, optional(smk, "candidates"), smk.params.origins)


def orders(smk, log):
    pools = population_of(smk)
    manifest = annotate_orders(
        annotator(smk),
        pools,
        smk.params.seeds,
        smk.output.labels,
        smk.output.raw,
        smk.output.manifest,
    )
    log.info(
        "display orders %s over %d queries: %s",
        manifest["seeds"],
        manifest["queries"],
        {seed: p["parse"] for seed, p in manifest["passes"].items()},
    )


def confidence(smk, log):
    counts = judge_confidence(
        annotator(smk), population_of(smk), smk.params.step, smk.output.confidence
    )
    log.info("judge confidence (%s): %s", smk.params.step, counts)


if __name__ == "__main__":
    action = {
        "select_human_queries": select,
        "oracle_human_labels": label,
        "annotate_orders": orders,
        "judge_confidence": confidence,
    }[snakemake.rule]
    with script_logging(snakemake.log[0], snakemake.rule) as log:
        action(snakemake, log)
