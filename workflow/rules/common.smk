# Shared by every stage's rules: the experiment's plan, resolved once from the validated
# config, and the functions the rules name their files and params with.
#
#   1. imports
#   2. the plan: constants decided from the config by utilann.plan (unit-tested there)
#   3. parse-time helpers: paths and file lists (plain names, no wildcards)
#   4. input and params functions: get_*(wildcards), called per job
#   5. get_final_output(): every default target
#
# Layout of outputs (see docs/artifacts.md):
#   results/datasets/<dataset>/        corpus/ shards, queries, qrels (shared by experiments)
#   results/datasets/<dataset>/splits/<split>/   one split's queries and qrels (what jobs read)
#   results/indexes/<dataset>.bm25-<variant>/   Lucene index
#   results/<experiment>/newcorpus/              generated queries, the generated split
#   results/<experiment>/human/<run>/            the human share: selection, oracle labels
#   results/<experiment>/selection/              display orders, judge confidence
#   results/<experiment>/runs/<run>/<dataset>.<split>.{parquet,trec}
#   results/<experiment>/eval/<run>/<dataset>.<split>.{perquery,metrics}.parquet
#   results/<experiment>/metrics.parquet          every aggregate figure of the experiment
#   results/<experiment>/rag/...                  questions, generations, answer measures
#   results/<experiment>/significance.parquet     t-tests of every run vs the baseline
#   results/<experiment>/report/, summary.md      the paper's tables and figures

import os
import re
import sys
from dataclasses import asdict

from utilann import plan
from utilann.annotate import CODE_VERSION as ANNOTATION_CODE_VERSION
from utilann.audit import AUDITED_STEPS, CODE_VERSION as AUDIT_CODE_VERSION
from utilann.annotate.steps import cascade_steps, get_step
from utilann.llm.templates import load_template, load_template_id, load_templates
from utilann.newcorpus import CODE_VERSION as NEWCORPUS_CODE_VERSION
from utilann.evidence import CODE_VERSION as EVIDENCE_CODE_VERSION
from utilann.selection import get_selector
from utilann.report import (
    FIGURES,
    TABLE_FORMATS,
    cl_settings,
    figures_for,
    human_reference,
    tables_for,
    utilrank_settings,
)
from utilann.evaluation import uses_answer_accuracy
from utilann.cluster import (
    job_resources,
    retry_runtime,
    single_gpu,
    torchrun_gpus,
    vllm_gpus,
    world_size,
)
from utilann.train.backbones import backbone_slug
from utilann.train.spec import resolve_runs, zeroshot_spec

# --- the plan ------------------------------------------------------------------------------

EXP = f"results/{config['experiment']}"
DATA = "results/datasets"
INDEXES = "results/indexes"
LOGS = f"{EXP}/logs"
BENCH = f"{EXP}/benchmarks"
ANN = f"{EXP}/annotation"
REPORT = f"{EXP}/report"
RAW_DATASETS = config["paths"]["datasets"]
MODELS = config["paths"]["models"]

# Snakemake does not track library code: bump when a change of algorithm must rerun a stage.
TRAIN_CODE_VERSION = 1
DENSE_CODE_VERSION = 1
RAG_CODE_VERSION = 1
REPLUG_CODE_VERSION = 1

EVAL_TARGETS = plan.eval_targets(config)
SUBSET_TARGETS = plan.subset_targets(config)
RUN_EVAL_TARGETS = plan.run_eval_targets(config)
SUBSET_DATASETS = plan.subset_datasets(config)
HYBRID = plan.hybrid_target(config)
DENSE_RUNS = plan.dense_runs(config)
RETRIEVAL_RUNS = plan.retrieval_runs(config)

TRAINING = config["training"]
TRAIN_RESOURCES = TRAINING["resources"]
RUN_SPECS = resolve_runs(TRAINING)
ZEROSHOT = zeroshot_spec(TRAINING)
BACKBONES = {s.backbone_slug: s.backbone for s in [ZEROSHOT, *RUN_SPECS.values()]}
RUN_SETTINGS = plan.run_settings(RUN_SPECS)

DENSE = config["dense"]
DENSE_RESOURCES = DENSE["resources"]

RAG = config["rag"]
RAG_TARGETS = plan.rag_targets(config)
RAG_RUNS = plan.rag_runs(config)
plan.check_rag_measures(config)
HUB_LLMS = plan.hub_llms(config)
# Answers are cached by content in the one LLM store (llm.cache_dir), one file per generation
# job: shared by steps and experiments, never deleted on failure.
RAG_CACHE = config["llm"]["cache_dir"]

SIGNIFICANCE = config["evaluation"]["significance"]
SIGNIFICANCE_BASELINE, _fallback = plan.significance_baseline(
    SIGNIFICANCE["baseline"], RETRIEVAL_RUNS
)
if _fallback:
    sys.stderr.write(f"WARNING: {_fallback}\n")
SECOND_BASELINES = plan.second_baselines(config, RUN_SPECS, SIGNIFICANCE_BASELINE)

