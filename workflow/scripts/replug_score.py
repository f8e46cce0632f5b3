"""Score the gold answer's likelihood given every passage of one pool shard (rule replug_score;
the work is :func:`utilann.replug.score_pool_shard`).

Only under ``__main__``: vLLM starts worker processes that re-import the main module.
"""

from utilann.logs import script_logging
from utilann.replug import score_pool_shard

if __name__ == "__main__":
    smk = snakemake
    p = smk.params
    with script_logging(smk.log[0], "replug_score"):
        score_pool_shard(
            pools_path=smk.input.pools,
            answers_path=p.answers["path"],
            answers_format=p.answers["format"],
            queries_path=smk.input.queries,
            scorer=p.scorer,
            prompt=p.prompt["id"],
            chunk_size=p.chunk_size,
            cache_dir=p.cache_dir,
            cache_writer=p.cache_writer,
            code_version=p.code_version,
            out_path=smk.output.scores,
        )
