"""Hub model ids and the offline error of the fetch_model rule."""

from __future__ import annotations

import huggingface_hub.constants
import pytest

from utilann.hub import ModelUnavailableError, fetch_model, hub_slug, is_hub_id


def test_hub_ids_and_local_paths(tmp_path):
    assert is_hub_id("Qwen/Qwen2.5-32B-Instruct-GPTQ-Int8")
    assert is_hub_id("facebook/contriever")
    local = tmp_path / "org" / "model"
    local.mkdir(parents=True)
    assert not is_hub_id(str(local))  # an existing directory is a local model
    assert not is_hub_id("smollm2-135m-instruct")  # no owner: a packaged name
    assert not is_hub_id("/abs/path/model") and not is_hub_id("a/b/c")
    assert hub_slug("Qwen/Qwen2.5-7B") == "Qwen--Qwen2.5-7B"
    with pytest.raises(ValueError, match="not a Hugging Face hub id"):
        hub_slug("no-owner")


def test_offline_fetch_names_the_model_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dest = tmp_path / "hub" / "Qwen--Qwen2.5-7B"
    with pytest.raises(ModelUnavailableError) as err:
        fetch_model("Qwen/Qwen2.5-7B", dest)
    message = str(err.value)
    assert "cannot download Qwen/Qwen2.5-7B" in message
    assert f"hf download Qwen/Qwen2.5-7B --local-dir {dest}" in message
    assert not dest.exists() and not list(dest.parent.glob(".*"))  # nothing half-written