HYBRID_CFG = config["evaluation"]["hybrid"]
HYBRID_DIR = f"{EXP}/hybrid"
HYBRID_QRELS = f"{HYBRID_DIR}/qrels.parquet"
HYBRID_RUNS = plan.hybrid_runs(config) if HYBRID else []
HYBRID_JUDGE = plan.hybrid_judge(config)

CALIBRATION = config["annotation"]["calibration"]
CALIBRATION_SETS = plan.calibration_sets(config)
CAL = f"{ANN}/calibration"
# Audits of the annotator (audit.smk): which run, where they write.
AUDIT = config["audit"]
AUDITS = plan.audits(config)
AUDIT_DIR = f"{EXP}/audit"
DROP_JUDGED_USEFUL = plan.drops_judged_useful(config)

NEWCORPUS = config["newcorpus"]
NEWCORPUS_ON = plan.newcorpus_enabled(config)
plan.check_newcorpus(config)
NC = f"{EXP}/newcorpus"
# The held-out generated questions (newcorpus.heldout): an evaluation split for a corpus
# without test queries.
HELDOUT = plan.heldout_split(config)
HUMAN = f"{EXP}/human"
# The qrels standing in for human labellers (new-corpus mode), and the runs whose human share
# the selection rule chooses (utilann.selection).
ORACLE = plan.oracle(config)
HUMAN_SHARE_RUNS = plan.human_share_runs(RUN_SPECS, ORACLE)
# The LLM passes two active selectors read (utilann.evidence): RelSel under two display
# orders, and the annotator's confidence in its answers.
SELECTION = f"{EXP}/selection"
SELECTION_CFG = config["annotation"]["selection"]
ORDER_SEEDS = SELECTION_CFG["orders"]["seeds"]

PRIMARY = plan.primary_target(config)
REPORT_SETTINGS = plan.report_settings(
    config, RUN_SPECS, SIGNIFICANCE_BASELINE, SIGNIFICANCE["alpha"]
)


wildcard_constraints:
    dataset="[a-z0-9][a-z0-9_-]*",
    split="[a-z0-9][a-z0-9_-]*",
    run="[a-z0-9][a-z0-9_-]*",
    shard="[0-9]+",


# --- parse-time helpers: paths and file lists ----------------------------------------------


def names_regex(names):
    """A wildcard regex matching exactly ``names`` (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def repo_file(path):
    """A config-given file: as written if it exists, else relative to the workflow's repo."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(workflow.basedir, path)


def pool_shards():
    return list(range(config["pools"]["shards"]))


def pool_files():
    return expand(f"{EXP}/pools/shard-{{shard}}.parquet", shard=pool_shards())


def is_generated_split(dataset, split):
    """Whether (dataset, split) is the split the new-corpus mode generates."""
    train = config["train"]
    return NEWCORPUS_ON and (dataset, split) == (train["dataset"], train["split"])


def split_files(dataset, split):
    """The queries and qrels of one split: the generated split's (new-corpus mode), else the
    dataset's split tables. Every job that reads a split reads only these two files."""
    if is_generated_split(dataset, split):
        return {
            "queries": f"{NC}/split/queries.parquet",
            "qrels": f"{NC}/split/qrels.parquet",
        }
    if (dataset, split) == HELDOUT:
        return {
            "queries": f"{NC}/heldout/queries.parquet",
            "qrels": f"{NC}/heldout/qrels.parquet",
        }
    base = f"{DATA}/{dataset}/splits/{split}"
    return {"queries": f"{base}/queries.parquet", "qrels": f"{base}/qrels.parquet"}


def heldout_outputs():
    """Rule querygen_split's held-out split outputs (none without newcorpus.heldout)."""
    if HELDOUT is None:
        return {}
    files = split_files(*HELDOUT)
    return {"heldout_queries": files["queries"], "heldout_qrels": files["qrels"]}


def querygen_shard_files(name):
    """`name` of every query-generation shard (passages/, shard-<i>/)."""
    return [name.format(shard=i) for i in range(NEWCORPUS["shards"])]


def eval_files(run, dataset, split):
    """The per-query and aggregate files of one run on one evaluation target."""
    base = f"{EXP}/eval/{run}/{dataset}.{split}"
    return {kind: f"{base}.{kind}.parquet" for kind in ("perquery", "metrics")}


def eval_outputs(runs, targets):
    """Named outputs of an evaluation job: every (run, target)'s per-query and metrics file."""
    files = [eval_files(run, d, s) for run in runs for d, s in targets]
    return {kind: [f[kind] for f in files] for kind in ("perquery", "metrics")}


