"""utilann: utility-focused LLM annotation for dense retrieval and RAG (Snakemake workflow library)."""

__version__ = "0.1.0"
