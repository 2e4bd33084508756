"""The one import for plugin authors: everything a provider plugin uses, from one module.

    from avaluma.core import plugin_api as avaluma

    class Options(avaluma.ProviderOptions):
        voice: str = "default"

    def make_tts(options: Options) -> "tts.TTS":
        api_key = avaluma.require_env("MYTTS_API_KEY", kind="tts")
        ...

    @avaluma.hookimpl
    def register_tts(register: avaluma.Register) -> None:
        register("mytts", make_tts, options=Options, description="MyTTS text-to-speech (cloud)")

The hook marker and the ``register`` callable's type (:mod:`avaluma.core.hookspecs` documents every hook), a closed
options base, :func:`require_env` for secrets, the error to raise for what users fix in config, and the lip-sync
backend interface. The older paths (``avaluma.core.hookspecs``, ``avaluma.agent.secrets``,
``avaluma.renderer.lipsync.base``) keep working for now (CHANGELOG).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from avaluma.core.errors import ConfigError
from avaluma.core.hookspecs import Register, hookimpl
from avaluma.renderer.lipsync.base import (
    LIPSYNC_SAMPLE_RATE,
    MOUTH_PARAMS,
    LipSyncBackend,
    LipSyncFault,
    LipSyncStream,
    MouthFrames,
)

__all__ = [
    "LIPSYNC_SAMPLE_RATE",
    "MOUTH_PARAMS",
    "ConfigError",
    "LipSyncBackend",
    "LipSyncFault",
    "LipSyncStream",
    "MouthFrames",
    "ProviderOptions",
    "Register",
    "hookimpl",
    "missing_env_message",
    "require_env",
]


class ProviderOptions(BaseModel):
    """Base of a provider's options: unknown keys are errors (the registry reports them with the valid ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def missing_env_message(var: str, kind: str) -> str:
    """The one message a user sees when a provider's key is missing (kept in one place so every plugin agrees)."""
    return f"{var} is not set: export it or pick another {kind} provider in config"


def require_env(var: str, *, kind: str, env: Mapping[str, str] | None = None) -> str:
    """Return the value of environment variable ``var``; raise :class:`ConfigError` naming it when unset or blank.

    Call it first thing in a factory, so a missing key fails at start-up (the worker builds every provider once before
    it accepts jobs) instead of on the first user turn. ``kind`` is the provider kind (``stt``, ``llm``, ``tts`` ...)
    the message suggests replacing.
    """
    value = (os.environ if env is None else env).get(var, "").strip()
    if not value:
        raise ConfigError(missing_env_message(var, kind))
    return value
