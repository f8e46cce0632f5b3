"""Run specs: ``training.defaults`` merged with each run's overrides, checked as a whole.

The Snakemake rules call :func:`resolve_runs` once and pass each rule only the slice of a run's
spec that the rule uses (:meth:`RunSpec.trainset_params`, :meth:`RunSpec.train_params`,
:meth:`RunSpec.encoder_params`), so that changing one run's learning rate reruns that run's
training and what depends on it, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from utilann.train.backbones import backbone_slug
from utilann.train.losses import LOSSES
from utilann.train.settings import TrainsetSettings, TrainSettings

RESERVED_RUNS = ("zeroshot", "bm25")
"""Run names produced by other rules (the zero-shot backbone, BM25)."""
SPEC_KEYS = (
    {"backbone", "init_from"}
    | {f.name for f in fields(TrainsetSettings)}
    | {f.name for f in fields(TrainSettings)}
)


@dataclass(frozen=True)
class RunSpec:
    """Everything one named run is: its backbone or parent run, labels, and training."""

    name: str
    backbone: str
    init_from: str | None
    trainset: TrainsetSettings
    train: TrainSettings

    def __post_init__(self) -> None:
        if LOSSES[self.train.loss].utility and not self.trainset.needs_replug:
            raise ValueError(
                f"loss {self.train.loss} fits the teacher's utility distribution: it needs "
                f"label_source 'replug' (got {self.trainset.label_source!r})"
            )

    @property
    def backbone_slug(self) -> str:
        return backbone_slug(self.backbone)

    def trainset_params(self) -> dict[str, Any]:
        """The ``build_trainset`` params; the threshold and the REPLUG settings are None where
        they do not apply, so changing them reruns only the runs whose labels they change."""
        return {
            **asdict(self.trainset),
            "utilrank_threshold": self.trainset.threshold,
            **self.trainset.replug_settings,
        }

    def train_params(self) -> dict[str, Any]:
        """The ``train`` rule's params."""
        return asdict(self.train)

    def encoder_params(self) -> dict[str, Any]:
        """What query encoding must share with training: the pooling and normalisation."""
        return {"pooling": self.train.pooling, "normalize": self.train.normalize}

    def passage_format(self) -> dict[str, Any]:
        """What corpus encoding shares with training besides :meth:`encoder_params`: how a
        passage's title and text are joined (:func:`utilann.passages.format_passage`)."""
        return {
            "passage_title": self.train.passage_title,
            "passage_separator": self.train.passage_separator,
        }


def merge_run(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Per-run dict: the shared defaults updated with the run's own keys (shallow merge)."""
    unknown = set(overrides) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown training run key(s) {sorted(unknown)}")
    return {**defaults, **overrides}


def build_spec(name: str, values: Mapping[str, Any]) -> RunSpec:
    """A :class:`RunSpec` from a merged dict (dataclasses check each field's range)."""
    try:
        return RunSpec(
            name=name,
            backbone=values["backbone"],
            init_from=values.get("init_from"),
            trainset=TrainsetSettings(
                **{f.name: values[f.name] for f in fields(TrainsetSettings) if f.name in values}
            ),
            train=TrainSettings(
                **{f.name: values[f.name] for f in fields(TrainSettings) if f.name in values}
            ),
        )
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"training run {name!r}: {err}") from err


def declared_runs(training: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``training.runs`` without the runs an overlay config removed (set to null)."""
    return {
        name: overrides or {}
        for name, overrides in (training.get("runs") or {}).items()
        if overrides is not None
    }


def zeroshot_spec(training: Mapping[str, Any]) -> RunSpec:
    """The zero-shot run: the defaults' backbone, pooling and normalisation, untrained."""
    return build_spec("zeroshot", merge_run(training.get("defaults") or {}, {}))


def resolve_runs(training: Mapping[str, Any]) -> dict[str, RunSpec]:
    """All trained runs of the ``training:`` config section, merged and cross-checked.

    A run set to null is left out (an overlay config removing one run of the base config).
    """
    defaults = training.get("defaults") or {}
    specs = {
        name: build_spec(name, merge_run(defaults, overrides))
        for name, overrides in declared_runs(training).items()
    }
    for name, spec in specs.items():
        if name in RESERVED_RUNS:
            raise ValueError(f"training run name {name!r} is reserved for another rule")
        if spec.init_from is not None:
            _check_parent(spec, specs)
    return specs


def _check_parent(spec: RunSpec, specs: Mapping[str, RunSpec]) -> None:
    """A curriculum stage must start from a declared run with the same encoder, no cycles."""
    seen = {spec.name}
    parent_name = spec.init_from
    while parent_name is not None:
        if parent_name not in specs:
            raise ValueError(
                f"training run {spec.name!r}: init_from {parent_name!r} is not a declared run"
            )
        if parent_name in seen:
            raise ValueError(f"training run {spec.name!r}: init_from forms a cycle")
        seen.add(parent_name)
        parent_name = specs[parent_name].init_from
    parent = specs[spec.init_from]
    if (
        parent.backbone != spec.backbone
        or parent.encoder_params() != spec.encoder_params()
        or parent.passage_format() != spec.passage_format()
    ):
        raise ValueError(
            f"training run {spec.name!r} continues {parent.name!r} but changes its backbone, "
            "pooling, normalisation or passage format"
        )
