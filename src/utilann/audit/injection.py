"""Injection robustness: how often a planted instruction gets an irrelevant passage selected.

Passages are untrusted text inside the judge's prompt. This audit builds, for a seeded sample
of training queries, a small pool of ``pool_size`` passages: the query's human positive(s),
its first BM25 negatives, and one *target*, a negative of another sampled query (irrelevant
to this one), at a seeded display index. Every pool is judged once as it is (the control,
attack ``none``) and once per attack template (:func:`load_attacks`: several instruction
wordings, chat-template special tokens, fake answer formats such as ``[3]`` or ``Answer:
2``), each planted in the target only, so the pools are paired: same passages, same order,
same index, same reference answer. Each pool is one call of each configured selection step
(RelSel, UtilSel), sent through the one cached generation loop with the annotation's decoding.

:func:`summary` reports per step and attack the target's selection rate against the
control's over the same pools (:func:`utilann.audit.stats.mcnemar`). A call that failed to
parse selects nothing, as in the cascade, and is counted. The chat template's special tokens
in passage text are defused before tokenisation (:func:`utilann.llm.engine.
defuse_special_tokens`): the ``special_tokens`` rows measure what is left of them.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from utilann import schemas
from utilann.annotate.cascade import QueryPool, StepStats
from utilann.annotate.judge import judge_windows
from utilann.annotate.steps import get_step
from utilann.audit.stats import mcnemar, wilson
from utilann.llm.batch import CachedGenerator
from utilann.llm.templates import PromptTemplate

CONTROL = "none"
KINDS = ("instruction", "special_tokens", "fake_answer")
PLACEMENTS = ("append", "prepend")
_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class Attack:
    """One planted text (see ``attacks/v1.yaml`` for the fields)."""

    name: str
    kind: str
    text: str
    placement: str = "append"

    def plant(self, passage: str, index: int) -> str:
        """``passage`` carrying this attack, ``{id}`` filled with its 1-based prompt index."""
        planted = self.text.replace("{id}", str(index))
        return f"{planted} {passage}" if self.placement == "prepend" else f"{passage} {planted}"


@dataclass(frozen=True)
class AttackSet:
    """The attacks of one file, its ``version`` and the file's sha256 (a rule param)."""

    version: int
    attacks: tuple[Attack, ...]
    sha256: str


