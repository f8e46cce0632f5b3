"""Fail with where to put a configured gold-answer file that is missing (rule missing_answers)."""

from utilann.logs import script_logging
from utilann.qa import AnswersError, missing_answers_help

source = snakemake.params.source
with script_logging(snakemake.log[0], "missing_answers"):
    raise AnswersError(missing_answers_help(source["path"], source["format"]))
