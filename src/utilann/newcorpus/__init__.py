"""New-corpus mode: training queries for a corpus that has no labels and no training queries.

The paper's purpose is initialising retrievers on new corpora without human labels; its
pipeline still starts from human-labelled training queries. This mode makes them: passages
are sampled from the corpus (``sampling``), an LLM writes one question each through the
shared generation loop (``generate``: few-shot template, cache, chunks, one job per shard),
every candidate goes through small counted filters (``filters``: length, an optional LLM
self-check, duplicates, BM25 round-trip), and the survivors become an ordinary dataset split
(``split``): a queries table and pseudo-qrels naming each query's source passage, marked as
such, optionally joined by the dataset's own unlabelled queries. Pools, the annotation
cascade, training sets and training then run unchanged on that split. ``examples`` holds the
few-shot examples (written by the user or drawn from a labelled dataset); ``job`` the
file-level entry points of the Snakemake scripts.

Importing this package never imports vLLM, torch or pyserini.
"""

#: Bump when a change of algorithm (query cleaning, filters, split assembly) must rerun the
#: query-generation jobs; cached LLM calls are reused.
CODE_VERSION = "1"
