"""Config keys that moved: old configs keep working, with a message naming the new key.

The Snakefile calls :func:`migrate_deprecated` on the merged config *before* validating it
against ``config/schema.yaml``, so the schema (and config/README.md) only know the new keys.
Besides moved keys, one value changed meaning: ``positive_sampling: pos_one`` used to be the
one-positive groups of SingleLH/Rand1LH, which are now ``single`` (``pos_one`` is the paper's
Pos-one, App. B.2, whose groups also hold other positives); a run that pairs ``pos_one`` with
a single-positive loss meant ``single`` and is migrated.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from utilann.train.losses import LOSSES

log = logging.getLogger(__name__)

#: old key path -> new key path
MOVED_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("annotation", "cache_dir"): ("llm", "cache_dir"),
    ("rag", "baseline"): ("evaluation", "significance", "baseline"),
    ("rag", "alpha"): ("evaluation", "significance", "alpha"),
}
_warned: set[tuple[str, ...]] = set()


def migrate_deprecated(config: MutableMapping[str, Any]) -> list[str]:
    """Move every deprecated key of ``config`` (in place) to its new place.

    The old key wins over a value at the new place: the shipped config only sets new keys, so
    an old key comes from the user's own config file, the more specific one. Logs one warning
    per old key and process; returns the old keys found (dotted).
    """
    found = []
    for old, new in MOVED_KEYS.items():
        parent = _section(config, old[:-1])
        if parent is None or old[-1] not in parent:
            continue
        value = parent.pop(old[-1])
        _section(config, new[:-1], create=True)[new[-1]] = value
        found.append(".".join(old))
        if old not in _warned:
            _warned.add(old)
            log.warning(
                "config key %s is deprecated: use %s instead (using %r)",
                ".".join(old),
                ".".join(new),
                value,
            )
    return found + _migrate_single_positive_sampling(config)


def _migrate_single_positive_sampling(config: MutableMapping[str, Any]) -> list[str]:
    """``positive_sampling: pos_one`` -> ``single`` where it meets a single-positive loss.

    The loss and the sampling may each come from ``training.defaults`` or the run: the defaults
    are rewritten when their own pair is such, and a run whose merged pair is gets ``single``
    of its own. Returns the dotted keys rewritten.
    """
    training = config.get("training")
    if not isinstance(training, MutableMapping):
        return []
    defaults = training.get("defaults")
    defaults = defaults if isinstance(defaults, MutableMapping) else {}
    runs = training.get("runs")
    runs = runs if isinstance(runs, MutableMapping) else {}
    sections = {"training.defaults": defaults}
    sections.update({f"training.runs.{n}": r for n, r in runs.items() if isinstance(r, dict)})
    found = []
    for where, section in sections.items():
        loss = section.get("loss", defaults.get("loss"))
        sampling = section.get("positive_sampling", defaults.get("positive_sampling"))
        if sampling == "pos_one" and loss in LOSSES and LOSSES[loss].single_positive:
            section["positive_sampling"] = "single"
            found.append(f"{where}.positive_sampling")
    if found:
        log.warning(
            "positive_sampling 'pos_one' with a single-positive loss (SingleLH, Rand1LH) is "
            "now called 'single' (one positive, the rest negatives); 'pos_one' is the paper's "
            "Pos-one, whose groups also hold other positives. Rewritten: %s",
            ", ".join(found),
        )
    return found


def _section(
    config: MutableMapping[str, Any], path: tuple[str, ...], create: bool = False
) -> MutableMapping[str, Any] | None:
    node = config
    for key in path:
        if not isinstance(node.get(key), MutableMapping):
            if not create:
                return None
            node[key] = {}
        node = node[key]
    return node
