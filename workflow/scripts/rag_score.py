"""Score one run's RAG answers on one QA split: per-query values and aggregates.

Per query: the answer measures (EM, F1, ROUGE-L, BERTScore) and R@k of the k passages fed to
the generator; aggregates add the corpus-level BLEU. The evaluated queries are exactly the
split's selected questions (a question without an answer scores 0).
"""

import pandas as pd

from utilann import schemas
from utilann.datasets import split_qrels
from utilann.io import read_table, write_table
from utilann.logs import script_logging
from utilann.rag.metrics import BertScoreSettings, aggregate, retrieval_recall, score_answers

w = snakemake.wildcards
p = snakemake.params
with script_logging(snakemake.log[0], "rag_score") as log:
    questions = read_table(snakemake.input.questions)
    generations = read_table(snakemake.input.generations)
    qids = list(questions["query_id"].astype(str))
    bertscore = BertScoreSettings(**p.bertscore) if p.bertscore else None
    scores = score_answers(
        generations[["query_id", "prediction"]], questions, p.measures, bertscore
    )

    qrels = split_qrels(read_table(snakemake.input.qrels), p.source_split)
    recall = retrieval_recall(read_table(snakemake.input.run), qrels, p.top_k, query_ids=qids)
    per_query = pd.concat([scores.per_query, recall], ignore_index=True)

    meta = {
        "run": w.run,
        "dataset": w.dataset,
        "split": w.split,
        "measures": list(p.measures),
        "top_k": p.top_k,
        "questions": len(qids),
        "answered": len(generations),
    }
    write_table(per_query, snakemake.output.per_query, schemas.PER_QUERY, meta)
    metrics = aggregate(per_query, scores.corpus, run=w.run, dataset=w.dataset, split=w.split)
    write_table(metrics, snakemake.output.metrics, schemas.METRICS, meta)
    for row in metrics.itertuples(index=False):
        log.info("%s %s/%s %s = %.4f", row.run, row.dataset, row.split, row.measure, row.value)
