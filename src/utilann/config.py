"""Config keys that moved: old configs keep working, with a message naming the new key.

The Snakefile calls :func:`migrate_deprecated` on the merged config *before* validating it
against ``config/schema.yaml``, so the schema (and config/README.md) only know the new keys.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

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