def eval_item(run, dataset, split):
    """What the evaluation of `run` on target (dataset, split) reads, scores and writes
    (utilann.evaluation_job): the run and the qrels it is scored with (the Hybrid Test's golden
    qrels for its target), its measures (ir_measures names and Acc@k), and the gold answers,
    queries and corpus when it asks for answer accuracy. A benchmark target (CQADupStack) names
    its subsets' files instead, which the same job has written before it."""
    item = {
        "run": run,
        "dataset": dataset,
        "split": split,
        **eval_files(run, dataset, split),
    }
    subsets = SUBSET_TARGETS.get((dataset, split))
    if subsets:
        return {**item, "subsets": {d: eval_files(run, d, s) for d, s in subsets}}
    source = plan.source_split(config, dataset, split)
    files = split_files(dataset, source)
    measures = plan.measures_for(config, dataset, split)
    inputs = {
        "run_file": f"{EXP}/runs/{run}/{dataset}.{source}.parquet",
        "qrels": HYBRID_QRELS if (dataset, split) == HYBRID else files["qrels"],
    }
    if uses_answer_accuracy(measures):
        answers = plan.target_entry(config, dataset, split)["answers"]
        inputs["answers"] = answers_input(answers, dataset)
        inputs["queries"] = files["queries"]
        inputs["corpus"] = f"{DATA}/{dataset}/corpus"
        item["answers_format"] = answers["format"] if answers else None
    return {**item, **inputs, "measures": measures, "inputs": list(inputs)}


def eval_job_input(items):
    """The files an evaluation job reads: every item's inputs, each once, by kind."""
    kinds = {}
    for item in items:
        for kind in item.get("inputs", []):
            kinds.setdefault(kind, {})[item[kind]] = None
    return {kind: list(paths) for kind, paths in kinds.items()}


def hybrid_evaluations():
    """Every retrieval run on the Hybrid Test's target, in one job (group "hybrid")."""
    return [eval_item(run, *HYBRID) for run in RETRIEVAL_RUNS] if HYBRID else []


def retrieval_files(kind):
    """`kind` (metrics, perquery) evaluation files of every retrieval run and target."""
    return [
        eval_files(run, d, s)[kind] for run in RETRIEVAL_RUNS for d, s in EVAL_TARGETS
    ]


def rag_files(kind):
    """`kind` (metrics, perquery) files of every RAG run on every RAG target."""
    return [
        f"{EXP}/rag/{run}/{dataset}.{split}.{kind}.parquet"
        for dataset, split in RAG_TARGETS
        for run in RAG_RUNS
    ]


def metric_files():
    """Every aggregate-figure file that goes into the experiment's metrics table."""
    return retrieval_files("metrics") + rag_files("metrics")


def primary_metric_files(runs):
    """Retrieval metrics of `runs` on the primary evaluation target."""
    if PRIMARY is None:
        return []
    return [
        eval_files(run, PRIMARY["dataset"], PRIMARY["split"])["metrics"] for run in runs
    ]


def job_env(name, gpus):
    """A rule's conda env: envs/<name>.yaml on CPU, envs/gpu.yaml for a job with GPUs."""
    return f"../../envs/{'gpu' if gpus else name}.yaml"


def llm_model_input(name):
    """Snakemake input for model `name`: the prepared directory, if the workflow makes it."""
    return (
        [plan.llm_model_path(config, name)] if plan.llm_model_made(config, name) else []
    )


def annotation_shard_files(name):
    """`name` (labels.parquet, raw.parquet, ...) of every annotation shard."""
    return expand(f"{ANN}/shard-{{shard}}/{name}", shard=pool_shards())


def replug_shard_files():
    """REPLUG's answer likelihoods of every pool shard."""
    return expand(f"{EXP}/replug/shard-{{shard}}.parquet", shard=pool_shards())


def annotation_prompts():
    """The template selection plus each template file's hash: editing a template in place
    (same version) is a params change too; the cache then skips the steps it did not touch.
    """
    selected = config["annotation"]["prompts"]
    steps = cascade_steps(config["annotation"]["strategies"])
    templates = load_templates(steps, selected["version"], selected["dir"])
    return {**selected, "sha256": {step: t.sha256 for step, t in templates.items()}}


def annotation_job_params():
    """The params of an annotation-cascade job (utilann.annotate.job.AnnotationJob) but its
    cache writer: the full annotation's shards and the calibration judge with the same.
    """
    return dict(
        model=config["llm"]["model"],
        backend=config["llm"]["backend"],
        transformers=config["llm"]["transformers"],
        engine=config["llm"]["engine"],
        env=config["llm"]["env"],
        chat_template_kwargs=config["llm"]["chat_template_kwargs"],
        prompt_too_long=config["llm"]["prompt_too_long"],
        sampling=config["llm"]["sampling"],
        prompts=annotation_prompts(),
        strategies=config["annotation"]["strategies"],
        window_size=config["annotation"]["window_size"],
        position_policy=config["annotation"]["position_policy"],
        seed=config["annotation"]["seed"],
        passage_max_words=config["annotation"]["passage_max_words"],
        chunk_size=config["annotation"]["chunk_size"],
        decoding=annotation_decoding(),
        cache_dir=config["llm"]["cache_dir"],
        code_version=ANNOTATION_CODE_VERSION,
    )


def calibration_gate():
    """The calibration gate's file, which every full-annotation job waits for ([] without
    annotation.calibration)."""
    return [f"{CAL}/gate.json"] if CALIBRATION_SETS else []


