"""Audits of the annotator before its labels are trusted (issue 11): how many BM25 hard
negatives it calls useful (:mod:`utilann.audit.negatives`) and how often an instruction
planted in an irrelevant passage gets that passage selected (:mod:`utilann.audit.injection`).
"""

from utilann.annotate.steps import cascade_steps

CODE_VERSION = 1
"""Bump when a change to the audits changes their outputs (a rule param: it reruns them)."""

AUDITED_STEPS = cascade_steps(["utilsel"])
"""RelSel, the pseudo-answer and UtilSel: every step an audit may run (their templates and
decoding are the annotation's)."""
