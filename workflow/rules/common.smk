# Shared paths and small helpers used by every stage's rules.
#
# Layout of outputs (see docs/artifacts.md):
#   results/datasets/<dataset>/        corpus/ shards, queries, qrels (shared by experiments)
#   results/indexes/<dataset>.bm25-<variant>/   Lucene index
#   results/<experiment>/runs/<run>/<dataset>.<split>.{parquet,trec}
#   results/<experiment>/eval/<run>/<dataset>.<split>.{perquery,metrics}.parquet
#   results/<experiment>/metrics.parquet          every aggregate figure of the experiment

import os

EXP = f"results/{config['experiment']}"
DATA = "results/datasets"
INDEXES = "results/indexes"
LOGS = f"{EXP}/logs"
BENCH = f"{EXP}/benchmarks"
RAW_DATASETS = config["paths"]["datasets"]
MODELS = config["paths"]["models"]


wildcard_constraints:
    dataset="[a-z0-9][a-z0-9_-]*",
    split="[a-z0-9][a-z0-9_-]*",
    run="[a-z0-9][a-z0-9_-]*",
    shard="[0-9]+",


def dataset_cfg(name):
    """The config entry of a dataset, with a clear error for an unknown name."""
    try:
        return config["datasets"][name]
    except KeyError:
        raise ValueError(
            f"dataset {name!r} is used but not declared under `datasets:` in the config "
            f"(declared: {sorted(config['datasets'])})"
        ) from None


def dataset_tables(dataset):
    """The ingested Parquet tables of a dataset (corpus is a directory of shards)."""
    return {
        "corpus": f"{DATA}/{dataset}/corpus",
        "queries": f"{DATA}/{dataset}/queries.parquet",
        "qrels": f"{DATA}/{dataset}/qrels.parquet",
    }


def eval_targets():
    """(dataset, split) pairs every retrieval run is evaluated on."""
    return [(t["dataset"], t["split"]) for t in config["evaluation"]["targets"]]


def pool_shards():
    return list(range(config["pools"]["shards"]))


def retrieval_runs():
    """Names of all retrieval runs of the experiment: bm25 plus the dense runs."""
    return ["bm25"] + dense_runs()


def dense_runs():
    """Dense run names (zero-shot backbone and the trained runs), from `training:`."""
    training = config.get("training") or {}
    names = ["zeroshot"] if training.get("zeroshot", False) else []
    return names + list((training.get("runs") or {}).keys())


def final_targets():
    """What `snakemake` with no target builds: the metrics table (and stage extras)."""
    return [f"{EXP}/metrics.parquet", f"{EXP}/reproduction.tsv"] + stage_extra_targets()


STAGE_EXTRA_TARGETS = []


def stage_extra_targets():
    """Stages register extra default targets (reports etc.) in STAGE_EXTRA_TARGETS."""
    return list(STAGE_EXTRA_TARGETS)


def download_params(wildcards):
    """Where a missing dataset can be fetched from."""
    cfg = dataset_cfg(wildcards.dataset)
    return {
        "format": cfg["format"],
        "url": cfg.get("url"),
        "ir_datasets": cfg.get("ir_datasets"),
    }


def raw_dataset_dir(wildcards):
    """The folder holding a dataset in its standard layout."""
    return f"{RAW_DATASETS}/{wildcards.dataset}"


def raw_dataset(wildcards):
    """Ingestion input: the download flag if we downloaded, else the user's folder if any."""
    folder = raw_dataset_dir(wildcards)
    flag = f"{folder}.download.done"
    if os.path.exists(flag) or not os.path.isdir(folder):
        return flag
    return folder


def ingest_format(wildcards):
    """The layout (beir, msmarco, tevatron) a dataset is read in."""
    return dataset_cfg(wildcards.dataset)["format"]


def pool_candidates(wildcards):
    """Ranked negatives for the pools: the dataset's own (Tevatron) or a BM25 run."""
    train = config["train"]
    if config["pools"]["source"] == "dataset":
        return f"{DATA}/{train['dataset']}/negatives.parquet"
    return f"{EXP}/runs/bm25/{train['dataset']}.{train['split']}.parquet"


def measures_for(wildcards):
    """ir_measures names for a dataset: the common ones plus its extra ones."""
    extra = config["evaluation"]["extra_measures"].get(wildcards.dataset, [])
    return list(dict.fromkeys(config["evaluation"]["measures"] + extra))


