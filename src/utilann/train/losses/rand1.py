"""Rand1LH: SingleLH on one positive per query, a different one each epoch."""

from __future__ import annotations

from utilann.train.losses.single import SingleLH


class Rand1LH(SingleLH):
    """Rand1LH: SingleLH on one positive drawn per epoch from the query's positive set.

    The formula is SingleLH's; what differs is the data: with several (LLM) positives, the
    batch builder rotates through them across epochs like the authors' ``data.py``
    (``positives[(offset + epoch) % n]``), so every positive is used once every n epochs.
    """
