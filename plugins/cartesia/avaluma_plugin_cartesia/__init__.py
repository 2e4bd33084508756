"""Cartesia sonic-3 text-to-speech as an Avaluma ``tts`` provider named ``cartesia``.

Config::

    agent:
      tts: {name: cartesia, options: {model: sonic-3, voice: <voice id>}}

The key comes from ``CARTESIA_API_KEY``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from avaluma.agent.secrets import require_env
from avaluma.core.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from livekit.agents import tts

API_KEY_ENV = "CARTESIA_API_KEY"


class Options(BaseModel):
    """Options of the ``cartesia`` TTS provider (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "sonic-3"
    #: A Cartesia voice id; unset = LiveKit's default Cartesia voice.
    voice: str | None = None
    language: str = "en"
    #: Speaking rate multiplier; unset = the voice's natural pace.
    speed: float | None = Field(None, gt=0)
    #: Output rate; the avatar server resamples, so the default needs no change.
    sample_rate: int = Field(24_000, ge=8_000, le=48_000)


def make_tts(options: Options) -> tts.TTS:
    """Build LiveKit's Cartesia TTS from ``options``; the key is read from the environment."""
    api_key = require_env(API_KEY_ENV, kind="tts")
    from livekit.plugins import cartesia  # heavy: only when this provider is picked

    optional: dict[str, Any] = {
        k: v for k, v in options.model_dump(include={"voice", "speed"}).items() if v is not None
    }
    return cartesia.TTS(
        api_key=api_key,
        model=options.model,
        language=options.language,
        sample_rate=options.sample_rate,
        **optional,
    )


@hookimpl
def register_tts(register: Register) -> None:
    register("cartesia", make_tts, options=Options, description="Cartesia sonic-3 TTS (cloud)")