def metric_files(wildcards):
    """Every aggregate-figure file that goes into the experiment's metrics table."""
    files = [
        f"{EXP}/eval/{run}/{dataset}.{split}.metrics.parquet"
        for run in retrieval_runs()
        for dataset, split in eval_targets()
    ]
    return files + extra_metric_files()


EXTRA_METRIC_FILES = []


def extra_metric_files():
    """Stages whose figures belong in the metrics table register them here (RAG)."""
    return list(EXTRA_METRIC_FILES)


# --- RAG stage and report (rules in rag.smk and report.smk) ---------------------------------
#
#   {EXP}/rag/<dataset>.<split>.questions.parquet          the answered questions + gold answers
#   {EXP}/rag/<run>/<dataset>.<split>.generations.parquet  one answer per question (GENERATIONS)
#   {EXP}/rag/<run>/<dataset>.<split>.{perquery,metrics}.parquet   answer measures and R@k
#   {EXP}/significance.parquet                             t-tests of every run vs the baseline
#   {EXP}/report/*.html, *.png, {EXP}/summary.md            the paper's tables and figures

import sys
from types import SimpleNamespace

RAG = config["rag"]
# Snakemake does not track library code: bump when a change of algorithm must regenerate.
RAG_CODE_VERSION = 1
# Answers are cached by content in the one LLM store (llm.cache_dir), one file per generation
# job: shared by steps and experiments, never deleted on failure.
RAG_CACHE = config["llm"]["cache_dir"]
REPORT = f"{EXP}/report"


def rag_targets():
    """The `rag.targets` entries by (dataset, split), with the schema's defaults."""
    targets = {}
    for entry in RAG["targets"]:
        dataset_cfg(entry["dataset"])
        key = (entry["dataset"], entry["split"])
        if key in targets:
            raise ValueError(f"rag.targets lists {key[0]}/{key[1]} twice")
        targets[key] = {
            "top_k": 5,
            "prompt": "short_answer",
            "max_tokens": None,
            "measures": ["EM", "F1"],
            "answers": None,
            **entry,
        }
    return targets


def rag_target(wildcards):
    try:
        return rag_targets()[(wildcards.dataset, wildcards.split)]
    except KeyError:
        raise ValueError(
            f"{wildcards.dataset}/{wildcards.split} is not a rag target "
            f"(rag.targets: {sorted(rag_targets())})"
        ) from None


def rag_runs():
    """Retrieval runs whose passages are fed to the generator (`rag.runs`, [] = all)."""
    runs = list(RAG["runs"]) or retrieval_runs()
    unknown = [r for r in runs if r not in retrieval_runs()]
    if unknown:
        raise ValueError(
            f"rag.runs names unknown run(s) {unknown}; runs of this experiment: {retrieval_runs()}"
        )
    return runs


def rag_recall_measure(target):
    return f"R@{target['top_k']}"


def check_rag_measures():
    """RAG's R@k must not collide with the same split's retrieval R@k (other query set)."""
    for (dataset, split), target in rag_targets().items():
        recall = rag_recall_measure(target)
        if (dataset, split) in eval_targets() and recall in measures_for(
            SimpleNamespace(dataset=dataset)
        ):
            raise ValueError(
                f"{dataset}/{split} is evaluated with {recall} and is a rag target with top_k "
                f"{target['top_k']}: both would be the metrics row {recall}; drop {recall} from "
                "evaluation.measures/extra_measures for this dataset"
            )


def rag_files(kind):
    """`kind` (metrics, perquery) files of every RAG run on every RAG target."""
    return [
        f"{EXP}/rag/{run}/{dataset}.{split}.{kind}.parquet"
        for dataset, split in rag_targets()
        for run in rag_runs()
    ]


def rag_generation_outputs():
    """One generations file per RAG run (the {dataset}/{split} wildcards kept)."""
    return [
        f"{EXP}/rag/{run}/{{dataset}}.{{split}}.generations.parquet"
        for run in rag_runs()
    ]


def rag_answers_input(target, dataset):
    """Gold answers: the target's own file, else the dataset's ingested answers.jsonl."""
    if target["answers"]:
        return target["answers"]["path"]
    return f"{DATA}/{dataset}/answers.parquet"


def rag_generate_inputs(wildcards):
    target = rag_target(wildcards)
    inputs = {
        "runs": [
            f"{EXP}/runs/{run}/{wildcards.dataset}.{wildcards.split}.parquet"
            for run in rag_runs()
        ],
        "queries": f"{DATA}/{wildcards.dataset}/queries.parquet",
        "qrels": f"{DATA}/{wildcards.dataset}/qrels.parquet",
        "corpus": f"{DATA}/{wildcards.dataset}/corpus",
        "answers": rag_answers_input(target, wildcards.dataset),
    }
    model = rag_generator()["input"]
    if model:
        inputs["model"] = model
    return inputs


