"""utilann: utility-focused LLM annotation for dense retrieval and RAG.

The library behind the Snakemake workflow of this repository.
"""

__version__ = "0.1.0"
