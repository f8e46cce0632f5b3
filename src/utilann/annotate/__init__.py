"""LLM annotation of candidate pools: RelSel -> pseudo-answer -> UtilSel | UtilRank.

Modules: ``steps`` (the registry of steps: what each is shown, answers and yields),
``windows`` (RelSel windows and the human positive's position), ``parse`` (robust output
parsing by answer format), ``cascade`` (the steps over one shard), ``merge`` (shards ->
training labels), ``report`` (Table 1), ``job`` (file-level entry points used by the Snakemake
scripts). Templates, the generation cache and the engine are the shared LLM layer
(:mod:`utilann.llm`).

Importing this package never imports vLLM or torch.
"""

#: Bump when a change of algorithm (windowing, parsing, label derivation) must rerun the
#: annotation jobs; Snakemake sees it as a changed param. Cached LLM calls are reused.
CODE_VERSION = "1"
