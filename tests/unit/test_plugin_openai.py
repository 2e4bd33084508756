"""Contract of the openai LLM plugin: registration, options, the LiveKit type it builds, the missing-key error."""

from __future__ import annotations

import pytest
from livekit.agents import llm

import avaluma_plugin_openai as plugin
from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager


@pytest.fixture
def registry() -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    pm.register(plugin, name="openai")
    return ProviderRegistry.from_plugin_manager(pm)


def test_builds_livekit_openai_llm_with_seed_default(
    registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livekit.plugins import openai

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    made = registry.create("llm", ProviderRef(name="openai"))
    assert isinstance(made, openai.LLM)
    assert isinstance(made, llm.LLM)
    assert made.model == "gpt-4.1-mini"


def test_compatible_server_reads_the_named_variable(
    registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("LOCAL_LLM_KEY", "k")
    ref = ProviderRef(
        name="openai", options={"base_url": "http://127.0.0.1:9/v1", "api_key_env": "LOCAL_LLM_KEY", "model": "m"}
    )
    made = registry.create("llm", ref)
    assert made.model == "m"


def test_unknown_option_is_rejected(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="api_key"):
        registry.parse_options("llm", ProviderRef(name="openai", options={"api_key": "sk-in-config"}))


def test_missing_key_names_the_variable(registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        registry.create("llm", ProviderRef(name="openai"))
    assert str(err.value) == "OPENAI_API_KEY is not set: export it or pick another llm provider in config"