def calibration_graded_files():
    """{set: {queries, qrels, corpus}} of every qrels calibration set."""
    return {
        s["name"]: {
            **split_files(s["dataset"], s["split"]),
            "corpus": f"{DATA}/{s['dataset']}/corpus",
        }
        for s in CALIBRATION_SETS
        if s["source"] == "qrels"
    }


def get_calibration_input(wildcards):
    """The calibration job's inputs: the training pools if a set samples them, the graded
    sets' split tables and corpora, the annotator model."""
    graded = [
        f for files in calibration_graded_files().values() for f in files.values()
    ]
    uses_pools = any(s["source"] == "pools" for s in CALIBRATION_SETS)
    return {
        "pools": pool_files() if uses_pools else [],
        "graded": graded,
        "model": llm_model_input(config["llm"]["model"]),
    }


def annotation_decoding():
    """{step: free | constrained} of the cascade's steps (annotation.decoding)."""
    return plan.annotation_decoding(
        config, cascade_steps(config["annotation"]["strategies"])
    )


def encoder_dir(backbone):
    return f"{MODELS}/encoders/{backbone_slug(backbone)}"


def checkpoint_dir(run):
    """The model directory a dense run encodes with (the bare backbone for `zeroshot`)."""
    return (
        encoder_dir(ZEROSHOT.backbone) if run == "zeroshot" else f"{EXP}/models/{run}"
    )


def checkpoint_output(path):
    out = directory(path)
    return protected(out) if TRAINING["protect_checkpoints"] else out


def embedding_output(path):
    return path if DENSE["keep_embeddings"] else temp(path)


def rag_generation_outputs():
    """One generations file per RAG run (the {dataset}/{split} wildcards kept)."""
    return [
        f"{EXP}/rag/{run}/{{dataset}}.{{split}}.generations.parquet" for run in RAG_RUNS
    ]


def report_table_outputs():
    """Every rendering of each table this experiment has (utilann.report.registry), named
    by the registry, and summary.md; the HTML one goes into `snakemake --report`."""
    outputs = {}
    for entry in tables_for(REPORT_SETTINGS):
        for fmt in TABLE_FORMATS:
            path = f"{REPORT}/{entry.key}.{fmt}"
            if fmt == "html":
                path = report(
                    path,
                    caption=f"../report/{entry.caption}",
                    category=entry.category,
                    labels=entry.labels(REPORT_SETTINGS),
                )
            outputs[entry.output_name(fmt)] = path
    outputs["summary"] = f"{EXP}/summary.md"
    return outputs


def report_figure(key):
    """The figure `key` of the registry as a `snakemake --report` output."""
    entry = FIGURES[key]
    return report(
        f"{REPORT}/{key}.png",
        caption=f"../report/{entry.caption}",
        category=entry.category,
        labels=entry.labels(),
    )


def report_figures():
    """(title, path) of the figures this experiment has (listed in summary.md)."""
    return [
        (entry.title, f"{REPORT}/{entry.key}.png")
        for entry in figures_for(REPORT_SETTINGS)
    ]


# --- input and params functions (called per job with its wildcards) ------------------------


def get_dataset_source(wildcards):
    """Where a missing dataset can be fetched from."""
    cfg = plan.dataset_entry(config, wildcards.dataset)
    return {
        "format": cfg["format"],
        "url": cfg.get("url"),
        "ir_datasets": cfg.get("ir_datasets"),
        "subsets": list(cfg.get("subsets") or []),
    }


def get_raw_dataset_dir(wildcards):
    """The folder holding a dataset in its standard layout (a subset: <benchmark>/<subset>)."""
    return plan.raw_dataset_dir(config, wildcards.dataset)


def get_raw_dataset(wildcards):
    """Ingestion input: the download flag if we downloaded, else the user's folder if any.

    A subset (a CQADupStack forum) comes with its benchmark's download.
    """
    folder = get_raw_dataset_dir(wildcards)
    flag = (
        f"{RAW_DATASETS}/{plan.download_name(config, wildcards.dataset)}.download.done"
    )
    if os.path.exists(flag) or not os.path.isdir(folder):
        return flag
    return folder


def get_ingest_format(wildcards):
    """The layout (beir, msmarco, tevatron) a dataset is read in."""
    return plan.dataset_entry(config, wildcards.dataset)["format"]


def get_split_queries(wildcards):
    return split_files(wildcards.dataset, wildcards.split)["queries"]


def get_pool_candidates(wildcards):
    """Ranked negatives for the pools: the dataset's own (Tevatron) or a BM25 run."""
    train = config["train"]
    if config["pools"]["source"] == "dataset":
        return f"{DATA}/{train['dataset']}/negatives.parquet"
    return f"{EXP}/runs/bm25/{train['dataset']}.{train['split']}.parquet"


def get_remove_query(wildcards):
    """Whether this dataset's runs drop the query's own document (datasets.*.remove_query)."""
    return plan.remove_query(config, wildcards.dataset)


