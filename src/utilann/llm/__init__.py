"""The LLM layer every LLM step of the pipeline goes through (annotation cascade, RAG).

Modules: ``engine`` (the vLLM chat engine, the :class:`~utilann.llm.engine.ChatBackend`
protocol, sampling parameters), ``packaged`` (GGUF models shipped in PyPI packages),
``templates`` (the one prompt-template format), ``cache`` (the content-keyed generation store
and its one key function), ``batch`` (the one cached, chunked generation loop).

A step renders its prompts with a template, wraps them in :class:`~utilann.llm.batch.Request`
objects and hands them to :class:`~utilann.llm.batch.CachedGenerator`; it never calls an
engine itself. Importing this package never imports vLLM or torch.
"""
