"""How a passage (title + text) becomes the one string a model reads.

Every consumer uses :func:`format_passage`: the annotation prompts, the RAG prompts, the BM25
"flat" index and the dense encoder. One rule, two modes:

* without ``max_words`` the passage is ``title text`` with each field stripped and nothing
  else touched: the RAG prompts show the passage as the corpus has it (the authors' RAG code
  passes the text through), and the encoder's tokenizer sees the same characters at training
  and search time;
* with ``max_words`` it is cut to that many whitespace tokens (the authors' annotation code
  truncates to 300), re-joined by single spaces - so runs of spaces, newlines and
  non-breaking spaces become one space, as they always did in the annotation prompts.
"""

from __future__ import annotations


def format_passage(title: str | None, text: str | None, max_words: int | None = None) -> str:
    """``title text`` (each stripped, an empty title dropped), cut to ``max_words`` words.

    Args:
        title: the passage title; None or empty for untitled corpora.
        text: the passage body.
        max_words: keep the first this many whitespace tokens (joined by single spaces);
            None keeps the whole passage with its own spacing.
    """
    joined = f"{(title or '').strip()} {(text or '').strip()}".strip()
    if max_words is None:
        return joined
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    return " ".join(joined.split()[:max_words])