def get_run_evaluations(wildcards):
    """Every target of one run's evaluation job (plan.run_eval_targets)."""
    return [eval_item(wildcards.run, d, s) for d, s in RUN_EVAL_TARGETS]


def get_run_eval_input(wildcards):
    return eval_job_input(get_run_evaluations(wildcards))


def get_prepare_llm_spec(wildcards):
    return plan.packaged_llm(config, wildcards.llm)


def get_annotation_writer(wildcards):
    """This job's own file in the LLM cache: stable across reruns, unique across jobs."""
    return f"{config['experiment']}.shard-{wildcards.shard}"


def get_backbone_name(wildcards):
    return BACKBONES[wildcards.backbone]


def get_trainset_input(wildcards):
    """Pools always (the oracle's, for a run labelled by it); the LLM labels or REPLUG's
    likelihoods only for runs trained on them; the chosen human share for the runs of
    HUMAN_SHARE_RUNS."""
    run = wildcards.run
    inputs = {"pools": pool_files()}
    if run in HUMAN_SHARE_RUNS:
        inputs["selection"] = f"{HUMAN}/{run}/selected.parquet"
        if ORACLE:
            inputs["pools"] = [f"{HUMAN}/{run}/pools.parquet"]
    trainset = RUN_SPECS[run].trainset
    if trainset.needs_labels:
        inputs["labels"] = f"{ANN}/labels.parquet"
    if trainset.needs_replug:
        inputs["replug"] = replug_shard_files()
    if DROP_JUDGED_USEFUL:
        inputs["audit"] = f"{AUDIT_DIR}/negatives.parquet"
    return inputs


def get_querygen_examples_input(wildcards):
    """The labelled split few-shot examples are drawn from, if any."""
    source = NEWCORPUS["examples"]["from"]
    if not source:
        return {}
    return {
        "corpus": f"{DATA}/{source['dataset']}/corpus",
        **split_files(source["dataset"], source["split"]),
    }


def get_querygen_writer(wildcards):
    """This query-generation job's own file in the LLM cache."""
    return f"querygen.{config['experiment']}.shard-{wildcards.shard}"


def get_querygen_prompts(wildcards):
    """The template selection and the hash of each template the job uses."""
    selected = NEWCORPUS["prompts"]
    names = ["query_gen"] + (
        ["query_check"] if NEWCORPUS["filters"]["self_check"]["enabled"] else []
    )
    templates = load_templates(names, selected["version"], selected["dir"])
    return {**selected, "sha256": {name: t.sha256 for name, t in templates.items()}}


def get_querygen_split_input(wildcards):
    """Every generated shard; the BM25 index for the round trip; for unlabelled queries the
    dataset's queries and its evaluation splits' qrels (those queries are never trained on).
    """
    dataset = config["train"]["dataset"]
    inputs = {"shards": querygen_shard_files(f"{NC}/shard-{{shard}}/queries.parquet")}
    if NEWCORPUS["filters"]["round_trip_k"]:
        inputs["index"] = f"{INDEXES}/{dataset}.bm25-{config['bm25']['variant']}"
    if NEWCORPUS["unlabelled"]["enabled"]:
        inputs["queries"] = f"{DATA}/{dataset}/queries.parquet"
        inputs["judged"] = [
            split_files(d, s)["qrels"]
            for d, s in EVAL_TARGETS
            if d == dataset and (d, s) != HELDOUT  # made here, of generated questions
        ]
    return inputs


def get_querygen_unlabelled(wildcards):
    unlabelled = NEWCORPUS["unlabelled"]
    return dict(unlabelled) if unlabelled["enabled"] else None


def order_files(kind):
    """`kind` (labels, raw) of every display-order pass (annotation.selection.orders)."""
    return [f"{SELECTION}/orders/seed-{seed}.{kind}.parquet" for seed in ORDER_SEEDS]


def get_population_input(wildcards):
    """The pools and, in the new-corpus mode, each query's origin: what the selection
    population is made of (utilann.selection.population)."""
    inputs = {"pools": pool_files()}
    if NEWCORPUS_ON:
        inputs["candidates"] = f"{NC}/queries.parquet"
    return inputs


def get_evidence_input(wildcards):
    """The population's pools and origins, and the annotator model."""
    return {
        **get_population_input(wildcards),
        "model": llm_model_input(config["llm"]["model"]),
    }


def get_selection_input(wildcards):
    """The population; what the run's selector reads: the LLM labels, the display-order
    passes or the judge's confidence (utilann.selection.Selector.evidence)."""
    selector = get_selector(RUN_SPECS[wildcards.run].trainset.query_selection)
    inputs = get_population_input(wildcards)
    if selector.needs("labels"):
        inputs["labels"] = f"{ANN}/labels.parquet"
    if selector.needs("orders"):
        inputs["orders"] = order_files("labels")
    if selector.needs("confidence"):
        inputs["confidence"] = f"{SELECTION}/confidence.parquet"
    return inputs


