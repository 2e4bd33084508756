"""Noise suppression for the agent's microphone input, as Avaluma ``noise_cancellation`` providers.

``bvc``
    LiveKit's background voice cancellation (``livekit-plugins-noise-cancellation``). It only works when the agent
    is connected to LiveKit Cloud; against a self-hosted LiveKit server pick ``webrtc``.
``webrtc``
    WebRTC noise suppression from ``livekit.rtc.AudioProcessingModule``, applied locally to every input frame.
    Works with any LiveKit server and offline.

Config::

    agent:
      noise_cancellation: {name: webrtc}           # or {name: bvc, options: {model: bvc-telephony}}
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from avaluma.core.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from avaluma_plugin_noise.webrtc import WebRTCNoiseSuppressor

logger = logging.getLogger(__name__)

#: Host suffix of LiveKit Cloud projects; BVC is only served there.
CLOUD_HOST_SUFFIX = ".livekit.cloud"


class BVCOptions(BaseModel):
    """Options of the ``bvc`` provider (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``bvc``: background voices and noise; ``bvc-telephony``: tuned for phone audio; ``nc``: noise only.
    model: Literal["bvc", "bvc-telephony", "nc"] = "bvc"


class WebRTCOptions(BaseModel):
    """Options of the ``webrtc`` provider (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_suppression: bool = True
    high_pass_filter: bool = True
    auto_gain_control: bool = False


def make_bvc(options: BVCOptions) -> Any:
    """LiveKit Cloud noise cancellation options (``rtc.NoiseCancellationOptions``)."""
    url = os.environ.get("LIVEKIT_URL", "")
    if url and CLOUD_HOST_SUFFIX not in url:
        # The filter silently does nothing off Cloud; say so once instead of letting users wonder.
        logger.warning(
            "bvc noise cancellation needs LiveKit Cloud; LIVEKIT_URL is not a Cloud URL, pick 'webrtc' instead",
            extra={"provider": "bvc"},
        )
    from livekit.plugins import noise_cancellation  # loads a native filter: only when picked

    builders = {
        "bvc": noise_cancellation.BVC,
        "bvc-telephony": noise_cancellation.BVCTelephony,
        "nc": noise_cancellation.NC,
    }
    return builders[options.model]()


def make_webrtc(options: WebRTCOptions) -> WebRTCNoiseSuppressor:
    """A frame processor running WebRTC's audio processing (noise suppression) on every input frame."""
    from avaluma_plugin_noise.webrtc import WebRTCNoiseSuppressor

    return WebRTCNoiseSuppressor(
        noise_suppression=options.noise_suppression,
        high_pass_filter=options.high_pass_filter,
        auto_gain_control=options.auto_gain_control,
    )


@hookimpl
def register_noise_cancellers(register: Register) -> None:
    register("bvc", make_bvc, options=BVCOptions, description="LiveKit Cloud background voice cancellation")
    register("webrtc", make_webrtc, options=WebRTCOptions, description="WebRTC noise suppression (local, offline)")
