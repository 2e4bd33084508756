"""Secrets for provider plugins: read from the environment only, with one clear message when missing.

Plugin factories call :func:`require_env` first thing, so a missing key fails at start-up (the worker builds every
provider once before it accepts jobs) instead of on the first user turn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from avaluma.core.errors import ConfigError


def missing_env_message(var: str, kind: str) -> str:
    """The one message a user sees when a provider's key is missing (kept in one place so every plugin agrees)."""
    return f"{var} is not set: export it or pick another {kind} provider in config"


def require_env(var: str, *, kind: str, env: Mapping[str, str] | None = None) -> str:
    """Return the value of environment variable ``var``; raise :class:`ConfigError` naming it when unset or blank.

    ``kind`` is the provider kind (``stt``, ``llm``, ``tts`` ...) the message suggests replacing.
    """
    value = (os.environ if env is None else env).get(var, "").strip()
    if not value:
        raise ConfigError(missing_env_message(var, kind))
    return value
