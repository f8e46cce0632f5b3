"""New-corpus jobs: few-shot examples, passage sampling, one LLM question per passage (rule
querygen_shard) and the generated split (rule querygen_split); the work is in
:mod:`utilann.newcorpus.job`.

Only under ``__main__``: vLLM starts worker processes that re-import the main module.
"""

from utilann.logs import script_logging
from utilann.newcorpus.job import generate_shard, write_examples, write_passages, write_split


def examples(smk):
    p = smk.params
    write_examples(
        p.written, p.source, dict(smk.input.items()), p.passage_max_words, smk.output.examples
    )


def passages(smk):
    write_passages(smk.input.corpus, list(smk.output.shards), **smk.params.sample)


def shard(smk):
    params = dict(smk.params.items())
    params.pop("code_version")  # the library's own CODE_VERSION goes into the metadata
    generate_shard(
        **params,
        passages_path=smk.input.passages,
        examples_path=smk.input.examples,
        out=smk.output.queries,
        manifest_path=smk.output.manifest,
    )


def split(smk):
    p, inputs = smk.params, smk.input
    write_split(
        shard_paths=list(inputs.shards),
        index_dir=inputs.get("index"),
        bm25={**p.bm25, "threads": smk.threads},
        duplicates=p.duplicates,
        round_trip_k=p.round_trip_k,
        split=p.split,
        unlabelled=p.unlabelled,
        unlabelled_tables={
            "queries": inputs.get("queries"),
            "judged": list(inputs.get("judged", [])),
        },
        candidates_out=smk.output.candidates,
        queries_out=smk.output.queries,
        qrels_out=smk.output.qrels,
        heldout=p.heldout,
        heldout_out=(
            {"queries": smk.output.heldout_queries, "qrels": smk.output.heldout_qrels}
            if p.heldout
            else None
        ),
    )


if __name__ == "__main__":
    action = {
        "querygen_examples": examples,
        "querygen_passages": passages,
        "querygen_shard": shard,
        "querygen_split": split,
    }[snakemake.rule]
    with script_logging(snakemake.log[0], snakemake.rule):
        action(snakemake)
