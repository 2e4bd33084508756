"""AssemblyAI universal-streaming speech-to-text as an Avaluma ``stt`` provider named ``assemblyai``.

Config::

    agent:
      stt: {name: assemblyai, options: {model: universal-streaming-english}}

The key comes from ``ASSEMBLYAI_API_KEY`` (never from the config file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from avaluma.agent.secrets import require_env
from avaluma.core.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from livekit.agents import stt

API_KEY_ENV = "ASSEMBLYAI_API_KEY"


class Options(BaseModel):
    """Options of the ``assemblyai`` STT provider (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["universal-streaming-english", "universal-streaming-multilingual"] = "universal-streaming-english"
    sample_rate: int = Field(16_000, ge=8_000, le=48_000)
    #: Confidence (0..1) above which AssemblyAI ends the turn; unset = the service default.
    end_of_turn_confidence_threshold: float | None = Field(None, ge=0, le=1)
    #: Silence (ms) before a confident end of turn; unset = the service default.
    min_turn_silence: int | None = Field(None, ge=0)
    #: Silence (ms) that always ends the turn; unset = the service default.
    max_turn_silence: int | None = Field(None, ge=0)
    #: Words to bias recognition towards (names, product terms).
    keyterms_prompt: list[str] | None = None
    #: Use ``wss://streaming.eu.assemblyai.com`` to stream inside the EU.
    base_url: str = "wss://streaming.assemblyai.com"


def make_stt(options: Options) -> stt.STT:
    """Build LiveKit's AssemblyAI STT from ``options``; the key is read from the environment."""
    api_key = require_env(API_KEY_ENV, kind="stt")
    from livekit.plugins import assemblyai  # heavy: only when this provider is picked

    # Unset options stay unset so the service's own defaults apply.
    optional: dict[str, Any] = {
        k: v
        for k, v in options.model_dump(
            include={"end_of_turn_confidence_threshold", "min_turn_silence", "max_turn_silence", "keyterms_prompt"}
        ).items()
        if v is not None
    }
    return assemblyai.STT(
        api_key=api_key,
        model=options.model,
        sample_rate=options.sample_rate,
        base_url=options.base_url,
        **optional,
    )


@hookimpl
def register_stt(register: Register) -> None:
    register("assemblyai", make_stt, options=Options, description="AssemblyAI universal-streaming STT (cloud)")