def rag_target_params(wildcards):
    """Passages per prompt and the prompt template (id and hash: a new wording reruns)."""
    from utilann.llm.templates import load_template_id

    target = rag_target(wildcards)
    template = load_template_id(target["prompt"])
    return {
        "top_k": target["top_k"],
        "prompt": template.id,
        "prompt_sha256": template.sha256,
    }


def rag_question_params(wildcards):
    target = rag_target(wildcards)
    answers = target["answers"]
    return {
        "answers_format": answers["format"] if answers else None,
        "max_queries": RAG["max_queries"],
        "seed": RAG["seed"],
    }


def rag_generator():
    """The generator LLM: `rag.generator.model`, else the annotation LLM (`llm.model`).

    Either way it is loaded like the annotator (llm_model_path: a name under `llm.packaged` is
    the directory rule prepare_llm makes) and runs with the annotation engine settings
    (`llm.engine`, `llm.env`, `llm.chat_template_kwargs`): same backend, same hardware.
    """
    llm = config["llm"]
    name = RAG["generator"]["model"] or llm["model"]
    engine = {k: v for k, v in llm["engine"].items() if k != "extra" and v is not None}
    return {
        "model": name,
        "path": llm_model_path(name),
        "input": llm_model_input(name),
        "engine": {**engine, **(llm["engine"].get("extra") or {})},
        "env": dict(llm["env"]),
        "chat_template_kwargs": dict(llm["chat_template_kwargs"]),
    }


def rag_generator_params(wildcards):
    target = rag_target(wildcards)
    sampling = {k: v for k, v in RAG["generator"]["sampling"].items() if v is not None}
    if target["max_tokens"]:
        sampling["max_tokens"] = target["max_tokens"]
    generator = {k: v for k, v in rag_generator().items() if k != "input"}
    return {
        **generator,
        "sampling": sampling,
        "batch_size": RAG["generator"]["batch_size"],
    }


def rag_cache_writer(wildcards):
    return f"rag.{config['experiment']}.{wildcards.dataset}.{wildcards.split}"


def rag_answer_measures(wildcards):
    return rag_target(wildcards)["measures"]


def rag_top_k(wildcards):
    return rag_target(wildcards)["top_k"]


def rag_bertscore(wildcards):
    """BERTScore settings, only for targets that ask for BERTScore."""
    if "BERTScore" not in rag_target(wildcards)["measures"]:
        return None
    return dict(RAG["bertscore"])


def significance_baseline():
    """`rag.baseline` when it is a run of the experiment, else bm25 (with a warning)."""
    requested = RAG["baseline"]
    if requested in retrieval_runs():
        return requested
    sys.stderr.write(
        f"WARNING: rag.baseline {requested!r} is not a run of this experiment "
        f"({retrieval_runs()}); significance is tested against 'bm25'\n"
    )
    return "bm25"


def retrieval_files(kind):
    """`kind` (metrics, perquery) evaluation files of every retrieval run and target."""
    return [
        f"{EXP}/eval/{run}/{dataset}.{split}.{kind}.parquet"
        for run in retrieval_runs()
        for dataset, split in eval_targets()
    ]


def run_settings():
    """Every training run's resolved settings, flat (what Table 6 and Figure 3 compare)."""
    return {
        name: {
            "backbone": spec.backbone,
            "init_from": spec.init_from,
            **spec.trainset_params(),
            **spec.train_params(),
        }
        for name, spec in RUN_SPECS.items()
    }


def annotation_in_report():
    """Whether the annotation stage runs (some training run learns from LLM labels)."""
    return any(spec.trainset.needs_labels for spec in RUN_SPECS.values())


def primary_target():
    """The first evaluation target, its measures, and the measure of Table 6 and Figure 3."""
    if not eval_targets():
        return None
    dataset, split = eval_targets()[0]
    measures = measures_for(SimpleNamespace(dataset=dataset))
    measure = "RR@10" if "RR@10" in measures else measures[0]
    return {
        "dataset": dataset,
        "split": split,
        "measures": measures,
        "measure": measure,
    }


def dataset_measure():
    """Table 3's measure: nDCG@10 (the paper's BEIR figure) when evaluated."""
    measures = config["evaluation"]["measures"]
    return "nDCG@10" if "nDCG@10" in measures else measures[0]


