"""Moved config keys: read from the old place with one warning naming the new key."""

import logging

import pytest

from utilann import config as cfg


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(cfg, "_warned", set())


def test_old_cache_dir_moves_to_llm(caplog):
    config = {"annotation": {"cache_dir": "/tmp/c", "window_size": 8}, "llm": {"model": "m"}}
    with caplog.at_level(logging.WARNING):
        assert cfg.migrate_deprecated(config) == ["annotation.cache_dir"]
        cfg.migrate_deprecated({"annotation": {"cache_dir": "/tmp/c"}})
    assert config == {
        "annotation": {"window_size": 8},
        "llm": {"model": "m", "cache_dir": "/tmp/c"},
    }
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "config key annotation.cache_dir is deprecated: use llm.cache_dir instead (using '/tmp/c')"
    ]


def test_new_section_is_created_and_a_config_without_old_keys_is_untouched():
    config = {"annotation": {"cache_dir": "c"}}
    cfg.migrate_deprecated(config)
    assert config == {"annotation": {}, "llm": {"cache_dir": "c"}}
    current = {"llm": {"cache_dir": "c"}}
    assert cfg.migrate_deprecated(current) == [] and current == {"llm": {"cache_dir": "c"}}


def test_the_old_key_wins_over_the_shipped_default():
    """The shipped config sets llm.cache_dir; an old user config still decides."""
    merged = {"annotation": {"cache_dir": "mine"}, "llm": {"cache_dir": "results/cache/llm"}}
    cfg.migrate_deprecated(merged)
    assert merged == {"annotation": {}, "llm": {"cache_dir": "mine"}}


def test_rag_significance_keys_move_under_evaluation():
    config = {"rag": {"baseline": "utilsel", "alpha": 0.01}, "evaluation": {"targets": []}}
    assert cfg.migrate_deprecated(config) == ["rag.baseline", "rag.alpha"]
    assert config == {
        "rag": {},
        "evaluation": {"targets": [], "significance": {"baseline": "utilsel", "alpha": 0.01}},
    }


def test_pos_one_with_a_single_positive_loss_becomes_single(caplog):
    """The old ``pos_one`` (one positive, negatives only) is ``single`` now; it is migrated
    where it cannot be the paper's Pos-one (a single-positive loss), nowhere else."""
    config = {
        "training": {
            "defaults": {"loss": "SumMargLH", "positive_sampling": "pos_one"},
            "runs": {
                "human": {"loss": "SingleLH", "positive_sampling": "pos_one"},
                "rand1": {"loss": "Rand1LH"},  # pos_one inherited from the defaults
                "posone": {"label_source": "utilsel"},  # SumMargLH + Pos-one: the paper's
                "explicit": {"loss": "SingleLH", "positive_sampling": "single"},
            },
        }
    }
    with caplog.at_level(logging.WARNING):
        found = cfg.migrate_deprecated(config)
    assert found == [
        "training.runs.human.positive_sampling",
        "training.runs.rand1.positive_sampling",
    ]
    runs = config["training"]["runs"]
    assert runs["human"]["positive_sampling"] == runs["rand1"]["positive_sampling"] == "single"
    assert "positive_sampling" not in runs["posone"]
    assert config["training"]["defaults"]["positive_sampling"] == "pos_one"
    assert "now called 'single'" in caplog.text


def test_single_positive_defaults_are_migrated_for_the_runs_that_inherit_them():
    config = {"training": {"defaults": {"loss": "SingleLH", "positive_sampling": "pos_one"}}}
    assert cfg.migrate_deprecated(config) == ["training.defaults.positive_sampling"]
    assert config["training"]["defaults"]["positive_sampling"] == "single"
