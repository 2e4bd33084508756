"""Silero voice-activity detection as an Avaluma ``vad`` provider named ``silero`` (runs locally, no key).

Config::

    agent:
      vad: {name: silero, options: {min_silence_duration: 0.55}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from avaluma.core.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from livekit.agents import vad


class Options(BaseModel):
    """Options of the ``silero`` VAD provider (unknown keys are errors). Durations are seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_speech_duration: float = Field(0.05, ge=0)
    min_silence_duration: float = Field(0.55, ge=0)
    prefix_padding_duration: float = Field(0.5, ge=0)
    activation_threshold: float = Field(0.5, gt=0, lt=1)
    sample_rate: Literal[8000, 16000] = 16000


def make_vad(options: Options) -> vad.VAD:
    """Load Silero's ONNX model (shipped inside ``livekit-plugins-silero``) with ``options``."""
    from livekit.plugins import silero  # heavy: onnxruntime + the model, only when picked

    return silero.VAD.load(
        min_speech_duration=options.min_speech_duration,
        min_silence_duration=options.min_silence_duration,
        prefix_padding_duration=options.prefix_padding_duration,
        activation_threshold=options.activation_threshold,
        sample_rate=options.sample_rate,
    )


@hookimpl
def register_vad(register: Register) -> None:
    register("silero", make_vad, options=Options, description="Silero VAD (local ONNX)")
