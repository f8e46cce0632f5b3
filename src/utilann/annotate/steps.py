"""The annotation steps as data: what each LLM step is shown, what it answers, what it yields.

The cascade (paper 3.2) is RelSel over windows of the candidate pool -> a pseudo-answer from
the RelSel-selected passages -> UtilSel and UtilRank over those passages with the
pseudo-answer as reference answer. Each step is one :class:`Step` in :data:`STEPS`:

* ``answer_format`` - what its template asks for (``selection``, ``ranking``, ``text``); it
  picks the parser and must agree with the template file's own ``answer_format``;
* ``passages`` - which passages it is shown: ``window`` (the pool, cut into RelSel windows,
  labels merged per passage) or ``subset`` (the RelSel-selected passages, in the order they
  were shown; a query whose subset is empty gets no call);
* ``needs_answer`` - whether its template is filled with a reference answer, and
  ``reference`` which one: the cascade's ``pseudo``-answer, or the query's ``gold`` answer
  (the Hybrid Test's judge, paper 5.1: the UtilSel prompt given the ground-truth answer);
* ``template`` - the template file it is rendered with (default: its own name);
* ``provides`` - ``subset`` or ``answer`` when later steps read its output;
* ``labels`` - how its output becomes training positives (:class:`Selected`,
  :class:`TopPercent`); a step with labels is an annotation *strategy*, usable as
  ``annotation.strategies`` entry and as ``training.*.label_source``.

Everything else reads this registry: the cascade (which steps run, in which order, with
which inputs), label derivation (:mod:`utilann.labels`), the annotation report, shard merging,
the training settings and a unit test that keeps ``config/schema.yaml`` in step. Adding a
strategy is one :func:`register` call plus its template file in each prompt version (and a
parser only for a new answer format).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from utilann.llm.templates import ANSWER_FORMATS

PASSAGE_INPUTS = ("window", "subset")
PRODUCTS = ("subset", "answer")
REFERENCES = ("pseudo", "gold")


@dataclass(frozen=True)
class Selected:
    """Positives are the passages the step selected."""

    uses_threshold: ClassVar[bool] = False

    def positives(self, rows: pd.DataFrame, threshold: float | None = None) -> pd.Series:
        """Mask over LABELS ``rows`` of one strategy: which are positives."""
        return rows["selected"].astype(bool)


@dataclass(frozen=True)
class TopPercent:
    """Positives are the top ``floor(k % x list length)`` ranked passages, at least one.

    The list length is that of the list given to the ranker (the RelSel subset); ``k`` is the
    training run's ``utilrank_threshold`` (paper 3.2; 10 % in the main experiments).
    """

    uses_threshold: ClassVar[bool] = True

    def positives(self, rows: pd.DataFrame, threshold: float | None = None) -> pd.Series:
        """Mask over LABELS ``rows`` of one strategy: which are positives."""
        if threshold is None:
            raise ValueError("ranked labels need a threshold k (%) to become positives")
        cut = rows["list_length"].map(lambda n: top_percent_cutoff(int(n), threshold))
        return rows["rank"].notna() & (rows["rank"] <= cut)


def top_percent_cutoff(list_length: int, threshold: float) -> int:
    """Number of positives of a ranked list: floor(k % x N), at least one (paper 3.2)."""
    if not 0 < threshold <= 100:
        raise ValueError(f"threshold k must be in (0, 100], got {threshold}")
    if list_length <= 0:
        return 0
    return max(1, math.floor(threshold / 100.0 * list_length + 1e-9))


@dataclass(frozen=True)
class Step:
    """One LLM step of the annotation cascade (module docstring for the fields).

    ``name`` is the ``step`` of its RAW rows and, unless ``template`` names another, its
    template file (``<prompts dir>/<version>/<name>.yaml``); ``title`` is its name in reports.
    """

    name: str
    answer_format: str
    passages: str
    needs_answer: bool = False
    provides: str | None = None
    labels: Selected | TopPercent | None = None
    title: str = ""
    reference: str = "pseudo"
    template: str = ""

    @property
    def template_name(self) -> str:
        """The template file this step is rendered with."""
        return self.template or self.name

    def __post_init__(self) -> None:
        where = f"annotation step {self.name!r}"
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"{where}: answer_format must be one of {ANSWER_FORMATS}")
        if self.passages not in PASSAGE_INPUTS:
            raise ValueError(f"{where}: passages must be one of {PASSAGE_INPUTS}")
        if self.provides not in (None, *PRODUCTS):
            raise ValueError(f"{where}: provides must be one of {PRODUCTS} or None")
        if self.reference not in REFERENCES:
            raise ValueError(f"{where}: reference must be one of {REFERENCES}")
        if self.reference == "gold" and (self.labels is not None or self.provides):
            raise ValueError(
                f"{where}: a step given the gold answer judges evaluation pools; its output "
                "can be neither training labels nor a cascade input"
            )
        if self.provides == "subset" and (
            self.passages != "window" or self.answer_format != "selection"
        ):
            raise ValueError(f"{where}: the subset comes from a selection over the pool windows")
        if self.provides == "answer" and self.answer_format != "text":
            raise ValueError(f"{where}: the pseudo-answer is a text answer")
        if self.labels is not None:
            wanted = "ranking" if self.labels.uses_threshold else "selection"
            if self.answer_format != wanted:
                raise ValueError(f"{where}: {type(self.labels).__name__} labels need a {wanted}")
            if self.passages == "window" and self.answer_format == "ranking":
                raise ValueError(f"{where}: rankings of separate windows cannot be merged")

    @property
    def is_strategy(self) -> bool:
        """Whether the step's output is a set of training labels."""
        return self.labels is not None


