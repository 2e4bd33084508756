"""Contract of the noise plugin: WebRTC suppression really removes noise offline; BVC builds LiveKit's options."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from livekit import rtc

import avaluma_plugin_noise as plugin
from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager


@pytest.fixture
def registry() -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    pm.register(plugin, name="noise")
    return ProviderRegistry.from_plugin_manager(pm)


def _energy(frame: rtc.AudioFrame) -> float:
    return float(np.square(np.frombuffer(frame.data, dtype=np.int16).astype(np.float64)).mean())


def test_webrtc_is_a_frame_processor_that_suppresses_white_noise(registry: ProviderRegistry) -> None:
    made = registry.create("noise_cancellation", ProviderRef(name="webrtc"))
    assert isinstance(made, rtc.FrameProcessor)
    rng = np.random.default_rng(0)
    energy_in = energy_out = 0.0
    for i in range(60):  # 3 s of 50 ms frames at 24 kHz, as LiveKit Agents' room input delivers them
        frame = rtc.AudioFrame(rng.normal(0, 3000, 1200).astype(np.int16).tobytes(), 24000, 1, 1200)
        energy_before = _energy(frame)
        out = made._process(frame)
        assert (out.sample_rate, out.num_channels, out.samples_per_channel) == (24000, 1, 1200)
        if i >= 30:  # the suppressor adapts to the noise floor first
            energy_in += energy_before
            energy_out += _energy(out)
    assert energy_out < 0.5 * energy_in


def test_webrtc_disabled_passes_frames_through(registry: ProviderRegistry) -> None:
    made = registry.create("noise_cancellation", ProviderRef(name="webrtc"))
    made.enabled = False
    frame = rtc.AudioFrame(np.arange(480, dtype=np.int16).tobytes(), 48000, 1, 480)
    assert bytes(made._process(frame).data) == bytes(frame.data)


def test_partial_trailing_block_is_kept(registry: ProviderRegistry) -> None:
    made = registry.create("noise_cancellation", ProviderRef(name="webrtc"))
    frame = rtc.AudioFrame(np.ones(250, dtype=np.int16).tobytes(), 16000, 1, 250)  # 15.6 ms
    out = made._process(frame)
    assert out.samples_per_channel == 250
    assert bytes(out.data)[320:] == bytes(frame.data)[320:]


def test_bvc_builds_noise_cancellation_options_and_warns_off_cloud(
    registry: ProviderRegistry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LIVEKIT_URL", "ws://127.0.0.1:7880")
    with caplog.at_level(logging.WARNING, logger=plugin.__name__):
        made = registry.create("noise_cancellation", ProviderRef(name="bvc"))
    assert isinstance(made, rtc.NoiseCancellationOptions)
    assert any("LiveKit Cloud" in r.getMessage() for r in caplog.records)


def test_unknown_option_is_rejected(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="echo_cancellation"):
        registry.parse_options("noise_cancellation", ProviderRef(name="webrtc", options={"echo_cancellation": True}))
