"""How a passage (title + text) becomes the one string a model reads.

Every consumer uses :func:`format_passage`: the annotation prompts, the RAG and REPLUG prompts,
the BM25 "flat" index, the training passages and the dense encoder. One rule, two modes:

* without ``max_words`` the passage is ``title<separator>text`` with each field stripped and
  nothing else touched: the RAG prompts show the passage as the corpus has it (the authors' RAG
  code passes the text through), and the encoder's tokenizer sees the same characters at
  training and search time;
* with ``max_words`` it is cut to that many whitespace tokens (the authors' annotation code
  truncates to 300), re-joined by single spaces - so runs of spaces, newlines and
  non-breaking spaces become one space, as they always did in the annotation prompts.

The dense retriever's passages follow its run's ``passage_title`` / ``passage_separator``
(:class:`utilann.train.settings.TrainSettings`): the same two values format the training
passages and every corpus that run's model encodes. The authors' encoder reads the text alone
unless ``--use_title`` is given (then ``title + sep_token + text``: a separator of
``" [SEP] "`` for BERT-style tokenizers). BM25 and the LLM prompts always show ``title text``:
BM25's title handling is its named variant (``bm25.variant``, pyserini's "flat" or
"multifield", whose published BEIR figures depend on it), and the prompts are the paper's.
"""

from __future__ import annotations


def format_passage(
    title: str | None,
    text: str | None,
    max_words: int | None = None,
    *,
    with_title: bool = True,
    separator: str = " ",
) -> str:
    """``title<separator>text`` (each stripped, an empty field dropped), cut to ``max_words``.

    Args:
        title: the passage title; None or empty for untitled corpora.
        text: the passage body.
        max_words: keep the first this many whitespace tokens (joined by single spaces);
            None keeps the whole passage with its own spacing.
        with_title: False leaves the title out (the text alone).
        separator: what joins title and text (a space; ``" [SEP] "`` for the authors'
            ``--use_title`` with a BERT tokenizer).
    """
    fields = [(title or "").strip() if with_title else "", (text or "").strip()]
    joined = separator.join(f for f in fields if f)
    if max_words is None:
        return joined
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    return " ".join(joined.split()[:max_words])


def title_share(titles: list[str | None]) -> float:
    """The fraction of passages with a non-empty title (0 for no passage).

    Logged by training and encoding, and compared between the two, so that a model trained on
    titled passages (Tevatron files) and run over an untitled corpus (the MS MARCO collection)
    is reported instead of silently reading different inputs.
    """
    if not titles:
        return 0.0
    return sum(bool((t or "").strip()) for t in titles) / len(titles)
