"""Contract of the cartesia TTS plugin: registration, options, the LiveKit type it builds, the missing-key error."""

from __future__ import annotations

import pytest
from livekit.agents import tts

import avaluma_plugin_cartesia as plugin
from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager


@pytest.fixture
def registry() -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    pm.register(plugin, name="cartesia")
    return ProviderRegistry.from_plugin_manager(pm)


def test_builds_livekit_cartesia_tts_with_seed_default(
    registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livekit.plugins import cartesia

    monkeypatch.setenv("CARTESIA_API_KEY", "test-key")
    made = registry.create("tts", ProviderRef(name="cartesia", options={"sample_rate": 16000}))
    assert isinstance(made, cartesia.TTS)
    assert isinstance(made, tts.TTS)
    assert made.model == "sonic-3"
    assert made.sample_rate == 16000


def test_unknown_option_is_rejected(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="voise"):
        registry.parse_options("tts", ProviderRef(name="cartesia", options={"voise": "x"}))


def test_missing_key_names_the_variable(registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        registry.create("tts", ProviderRef(name="cartesia"))
    assert str(err.value) == "CARTESIA_API_KEY is not set: export it or pick another tts provider in config"
