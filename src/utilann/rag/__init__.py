"""Retrieval-augmented generation: prompts, generation from a run's top-k, answer metrics.

The RAG stage answers each query from the top-k passages of a retrieval run (no reranker) and
scores the answers against gold answers (paper Tables 4, 5 and 13):

* :mod:`utilann.rag.prompts` - prompts from (run, queries, corpus), rendered with the shared
  templates (:mod:`utilann.llm.templates`);
* :mod:`utilann.rag.job` - the generation job: the prompts of every run through the shared
  cached generation loop (:mod:`utilann.llm.batch`), answers cleaned for scoring;
* :mod:`utilann.rag.metrics` - EM/F1, BLEU, ROUGE-L, BERTScore and the retrieval R@k column;
* :mod:`utilann.rag.budget` - the generation's calls, tokens and time, planned without an
  engine (``utilann plan``).
"""
