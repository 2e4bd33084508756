"""Contract of the assemblyai STT plugin: registration, options, the LiveKit type it builds, the missing-key error."""

from __future__ import annotations

import pytest
from livekit.agents import stt

import avaluma_plugin_assemblyai as plugin
from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager


@pytest.fixture
def registry() -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    pm.register(plugin, name="assemblyai")
    return ProviderRegistry.from_plugin_manager(pm)


def test_builds_livekit_assemblyai_stt(registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    from livekit.plugins import assemblyai

    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "test-key")
    made = registry.create("stt", ProviderRef(name="assemblyai", options={"model": "universal-streaming-multilingual"}))
    assert isinstance(made, assemblyai.STT)
    assert isinstance(made, stt.STT)
    assert made.capabilities.streaming
    assert made.model == "universal-streaming-multilingual"


def test_unknown_option_is_rejected(registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "test-key")
    with pytest.raises(ConfigError, match="modle"):
        registry.create("stt", ProviderRef(name="assemblyai", options={"modle": "x"}))


def test_bad_model_is_rejected(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="model"):
        registry.parse_options("stt", ProviderRef(name="assemblyai", options={"model": "nano"}))


def test_missing_key_names_the_variable(registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        registry.create("stt", ProviderRef(name="assemblyai"))
    assert str(err.value) == "ASSEMBLYAI_API_KEY is not set: export it or pick another stt provider in config"