def evaluation_params():
    return [
        {"dataset": d, "split": s, "measures": measures_for(SimpleNamespace(dataset=d))}
        for d, s in eval_targets()
    ]


def rag_target_list():
    return [
        {"dataset": d, "split": s, "top_k": t["top_k"], "measures": t["measures"]}
        for (d, s), t in rag_targets().items()
    ]


def report_table(key, category, labels):
    return report(
        f"{REPORT}/{key}.html",
        caption=f"../report/{key}.rst",
        category=category,
        labels=labels,
    )


def report_table_outputs():
    """The tables this experiment has (named outputs of report_tables) and summary.md."""
    from utilann.report import controlled_groups

    outputs = {}
    if annotation_in_report():
        outputs["table1"] = report_table(
            "table1_annotation",
            "1. Annotation",
            {"table": "Table 1", "shows": "annotation quality"},
        )
    outputs["table2"] = report_table(
        "table2_retrieval",
        "2. Retrieval",
        {"table": "Table 2", "shows": "all measures"},
    )
    if len(eval_targets()) > 1:
        outputs["table3"] = report_table(
            "table3_datasets",
            "2. Retrieval",
            {"table": "Table 3", "shows": dataset_measure()},
        )
    if rag_targets():
        outputs["table4"] = report_table(
            "table4_rag", "3. RAG", {"table": "Tables 4/5", "shows": "answer quality"}
        )
    if primary_target() and controlled_groups(
        run_settings(), exclude=[SIGNIFICANCE_BASELINE]
    ):
        outputs["table6"] = report_table(
            "table6_controlled",
            "4. Controlled experiments",
            {"table": "Table 6", "shows": "one setting changed"},
        )
    outputs["summary"] = f"{EXP}/summary.md"
    return outputs


def report_table_inputs(wildcards):
    inputs = {
        "retrieval": retrieval_files("metrics"),
        "rag": rag_files("metrics"),
        "significance": f"{EXP}/significance.parquet",
    }
    if annotation_in_report():
        inputs["annotation"] = f"{EXP}/annotation/report.parquet"
    return inputs


def report_figures():
    """(caption, path) of the figures this experiment has (Figure 3b, 3a)."""
    from utilann.report import has_ratio_curves

    figures = []
    if annotation_in_report():
        figures.append(
            ("Figure 3b: UtilRank threshold", f"{REPORT}/fig3b_utilrank_threshold.png")
        )
    if primary_target() and has_ratio_curves(run_settings()):
        figures.append(
            ("Figure 3a: human-label ratio", f"{REPORT}/fig3a_human_ratio.png")
        )
    return figures


def primary_metric_files(runs):
    """Retrieval metrics of `runs` on the primary evaluation target."""
    target = primary_target()
    if target is None:
        return []
    return [
        f"{EXP}/eval/{run}/{target['dataset']}.{target['split']}.metrics.parquet"
        for run in runs
    ]


def utilrank_settings():
    from utilann.report import utilrank_runs

    return {name: run_settings()[name] for name in utilrank_runs(run_settings())}


def cl_settings():
    """The settings of the curriculum runs and their parents (Figure 3a)."""
    from utilann.report import cl_ratio_runs

    settings = run_settings()
    names = {
        n for parent, runs in cl_ratio_runs(settings).items() for n in [parent, *runs]
    }
    return {name: settings[name] for name in settings if name in names}


def human_reference():
    """The run drawn as the 100 %-human line of Figure 3a (the baseline when it is human)."""
    spec = RUN_SPECS.get(SIGNIFICANCE_BASELINE)
    if (
        spec is not None
        and spec.trainset.label_source == "human"
        and spec.init_from is None
    ):
        return SIGNIFICANCE_BASELINE
    return None


