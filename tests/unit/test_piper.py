"""Contract of the piper TTS plugin and of ``synthesize_text``: real offline synthesis with the PyPI voice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import tts

import avaluma_plugin_piper as piper_plugin
from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError, FailedPrecondition, InvalidArgument
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager
from avaluma.core.speech import synthesize_text, synthesize_text_sync

SENTENCE = "Hello, this is a short test."


@pytest.fixture
def registry() -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    pm.register(piper_plugin, name="piper")
    return ProviderRegistry.from_plugin_manager(pm)


def test_registers_tts_piper(registry: ProviderRegistry) -> None:
    info = registry.get("tts", "piper").info
    assert (info.kind, info.name, info.plugin) == ("tts", "piper", "piper")


async def test_builds_a_livekit_tts_that_synthesizes_speech(registry: ProviderRegistry) -> None:
    made = registry.create("tts", ProviderRef(name="piper"))
    assert isinstance(made, tts.TTS)
    assert made.capabilities.streaming is False
    assert made.sample_rate == 22_050  # from the joe-us voice config
    try:
        frame = await made.synthesize(SENTENCE).collect()
    finally:
        await made.aclose()
    assert isinstance(frame, rtc.AudioFrame)
    assert (frame.sample_rate, frame.num_channels) == (22_050, 1)
    pcm = np.frombuffer(bytes(frame.data), dtype=np.int16)
    assert frame.duration > 0.5
    assert np.sqrt(np.mean((pcm / 32768.0) ** 2)) > 0.02


async def test_synthesize_text_returns_mono_float_audio(registry: ProviderRegistry) -> None:
    audio = await synthesize_text(SENTENCE, registry=registry)
    assert audio.sample_rate == 22_050
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration_s > 0.5
    assert np.abs(audio.samples).max() <= 1.0
    assert np.sqrt(np.mean(audio.samples**2)) > 0.02


def test_length_scale_slows_speech_down(registry: ProviderRegistry) -> None:
    normal = synthesize_text_sync(SENTENCE, registry=registry)
    slow = synthesize_text_sync(
        SENTENCE, tts_ref=ProviderRef(name="piper", options={"length_scale": 1.5}), registry=registry
    )
    assert slow.duration_s > normal.duration_s * 1.3


def test_unknown_voice_is_rejected_before_loading_anything(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match=r"voice: .*unknown piper voice 'jane'.*joe-us"):
        registry.parse_options("tts", ProviderRef(name="piper", options={"voice": "jane"}))


def test_unknown_option_lists_valid_ones(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) speed \(valid: voice, length_scale, noise_scale"):
        registry.parse_options("tts", ProviderRef(name="piper", options={"speed": 2}))


def test_missing_voice_file_names_the_path(registry: ProviderRegistry, tmp_path: Path) -> None:
    ref = ProviderRef(name="piper", options={"voice": f"{tmp_path}/nobody.onnx"})
    with pytest.raises(FailedPrecondition, match=r"nobody\.onnx not found"):
        registry.create("tts", ref)


def test_speaker_name_on_a_single_speaker_voice_is_an_error(registry: ProviderRegistry) -> None:
    with pytest.raises(FailedPrecondition, match=r"has no speaker 'alice'.*single-speaker"):
        registry.create("tts", ProviderRef(name="piper", options={"speaker": "alice"}))


def test_no_tts_installed_says_how_to_install_one() -> None:
    empty = ProviderRegistry.from_plugin_manager(load_plugin_manager(entry_points=False))
    with pytest.raises(ConfigError, match=r"no TTS provider is installed: .*pip install -e plugins/piper"):
        synthesize_text_sync(SENTENCE, registry=empty)


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_is_rejected(registry: ProviderRegistry, text: str) -> None:
    with pytest.raises(InvalidArgument, match="text is empty"):
        synthesize_text_sync(text, registry=registry)
