"""Rule plan_annotation: the annotation's budget from its prompts alone (utilann.budget)."""

from utilann.budget import make_plan, manifest_files, pick_throughput, render_markdown
from utilann.io import atomic_path
from utilann.logs import script_logging

if __name__ == "__main__":
    with script_logging(snakemake.log[0], snakemake.rule) as log:
        config = snakemake.config
        report = make_plan(
            config,
            list(snakemake.input.pools),
            manifests=manifest_files("results", config["experiment"]),
            throughput=pick_throughput(config),
        )
        with atomic_path(snakemake.output.plan) as tmp:
            tmp.write_text(render_markdown(report), encoding="utf-8")
        total = report.table.loc["total"]
        log.info(
            "%d calls, %d prompt tokens (scaled to %d queries) in %.1f s",
            total["calls"],
            total["prompt_tokens"],
            report.query_count,
            report.seconds,
        )
