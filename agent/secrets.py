"""Deprecated path, kept for plugins written against it: import :func:`require_env` from
:mod:`avaluma.core.plugin_api` (the one import for plugin authors; see CHANGELOG)."""

from __future__ import annotations

from avaluma.core.plugin_api import missing_env_message, require_env

__all__ = ["missing_env_message", "require_env"]
