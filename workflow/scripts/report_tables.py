"""The paper's tables for this experiment: one HTML page each (for the report) and summary.md.

Which tables exist is decided by the rule (its named outputs): Table 1 when the annotation
stage runs, Table 3 with two or more evaluation targets, Tables 4/5 with RAG targets, Table 6
when some training runs differ in one setting only. Table builders: ``utilann.report``.
"""

import pandas as pd

from utilann import report as R
from utilann.io import read_metadata, read_table
from utilann.logs import script_logging

p = snakemake.params
out = snakemake.output


def concat(paths):
    return (
        pd.concat([read_table(x) for x in paths], ignore_index=True)
        if paths
        else pd.DataFrame(columns=["run", "dataset", "split", "measure", "value"])
    )


with script_logging(snakemake.log[0], "report_tables") as log:
    significance = read_table(snakemake.input.significance)
    sig_note = R.significance_note(p.baseline, p.alpha)
    retrieval = concat(snakemake.input.retrieval)
    tables = []

    if "table1" in out.keys():
        annotation = read_table(snakemake.input.annotation)
        meta = read_metadata(snakemake.input.annotation)
        tables.append(
            R.annotation_table(
                annotation,
                notes=[
                    f"Annotator: {meta.get('model', '?')}. Precision and recall (%) of each "
                    "strategy's positives against the human positives of the pools, "
                    "micro-averaged over the annotated queries; #pos/query counts every "
                    "annotated query (the paper's Table 1 has strategies as columns and one row "
                    "per LLM).",
                ],
            )
        )

    measures = {(t["dataset"], t["split"]): t["measures"] for t in p.evaluation}
    bm25 = p.bm25
    bm25_note = (
        f"bm25 = BM25 {bm25['variant']} (k1 = {bm25['k1']}, b = {bm25['b']}); "
        "zeroshot = the untrained backbone; the other runs are the training runs of the config."
    )
    tables.append(
        R.retrieval_table(retrieval, significance, p.runs, measures, notes=[sig_note, bm25_note])
    )
    if "table3" in out.keys():
        tables.append(
            R.dataset_table(
                retrieval,
                significance,
                p.runs,
                list(measures),
                p.dataset_measure,
                notes=[
                    sig_note.replace("best value of each column", "best run of each row"),
                    "Average: over the datasets above (paper Table 3: 14 BEIR datasets).",
                ],
            )
        )

    if "table4" in out.keys():
        rag = concat(snakemake.input.rag)
        questions = {
            (m["dataset"], m["split"]): m.get("questions")
            for m in map(read_metadata, snakemake.input.rag)
        }
        counts = ", ".join(f"{d}/{s}: {n}" for (d, s), n in questions.items())
        tables.append(
            R.rag_table(
                rag,
                significance,
                p.rag_runs,
                p.rag_targets,
                notes=[
                    sig_note.replace(
                        "Values in %.", "Values in %; BLEU is corpus-level (never tested)."
                    ),
                    f"Generator: {p.generator}; the top-k passages of each run, in rank order, no "
                    f"reranker. R@k = recall of the k passages fed in. Questions: {counts}.",
                ],
            )
        )

    if "table6" in out.keys():
        primary = p.primary
        tables.append(
            R.controlled_table(
                p.specs,
                retrieval,
                significance,
                (primary["dataset"], primary["split"]),
                primary["measures"],
                reference=p.baseline,
                notes=[
                    sig_note.replace("; best value of each column in bold", ""),
                    "Runs compared within a component differ only in that component's "
                    "settings (loss: loss and positive sampling; + human labels: curriculum "
                    "stage or Positive Union). The paper's 'LLM annotator' rows need one "
                    "experiment per annotator.",
                ],
            )
        )

    names = {
        "table1": "table1_annotation",
        "table2": "table2_retrieval",
        "table3": "table3_datasets",
        "table4": "table4_rag",
        "table6": "table6_controlled",
    }
    by_key = {t.key: t for t in tables}
    for name, key in names.items():
        if name in out.keys():
            R.write_text(R.render_html(by_key[key]), getattr(out, name))
            log.info("%s: %d rows x %d columns", key, *by_key[key].values.shape)
    R.write_text(
        R.summary_markdown(
            f"Experiment {p.experiment}: summary",
            tables,
            figures=[tuple(f) for f in p.figures],
            preamble=[
                f"Tables built from `results/{p.experiment}/` (the HTML report has the same "
                "tables and the figures: `snakemake --report report.html`)."
            ],
        ),
        out.summary,
    )
