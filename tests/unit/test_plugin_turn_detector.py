"""Contract of the turn-detector plugin: the local model offline and the multilingual fallback when not cached."""

from __future__ import annotations

import logging

import pytest

import avaluma_plugin_turn_detector as plugin
from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager


@pytest.fixture
def registry() -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    pm.register(plugin, name="turn-detector")
    return ProviderRegistry.from_plugin_manager(pm)


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads its cache location per call; an empty one is what an offline machine has.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))


def test_local_is_livekits_bundled_model(registry: ProviderRegistry) -> None:
    from livekit.agents.inference import TurnDetector

    made = registry.create("turn_detector", ProviderRef(name="local"))
    assert isinstance(made, TurnDetector)
    assert made.model == "turn-detector-v1-mini"


def test_multilingual_falls_back_to_local_when_not_cached(
    registry: ProviderRegistry, empty_hf_cache: None, caplog: pytest.LogCaptureFixture
) -> None:
    from livekit.agents.inference import TurnDetector

    assert not plugin.multilingual_model_cached()
    with caplog.at_level(logging.WARNING, logger=plugin.__name__):
        made = registry.create("turn_detector", ProviderRef(name="multilingual"))
    assert isinstance(made, TurnDetector)
    assert made.model == "turn-detector-v1-mini"
    assert any("not cached" in r.getMessage() for r in caplog.records)


def test_multilingual_without_fallback_says_what_to_do(registry: ProviderRegistry, empty_hf_cache: None) -> None:
    with pytest.raises(ConfigError, match="download-files"):
        registry.create("turn_detector", ProviderRef(name="multilingual", options={"fallback": False}))


def test_unknown_option_is_rejected(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="language"):
        registry.parse_options("turn_detector", ProviderRef(name="local", options={"language": "en"}))