def repo_file(path):
    """A config-given file: as written if it exists, else relative to the workflow's repo."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(workflow.basedir, path)


# --- models (models.smk) ---

import re


def packaged_llm(name):
    """The `llm.packaged` entry of model `name`, or None for hub ids and local paths."""
    return (config["llm"].get("packaged") or {}).get(name)


def llm_model_path(name):
    """Where the engine loads model `name` from."""
    return f"{MODELS}/{name}" if packaged_llm(name) else name


def llm_model_input(name):
    """Snakemake input for model `name`: the prepared directory, if the workflow makes it."""
    return [llm_model_path(name)] if packaged_llm(name) else []


def prepare_llm_spec(wildcards):
    return packaged_llm(wildcards.llm)


# --- annotation (annotate.smk) ---

from utilann.annotate import CODE_VERSION as ANNOTATION_CODE_VERSION
from utilann.annotate.steps import cascade_steps
from utilann.llm.templates import load_templates

ANN = f"{EXP}/annotation"


def annotation_shard_files(name):
    """`name` (labels.parquet, raw.parquet, ...) of every annotation shard."""
    return expand(f"{ANN}/shard-{{shard}}/{name}", shard=pool_shards())


def annotation_prompts():
    """The template selection plus each template file's hash: editing a template in place
    (same version) is a params change too; the cache then skips the steps it did not touch.
    """
    selected = config["annotation"]["prompts"]
    steps = cascade_steps(config["annotation"]["strategies"])
    templates = load_templates(steps, selected["version"], selected["dir"])
    return {**selected, "sha256": {step: t.sha256 for step, t in templates.items()}}


def annotation_writer(wildcards):
    """This job's own file in the LLM cache: stable across reruns, unique across jobs."""
    return f"{config['experiment']}.shard-{wildcards.shard}"


# --- training (train.smk) ---

from utilann.train.backbones import backbone_slug
from utilann.train.spec import resolve_runs, zeroshot_spec

TRAINING = config["training"]
TRAIN_RESOURCES = TRAINING["resources"]
RUN_SPECS = resolve_runs(TRAINING)
ZEROSHOT = zeroshot_spec(TRAINING)
BACKBONES = {s.backbone_slug: s.backbone for s in [ZEROSHOT, *RUN_SPECS.values()]}
# Snakemake does not track library code: bump when a change of algorithm must retrain.
TRAIN_CODE_VERSION = 1


def names_regex(names):
    """A wildcard regex matching exactly ``names`` (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def encoder_dir(backbone):
    return f"{MODELS}/encoders/{backbone_slug(backbone)}"


def checkpoint_dir(run):
    """The model directory a dense run encodes with (the bare backbone for `zeroshot`)."""
    return (
        encoder_dir(ZEROSHOT.backbone) if run == "zeroshot" else f"{EXP}/models/{run}"
    )


def backbone_name(wildcards):
    return BACKBONES[wildcards.backbone]


def trainset_inputs(wildcards):
    """Pools always; the LLM labels only for runs trained on them."""
    inputs = {
        "pools": expand(f"{EXP}/pools/shard-{{shard}}.parquet", shard=pool_shards())
    }
    if RUN_SPECS[wildcards.run].trainset.needs_labels:
        inputs["labels"] = f"{EXP}/annotation/labels.parquet"
    return inputs


def trainset_params(wildcards):
    return {
        **RUN_SPECS[wildcards.run].trainset_params(),
        "code_version": TRAIN_CODE_VERSION,
    }


def train_init(wildcards):
    """The backbone, or the parent run's checkpoint for a curriculum stage 2."""
    spec = RUN_SPECS[wildcards.run]
    return (
        checkpoint_dir(spec.init_from) if spec.init_from else encoder_dir(spec.backbone)
    )


def train_params(wildcards):
    return RUN_SPECS[wildcards.run].train_params()


def checkpoint_output(path):
    out = directory(path)
    return protected(out) if TRAINING["protect_checkpoints"] else out


# --- dense retrieval (dense.smk) ---

DENSE = config["dense"]
DENSE_RESOURCES = DENSE["resources"]
DENSE_CODE_VERSION = 1


def dense_spec(run):
    return ZEROSHOT if run == "zeroshot" else RUN_SPECS[run]


def dense_model(wildcards):
    return checkpoint_dir(wildcards.run)


def encode_settings(wildcards, max_len):
    """EncodeSettings values: the run's pooling + the shared encoding settings."""
    return {
        **dense_spec(wildcards.run).encoder_params(),
        "max_length": max_len,
        "batch_size": DENSE["batch_size"],
        "precision": DENSE["precision"],
    }


def passage_encoding(wildcards):
    return encode_settings(wildcards, DENSE["passage_max_len"])


def query_encoding(wildcards):
    return encode_settings(wildcards, DENSE["query_max_len"])


def encode_shard_index(wildcards):
    return int(wildcards.eshard)


def embedding_output(path):
    return path if DENSE["keep_embeddings"] else temp(path)


def corpus_embeddings(wildcards):
    return expand(
        f"{EXP}/dense/{wildcards.run}/{wildcards.dataset}/emb-{{eshard}}.parquet",
        eshard=range(DENSE["encode_shards"]),
    )
