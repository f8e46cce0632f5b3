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
    """The ``datasets:`` entry of ``name``, with a clear error for an undeclared one."""
    try:
        return config["datasets"][name]
    except KeyError:
        raise ValueError(
            f"dataset {name!r} is used but not declared under `datasets:` in the config "
            f"(declared: {sorted(config['datasets'])})"
        ) from None


# --- retrieval -----------------------------------------------------------------------------


def eval_targets(config: Config) -> list[Target]:
    """(dataset, split) pairs every retrieval run is evaluated on, in config order."""
    return [(t["dataset"], t["split"]) for t in config["evaluation"]["targets"]]


def measures_for(config: Config, dataset: str) -> list[str]:
    """ir_measures names for a dataset: the common ones plus its extra ones."""
    extra = config["evaluation"]["extra_measures"].get(dataset, [])
    return list(dict.fromkeys([*config["evaluation"]["measures"], *extra]))


def dense_runs(config: Config) -> list[str]:
    """Dense run names: the zero-shot backbone (when asked for) and the training runs."""
    training = config.get("training") or {}
    names = ["zeroshot"] if training.get("zeroshot", False) else []
    return names + list(declared_runs(training))


def retrieval_runs(config: Config) -> list[str]:
    """Every retrieval run of the experiment: bm25, then the dense runs."""
    return ["bm25", *dense_runs(config)]


# --- RAG -----------------------------------------------------------------------------------


def rag_targets(config: Config) -> dict[Target, Mapping[str, Any]]:
    """The ``rag.targets`` entries by (dataset, split); each dataset must be declared."""
    targets: dict[Target, Mapping[str, Any]] = {}
    for entry in config["rag"]["targets"]:
        dataset_entry(config, entry["dataset"])
        key = (entry["dataset"], entry["split"])
        if key in targets:
            raise ValueError(f"rag.targets lists {key[0]}/{key[1]} twice")
        targets[key] = entry
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
    for (dataset, split), target in rag_targets(config).items():
        recall = rag_recall_measure(target)
        if (dataset, split) in evaluated and recall in measures_for(config, dataset):
            raise ValueError(
                f"{dataset}/{split} is evaluated with {recall} and is a rag target with top_k "
                f"{target['top_k']}: both would be the metrics row {recall}; drop {recall} from "
                "evaluation.measures/extra_measures for this dataset"
            )


def rag_target_list(config: Config) -> list[dict[str, Any]]:
    """What the report needs of each RAG target (Tables 4/5 columns)."""
    return [
        {"dataset": d, "split": s, "top_k": t["top_k"], "measures": list(t["measures"])}
        for (d, s), t in rag_targets(config).items()
    ]


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
    """{directory name: hub id} of the LLMs rule fetch_model downloads (annotator, generator)."""
    names = [config["llm"]["model"], config["rag"]["generator"]["model"]]
    return {hub_slug(n): n for n in names if n and is_hub_id(n) and not packaged_llm(config, n)}


def rag_generator(config: Config) -> dict[str, Any]:
    """The generator LLM: ``rag.generator.model``, else the annotation LLM (``llm.model``).

    Either way it is loaded like the annotator (a name under ``llm.packaged`` is the directory
    rule prepare_llm makes) and runs with the annotation engine settings (``llm.engine``,
    ``llm.env``, ``llm.chat_template_kwargs``): same backend, same hardware.
    """
    return llm_engine(config, config["rag"]["generator"]["model"] or config["llm"]["model"])


def llm_engine(config: Config, name: str) -> dict[str, Any]:
    """Model ``name`` on the annotation engine settings: ``model`` (its identity in cache keys),
    ``path`` (what the engine loads), ``engine`` (``vllm.LLM`` arguments, ``extra`` merged in),
    ``env`` and ``chat_template_kwargs``: what an LLM job's :class:`EngineSpec` is made of."""
    llm = config["llm"]
    engine = {k: v for k, v in llm["engine"].items() if k != "extra" and v is not None}
    return {
        "model": name,
        "path": llm_model_path(config, name),
        "engine": {**engine, **(llm["engine"].get("extra") or {})},
        "env": dict(llm["env"]),
        "chat_template_kwargs": dict(llm["chat_template_kwargs"]),
    }


def rag_sampling(config: Config, target: Mapping[str, Any]) -> dict[str, Any]:
    """The generator's sampling parameters for one target (its ``max_tokens`` overrides)."""
    sampling = {k: v for k, v in config["rag"]["generator"]["sampling"].items() if v is not None}
    if target["max_tokens"]:
        sampling["max_tokens"] = target["max_tokens"]
    return sampling


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


def primary_target(config: Config) -> dict[str, Any] | None:
    """The first evaluation target, its measures, and the one measure Table 6 and Figure 3
    show: RR@10 (the paper's MS MARCO Dev MRR@10) when evaluated, else the first."""
    targets = eval_targets(config)
    if not targets:
        return None
    dataset, split = targets[0]
    measures = measures_for(config, dataset)
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
    """Every evaluation target with its measures (Table 2's columns)."""
    return [
        {"dataset": d, "split": s, "measures": measures_for(config, d)}
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
        generator=rag_generator(config)["model"],
        specs=run_settings(specs),
        primary=primary_target(config),
        baseline=baseline,
        alpha=alpha,
        annotation=needs_annotation(specs),
        newcorpus=newcorpus_report(config),
    )