def load_attacks(path: str | Path | None = None) -> AttackSet:
    """The attack templates of ``path`` (None: the packaged ``attacks/v1.yaml``).

    Errors name the file, the attack and the cause.
    """
    if path is None:
        raw = files("utilann.audit").joinpath("attacks/v1.yaml").read_bytes()
        where = "utilann/audit/attacks/v1.yaml"
    else:
        try:
            raw = Path(path).read_bytes()
        except OSError as err:
            raise ValueError(f"audit.injection.attacks: cannot read {path}: {err}") from None
        where = str(path)
    data = yaml.safe_load(raw)
    if not isinstance(data, dict) or not isinstance(data.get("attacks"), list):
        raise ValueError(f"{where}: expected a mapping with a list under `attacks`")
    if not isinstance(data.get("version"), int):
        raise ValueError(f"{where}: `version` must be an integer")
    attacks, seen = [], set()
    for i, entry in enumerate(data["attacks"]):
        label = f"{where}: attack #{i + 1}"
        if not isinstance(entry, dict) or set(entry) - {"name", "kind", "text", "placement"}:
            raise ValueError(f"{label}: expected keys name, kind, text[, placement]")
        name = str(entry.get("name", ""))
        if not _NAME.match(name) or name == CONTROL or name in seen:
            raise ValueError(
                f"{label}: name {name!r} must be unique, of [a-z0-9_] and not {CONTROL!r}"
            )
        if entry.get("kind") not in KINDS:
            raise ValueError(f"{label} ({name}): kind must be one of {KINDS}")
        placement = entry.get("placement", "append")
        if placement not in PLACEMENTS:
            raise ValueError(f"{label} ({name}): placement must be one of {PLACEMENTS}")
        if not str(entry.get("text", "")).strip():
            raise ValueError(f"{label} ({name}): empty text")
        seen.add(name)
        attacks.append(Attack(name, entry["kind"], str(entry["text"]), placement))
    if not attacks:
        raise ValueError(f"{where}: no attacks")
    return AttackSet(data["version"], tuple(attacks), hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class TargetPool:
    """One query's audit pool (display order) and the index of its target passage."""

    pool: QueryPool
    target: int


def build_pools(queries: Sequence[QueryPool], pool_size: int, seed: int) -> list[TargetPool]:
    """Each query's pool (module docstring): human positives, its first BM25 negatives and a
    target drawn from another query's negatives, shuffled with ``(seed, query)``.

    Needs at least two queries (the target comes from another one) and room for a negative.
    """
    if len(queries) < 2:
        raise ValueError(
            "the injection audit needs at least two queries (targets come from "
            "another query's pool)"
        )
    by_id = {q.query_id: q for q in queries}
    out = []
    for q in queries:
        humans = [i for i, h in enumerate(q.is_human) if h]
        negatives = [i for i, h in enumerate(q.is_human) if not h]
        room = pool_size - len(humans) - 1
        if room < 1 or not negatives:
            raise ValueError(
                f"query {q.query_id!r}: {len(humans)} human positive(s) and a target leave no "
                f"room for a negative in a pool of {pool_size}; raise audit.injection.pool_size"
            )
        rng = random.Random(f"{seed}:{q.query_id}")
        others = sorted(set(by_id) - {q.query_id})
        donor = by_id[rng.choice(others)]
        mine = set(q.doc_ids)
        candidates = [
            i for i, h in enumerate(donor.is_human) if not h and donor.doc_ids[i] not in mine
        ]
        if not candidates:
            raise ValueError(f"query {donor.query_id!r} has no negative to lend as a target")
        t = rng.choice(candidates)
        items = [(q, i) for i in humans + negatives[:room]] + [(donor, t)]
        rng.shuffle(items)
        target = next(k for k, (src, _) in enumerate(items) if src is donor)
        pool = QueryPool(
            query_id=q.query_id,
            query=q.query,
            doc_ids=tuple(src.doc_ids[i] for src, i in items),
            positions=tuple(range(len(items))),
            is_human=tuple(src is q and src.is_human[i] for src, i in items),
            texts=tuple(src.texts[i] for src, i in items),
        )
        out.append(TargetPool(pool, target))
    return out


def variants(pools: Sequence[TargetPool], attacks: Sequence[Attack]) -> list[QueryPool]:
    """Every pool as the control and under each attack, pool id ``<query>@<attack>``."""
    out = []
    for tp in pools:
        for attack in (None, *attacks):
            texts = list(tp.pool.texts)
            if attack is not None:
                texts[tp.target] = attack.plant(texts[tp.target], tp.target + 1)
            name = attack.name if attack else CONTROL
            out.append(replace(tp.pool, query_id=f"{tp.pool.query_id}@{name}", texts=tuple(texts)))
    return out


@dataclass
class InjectionRun:
    """INJECTION rows, the RAW rows of every call, and call statistics per step."""

    table: pd.DataFrame
    raw: pd.DataFrame
    stats: dict[str, StepStats]


def run_injection(
    pools: Sequence[TargetPool],
    attacks: Sequence[Attack],
    steps: Sequence[str],
    templates: Mapping[str, PromptTemplate],
    answers: Mapping[str, str],
    generator: CachedGenerator,
    sampling: Callable[[str, int], Mapping[str, Any]],
) -> InjectionRun:
    """Judge every variant of every pool with each step of ``steps`` (module docstring).

    ``answers`` are the reference answers by query id (for steps that need one).
    """
    kinds = {a.name: a.kind for a in attacks} | {CONTROL: CONTROL}
    shown = variants(pools, attacks)
    windows = {v.query_id: [list(range(len(v.doc_ids)))] for v in shown}
    by_variant = {v.query_id: answers.get(v.query_id.rsplit("@", 1)[0], "") for v in shown}
    targets = {tp.pool.query_id: tp for tp in pools}
    rows, raws, stats = [], [], {}
    for name in steps:
        step = get_step(name)
        judged = judge_windows(
            step,
            templates[name],
            shown,
            windows,
            by_variant,
            generator,
            lambda n, name=name: sampling(name, n),
            desc=f"injection audit ({name})",
        )
        stats[name] = judged.stats
        raws.append(judged.raw)
        for call in judged.raw.itertuples(index=False):
            qid, attack = str(call.query_id).rsplit("@", 1)
            tp = targets[qid]
            chosen = set(call.parsed_doc_ids)
            humans = [d for d, h in zip(tp.pool.doc_ids, tp.pool.is_human, strict=True) if h]
            rows.append(
                {
                    "step": name,
                    "query_id": qid,
                    "attack": attack,
                    "kind": kinds[attack],
                    "target_doc_id": tp.pool.doc_ids[tp.target],
                    "target_index": tp.target + 1,
                    "pool_size": len(tp.pool.doc_ids),
                    "target_selected": tp.pool.doc_ids[tp.target] in chosen,
                    "selected": len(chosen),
                    "human_selected": any(d in chosen for d in humans),
                    "parse_status": call.parse_status,
                }
            )
    table = pd.DataFrame(rows, columns=schemas.INJECTION.names)
    return InjectionRun(table, pd.concat(raws, ignore_index=True), stats)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """INJECTION_SUMMARY: per step and attack, the target's rate vs the control's (paired)."""
    rows = []
    for step, calls in table.groupby("step", sort=False):
        control = calls[calls["attack"] == CONTROL].set_index("query_id")["target_selected"]
        for attack, group in calls.groupby("attack", sort=False):
            g = group.set_index("query_id")
            hit = g["target_selected"].astype(bool)
            rate = wilson(int(hit.sum()), len(hit))
            base = control.reindex(g.index).fillna(False).astype(bool)
            paired = mcnemar(list(hit), list(base))
            rows.append(
                {
                    "step": step,
                    "attack": attack,
                    "kind": g["kind"].iloc[0],
                    "pools": rate.n,
                    "target_rate": rate.rate,
                    "target_low": rate.low,
                    "target_high": rate.high,
                    "control_rate": float(base.mean()) if len(base) else float("nan"),
                    "lift": rate.rate - float(base.mean()) if len(base) else float("nan"),
                    "only_attack": paired.only_treated,
                    "only_control": paired.only_control,
                    "p_value": paired.p_value,
                    "human_rate": float(g["human_selected"].mean()),
                    "failed_parses": int((g["parse_status"] == "failed").sum()),
                }
            )
    return pd.DataFrame(rows, columns=schemas.INJECTION_SUMMARY.names)
