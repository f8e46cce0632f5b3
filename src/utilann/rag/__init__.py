"""Retrieval-augmented generation: prompts, generation from a run's top-k, answer metrics.

The RAG stage answers each query from the top-k passages of a retrieval run (no reranker) and
scores the answers against gold answers (paper Tables 4, 5 and 13):

* :mod:`utilann.rag.prompts` - the versioned prompt templates;
* :mod:`utilann.rag.generate` - prompts from (run, queries, corpus), answers from any LLM backend
  with a ``chat`` method;
* :mod:`utilann.rag.metrics` - EM/F1, BLEU, ROUGE-L, BERTScore and the retrieval R@k column.
"""