def get_population_origins(wildcards):
    """The origins the population keeps (newcorpus.oracle.origins; None = every query)."""
    return ORACLE["origins"] if ORACLE else None


def get_evidence_annotator(wildcards):
    """The annotation job's settings (rule annotate_shard's params), which the evidence
    passes reuse: the same calls hit the same cache keys."""
    llm = config["llm"]
    ann = config["annotation"]
    return {
        "model": llm["model"],
        "backend": llm["backend"],
        "transformers": llm["transformers"],
        "engine": llm["engine"],
        "env": llm["env"],
        "chat_template_kwargs": llm["chat_template_kwargs"],
        "sampling": llm["sampling"],
        "prompts": annotation_prompts(),
        "strategies": ann["strategies"],
        "window_size": ann["window_size"],
        "position_policy": ann["position_policy"],
        "seed": ann["seed"],
        "passage_max_words": ann["passage_max_words"],
        "chunk_size": ann["chunk_size"],
        "decoding": annotation_decoding(),
        "cache_dir": llm["cache_dir"],
        "code_version": ANNOTATION_CODE_VERSION,
    }


def evidence_writer(name):
    """An evidence job's own file in the LLM cache (`name`: orders, confidence)."""
    return f"{config['experiment']}.selection-{name}"


def get_selection_params(wildcards):
    """Exactly what decides the run's human share."""
    labels = RUN_SPECS[wildcards.run].trainset
    selector = get_selector(labels.query_selection)
    return {
        "selector": labels.query_selection,
        "ratio": labels.query_ratio,
        "seed": labels.seed,
        "origins": get_population_origins(wildcards),
        "threshold": (
            labels.utilrank_threshold if "utilrank" in selector.strategies else None
        ),
    }


def get_oracle_qrels(wildcards):
    return split_files(ORACLE["dataset"], ORACLE["split"])["qrels"]


def get_trainset_params(wildcards):
    return {
        **RUN_SPECS[wildcards.run].trainset_params(),
        "drop_judged_useful": DROP_JUDGED_USEFUL,
        "code_version": TRAIN_CODE_VERSION,
    }


def get_train_init(wildcards):
    """The backbone, or the parent run's checkpoint for a curriculum stage 2."""
    spec = RUN_SPECS[wildcards.run]
    return (
        checkpoint_dir(spec.init_from) if spec.init_from else encoder_dir(spec.backbone)
    )


def get_train_params(wildcards):
    return RUN_SPECS[wildcards.run].train_params()


def get_train_resume_dir(wildcards):
    """The run's resume checkpoints: beside its outputs, never one of them (Snakemake would
    delete them with a failed job's outputs); see utilann.train.checkpoints."""
    return f"{EXP}/train/{wildcards.run}/resume"


def get_dense_model(wildcards):
    return checkpoint_dir(wildcards.run)


def _encoding(wildcards, max_len):
    """EncodeSettings values: the run's pooling + the shared encoding settings."""
    spec = ZEROSHOT if wildcards.run == "zeroshot" else RUN_SPECS[wildcards.run]
    return {
        **spec.encoder_params(),
        "max_length": max_len,
        "batch_size": DENSE["batch_size"],
        "precision": DENSE["precision"],
    }


def get_passage_encoding(wildcards):
    """Passages: also the run's passage format, the one its training passages had."""
    spec = ZEROSHOT if wildcards.run == "zeroshot" else RUN_SPECS[wildcards.run]
    return {
        **_encoding(wildcards, DENSE["passage_max_len"]),
        **spec.passage_format(),
    }


def get_query_encoding(wildcards):
    """Queries: dense.query_max_len, or the dataset's query_max_len_by_dataset entry."""
    return _encoding(wildcards, plan.query_max_len(config, wildcards.dataset))


def get_encode_shard(wildcards):
    return int(wildcards.eshard)


def get_encode_shards(wildcards):
    """Encoding jobs for a dataset: dense.encode_shards_by_dataset, else dense.encode_shards."""
    return DENSE["encode_shards_by_dataset"].get(
        wildcards.dataset, DENSE["encode_shards"]
    )


def get_corpus_embeddings(wildcards):
    return expand(
        f"{EXP}/dense/{wildcards.run}/{wildcards.dataset}/emb-{{eshard}}.parquet",
        eshard=range(get_encode_shards(wildcards)),
    )


def get_replug_answers(wildcards):
    """The training queries' gold answers: `replug.answers` (path, format), else the training
    dataset's ingested ANSWERS table (format null)."""
    answers = config["replug"]["answers"]
    if answers:
        return {"path": answers["path"], "format": answers["format"]}
    return {"path": f"{DATA}/{TRAIN_DS}/answers.parquet", "format": None}


