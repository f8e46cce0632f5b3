"""What an experiment runs, decided from its validated config (no Snakemake, no file access).

The rules (``workflow/rules/common.smk``) call these once at parse time and turn the answers
into paths and params; keeping the decisions here makes them unit-testable and gives each one
a single home: which runs exist, which RAG targets and generator, which baseline the t-tests
use, which measure the report's Table 3/6 and Figure 3 show.

``config`` is always the config *after* ``snakemake.utils.validate`` against
``config/schema.yaml``: the schema fills in every default (also inside list items such as
``rag.targets``), so nothing here repeats a default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from utilann.hub import hub_slug, is_hub_id
from utilann.report.registry import ReportSettings
from utilann.train.spec import RunSpec, declared_runs

Config = Mapping[str, Any]
Target = tuple[str, str]  # (dataset, split)

# --- config keys ---------------------------------------------------------------------------


def dataset_entry(config: Config, name: str) -> Mapping[str, Any]:
    """The ``datasets:`` entry of ``name``, with a clear error for an undeclared one.

    A subset dataset (``cqadupstack-android``) has its benchmark's entry, without subsets.
    """
    if name in config["datasets"]:
        return config["datasets"][name]
    parent = subset_datasets(config).get(name)
    if parent is not None:
        return {**config["datasets"][parent[0]], "subsets": []}
    raise ValueError(
        f"dataset {name!r} is used but not declared under `datasets:` in the config "
        f"(declared: {sorted(config['datasets'])})"
    )


def subset_datasets(config: Config) -> dict[str, tuple[str, str]]:
    """``{subset dataset: (benchmark, subset)}``, e.g. ``cqadupstack-android`` -> its forum.

    A benchmark with ``subsets`` (BEIR's CQADupStack: 12 forums in ``cqadupstack/<forum>/``)
    is searched and evaluated per subset; its target reports the mean over the subsets.
    """
    named = {}
    for name, entry in config["datasets"].items():
        for subset in entry.get("subsets") or []:
            named[f"{name}-{subset}"] = (name, subset)
    clash = sorted(set(named) & set(config["datasets"]))
    if clash:
        raise ValueError(f"dataset name(s) {clash} are also subsets of another dataset")
    return named


def raw_dataset_dir(config: Config, name: str) -> str:
    """Where dataset ``name`` is in its standard layout (a subset: ``<benchmark>/<subset>``)."""
    root = config["paths"]["datasets"]
    parent = subset_datasets(config).get(name)
    return f"{root}/{parent[0]}/{parent[1]}" if parent else f"{root}/{name}"


def download_name(config: Config, name: str) -> str:
    """The dataset whose download provides ``name`` (a subset comes with its benchmark)."""
    parent = subset_datasets(config).get(name)
    return parent[0] if parent else name


def remove_query(config: Config, dataset: str) -> bool:
    """Whether runs on ``dataset`` drop the query's own document id (``datasets.*.remove_query``).

    Unset, it follows the dataset's layout: on for BEIR datasets (BEIR's evaluator ignores
    identical query and document ids by default, pyserini's BEIR regressions pass
    ``--remove-query``; it matters where queries are corpus documents: ArguAna, Quora), off for
    MS MARCO and Tevatron files, whose query and passage ids are separate number spaces (query
    1048585 and passage 1048585 are unrelated).
    """
    entry = dataset_entry(config, dataset)
    chosen = entry.get("remove_query")
    return entry["format"] == "beir" if chosen is None else bool(chosen)


# --- retrieval -----------------------------------------------------------------------------


GROUPS = ("in-domain", "zero-shot")
HYBRID_SUFFIX = "-hybrid"


def hybrid_target(config: Config) -> Target | None:
    """The Hybrid Test as an evaluation target, ``(dataset, <split>-hybrid)``, or None (off).

    Its runs are those of ``(dataset, split)``; its qrels are the golden labels (human +
    judge positives) of the sampled queries (:mod:`utilann.hybrid`).
    """
    hybrid = config["evaluation"]["hybrid"]
    if not hybrid["dataset"]:
        return None
    dataset_entry(config, hybrid["dataset"])
    return hybrid["dataset"], f"{hybrid['split']}{HYBRID_SUFFIX}"


def eval_targets(config: Config) -> list[Target]:
    """(dataset, split) pairs every retrieval run is evaluated on, in config order, then the
    Hybrid Test (when configured)."""
    targets = [(t["dataset"], t["split"]) for t in config["evaluation"]["targets"]]
    for dataset, _ in targets:
        dataset_entry(config, dataset)
    hybrid = hybrid_target(config)
    return targets + ([hybrid] if hybrid else [])


def source_split(config: Config, dataset: str, split: str) -> str:
    """The split whose runs an evaluation target scores (the Hybrid Test's is its own split)."""
    return (
        config["evaluation"]["hybrid"]["split"]
        if (dataset, split) == hybrid_target(config)
        else split
    )


def target_entry(config: Config, dataset: str, split: str) -> Mapping[str, Any]:
    """The ``evaluation.targets`` item of (dataset, split); a subset has its benchmark's."""
    parent = subset_datasets(config).get(dataset)
    name = parent[0] if parent else dataset
    for entry in config["evaluation"]["targets"]:
        if (entry["dataset"], entry["split"]) == (name, split):
            return entry
    return {"dataset": name, "split": split, "extra_measures": [], "group": None, "answers": None}


def target_group(config: Config, dataset: str, split: str) -> str:
    """``in-domain`` (Table 2) or ``zero-shot`` (Table 3 and its Average) for a target.

    Unset, it follows the layout: MS MARCO and Tevatron data are the in-domain sets, BEIR
    datasets the zero-shot ones (the paper's Table 3 averages the 14 BEIR sets only). The
    Hybrid Test is in-domain.
    """
    if (dataset, split) == hybrid_target(config):
        return "in-domain"
    chosen = target_entry(config, dataset, split)["group"]
    if chosen:
        return chosen
    return "zero-shot" if dataset_entry(config, dataset)["format"] == "beir" else "in-domain"


def measures_for(config: Config, dataset: str, split: str) -> list[str]:
    """Measures of one evaluation target: ``evaluation.measures``, the dataset's
    ``extra_measures``, then the target's own; the Hybrid Test has ``hybrid.measures``."""
    if (dataset, split) == hybrid_target(config):
        return list(config["evaluation"]["hybrid"]["measures"])
    entry = target_entry(config, dataset, split)
    extra = config["evaluation"]["extra_measures"].get(entry["dataset"], [])
    return list(
        dict.fromkeys([*config["evaluation"]["measures"], *extra, *entry["extra_measures"]])
    )


def subset_targets(config: Config) -> dict[Target, list[Target]]:
    """``{benchmark target: its subsets' targets}`` for targets of datasets with subsets."""
    out = {}
    for dataset, split in eval_targets(config):
        subsets = dataset_entry(config, dataset).get("subsets") or []
        if subsets:
            out[(dataset, split)] = [(f"{dataset}-{sub}", split) for sub in subsets]
    return out


def run_eval_targets(config: Config) -> list[Target]:
    """The targets one run's evaluation job scores, in the order it scores them.

    Every evaluation target but the Hybrid Test (its qrels come from the judge, so it is
    evaluated in the judge's job, for all runs at once); a benchmark with subsets comes as its
    subsets, then the benchmark itself (their mean, made in the same job). One job per run,
    not per (run, target): at MS MARCO scale the per-job planning cost of Snakemake, not the
    evaluation, is what a rerun with nothing to do spends its time on.
    """
    hybrid = hybrid_target(config)
    subsets = subset_targets(config)
    out: list[Target] = []
    for target in eval_targets(config):
        if target != hybrid:
            out += [*subsets.get(target, []), target]
    return out


def query_max_len(config: Config, dataset: str) -> int:
    """Query token cap for searching ``dataset``: its ``dense.query_max_len_by_dataset`` entry
    (ArguAna's queries are whole arguments), else ``dense.query_max_len``."""
    dense = config["dense"]
    return int(dense["query_max_len_by_dataset"].get(dataset, dense["query_max_len"]))


def dense_runs(config: Config) -> list[str]:
    """Dense run names: the zero-shot backbone (when asked for) and the training runs."""
    training = config.get("training") or {}
    names = ["zeroshot"] if training.get("zeroshot", False) else []
    return names + list(declared_runs(training))


def retrieval_runs(config: Config) -> list[str]:
    """Every retrieval run of the experiment: bm25, then the dense runs."""
    return ["bm25", *dense_runs(config)]


# --- RAG -----------------------------------------------------------------------------------


def rag_generators(config: Config) -> dict[str | None, str | None]:
    """``{label: model}`` of the LLMs that answer every RAG target.

    ``rag.generators`` names several (the paper: Llama-3.1-8B-Instruct and Qwen2.5-32B-Instruct,
    Tables 4, 5 and 13); empty, the one ``rag.generator.model`` answers, without a label. A
    null model is the annotation LLM (``llm.model``).
    """
    named = dict(config["rag"]["generators"])
    return named or {None: config["rag"]["generator"]["model"]}


def rag_targets(config: Config) -> dict[Target, Mapping[str, Any]]:
    """The ``rag.targets`` entries by (dataset, name), once per generator; each dataset must
    be declared.

    A target's name (its ``split`` unless it sets ``name``) is the ``split`` of its file names
    and metrics rows, so one split can be answered twice (top 1 and top 5: paper Table 13).
    With labelled generators (``rag.generators``) each target is answered by each of them
    under ``<name>-<label>``; every entry carries its ``generator`` (model, None = the
    annotation LLM) and ``generator_label`` (None without ``rag.generators``).
    """
    targets: dict[Target, Mapping[str, Any]] = {}
    generators = rag_generators(config)
    for entry in config["rag"]["targets"]:
        dataset_entry(config, entry["dataset"])
        base = entry["name"] or entry["split"]
        for label, model in generators.items():
            key = (entry["dataset"], f"{base}-{label}" if label else base)
            if key in targets:
                raise ValueError(
                    f"rag.targets lists {key[0]}/{key[1]} twice; give one of them a `name` "
                    f"(e.g. {entry['split']}-top{entry['top_k']})"
                )
            targets[key] = {**entry, "generator": model, "generator_label": label}
    return targets


def rag_runs(config: Config) -> list[str]:
    """Retrieval runs whose passages are fed to the generator (``rag.runs``, [] = all)."""
    runs = retrieval_runs(config)
    chosen = list(config["rag"]["runs"]) or runs
    unknown = [r for r in chosen if r not in runs]
    if unknown:
        raise ValueError(
            f"rag.runs names unknown run(s) {unknown}; runs of this experiment: {runs}"
        )
    return chosen


def rag_recall_measure(target: Mapping[str, Any]) -> str:
    """The recall of the passages fed in, ``R@<top_k>`` (the paper's RAG "Recall" column)."""
    return f"R@{target['top_k']}"


def check_rag_measures(config: Config) -> None:
    """RAG's R@k must not collide with the same split's retrieval R@k (another query set)."""
    evaluated = eval_targets(config)
    for (dataset, name), target in rag_targets(config).items():
        recall = rag_recall_measure(target)
        if (dataset, name) in evaluated and recall in measures_for(config, dataset, name):
            raise ValueError(
                f"{dataset}/{name} is evaluated with {recall} and is a rag target with top_k "
                f"{target['top_k']}: both would be the metrics row {recall}; drop {recall} from "
                "evaluation.measures/extra_measures for this dataset"
            )


def rag_target_list(config: Config) -> list[dict[str, Any]]:
    """What the report needs of each RAG target (Tables 4/5 columns)."""
    return [
        {
            "dataset": d,
            "split": name,
            "source_split": t["split"],
            "top_k": t["top_k"],
            "measures": list(t["measures"]),
            "generator": t["generator_label"],
            "base": t["name"] or t["split"],
        }
        for (d, name), t in rag_targets(config).items()
    ]


def answer_sources(config: Config) -> list[Mapping[str, Any]]:
    """Every configured gold-answer file (``answers: {path, format}`` of RAG targets,
    evaluation targets and the Hybrid Test), each once."""
    found = [t["answers"] for t in config["rag"]["targets"]]
    found += [t["answers"] for t in config["evaluation"]["targets"]]
    found.append(config["evaluation"]["hybrid"]["answers"])
    unique = {(a["path"], a["format"]): a for a in found if a}
    return list(unique.values())


# --- LLMs ----------------------------------------------------------------------------------


def packaged_llm(config: Config, name: str) -> Mapping[str, Any] | None:
    """The ``llm.packaged`` entry of model ``name``, or None for hub ids and local paths."""
    return (config["llm"].get("packaged") or {}).get(name)


def llm_model_path(config: Config, name: str) -> str:
    """Where the engine loads model ``name`` from: rule prepare_llm's directory if packaged,
    rule fetch_model's copy if a hub id, else the local path as given."""
    models = config["paths"]["models"]
    if packaged_llm(config, name):
        return f"{models}/{name}"
    return f"{models}/hub/{hub_slug(name)}" if is_hub_id(name) else name


def llm_model_made(config: Config, name: str) -> bool:
    """Whether the workflow makes model ``name``'s directory (packaged or fetched from a hub)."""
    return packaged_llm(config, name) or is_hub_id(name)


def hub_llms(config: Config) -> dict[str, str]:
    """{directory name: hub id} of the LLMs rule fetch_model downloads (annotator, generator,
    Hybrid-Test judge, REPLUG scorer)."""
    names = [
        config["llm"]["model"],
        *rag_generators(config).values(),
        config["evaluation"]["hybrid"]["judge"]["model"],
        config["replug"]["model"],
    ]
    return {hub_slug(n): n for n in names if n and is_hub_id(n) and not packaged_llm(config, n)}


def annotation_decoding(config: Config, steps: Sequence[str]) -> dict[str, str]:
    """``annotation.decoding`` as ``{step: free | constrained}`` for the cascade's ``steps``."""
    decoding = config["annotation"]["decoding"]
    if isinstance(decoding, str):
        return dict.fromkeys(steps, decoding)
    return {step: decoding.get(step, "free") for step in steps}


def calibration_sets(config: Config) -> list[Mapping[str, Any]]:
    """The sets of ``annotation.calibration`` when it is enabled ([] when not).

    A ``qrels`` set's dataset must be declared under ``datasets:``; set names must be unique
    (they name the rows of the report). The new-corpus mode has no human positive in its
    pools (its positives are the generating passages), so a ``pools`` set is refused there.
    """
    calibration = config["annotation"]["calibration"]
    if not calibration["enabled"]:
        return []
    sets = list(calibration["sets"])
    names = [s["name"] for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"annotation.calibration.sets: names must be unique, got {names}")
    for spec in sets:
        if spec["source"] == "qrels":
            dataset_entry(config, spec["dataset"])
        elif newcorpus_enabled(config):
            raise ValueError(
                f"annotation.calibration.sets: {spec['name']!r} (source pools) has no human "
                "positive in the new-corpus mode; calibrate on a qrels set instead"
            )
    return sets


def rag_generator(config: Config, target: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The generator LLM of one RAG target (an entry of :func:`rag_targets`), else of the
    experiment (``rag.generator.model``); a null model is the annotation LLM (``llm.model``)."""
    model = target["generator"] if target else config["rag"]["generator"]["model"]
    return llm_job(config, model)


def generator_names(config: Config) -> str:
    """The RAG generators as the report's notes name them (``label: model`` when labelled)."""
    llm = config["llm"]["model"]
    return ", ".join(
        f"{label}: {model or llm}" if label else (model or llm)
        for label, model in rag_generators(config).items()
    )


def hybrid_judge(config: Config) -> dict[str, Any]:
    """The Hybrid Test's judge: ``evaluation.hybrid.judge.model``, else the annotation LLM."""
    return llm_job(config, config["evaluation"]["hybrid"]["judge"]["model"])


def llm_job(config: Config, model: str | None) -> dict[str, Any]:
    """An LLM job's model (``model``, None = ``llm.model``) on the annotation engine.

    Whatever the model, it is loaded like the annotator (a name under ``llm.packaged`` is the
    directory rule prepare_llm makes) and runs with the annotation engine settings
    (``llm.engine``, ``llm.env``, ``llm.chat_template_kwargs``, ``llm.backend``,
    ``llm.transformers``, ``llm.prompt_too_long``): same backend, same hardware. Returns
    ``model`` (its identity in cache keys), ``path`` (what the engine loads), ``engine``
    (``vllm.LLM`` arguments, ``extra`` merged in), ``env``, ``chat_template_kwargs``,
    ``backend``, ``transformers`` and ``prompt_too_long``: what an LLM job's
    :class:`EngineSpec` is made of.
    """
    llm = config["llm"]
    name = model or llm["model"]
    engine = {k: v for k, v in llm["engine"].items() if k != "extra" and v is not None}
    return {
        "model": name,
        "path": llm_model_path(config, name),
        "engine": {**engine, **(llm["engine"].get("extra") or {})},
        "env": dict(llm["env"]),
        "chat_template_kwargs": dict(llm["chat_template_kwargs"]),
        "backend": llm["backend"],
        "transformers": dict(llm["transformers"]),
        "prompt_too_long": llm["prompt_too_long"],
    }


def replug_scorer(config: Config) -> dict[str, Any]:
    """The LM that scores REPLUG's answer likelihoods: ``replug.model``, else the annotation
    LLM (:func:`llm_job`)."""
    return llm_job(config, config["replug"]["model"])


def rag_sampling(config: Config, target: Mapping[str, Any]) -> dict[str, Any]:
    """The generator's sampling parameters for one target (its ``max_tokens`` overrides)."""
    sampling = {k: v for k, v in config["rag"]["generator"]["sampling"].items() if v is not None}
    if target["max_tokens"]:
        sampling["max_tokens"] = target["max_tokens"]
    return sampling


def rag_question_params(config: Config, target: Mapping[str, Any]) -> dict[str, Any]:
    """Which questions one RAG job answers (:func:`utilann.rag.job.answer_split`'s
    ``questions``): the answers file's format (None = the dataset's ingested answers), the cap
    and the sample's seed."""
    answers = target["answers"]
    return {
        "answers_format": answers["format"] if answers else None,
        "max_queries": config["rag"]["max_queries"],
        "seed": config["rag"]["seed"],
    }


def rag_generator_params(config: Config, target: Mapping[str, Any]) -> dict[str, Any]:
    """The generator of one RAG job as it runs (:func:`utilann.rag.job.answer_split`'s
    ``generator``): :func:`rag_generator`, the target's sampling, prompts per engine call."""
    return {
        **rag_generator(config, target),
        "sampling": rag_sampling(config, target),
        "batch_size": config["rag"]["generator"]["batch_size"],
    }


def hybrid_runs(config: Config) -> list[str]:
    """Runs whose top passages form the Hybrid Test's pool (``hybrid.runs``, [] = all)."""
    runs = retrieval_runs(config)
    chosen = list(config["evaluation"]["hybrid"]["runs"]) or runs
    unknown = [r for r in chosen if r not in runs]
    if unknown:
        raise ValueError(
            f"evaluation.hybrid.runs names unknown run(s) {unknown}; runs of this experiment: "
            f"{runs}"
        )
    return chosen


# --- new-corpus mode and the human share ---------------------------------------------------


def newcorpus_enabled(config: Config) -> bool:
    """Whether the training split is generated from the corpus (``newcorpus.enabled``)."""
    return bool(config["newcorpus"]["enabled"])


def check_newcorpus(config: Config) -> None:
    """The generated split must not shadow a split that is evaluated, and its parts must fit."""
    nc, train = config["newcorpus"], config["train"]
    if not nc["enabled"]:
        return
    dataset_entry(config, train["dataset"])
    if (train["dataset"], train["split"]) in eval_targets(config):
        raise ValueError(
            f"newcorpus generates {train['dataset']}/{train['split']}, which is also an "
            "evaluation target: name the generated split differently (train.split)"
        )
    if nc["heldout"]["split"] == train["split"]:
        raise ValueError(
            f"newcorpus.heldout.split {train['split']!r} is the training split's name: the "
            "held-out questions need a split of their own"
        )
    source = nc["examples"]["from"]
    if source is not None:
        dataset_entry(config, source["dataset"])
    if not nc["examples"]["written"] and source is None:
        raise ValueError(
            "newcorpus.examples has no example: write some (examples.written) or draw them "
            "from a labelled split (examples.from)"
        )
    if nc["oracle"] is not None:
        dataset_entry(config, nc["oracle"]["dataset"])
        if nc["oracle"]["origins"] == ["unlabelled"] and not nc["unlabelled"]["enabled"]:
            raise ValueError(
                "newcorpus.oracle.origins is [unlabelled] but newcorpus.unlabelled is off: "
                "the oracle would have no query to label"
            )


def heldout_split(config: Config) -> tuple[str, str] | None:
    """(dataset, split) of the held-out generated questions (``newcorpus.heldout``), or None."""
    split = config["newcorpus"]["heldout"]["split"]
    if not newcorpus_enabled(config) or split is None:
        return None
    return config["train"]["dataset"], split


def oracle(config: Config) -> Mapping[str, Any] | None:
    """The qrels split standing in for human labellers (``newcorpus.oracle``), or None."""
    return config["newcorpus"]["oracle"] if newcorpus_enabled(config) else None


def human_share_runs(specs: Mapping[str, RunSpec], oracle: Mapping[str, Any] | None) -> list[str]:
    """Runs whose human-labelled queries are chosen by the selection rule (and, with an
    oracle, labelled by it): every ``human`` run when there is an oracle, else the ``human``
    runs with an active ``query_selection``."""
    return [
        name
        for name, spec in specs.items()
        if spec.trainset.label_source == "human"
        and (oracle is not None or spec.trainset.query_selection != "random")
    ]


def newcorpus_report(config: Config) -> dict[str, Any] | None:
    """What the report's "new corpus" tables say about the mode (None when it is off)."""
    if not newcorpus_enabled(config):
        return None
    nc, orc = config["newcorpus"], oracle(config)
    return {
        "dataset": config["train"]["dataset"],
        "split": config["train"]["split"],
        "judged_positives": config["pools"]["judged_positives"],
        "round_trip_k": nc["filters"]["round_trip_k"],
        "oracle": f"{orc['dataset']}/{orc['split']}" if orc else None,
    }


# --- significance --------------------------------------------------------------------------


def significance_baseline(requested: str, runs: Sequence[str]) -> tuple[str, str | None]:
    """The run every other run is t-tested against: ``requested`` when it is a run of the
    experiment, else bm25; the second item is the warning to show in that case."""
    if requested in runs:
        return requested, None
    return "bm25", (
        f"evaluation.significance.baseline {requested!r} is not a run of this experiment "
        f"({list(runs)}); significance is tested against 'bm25'"
    )


def curriculum_group(settings: Mapping[str, Any]) -> tuple[Any, ...]:
    """Runs compared by the paper's second test (the dagger against REPLUG "within a group"):
    same backbone, and the same human-label stage (a curriculum ratio, or none)."""
    stage = settings["query_ratio"] if settings.get("init_from") else None
    return settings["backbone"], stage


def second_baselines(
    config: Config, specs: Mapping[str, RunSpec], primary: str
) -> dict[str, list[str]]:
    """``{baseline run: the runs t-tested against it}`` of ``significance.second_baseline``.

    Each training run that is not itself a baseline is tested against the listed run of its
    :func:`curriculum_group` (REPLUG for the single-stage runs, REPLUG (CL 20%) for the CL 20%
    ones, ...); runs without one are not tested.
    """
    listed = list(config["evaluation"]["significance"]["second_baseline"]["runs"])
    settings = run_settings(specs)
    unknown = [r for r in listed if r not in settings]
    if unknown:
        raise ValueError(
            "evaluation.significance.second_baseline.runs must be training runs; unknown: "
            f"{unknown} (runs: {sorted(settings)})"
        )
    by_group: dict[tuple[Any, ...], str] = {}
    for run in listed:
        group = curriculum_group(settings[run])
        if group in by_group:
            raise ValueError(
                f"second_baseline runs {by_group[group]!r} and {run!r} are trained alike "
                "(same backbone and curriculum stage): list one per group"
            )
        by_group[group] = run
    tested: dict[str, list[str]] = {run: [] for run in listed}
    for name, values in settings.items():
        baseline = by_group.get(curriculum_group(values))
        if baseline and name not in listed and name != primary:
            tested[baseline].append(name)
    return tested


# --- training runs and the report ----------------------------------------------------------


def run_settings(specs: Mapping[str, RunSpec]) -> dict[str, dict[str, Any]]:
    """Every training run's resolved settings, flat (what Table 6 and Figure 3 compare)."""
    return {
        name: {
            "backbone": spec.backbone,
            "init_from": spec.init_from,
            **spec.trainset_params(),
            **spec.train_params(),
        }
        for name, spec in specs.items()
    }


def needs_annotation(specs: Mapping[str, RunSpec]) -> bool:
    """Whether some training run learns from LLM labels (the annotation stage then runs)."""
    return any(spec.trainset.needs_labels for spec in specs.values())


def audits(config: Config) -> tuple[str, ...]:
    """The audits of the annotator that run (:mod:`utilann.audit`): ``false_negatives`` when
    enabled or when training drops the negatives it judged useful, ``injection`` when enabled.
    """
    audit = config["audit"]
    on = {
        "false_negatives": audit["false_negatives"]["enabled"] or drops_judged_useful(config),
        "injection": audit["injection"]["enabled"],
    }
    return tuple(name for name, enabled in on.items() if enabled)


def drops_judged_useful(config: Config) -> bool:
    """Whether every training set drops the negatives the false-negative audit judged useful."""
    return bool(config["training"]["negatives"]["drop_judged_useful"])


def needs_replug(specs: Mapping[str, RunSpec]) -> bool:
    """Whether some training run learns from REPLUG's answer likelihoods (rule replug_score
    then runs on every pool shard)."""
    return any(spec.trainset.needs_replug for spec in specs.values())


def primary_target(config: Config) -> dict[str, Any] | None:
    """The first evaluation target, its measures, and the one measure Table 6 and Figure 3
    show: RR@10 (the paper's MS MARCO Dev MRR@10) when evaluated, else the first."""
    targets = eval_targets(config)
    if not targets:
        return None
    dataset, split = targets[0]
    measures = measures_for(config, dataset, split)
    return {
        "dataset": dataset,
        "split": split,
        "measures": measures,
        "measure": "RR@10" if "RR@10" in measures else measures[0],
    }


def dataset_measure(config: Config) -> str:
    """Table 3's measure: nDCG@10 (the paper's BEIR figure) when evaluated, else the first."""
    measures = config["evaluation"]["measures"]
    return "nDCG@10" if "nDCG@10" in measures else measures[0]


def evaluation_list(config: Config) -> list[dict[str, Any]]:
    """Every evaluation target with its measures and group (Tables 2 and 3)."""
    return [
        {
            "dataset": d,
            "split": s,
            "measures": measures_for(config, d, s),
            "group": target_group(config, d, s),
        }
        for d, s in eval_targets(config)
    ]


def report_settings(
    config: Config, specs: Mapping[str, RunSpec], baseline: str, alpha: float
) -> ReportSettings:
    """Everything the report's tables and figures depend on (see :class:`ReportSettings`)."""
    return ReportSettings(
        experiment=config["experiment"],
        runs=retrieval_runs(config),
        evaluation=evaluation_list(config),
        dataset_measure=dataset_measure(config),
        bm25={k: config["bm25"][k] for k in ("variant", "k1", "b")},
        rag_runs=rag_runs(config),
        rag_targets=rag_target_list(config),
        generator=generator_names(config),
        specs=run_settings(specs),
        primary=primary_target(config),
        baseline=baseline,
        alpha=alpha,
        annotation=needs_annotation(specs),
        newcorpus=newcorpus_report(config),
        second_baselines=second_baselines(config, specs, baseline),
        second_markers=list(config["evaluation"]["significance"]["second_baseline"]["markers"]),
        cost={**config["report"]["cost"], "gpus": config["annotation"]["resources"]["gpu"]},
        audits=audits(config),
    )