STEPS: dict[str, Step] = {}
"""Every annotation step by name, in registration order (the order of reports and of steps
that run in the same batch)."""


def register(step: Step) -> Step:
    """Add ``step`` to :data:`STEPS`."""
    if step.name in STEPS:
        raise ValueError(f"annotation step {step.name!r} is registered twice")
    if step.provides and any(s.provides == step.provides for s in STEPS.values()):
        raise ValueError(f"two annotation steps would provide the {step.provides}")
    STEPS[step.name] = step
    return step


register(
    Step(
        "relsel",
        "selection",
        passages="window",
        provides="subset",
        labels=Selected(),
        title="RelSel",
    )
)
register(Step("answer", "text", passages="subset", provides="answer", title="pseudo-answer"))
register(
    Step(
        "utilsel",
        "selection",
        passages="subset",
        needs_answer=True,
        labels=Selected(),
        title="UtilSel",
    )
)
register(
    Step(
        "utilrank",
        "ranking",
        passages="subset",
        needs_answer=True,
        labels=TopPercent(),
        title="UtilRank",
    )
)


register(
    Step(
        "judge",
        "selection",
        passages="window",
        needs_answer=True,
        reference="gold",
        template="utilsel",
        title="Hybrid-Test judge",
    )
)


def get_step(name: str) -> Step:
    try:
        return STEPS[name]
    except KeyError:
        raise ValueError(
            f"unknown annotation step {name!r}; expected one of {list(STEPS)}"
        ) from None


def strategies() -> tuple[str, ...]:
    """Names of the steps whose output is a set of labels, in registry order."""
    return tuple(name for name, step in STEPS.items() if step.is_strategy)


def strategy(name: str) -> Step:
    """The step of strategy ``name`` (a clear error for anything else)."""
    step = STEPS.get(name)
    if step is None or not step.is_strategy:
        raise ValueError(f"unknown strategy {name!r}; expected one of {strategies()}")
    return step


def uses_threshold(label_source: str) -> bool:
    """Whether labels of ``label_source`` are cut by a threshold k % (UtilRank's).

    False for anything that is not a strategy (e.g. the ``human`` label source), so callers
    can ask about any training label source.
    """
    step = STEPS.get(label_source)
    return step is not None and step.labels is not None and step.labels.uses_threshold


def _provider(product: str) -> Step:
    for step in STEPS.values():
        if step.provides == product:
            return step
    raise ValueError(f"no registered annotation step provides the {product}")


def dependencies(step: Step) -> tuple[Step, ...]:
    """The steps whose output ``step`` reads: the subset's and/or the answer's provider."""
    needed = []
    if step.passages == "subset":
        needed.append(_provider("subset"))
    if step.needs_answer and step.reference == "pseudo":
        needed.append(_provider("answer"))
    return tuple(needed)


def _level(step: Step) -> int:
    deps = dependencies(step)
    return 1 + max(_level(d) for d in deps) if deps else 0


def cascade_steps(strategy_names: Iterable[str]) -> tuple[str, ...]:
    """LLM steps needed for ``strategy_names``, in execution order."""
    needed: dict[str, Step] = {}
    todo = [strategy(name) for name in strategy_names]
    while todo:
        step = todo.pop()
        if step.name not in needed:
            needed[step.name] = step
            todo.extend(dependencies(step))
    order = list(STEPS)
    return tuple(sorted(needed, key=lambda n: (_level(needed[n]), order.index(n))))


def levels(step_names: Sequence[str]) -> list[list[Step]]:
    """``step_names`` grouped into batches: each batch only reads earlier batches' output.

    Steps of one batch are sent to the engine together (e.g. UtilSel and UtilRank).
    """
    grouped: dict[int, list[Step]] = {}
    for name in step_names:
        step = get_step(name)
        grouped.setdefault(_level(step), []).append(step)
    return [grouped[level] for level in sorted(grouped)]
