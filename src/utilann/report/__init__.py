"""The experiment report: the paper's Tables 1-6 and Figure 3, computed for this data.

Modules, one concept each:

* :mod:`~utilann.report.table` - the :class:`ReportTable` object and its HTML, Markdown and
  LaTeX renderers;
* :mod:`~utilann.report.cells` - METRICS / SIGNIFICANCE rows as cell lookups;
* :mod:`~utilann.report.tables` - Tables 1-5 (annotation, retrieval, datasets, RAG);
* :mod:`~utilann.report.controlled` - Table 6, the controlled comparisons among runs;
* :mod:`~utilann.report.figures` - Figure 3 (which runs, its data, the plots);
* :mod:`~utilann.report.registry` - which tables and figures exist, read by the rules and the
  report script.

Everything is a pure function of the pipeline's own tables, unit-tested without Snakemake.
"""

from utilann.report.cells import concat_metrics, significance_note, target_label
from utilann.report.controlled import (
    COMPONENTS,
    ControlledGroup,
    controlled_groups,
    controlled_table,
    describe_variant,
)
from utilann.report.figures import (
    annotation_sweep,
    cl_ratio_runs,
    cl_settings,
    has_ratio_curves,
    human_ratio_curves,
    human_reference,
    metric_value,
    plot_human_ratio,
    plot_threshold_sweep,
    retrieval_by_threshold,
    utilrank_runs,
    utilrank_settings,
)
from utilann.report.registry import (
    FIGURES,
    TABLE_FORMATS,
    TABLES,
    FigureEntry,
    ReportInputs,
    ReportSettings,
    TableEntry,
    figures_for,
    tables_for,
)
from utilann.report.table import (
    MISSING,
    ReportTable,
    latex_escape,
    render_html,
    render_latex,
    render_markdown,
    summary_markdown,
    write_text,
)
from utilann.report.tables import (
    annotation_table,
    dataset_table,
    rag_columns,
    rag_table,
    retrieval_table,
)

__all__ = [
    "COMPONENTS",
    "FIGURES",
    "MISSING",
    "TABLES",
    "TABLE_FORMATS",
    "ControlledGroup",
    "FigureEntry",
    "ReportInputs",
    "ReportSettings",
    "ReportTable",
    "TableEntry",
    "annotation_sweep",
    "annotation_table",
    "cl_ratio_runs",
    "cl_settings",
    "concat_metrics",
    "controlled_groups",
    "controlled_table",
    "dataset_table",
    "describe_variant",
    "figures_for",
    "has_ratio_curves",
    "human_ratio_curves",
    "human_reference",
    "latex_escape",
    "metric_value",
    "plot_human_ratio",
    "plot_threshold_sweep",
    "rag_columns",
    "rag_table",
    "render_html",
    "render_latex",
    "render_markdown",
    "retrieval_by_threshold",
    "retrieval_table",
    "significance_note",
    "summary_markdown",
    "tables_for",
    "target_label",
    "utilrank_runs",
    "utilrank_settings",
    "write_text",
]
