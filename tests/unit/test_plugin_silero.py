"""Contract of the silero VAD plugin: registration, options and a real model detecting speech against silence."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import vad

import avaluma_plugin_silero as plugin
from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager


@pytest.fixture
def registry() -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    pm.register(plugin, name="silero")
    return ProviderRegistry.from_plugin_manager(pm)


def test_builds_livekit_vad_without_a_key(registry: ProviderRegistry) -> None:
    from livekit.plugins import silero

    made = registry.create("vad", ProviderRef(name="silero", options={"min_silence_duration": 0.3}))
    assert isinstance(made, silero.VAD)
    assert isinstance(made, vad.VAD)


def test_unknown_and_invalid_options_are_rejected(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="threshold"):
        registry.parse_options("vad", ProviderRef(name="silero", options={"threshold": 0.5}))
    with pytest.raises(ConfigError, match="sample_rate"):
        registry.parse_options("vad", ProviderRef(name="silero", options={"sample_rate": 44100}))


async def test_silence_produces_no_speech(registry: ProviderRegistry) -> None:
    made = registry.create("vad", ProviderRef(name="silero"))
    stream = made.stream()
    silence = np.zeros(1600, dtype=np.int16).tobytes()  # 100 ms at 16 kHz
    for _ in range(10):
        stream.push_frame(rtc.AudioFrame(silence, 16000, 1, 1600))
    stream.end_input()
    events = [ev async for ev in stream]
    await stream.aclose()
    assert events, "the VAD ran no inference"
    assert all(ev.type != vad.VADEventType.START_OF_SPEECH for ev in events)
    assert all(ev.probability < 0.5 for ev in events if ev.type == vad.VADEventType.INFERENCE_DONE)
