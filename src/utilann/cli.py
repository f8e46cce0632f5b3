"""The ``utilann`` command: look inside an experiment's artifacts without writing code.

``utilann inspect list``            what exists for an experiment (artifact type, rows, size)
``utilann inspect schema PATH``     a Parquet file's columns and its utilann metadata
``utilann inspect query QID``       one query end to end: pool, LLM labels and raw outputs,
                                    ranks under every run, RAG answers, per-query metrics
``utilann cache info|clear``        the LLM cache: where, how big, how many generations;
                                    ``clear`` deletes it after saying so (``make clean-cache``)
``utilann clean``                   delete results/ and .snakemake/ but keep the LLM cache
                                    (``make clean``)
``utilann compare REF NEW``         labels, training sets and metrics of two result directories
                                    of one experiment, as tables with a tolerance
``utilann plan``                    the annotation's and the RAG jobs' budget before they
                                    run: calls, tokens, cached calls, shared prefix, hours
                                    and GPU-hours (prompts rendered with the tokenizer only,
                                    no engine)

Every view works with whatever subset of the artifacts exists and says what is missing, so it
is as useful after the first stage as after the whole DAG. Paths follow
``workflow/rules/common.smk`` (``results/<experiment>/...``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.json import JSON
from rich.table import Table

from . import schemas, workspace
from .annotate.steps import uses_threshold
from .io import read_metadata

_SHARD = re.compile(r"^shard-\d+\.parquet$")


# --- helpers ------------------------------------------------------------------------------


def _size(nbytes: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, index = float(nbytes), 0
    while value >= 1024 and index < len(units) - 1:
        value, index = value / 1024, index + 1
    return f"{nbytes} B" if index == 0 else f"{value:.1f} {units[index]}"


def _declared_schemas() -> dict[str, pa.Schema]:
    return {name: obj for name, obj in vars(schemas).items() if isinstance(obj, pa.Schema)}


def schema_name(schema: pa.Schema) -> str:
    """Name of the utilann schema with exactly these columns, or "" when none matches."""
    for name, declared in _declared_schemas().items():
        if declared.names == schema.names:
            return name
    return ""


def _table(title: str, frame: pd.DataFrame, max_chars: int) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(value, max_chars) for value in row))
    return table


def _cell(value: object, max_chars: int) -> str:
    if hasattr(value, "tolist") and not isinstance(value, (str, float)):
        value = value.tolist()  # numpy arrays (list columns) and numpy scalars
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    elif value is None or pd.isna(value):
        text = ""
    elif isinstance(value, float):
        text = f"{value:.4f}"
    else:
        text = str(value)
    return text if max_chars <= 0 or len(text) <= max_chars else text[: max_chars - 1] + "…"


def _rows_for_query(paths: Sequence[Path], query_id: str) -> dict[Path, pd.DataFrame]:
    """Rows of ``query_id`` in each Parquet file that has a query_id column (none: left out)."""
    found = {}
    for path in paths:
        if "query_id" not in pq.read_schema(path).names:
            continue
        rows = pq.read_table(path, filters=[("query_id", "==", query_id)]).to_pandas()
        if len(rows):
            found[path] = rows
    return found


def _missing(console: Console, what: str, where: str, built: bool) -> None:
    """Say that a section is empty, and whether the artifact or only this query is missing."""
    state = "query not in" if built else "not built:"
    console.print(f"[yellow]{what}:[/yellow] {state} {where}")


# --- inspect list -------------------------------------------------------------------------


def _artifact_rows(root: Path) -> list[tuple[str, str, str, str, int]]:
    """(kind, relative path, rows, size, file count) per artifact; shard files are grouped."""
    groups: dict[Path, list[Path]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        key = path.parent / "shard-*.parquet" if _SHARD.match(path.name) else path
        groups.setdefault(key, []).append(path)
    rows = []
    for key, paths in groups.items():
        size = _size(sum(p.stat().st_size for p in paths))
        if paths[0].suffix == ".parquet":
            kind = schema_name(pq.read_schema(paths[0])) or "parquet"
            count = str(sum(pq.ParquetFile(p).metadata.num_rows for p in paths))
        else:
            kind, count = (paths[0].suffix.lstrip(".") or "file"), ""
        rows.append((kind, str(key.relative_to(root)), count, size, len(paths)))
    return rows


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    root = Path(args.results) / args.experiment
    if not root.is_dir():
        console.print(
            f"[red]no results for experiment {args.experiment!r}[/red]: {root} does not exist"
        )
        return 1
    table = Table(title=f"artifacts of {root}", title_justify="left")
    for column, justify in [
        ("type", "left"),
        ("path", "left"),
        ("rows", "right"),
        ("size", "right"),
        ("files", "right"),
    ]:
        table.add_column(column, justify=justify, overflow="fold")
    rows = _artifact_rows(root)
    for kind, rel, count, size, files in rows:
        table.add_row(kind, rel, count, size, str(files))
    console.print(table if rows else f"[yellow]{root} is empty[/yellow]")
    stages = ["pools", "annotation", "runs", "eval", "rag"]
    absent = [s for s in stages if not (root / s).exists()]
    if absent:
        console.print(f"[yellow]not built yet:[/yellow] {', '.join(absent)}")
    return 0


# --- inspect schema -----------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace, console: Console) -> int:
    path = Path(args.path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        console.print(f"[red]no Parquet file at {path}[/red]")
        return 1
    schema = pq.read_schema(files[0])
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    declared = schema_name(schema)
    console.print(
        f"[bold]{path}[/bold]: {rows} rows in {len(files)} file(s); "
        f"utilann schema: {declared or '[yellow]none matches[/yellow]'}"
    )
    table = Table(title="columns", title_justify="left")
    for column in ("name", "type", "nullable"):
        table.add_column(column)
    for f in schema:
        table.add_row(f.name, str(f.type), str(f.nullable))
    console.print(table)
    metadata = read_metadata(files[0])
    if metadata:
        console.print("[bold]utilann metadata[/bold]")
        console.print(JSON(json.dumps(metadata, default=str)))
    else:
        console.print("[yellow]no utilann metadata[/yellow]")
    return 0


# --- inspect query ------------------------------------------------------------------------


def _query_text(results: Path, root: Path, query_id: str) -> str | None:
    pools = _rows_for_query(sorted((root / "pools").glob("shard-*.parquet")), query_id)
    for rows in pools.values():
        return str(rows["query"].iloc[0])
    for rows in _rows_for_query(
        sorted((results / "datasets").glob("*/queries.parquet")), query_id
    ).values():
        return str(rows["text"].iloc[0])
    return None


def _pool_and_labels(root: Path, query_id: str, console: Console, max_chars: int) -> None:
    pool_shards = sorted((root / "pools").glob("shard-*.parquet"))
    pool = pd.concat(
        _rows_for_query(pool_shards, query_id).values() or [pd.DataFrame()], ignore_index=True
    )
    labels_path = root / "annotation" / "labels.parquet"
    labels = (
        _rows_for_query([labels_path], query_id).get(labels_path, pd.DataFrame())
        if labels_path.exists()
        else pd.DataFrame()
    )
    if pool.empty:
        _missing(console, "pool", str(root / "pools" / "shard-*.parquet"), bool(pool_shards))
    if labels.empty:
        _missing(console, "LLM labels", str(labels_path), labels_path.exists())
    if pool.empty and labels.empty:
        return
    view = (
        pool.sort_values("position")[["position", "doc_id", "is_human_positive", "source", "text"]]
        if not pool.empty
        else labels[["position", "doc_id", "is_human_positive"]].drop_duplicates()
    )
    for strategy, rows in labels.groupby("strategy", sort=True) if not labels.empty else []:
        if uses_threshold(strategy):  # a ranking: show rank/list length
            column = [
                f"{int(r)}/{int(n)}" if pd.notna(r) else ""
                for r, n in zip(rows["rank"], rows["list_length"])
            ]
        else:
            column = rows["selected"].map({True: "yes", False: ""})
        view = view.merge(
            pd.DataFrame({"doc_id": rows["doc_id"], strategy: column}), on="doc_id", how="left"
        )
    console.print(_table("pool and LLM labels (utilrank: rank/list length)", view, max_chars))


def _raw_outputs(root: Path, query_id: str, console: Console, max_chars: int) -> None:
    paths = sorted((root / "annotation").glob("shard-*/raw.parquet"))
    found = _rows_for_query(paths, query_id)
    if not found:
        _missing(
            console,
            "raw LLM outputs",
            str(root / "annotation" / "shard-*" / "raw.parquet"),
            bool(paths),
        )
        return
    for path, rows in found.items():
        shown = rows.drop(columns=["query_id"])
        console.print(_table(f"raw LLM output ({path.relative_to(root)})", shown, max_chars))


def _runs(
    results: Path, root: Path, query_id: str, console: Console, top: int, max_chars: int
) -> None:
    paths = sorted((root / "runs").glob("*/*.parquet"))
    found = _rows_for_query(paths, query_id)
    if not found:
        _missing(
            console, "runs", str(root / "runs" / "<run>" / "<dataset>.<split>.parquet"), bool(paths)
        )
        return
    for path, rows in found.items():
        dataset = path.name.split(".")[0]
        qrels_path = results / "datasets" / dataset / "qrels.parquet"
        ranked = rows.sort_values("rank").head(top)[["rank", "doc_id", "score"]]
        if qrels_path.exists():
            qrels = _rows_for_query([qrels_path], query_id).get(
                qrels_path, pd.DataFrame(columns=["doc_id", "relevance"])
            )
            grades = qrels.drop_duplicates("doc_id").set_index("doc_id")["relevance"]
            ranked = ranked.assign(relevance=ranked["doc_id"].map(grades).astype("Int64"))
        title = f"run {path.parent.name} on {path.stem} (top {len(ranked)} of {len(rows)})"
        console.print(_table(title, ranked, max_chars))


def _generations(root: Path, query_id: str, console: Console, max_chars: int) -> None:
    paths = (
        [
            p
            for p in sorted((root / "rag").rglob("*.parquet"))
            if "prediction" in pq.read_schema(p).names
        ]
        if (root / "rag").exists()
        else []
    )
    found = _rows_for_query(paths, query_id)
    if not found:
        _missing(console, "RAG answers", str(root / "rag"), bool(paths))
        return
    view = pd.concat(
        [
            rows.assign(file=str(path.relative_to(root)))[["file", "prediction", "doc_ids"]]
            for path, rows in found.items()
        ],
        ignore_index=True,
    )
    console.print(_table("RAG answers", view, max_chars))


def _metrics(root: Path, query_id: str, console: Console) -> None:
    paths = sorted(root.rglob("*.perquery.parquet"))
    found = _rows_for_query(paths, query_id)
    if not found:
        _missing(console, "per-query metrics", str(root / "**" / "*.perquery.parquet"), bool(paths))
        return
    long = pd.concat(
        [
            rows.assign(source=str(path.relative_to(root)).removesuffix(".perquery.parquet"))
            for path, rows in found.items()
        ],
        ignore_index=True,
    )
    wide = long.pivot_table(index="source", columns="measure", values="value", aggfunc="first")
    console.print(_table("per-query metrics", wide.reset_index(), 0))


def cmd_query(args: argparse.Namespace, console: Console) -> int:
    results = Path(args.results)
    root = results / args.experiment
    if not root.is_dir():
        console.print(
            f"[red]no results for experiment {args.experiment!r}[/red]: {root} does not exist"
        )
        return 1
    qid = str(args.query_id)
    text = _query_text(results, root, qid)
    shown = text if text is not None else "[yellow](text not found)[/yellow]"
    console.print(f"[bold]query {qid}[/bold]: {shown}")
    _pool_and_labels(root, qid, console, args.max_chars)
    _raw_outputs(root, qid, console, args.max_chars)
    _runs(results, root, qid, console, args.top, args.max_chars)
    _generations(root, qid, console, args.max_chars)
    _metrics(root, qid, console)
    return 0


# --- cache and clean ------------------------------------------------------------------------


def _cache_report(args: argparse.Namespace, console: Console) -> tuple[Path, list]:
    cache_dir = workspace.llm_cache_dir(workspace.load_config(args.configfile))
    files = workspace.cache_files(cache_dir)
    if not files:
        console.print(f"LLM cache {cache_dir}: [yellow]empty or absent[/yellow]")
        return cache_dir, files
    table = Table(title=f"LLM cache {cache_dir}", title_justify="left")
    for column, justify in [("file", "left"), ("size", "right"), ("generations", "right")]:
        table.add_column(column, justify=justify, overflow="fold")
    for f in files:
        entries = "" if f.entries is None else str(f.entries)
        table.add_row(str(f.path.relative_to(cache_dir)), _size(f.size), entries)
    total = sum(f.entries or 0 for f in files)
    table.add_row("[bold]total[/bold]", _size(sum(f.size for f in files)), f"[bold]{total}[/bold]")
    console.print(table)
    return cache_dir, files


def cmd_cache_info(args: argparse.Namespace, console: Console) -> int:
    _cache_report(args, console)
    return 0


def cmd_cache_clear(args: argparse.Namespace, console: Console) -> int:
    cache_dir, files = _cache_report(args, console)
    if not files:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            console.print(
                "[red]not deleted:[/red] confirm with --yes (make clean-cache FORCE=1); these "
                "generations cost LLM time to redo"
            )
            return 2
        answer = input(f"delete {cache_dir} and every generation in it? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            console.print("kept")
            return 1
    shutil.rmtree(cache_dir)
    console.print(f"deleted {cache_dir}")
    return 0


def cmd_clean(args: argparse.Namespace, console: Console) -> int:
    cache_dir = workspace.llm_cache_dir(workspace.load_config(args.configfile))
    removed = workspace.remove_tree_except(workspace.RESULTS, cache_dir)
    removed += workspace.remove_tree_except(workspace.SNAKEMAKE_DIR, cache_dir)
    here = Path.cwd().resolve()
    for path in removed:
        console.print(f"deleted {path.relative_to(here) if here in path.parents else path}")
    if cache_dir.exists():
        console.print(f"kept the LLM cache {cache_dir} (make clean-cache deletes it)")
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from .regression import compare_results

    differences = compare_results(args.reference, args.results, atol=args.atol, rtol=0.0)
    for difference in differences:
        console.print(f"[red]differs[/red] {difference}", soft_wrap=True)
    if not differences:
        console.print(f"labels, training sets and metrics of {args.results} match {args.reference}")
    return 1 if differences else 0


# --- plan ---------------------------------------------------------------------------------


def _plan_table(table: pd.DataFrame, title: str) -> Table:
    """A plan table (:func:`utilann.budget.render_table`) as a rich table."""
    from . import budget

    rows = budget.render_table(table)
    shown = Table(title=title, title_justify="left")
    for i, column in enumerate(rows[0]):
        shown.add_column(column, justify="left" if i == 0 else "right")
    for row in rows[1:]:
        shown.add_row(*row)
    return shown


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    import os

    from snakemake.utils import validate

    from . import budget

    config = workspace.load_config(args.configfile)
    validate(config, str(workspace.SCHEMA))  # fills in the schema's defaults
    root = Path(args.results) / config["experiment"]
    throughput = budget.pick_throughput(
        config, args.throughput, args.prefill_tps, args.decode_tps, args.throughput_source
    )
    report = budget.make_plan(
        config,
        sorted(str(p) for p in (root / "pools").glob("shard-*.parquet")),
        manifests=budget.manifest_files(args.results, config["experiment"]),
        tokenizer=args.tokenizer,
        throughput=throughput,
        sample=args.sample,
        shared_data=os.environ.get("UTILANN_SHARED_DATA"),
        results=args.results,
    )
    console.print(
        _plan_table(
            report.table,
            f"annotation plan of {config['experiment']}: {report.sampled_queries:,} sampled "
            f"queries scaled x{report.scale:,.1f} to {report.query_count:,} (no engine started)",
        )
    )
    for key, value in report.sources.items():
        console.print(f"[bold]{key}[/bold]: {value}", soft_wrap=True)
    for line in budget.comparison_lines(report):
        console.print(line, soft_wrap=True)
    if report.rag is not None:
        if len(report.rag.table):
            console.print(
                _plan_table(
                    report.rag.table,
                    f"RAG plan of {config['experiment']}: one row per RAG job (no engine started)",
                )
            )
        for key, value in report.rag.sources.items():
            console.print(f"[bold]{key}[/bold]: {value}", soft_wrap=True)
        together = budget.together_line(report)
        if together:
            console.print(together, soft_wrap=True)
    console.print(f"planned in {report.seconds:.1f} s")
    if args.out:
        from .io import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(budget.render_markdown(report), encoding="utf-8")
        console.print(f"wrote {args.out}")
    return 0


# --- entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="utilann", description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=None, help="output width (default: terminal)")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="look inside an experiment's artifacts")
    views = inspect.add_subparsers(dest="view", required=True)

    def experiment_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--results", default="results", help="results directory (default: results)"
        )
        sub.add_argument("--experiment", default="demo", help="experiment name (default: demo)")

    listing = views.add_parser("list", help="what exists for an experiment")
    experiment_options(listing)
    listing.set_defaults(func=cmd_list)

    schema = views.add_parser("schema", help="a Parquet file's schema and utilann metadata")
    schema.add_argument("path", help="Parquet file (or directory of shards)")
    schema.set_defaults(func=cmd_schema)

    query = views.add_parser("query", help="one query end to end")
    query.add_argument("query_id")
    experiment_options(query)
    query.add_argument("--top", type=int, default=10, help="passages shown per run (default: 10)")
    query.add_argument(
        "--max-chars",
        type=int,
        default=120,
        help="truncate long text cells to this many characters; 0 = no limit",
    )
    query.set_defaults(func=cmd_query)

    def config_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--configfile",
            nargs="*",
            default=[],
            help="config files overlaid on config/config.yaml, as given to snakemake",
        )

    cache = commands.add_parser("cache", help="the LLM cache (llm.cache_dir)")
    actions = cache.add_subparsers(dest="action", required=True)
    info = actions.add_parser("info", help="where it is, its size and generations per file")
    config_option(info)
    info.set_defaults(func=cmd_cache_info)
    clear = actions.add_parser("clear", help="delete it, after showing what it holds")
    config_option(clear)
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(func=cmd_cache_clear)

    clean = commands.add_parser("clean", help="delete results/ and .snakemake/, keep the cache")
    config_option(clean)
    clean.set_defaults(func=cmd_clean)
    compare = commands.add_parser(
        "compare", help="an experiment's results against a reference run (exit 1 if they differ)"
    )
    compare.add_argument("reference", help="reference results/<experiment> directory")
    compare.add_argument("results", help="results/<experiment> directory to check")
    compare.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance of numbers")
    compare.set_defaults(func=cmd_compare)

    planner = commands.add_parser(
        "plan", help="calls, tokens and GPU-hours of the annotation and RAG, without an engine"
    )
    config_option(planner)
    planner.add_argument(
        "--results",
        default="results",
        help="results directory with the pools, splits and runs (default: results)",
    )
    planner.add_argument("--sample", type=int, default=None, help="queries to render (plan.*)")
    planner.add_argument(
        "--tokenizer", default=None, help="count with this tokenizer (a proxy; plan.tokenizer)"
    )
    planner.add_argument("--throughput", default=None, help="a measured throughput JSON file")
    planner.add_argument("--prefill-tps", type=float, default=None, help="stated prompt tokens/s")
    planner.add_argument("--decode-tps", type=float, default=None, help="stated output tokens/s")
    planner.add_argument(
        "--throughput-source", default=None, help="where the stated rates come from"
    )
    planner.add_argument("--out", default=None, help="also write the plan as Markdown here")
    planner.set_defaults(func=cmd_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``utilann`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    console = Console(width=args.width, file=sys.stdout)
    try:
        return args.func(args, console)
    except (OSError, ValueError, pa.ArrowException) as err:
        console.print(f"[red]error:[/red] {err}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
