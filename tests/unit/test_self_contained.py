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
    """What the Snakefile checks: the demo config updated key by key with ``own``."""
    cfg = copy.deepcopy(DEMO)
    update_config(cfg, copy.deepcopy(own))
    return cfg


def test_the_paper_config_sets_every_section_itself_and_gets_them_whole():
    cfg = merged(PAPER)
    assert inherited_sections(cfg, PAPER) == []
    # merged key by key, the demo's datasets and runs come first
    assert list(cfg["training"]["runs"])[:2] == ["human", "relsel"]
    assert "nq-oracle" in cfg["datasets"]
    check_self_contained(cfg, PAPER)
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    assert list(cfg["training"]["runs"]) == list(PAPER["training"]["runs"])
    assert list(cfg["datasets"]) == list(PAPER["datasets"])  # no NQ-oracle
    assert cfg["rag"]["targets"][0]["top_k"] == 1 and cfg["rag"]["bertscore"]["num_layers"] == 17


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
    check_self_contained(cfg, own)  # no error, nothing replaced
    assert cfg["datasets"] == DEMO["datasets"]
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    assert cfg["experiment_kind"] == "custom"
    assert used_datasets(cfg) == ["scifact", "nq-oracle"]  # the demo's evaluation targets
