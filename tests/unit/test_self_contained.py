"""experiment_kind: paper refuses sections inherited from the demo (utilann.self_contained)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from utilann.self_contained import check_self_contained, inherited_sections, used_datasets

REPO = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
PAPER = yaml.safe_load((REPO / "config" / "experiments" / "msmarco-paper.yaml").read_text())


def merged(own):
    """What the Snakefile validates: the demo config updated key by key with ``own``."""
    cfg = copy.deepcopy(DEMO)
    update_config(cfg, copy.deepcopy(own))
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    return cfg


def test_the_paper_config_sets_every_section_itself():
    assert inherited_sections(merged(PAPER), PAPER) == []
    check_self_contained(merged(PAPER), PAPER)


def test_a_paper_config_without_its_rag_section_is_refused_with_the_keys_named():
    own = {k: v for k, v in PAPER.items() if k != "rag"}
    cfg = merged(own)
    # The demo's RAG target (NQ-oracle) came in, and its dataset entry with it.
    assert [t["dataset"] for t in cfg["rag"]["targets"]] == ["nq-oracle"]
    missing = inherited_sections(cfg, own)
    assert missing == [
        "rag.runs",
        "rag.targets",
        "rag.max_queries",
        "rag.generators",
        "rag.generator.sampling",
        "datasets.nq-oracle",
    ]
    with pytest.raises(ValueError, match=r"does not set rag\.runs, rag\.targets, .*nq-oracle"):
        check_self_contained(cfg, own)


def test_a_used_dataset_must_be_declared_by_the_experiment():
    own = copy.deepcopy(PAPER)
    own["rag"]["targets"].append({"dataset": "scifact", "split": "test"})
    del own["datasets"]["scifact"]  # the demo declares it: the entry would be the demo's
    assert inherited_sections(merged(own), own) == ["datasets.scifact"]


def test_other_experiment_kinds_may_inherit_anything():
    own = {"experiment": "mine", "rag": {"targets": []}}
    cfg = merged(own)
    assert cfg["experiment_kind"] == "custom"
    check_self_contained(cfg, own)  # no error
    assert used_datasets(cfg) == ["scifact", "nq-oracle"]  # the demo's evaluation targets