def get_replug_score_input(wildcards):
    """The pool shard, the training queries' texts, the scoring LM, and the gold answers.

    An external answers file (MS MARCO QA's train JSON) is an input once it exists; before,
    the dry run still plans the job, and the job says where the file must go.
    """
    answers = get_replug_answers(wildcards)
    inputs = {
        "pools": f"{EXP}/pools/shard-{wildcards.shard}.parquet",
        "queries": split_files(TRAIN_DS, TRAIN_SPLIT)["queries"],
    }
    if answers["format"] is None or os.path.exists(answers["path"]):
        inputs["answers"] = answers["path"]
    model = llm_model_input(plan.replug_scorer(config)["model"])
    if model:
        inputs["model"] = model
    return inputs


def get_replug_scorer(wildcards):
    return plan.replug_scorer(config)


def get_replug_prompt(wildcards):
    """The template id and hash: a reworded template rescores."""
    template = load_template_id(config["replug"]["prompt"])
    return {"id": template.id, "sha256": template.sha256}


def get_replug_cache_writer(wildcards):
    return f"replug.{config['experiment']}.shard-{wildcards.shard}"


def get_hub_repo_id(wildcards):
    return HUB_LLMS[wildcards.slug]


def get_rag_target(wildcards):
    """The `rag.targets` entry of this job's dataset and split."""
    try:
        return RAG_TARGETS[(wildcards.dataset, wildcards.split)]
    except KeyError:
        raise ValueError(
            f"{wildcards.dataset}/{wildcards.split} is not a rag target "
            f"(rag.targets: {sorted(RAG_TARGETS)})"
        ) from None


def answers_slug(path):
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


# Gold-answer files are the user's (nothing downloads them): a missing one is the input of
# rule missing_answers, which fails with where to put which file (a dry run still plans).
MISSING_ANSWERS = {
    answers_slug(a["path"]): a
    for a in plan.answer_sources(config)
    if not os.path.exists(a["path"])
}


def answers_input(source, dataset):
    """A job's gold answers: the configured file (``source``) or the dataset's own answers."""
    if source is None:
        return f"{DATA}/{dataset}/answers.parquet"
    slug = answers_slug(source["path"])
    return (
        f"results/missing-answers/{slug}.txt"
        if slug in MISSING_ANSWERS
        else source["path"]
    )


def get_missing_answers(wildcards):
    return dict(MISSING_ANSWERS[wildcards.slug])


def get_rag_answers(wildcards):
    """Gold answers: the target's own file, else the dataset's ingested answers.jsonl."""
    return answers_input(get_rag_target(wildcards)["answers"], wildcards.dataset)


def get_rag_run(wildcards):
    """The run whose passages one RAG job scores (its target's split, not the target name)."""
    source = get_rag_target(wildcards)["split"]
    return f"{EXP}/runs/{wildcards.run}/{wildcards.dataset}.{source}.parquet"


def get_rag_qrels(wildcards):
    """The judgements of the split one RAG job answers (its target's split)."""
    return split_files(wildcards.dataset, get_rag_target(wildcards)["split"])["qrels"]


def get_rag_generate_input(wildcards):
    source = get_rag_target(wildcards)["split"]
    inputs = {
        "runs": [
            f"{EXP}/runs/{run}/{wildcards.dataset}.{source}.parquet" for run in RAG_RUNS
        ],
        **split_files(wildcards.dataset, source),
        "corpus": f"{DATA}/{wildcards.dataset}/corpus",
        "answers": get_rag_answers(wildcards),
    }
    model = llm_model_input(get_rag_generator(wildcards)["model"])
    if model:
        inputs["model"] = model
    return inputs


def get_rag_target_params(wildcards):
    """Passages per prompt and the prompt template (id and hash: a new wording reruns)."""
    target = get_rag_target(wildcards)
    template = load_template_id(target["prompt"])
    return {
        "split": target["split"],
        "top_k": target["top_k"],
        "prompt": template.id,
        "prompt_sha256": template.sha256,
    }


def get_rag_question_params(wildcards):
    return plan.rag_question_params(config, get_rag_target(wildcards))


def get_rag_generator(wildcards):
    """The LLM that answers this job's target (its generator, else the annotation LLM)."""
    return plan.rag_generator(config, get_rag_target(wildcards))


def get_rag_generator_params(wildcards):
    return plan.rag_generator_params(config, get_rag_target(wildcards))


def get_rag_cache_writer(wildcards):
    return f"rag.{config['experiment']}.{wildcards.dataset}.{wildcards.split}"


def get_rag_answer_measures(wildcards):
    return get_rag_target(wildcards)["measures"]


def get_rag_top_k(wildcards):
    return get_rag_target(wildcards)["top_k"]


def get_rag_source_split(wildcards):
    return get_rag_target(wildcards)["split"]


def get_rag_bertscore(wildcards):
    """BERTScore settings, only for targets that ask for BERTScore."""
    if "BERTScore" not in get_rag_target(wildcards)["measures"]:
        return None
    return dict(RAG["bertscore"])


def get_reproduction_input(wildcards):
    """The metrics table and the matrix; the annotation report too (paper Table 1's rows)."""
    inputs = {
        "metrics": f"{EXP}/metrics.parquet",
        "expected": repo_file(config["evaluation"]["reproduction"]),
    }
    if REPORT_SETTINGS.annotation:
        inputs["annotation"] = f"{ANN}/report.parquet"
    return inputs


