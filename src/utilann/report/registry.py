"""The report's tables and figures: one registry read by the rules and by the report script.

Each :class:`TableEntry` says what one table is (file stem, paper label, ``snakemake --report``
category and caption), when an experiment has it, how it is built and which notes go under it.
The rules (``report.smk``) name their outputs from :func:`tables_for` / :func:`figures_for`
at parse time; ``workflow/scripts/report_tables.py`` builds exactly the same entries from the
same :class:`ReportSettings`. Adding a table = its builder plus one entry in :data:`TABLES`
(and its caption ``workflow/report/<key>.rst``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from utilann.report.audit import false_negative_table, injection_table
from utilann.report.cells import concat_metrics, significance_note
from utilann.report.controlled import controlled_groups, controlled_table
from utilann.report.cost import cost_table
from utilann.report.figures import cl_ratio_runs, has_ratio_curves
from utilann.report.newcorpus import (
    baseline_table,
    generated_queries_table,
    has_human_share,
    human_share_table,
    source_annotation_table,
)
from utilann.report.table import ReportTable, render_html, render_latex, render_markdown
from utilann.report.tables import (
    accuracy_table,
    accuracy_targets,
    annotation_table,
    dataset_table,
    main_rag_targets,
    rag_table,
    retrieval_table,
    topk_groups,
    topk_table,
)
from utilann.selection import get_selector

TABLE_FORMATS = ("html", "md", "tex")
"""Every table is written in each of these: HTML (``snakemake --report``), Markdown, LaTeX."""
NEWCORPUS_CATEGORY = "6. New corpus"


@dataclass(frozen=True)
class ReportSettings:
    """What the report knows of the experiment before any job ran (the rule's params).

    Attributes:
        experiment: the experiment's name.
        runs: every retrieval run, in row order (bm25, zeroshot, the training runs).
        evaluation: ``[{dataset, split, measures}]``, the evaluation targets in config order.
        dataset_measure: Table 3's measure.
        bm25: the BM25 variant and parameters (a note of Table 2).
        rag_runs: the runs whose passages answered the RAG questions.
        rag_targets: ``[{dataset, split, top_k, measures}]``.
        generator: the RAG generator's model name.
        specs: every training run's flat settings (:func:`utilann.plan.run_settings`).
        primary: the first evaluation target and its measure (Table 6, Figure 3), or None.
        baseline: the run every other one is t-tested against.
        alpha: the t-tests' significance level.
        annotation: whether the annotation stage runs (some run learns from LLM labels).
        newcorpus: the new-corpus mode's dataset, split, pool policy, round-trip k and oracle
            (:func:`utilann.plan.newcorpus_report`), None when the mode is off.
        second_baselines: ``{baseline run: runs tested against it}`` (the paper's dagger).
        second_markers: the second test's (better, worse) markers.
        cost: Table 17's prices and the GPUs of one annotation job (``gpu_hour_usd``,
            ``human_label_usd``, ``gpus``).
        audits: the annotator audits that run (:func:`utilann.plan.audits`).
    """

    experiment: str
    runs: Sequence[str]
    evaluation: Sequence[Mapping[str, Any]]
    dataset_measure: str
    bm25: Mapping[str, Any]
    rag_runs: Sequence[str]
    rag_targets: Sequence[Mapping[str, Any]]
    generator: str
    specs: Mapping[str, Mapping[str, Any]]
    primary: Mapping[str, Any] | None
    baseline: str
    alpha: float
    annotation: bool
    newcorpus: Mapping[str, Any] | None = None
    second_baselines: Mapping[str, Sequence[str]] = field(default_factory=dict)
    second_markers: Sequence[str] = ("\u2020", "\u2020")
    cost: Mapping[str, Any] = field(
        default_factory=lambda: {"gpu_hour_usd": 0.8, "human_label_usd": 0.09, "gpus": 1}
    )
    audits: Sequence[str] = ()

    @property
    def measures(self) -> dict[tuple[str, str], list[str]]:
        """``{(dataset, split): measures}`` of the evaluation targets."""
        return {(t["dataset"], t["split"]): list(t["measures"]) for t in self.evaluation}

    def targets_of(self, group: str) -> list[Mapping[str, Any]]:
        """Evaluation targets of ``group`` (``in-domain``: Table 2, ``zero-shot``: Table 3)."""
        return [t for t in self.evaluation if t.get("group", "zero-shot") == group]

    @property
    def table2_measures(self) -> dict[tuple[str, str], list[str]]:
        """Table 2's columns: the in-domain targets (with the Hybrid Test), or every target
        when there is none (a BEIR-only experiment)."""
        chosen = self.targets_of("in-domain") or list(self.evaluation)
        return {(t["dataset"], t["split"]): list(t["measures"]) for t in chosen}

    @property
    def sig_note(self) -> str:
        return significance_note(
            self.baseline, self.alpha, self.second_baselines, self.second_markers
        )


@dataclass
class ReportInputs:
    """The tables the report is built from (read by ``report_tables.py``).

    Attributes:
        retrieval: METRICS rows of every retrieval run and evaluation target.
        rag: METRICS rows of every RAG run and target.
        significance: SIGNIFICANCE rows (the markers).
        annotation: the ANNOTATION_REPORT table, None when the annotation stage does not run.
        annotation_meta: that table's metadata (the annotator model).
        rag_questions: questions answered per RAG target, from the RAG metrics' metadata.
        candidates: the new-corpus GENERATED_QUERIES table (None when the mode is off).
        labels: the LLM LABELS of the new split; pseudo_qrels: its pseudo-qrels.
        manifests: the annotation shards' manifests (Table 17's measured generation time).
        false_negatives: the false-negative audit's AUDIT_SUMMARY (None when it does not run);
        injection: the injection audit's INJECTION_SUMMARY (None when it does not run).
    """

    retrieval: pd.DataFrame
    rag: pd.DataFrame
    significance: pd.DataFrame | None
    annotation: pd.DataFrame | None = None
    annotation_meta: Mapping[str, Any] = field(default_factory=dict)
    rag_questions: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    candidates: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None
    pseudo_qrels: pd.DataFrame | None = None
    manifests: Sequence[Mapping[str, Any]] = field(default_factory=list)
    false_negatives: pd.DataFrame | None = None
    injection: pd.DataFrame | None = None

    @classmethod
    def read(
        cls,
        retrieval: Sequence[str],
        rag: Sequence[str],
        significance: str,
        annotation: str | None = None,
        manifests: Sequence[str] = (),
        **tables: str | None,
    ) -> ReportInputs:
        """Read the report's input files (paths as the rule lists them); ``tables``: the
        paths of the further tables that exist (None: absent): the new-corpus mode's
        ``candidates``, ``labels`` and ``pseudo_qrels``, the audits' ``false_negatives`` and
        ``injection`` summaries."""
        import json
        from pathlib import Path

        from utilann.io import read_metadata, read_table

        rag_meta = [read_metadata(path) for path in rag]
        extra = {k: read_table(v) for k, v in tables.items() if v}
        return cls(
            **extra,
            retrieval=concat_metrics([read_table(path) for path in retrieval]),
            rag=concat_metrics([read_table(path) for path in rag]),
            significance=read_table(significance),
            annotation=read_table(annotation) if annotation else None,
            annotation_meta=read_metadata(annotation) if annotation else {},
            rag_questions={(m["dataset"], m["split"]): m.get("questions") for m in rag_meta},
            manifests=[json.loads(Path(path).read_text(encoding="utf-8")) for path in manifests],
        )


Builder = Callable[[ReportSettings, ReportInputs, Sequence[str]], ReportTable]
Notes = Callable[[ReportSettings, ReportInputs], list[str]]


@dataclass(frozen=True)
class TableEntry:
    """One table of the report.

    Attributes:
        key: file stem of every rendering (``report/<key>.html|md|tex``), the rule's output
            name, and the name of its caption ``workflow/report/<key>.rst``.
        label: the paper's table it reproduces (``Table 2``; ``New corpus`` for the tables of
            that mode, which the paper does not have), a ``snakemake --report`` label.
        shows: the other report label; ``{dataset_measure}`` is filled in from the settings.
        category: the ``snakemake --report`` category.
        applies: whether an experiment has this table.
        builder: ``(settings, inputs, notes) -> ReportTable``.
        notes: ``(settings, inputs) -> [sentence, ...]`` printed under the table.
    """

    key: str
    label: str
    shows: str
    category: str
    applies: Callable[[ReportSettings], bool]
    builder: Builder
    notes: Notes

    @property
    def caption(self) -> str:
        return f"{self.key}.rst"

    def labels(self, settings: ReportSettings) -> dict[str, str]:
        return {"table": self.label, "shows": self.shows.format(**vars(settings))}

    def build(self, settings: ReportSettings, inputs: ReportInputs) -> ReportTable:
        return self.builder(settings, inputs, self.notes(settings, inputs))

    def output_name(self, fmt: str) -> str:
        """The rule's output name of one rendering (the HTML one is the report's: ``key``)."""
        return self.key if fmt == "html" else f"{self.key}_{fmt}"

    def render(self, table: ReportTable) -> dict[str, str]:
        """``{format: text}`` for every format of :data:`TABLE_FORMATS`."""
        return {
            "html": render_html(table),
            "md": render_markdown(table),
            "tex": render_latex(table, label=f"tab:{self.key}"),
        }


@dataclass(frozen=True)
class FigureEntry:
    """One figure of the report (drawn by its own rule, ``plot_*`` in report.smk).

    Attributes:
        key: file stem (``report/<key>.png``) and caption name (``workflow/report/<key>.rst``).
        label: the paper's figure (``Figure 3b``); shows: what it plots.
        applies: whether an experiment has this figure.
    """

    key: str
    label: str
    shows: str
    applies: Callable[[ReportSettings], bool]
    category: str = "5. Figures"

    @property
    def caption(self) -> str:
        return f"{self.key}.rst"

    @property
    def title(self) -> str:
        return f"{self.label}: {self.shows}"

    def labels(self) -> dict[str, str]:
        return {"figure": self.label, "shows": self.shows}


# --- the tables: notes and builders --------------------------------------------------------


def _annotation_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    return [
        f"Annotator: {inputs.annotation_meta.get('model', '?')}. Precision and recall (%) of "
        "each strategy's positives against the human positives of the pools, micro-averaged "
        "over the annotated queries; #pos/query counts every annotated query (the paper's "
        "Table 1 has strategies as columns and one row per LLM).",
    ]


def _retrieval_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    bm25 = settings.bm25
    return [
        settings.sig_note,
        f"bm25 = BM25 {bm25['variant']} (k1 = {bm25['k1']}, b = {bm25['b']}); "
        "zeroshot = the untrained backbone; the other runs are the training runs of the config.",
    ]


def _dataset_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    return [
        settings.sig_note.replace("best value of each column", "best run of each row"),
        "Zero-shot targets only (in-domain ones, e.g. MS MARCO Dev/DL19/DL20, are Table 2's). "
        "Average: over the datasets above (paper Table 3: the 14 BEIR datasets); a benchmark "
        "of several datasets (CQADupStack) is one row, the mean over its subsets.",
    ]


def _accuracy_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    return [
        settings.sig_note,
        "TopK = Acc@K: share of questions with a gold answer string in one of the top K "
        "passages (DPR's has_answer: NFD-normalised, uncased token match in the passage text).",
    ]


def _topk_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    return [
        *_rag_notes(settings, inputs),
        "Each split answered with several top-k (paper Table 13: MS MARCO QA with top 1 and "
        "top 5); Recall = R@k of the k passages fed in.",
    ]


def _cost_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    c = settings.cost
    primary = settings.primary or {}
    devices = f"{c['gpus']} GPU(s)" if c["gpus"] else "a CPU job, priced as one device"
    seconds = sum(
        float(st.get("gen_seconds") or 0) for m in inputs.manifests for st in m["steps"].values()
    )
    return [
        f"LLM time: measured generation time of the annotation steps each run's labels need "
        f"({seconds:.1f} s in all steps); GPU-hours = time x {devices} per annotation job; "
        f"cost = GPU-hours x ${c['gpu_hour_usd']:g} + judged pool passages x "
        f"${c['human_label_usd']:g} x the share of queries with human labels (paper Table 17); "
        "a run continued from another adds its cost.",
        f"Retrieval figures: {primary.get('dataset')}/{primary.get('split')}.",
    ]


def _cost(settings: ReportSettings, inputs: ReportInputs, notes: Sequence[str]) -> ReportTable:
    primary = settings.primary
    assert primary is not None  # applies() checked it
    return cost_table(
        settings.specs,
        inputs.manifests,
        inputs.retrieval,
        (primary["dataset"], primary["split"]),
        [m for m in primary["measures"] if m in ("RR@10", "R@1000")] or primary["measures"][:2],
        settings.cost,
        notes=notes,
    )


def _rag_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    counts = ", ".join(f"{d}/{s}: {n}" for (d, s), n in inputs.rag_questions.items())
    return [
        settings.sig_note.replace(
            "Values in %.", "Values in %; BLEU is corpus-level (never tested)."
        ),
        f"Generator: {settings.generator}; the top-k passages of each run, in rank order, no "
        f"reranker. R@k = recall of the k passages fed in. Questions: {counts}.",
    ]


def _controlled_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    return [
        settings.sig_note.replace("; best value of each column in bold", ""),
        "Runs compared within a component differ only in that component's settings (loss: "
        "loss and positive sampling; + human labels: curriculum stage or Positive Union). The "
        "paper's 'LLM annotator' rows need one experiment per annotator.",
    ]


def _newcorpus_queries_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    nc = settings.newcorpus or {}
    k = nc.get("round_trip_k")
    return [
        f"One question per passage sampled from {nc.get('dataset')} (split "
        f"{nc.get('split')}); the filters apply in row order and each row counts the "
        "candidates it removed (round trip: "
        + (f"BM25 top {k})." if k else "off).")
        + " Unlabelled queries: the dataset's queries that no evaluation target judges, "
        "taken without their labels.",
    ]


def _newcorpus_annotation_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    nc = settings.newcorpus or {}
    return [
        "source in pool: share of the generated questions whose source passage is in their "
        f"pool (pools.judged_positives: {nc.get('judged_positives')}); source chosen: share of "
        "those where the strategy made it a positive. The source passage is a pseudo-label "
        "(the passage the question was written from), not a human judgement; Table 1's "
        "precision and recall are against the pools' marked positives, if any.",
    ]


def _newcorpus_baseline_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    return [
        settings.sig_note,
        "vs zeroshot / vs bm25: the difference to that run, in points. No run saw a human "
        "label of this corpus except the curriculum stages of the human-share table.",
    ]


def _newcorpus_share_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    nc = settings.newcorpus or {}
    oracle = nc.get("oracle")
    who = (
        f"the qrels of {oracle}, standing in for a labeller (rule oracle_human_labels, the only "
        "step that reads them)"
        if oracle
        else "the pools' own positives"
    )
    shares = [run for runs in cl_ratio_runs(settings.specs).values() for run in runs]
    used = sorted(
        {str(settings.specs[run].get("query_selection", "random")) for run in shares},
        key=lambda name: (name != "random", name),
    )
    return [
        settings.sig_note.replace("best value of each column", "best value of each row"),
        f"Each cell continues its stage-1 run on the human labels of that share of queries, "
        f"chosen at random or by the active selector named in the column "
        f"(utilann.selection); labels from {who}.",
        "Columns: "
        + "; ".join(f"{name} = {get_selector(name).description}" for name in used)
        + ".",
    ]


def _false_negative_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    return [
        "The UtilSel judge (the annotation's LLM, prompts and decoding) re-reads the whole pool "
        "of a seeded sample of training queries, in shuffled windows, with the cascade's "
        "pseudo-answer as reference answer (else one written from the human positive: "
        "cascade answers counts the others). FN rate = BM25 hard negatives it selects / hard "
        "negatives whose call parsed, with the 95 % Wilson interval (passages counted as "
        "independent); human positives found = its recall of the human positives, a check "
        "that the judge selects at all.",
    ]


def _injection_notes(settings: ReportSettings, inputs: ReportInputs) -> list[str]:
    unmeasured = inputs.injection is not None and inputs.injection.empty
    return [
        *(["Not measured: the audit sample held fewer than two queries."] if unmeasured else []),
        "Each pool: the query's human positive, BM25 negatives and one target passage from "
        "another query's pool; attack none = the target as it is (the control), every other "
        "row the same pools with that attack template planted in the target only. Target "
        "selected: share of pools whose call selected it (a failed parse selects nothing), "
        "95 % Wilson interval; lift = target - control; only attacked / only control = the "
        "discordant pairs, McNemar p = exact two-sided test on them. Special-token strings "
        "in passages are defused before tokenisation.",
    ]


def _newcorpus_primary(settings: ReportSettings) -> tuple[tuple[str, str], str]:
    primary = settings.primary
    assert primary is not None  # applies() checked it
    return (primary["dataset"], primary["split"]), settings.dataset_measure


def _has_controlled_groups(settings: ReportSettings) -> bool:
    return settings.primary is not None and bool(
        controlled_groups(settings.specs, exclude=[settings.baseline])
    )


def _controlled(
    settings: ReportSettings, inputs: ReportInputs, notes: Sequence[str]
) -> ReportTable:
    primary = settings.primary
    assert primary is not None  # applies() checked it
    return controlled_table(
        settings.specs,
        inputs.retrieval,
        inputs.significance,
        (primary["dataset"], primary["split"]),
        primary["measures"],
        reference=settings.baseline,
        notes=notes,
    )


TABLES: dict[str, TableEntry] = {
    entry.key: entry
    for entry in (
        TableEntry(
            key="table1_annotation",
            label="Table 1",
            shows="annotation quality",
            category="1. Annotation",
            applies=lambda s: s.annotation,
            builder=lambda s, d, notes: annotation_table(d.annotation, notes=notes),
            notes=_annotation_notes,
        ),
        TableEntry(
            key="table2_retrieval",
            label="Table 2",
            shows="all measures",
            category="2. Retrieval",
            applies=lambda s: True,
            builder=lambda s, d, notes: retrieval_table(
                d.retrieval, d.significance, s.runs, s.table2_measures, notes=notes
            ),
            notes=_retrieval_notes,
        ),
        TableEntry(
            key="table3_datasets",
            label="Table 3",
            shows="{dataset_measure}",
            category="2. Retrieval",
            applies=lambda s: len(s.evaluation) > 1 and bool(s.targets_of("zero-shot")),
            builder=lambda s, d, notes: dataset_table(
                d.retrieval,
                d.significance,
                s.runs,
                [(t["dataset"], t["split"]) for t in s.targets_of("zero-shot")],
                s.dataset_measure,
                notes=notes,
            ),
            notes=_dataset_notes,
        ),
        TableEntry(
            key="table4_rag",
            label="Tables 4/5",
            shows="answer quality",
            category="3. RAG",
            applies=lambda s: bool(s.rag_targets),
            builder=lambda s, d, notes: rag_table(
                d.rag, d.significance, s.rag_runs, main_rag_targets(s.rag_targets), notes=notes
            ),
            notes=_rag_notes,
        ),
        TableEntry(
            key="table9_accuracy",
            label="Table 9",
            shows="top-k answer accuracy",
            category="2. Retrieval",
            applies=lambda s: bool(accuracy_targets(s.evaluation)),
            builder=lambda s, d, notes: accuracy_table(
                d.retrieval, d.significance, s.runs, accuracy_targets(s.evaluation), notes=notes
            ),
            notes=_accuracy_notes,
        ),
        TableEntry(
            key="table13_rag_topk",
            label="Table 13",
            shows="RAG top-k",
            category="3. RAG",
            applies=lambda s: bool(topk_groups(s.rag_targets)),
            builder=lambda s, d, notes: topk_table(
                d.rag, d.significance, s.rag_runs, topk_groups(s.rag_targets), notes=notes
            ),
            notes=_topk_notes,
        ),
        TableEntry(
            key="table6_controlled",
            label="Table 6",
            shows="one setting changed",
            category="4. Controlled experiments",
            applies=_has_controlled_groups,
            builder=_controlled,
            notes=_controlled_notes,
        ),
        TableEntry(
            key="table17_cost",
            label="Table 17",
            shows="annotation cost",
            category="1. Annotation",
            applies=lambda s: s.annotation and s.primary is not None and bool(s.specs),
            builder=_cost,
            notes=_cost_notes,
        ),
        TableEntry(
            key="audit1_false_negatives",
            label="Audit",
            shows="false negatives",
            category="1. Annotation",
            applies=lambda s: "false_negatives" in s.audits,
            builder=lambda s, d, notes: false_negative_table(d.false_negatives, notes=notes),
            notes=_false_negative_notes,
        ),
        TableEntry(
            key="audit2_injection",
            label="Audit",
            shows="injection robustness",
            category="1. Annotation",
            applies=lambda s: "injection" in s.audits,
            builder=lambda s, d, notes: injection_table(d.injection, notes=notes),
            notes=_injection_notes,
        ),
        TableEntry(
            key="newcorpus1_queries",
            label="New corpus",
            shows="generated queries",
            category=NEWCORPUS_CATEGORY,
            applies=lambda s: s.newcorpus is not None,
            builder=lambda s, d, notes: generated_queries_table(d.candidates, notes=notes),
            notes=_newcorpus_queries_notes,
        ),
        TableEntry(
            key="newcorpus2_annotation",
            label="New corpus",
            shows="annotation outcomes",
            category=NEWCORPUS_CATEGORY,
            applies=lambda s: s.newcorpus is not None and s.annotation,
            builder=lambda s, d, notes: source_annotation_table(
                d.annotation, d.labels, d.pseudo_qrels, notes=notes
            ),
            notes=_newcorpus_annotation_notes,
        ),
        TableEntry(
            key="newcorpus3_baselines",
            label="New corpus",
            shows="{dataset_measure} vs zero-shot and BM25",
            category=NEWCORPUS_CATEGORY,
            applies=lambda s: s.newcorpus is not None and s.primary is not None,
            builder=lambda s, d, notes: baseline_table(
                d.retrieval, d.significance, s.runs, *_newcorpus_primary(s), notes=notes
            ),
            notes=_newcorpus_baseline_notes,
        ),
        TableEntry(
            key="newcorpus4_human_share",
            label="New corpus",
            shows="random vs active human share",
            category=NEWCORPUS_CATEGORY,
            applies=lambda s: (
                s.newcorpus is not None and s.primary is not None and has_human_share(s.specs)
            ),
            builder=lambda s, d, notes: human_share_table(
                s.specs, d.retrieval, d.significance, *_newcorpus_primary(s), notes=notes
            ),
            notes=_newcorpus_share_notes,
        ),
    )
}
"""Every table the report can have, in the order of the summary."""

FIGURES: dict[str, FigureEntry] = {
    entry.key: entry
    for entry in (
        FigureEntry(
            key="fig3b_utilrank_threshold",
            label="Figure 3b",
            shows="UtilRank threshold",
            applies=lambda s: s.annotation,
        ),
        FigureEntry(
            key="fig3a_human_ratio",
            label="Figure 3a",
            shows="human-label ratio",
            applies=lambda s: s.primary is not None and has_ratio_curves(s.specs),
        ),
    )
}
"""Every figure the report can have, in the order of the summary."""


def tables_for(settings: ReportSettings) -> list[TableEntry]:
    """The tables this experiment has, in :data:`TABLES` order."""
    return [entry for entry in TABLES.values() if entry.applies(settings)]


def figures_for(settings: ReportSettings) -> list[FigureEntry]:
    """The figures this experiment has, in :data:`FIGURES` order."""
    return [entry for entry in FIGURES.values() if entry.applies(settings)]
