"""The calibration gate (rule calibration_gate): every calibration figure against its bar;
the job fails - and the full annotation, which waits for its output, never starts - when one
is below."""

from utilann.annotate.calibration import check_gate, gate_message
from utilann.io import read_table, write_json
from utilann.logs import script_logging

with script_logging(snakemake.log[0], "calibration_gate") as log:
    report = read_table(snakemake.input.report)
    checks = check_gate(report, snakemake.params.bars, snakemake.input.markdown)
    log.info("calibration gate passed (%d checks):\n%s", len(checks), gate_message(checks))
    write_json(
        {"passed": True, "bars": dict(snakemake.params.bars), "checks": checks},
        snakemake.output.gate,
    )