def get_report_tables_input(wildcards):
    inputs = {
        "retrieval": retrieval_files("metrics"),
        "rag": rag_files("metrics"),
        "significance": f"{EXP}/significance.parquet",
    }
    if REPORT_SETTINGS.annotation:
        inputs["annotation"] = f"{ANN}/report.parquet"
        inputs["manifests"] = annotation_shard_files("manifest.json")
    if "false_negatives" in AUDITS:
        inputs["false_negatives"] = f"{AUDIT_DIR}/negatives_summary.parquet"
    if "injection" in AUDITS:
        inputs["injection"] = f"{AUDIT_DIR}/injection_summary.parquet"
    if NEWCORPUS_ON:
        inputs["candidates"] = f"{NC}/queries.parquet"
        inputs["pseudo_qrels"] = f"{NC}/split/qrels.parquet"
        if REPORT_SETTINGS.annotation:
            inputs["labels"] = f"{ANN}/labels.parquet"
    return inputs


def get_audit_input(wildcards):
    """An audit's inputs: the pools, the annotator (a prepared directory where it has one),
    and the cascade's raw calls (its pseudo-answers) where the annotation stage runs."""
    inputs = {"pools": pool_files(), "model": llm_model_input(config["llm"]["model"])}
    if REPORT_SETTINGS.annotation:
        inputs["cascade_raw"] = annotation_shard_files("raw.parquet")
    return inputs


def audit_llm_params(name):
    """The params both audits share: the annotator's engine, sampling, decoding and prompts
    (with each template file's hash), and their own writer file in the LLM cache."""
    selected = config["annotation"]["prompts"]
    templates = load_templates(AUDITED_STEPS, selected["version"], selected["dir"])
    return {
        "llm": plan.llm_job(config, None),
        "sampling": config["llm"]["sampling"],
        "decoding": plan.annotation_decoding(config, AUDITED_STEPS),
        "prompts": {**selected, "sha256": {s: t.sha256 for s, t in templates.items()}},
        "passage_max_words": config["annotation"]["passage_max_words"],
        "chunk_size": config["annotation"]["chunk_size"],
        "cache_dir": config["llm"]["cache_dir"],
        "writer": f"{config['experiment']}.audit-{name}",
        "code_version": AUDIT_CODE_VERSION,
    }


def audit_attacks():
    """The attack templates' file (null: the packaged set), version and hash: editing the
    file reruns the injection audit."""
    from utilann.audit.injection import load_attacks

    path = AUDIT["injection"]["attacks"]
    attacks = load_attacks(path)
    return {"path": path, "version": attacks.version, "sha256": attacks.sha256}


def get_hybrid_pool_input(wildcards):
    """The pool's runs on the Hybrid Test's split, the split's data and the gold answers."""
    d, split = HYBRID_CFG["dataset"], HYBRID_CFG["split"]
    return {
        "runs": [f"{EXP}/runs/{run}/{d}.{split}.parquet" for run in HYBRID_RUNS],
        **split_files(d, split),
        "corpus": f"{DATA}/{d}/corpus",
        "answers": answers_input(HYBRID_CFG["answers"], d),
    }


def get_hybrid_answers_format():
    answers = HYBRID_CFG["answers"]
    return answers["format"] if answers else None


def hybrid_template():
    """The judge's template (the UtilSel one of annotation.prompts) with its file's hash."""
    if not HYBRID:
        return None
    step = get_step("judge")
    selected = config["annotation"]["prompts"]
    template = load_template(step.template_name, selected["version"], selected["dir"])
    return {**selected, "name": template.name, "sha256": template.sha256}


def hybrid_sampling():
    """The judge decodes like the annotator (llm.sampling; unset keys left to vLLM)."""
    return {k: v for k, v in config["llm"]["sampling"].items() if v is not None}


# --- default target ------------------------------------------------------------------------


def audit_stems():
    """File stems under AUDIT_DIR of the audits that run."""
    stems = {"false_negatives": "negatives", "injection": "injection"}
    return [stems[name] for name in AUDITS]


def get_final_output():
    """What `snakemake` with no target builds: the metrics table and its reproduction check,
    the annotation report (and its budget plan with plan.report), and the report's tables and
    figures; in the new-corpus mode also
    every trained model (a corpus of one's own may have no test queries to evaluate them on).
    """
    return [
        f"{EXP}/metrics.parquet",
        f"{EXP}/reproduction.tsv",
        f"{ANN}/report.parquet",
        *([f"{ANN}/plan.md"] if config["plan"]["report"] else []),
        *([f"{CAL}/report.md"] if CALIBRATION_SETS else []),
        *(str(path) for path in report_table_outputs().values()),
        *(f"{AUDIT_DIR}/{name}_summary.parquet" for name in audit_stems()),
        *(path for _, path in report_figures()),
        *([f"{EXP}/models/{run}" for run in RUN_SPECS] if NEWCORPUS_ON else []),
    ]
