"""Load :class:`~avaluma.core.config.Config` from defaults < a YAML file < ``AVALUMA_*`` environment variables.

Environment variables use the prefix ``AVALUMA_`` and ``__`` between nested keys::

    AVALUMA_SERVER__PORT=9000            -> server.port = 9000
    AVALUMA_LIPSYNC__NAME=energy         -> lipsync.name = "energy"
    AVALUMA_TTS__OPTIONS__VOICE=joe-us   -> tts.options.voice = "joe-us"
    AVALUMA_API_KEYS=key1,key2           -> api_keys = ("key1", "key2")   (list fields are comma-separated)

Variables that steer the process rather than the config (``AVALUMA_CONFIG``, ``AVALUMA_PLUGINS``, ...) are skipped.
A plain ``AVALUMA_X`` that names no config key is ignored (other tools may share the prefix), but a nested
``AVALUMA_X__Y`` whose first part names no key is an error: it can only be a typo.

Every problem is raised as one :class:`~avaluma.core.errors.ConfigError` whose message names the file or the
environment variable, the dotted key and what to do, e.g.
``config.yaml: server.prot: unknown key (valid: host, port, shutdown_grace_s, ...)``.
"""

from __future__ import annotations

import logging
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from avaluma.core.config import Config
from avaluma.core.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_PREFIX = "AVALUMA_"
ENV_NESTING = "__"
#: Environment variable naming the YAML file when no path is given.
CONFIG_ENV = "AVALUMA_CONFIG"
#: ``AVALUMA_*`` variables read elsewhere (CLI options, plugin loading); never treated as config keys.
RESERVED_ENV = frozenset(
    {
        CONFIG_ENV,
        "AVALUMA_PLUGINS",
        "AVALUMA_DISABLE_PLUGINS",
        "AVALUMA_LOG_LEVEL",
        "AVALUMA_LOG_FORMAT",
    }
)

Loc = tuple[str, ...]


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the effective configuration.

    ``path`` is the YAML file; when ``None`` the file named by ``$AVALUMA_CONFIG`` is used, else defaults only.
    ``env`` defaults to ``os.environ`` (tests pass a dict to stay hermetic).
    Raises :class:`ConfigError` with one readable message for a missing/unreadable file, invalid YAML, unknown keys
    or invalid values.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None and environ.get(CONFIG_ENV):
        path = environ[CONFIG_ENV]

    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        file = Path(path)
        source = str(file)
        data = _read_yaml(file)
        if "api_keys" in data:
            # Accepted for self-hosters who keep a private file, but a repository file must not carry secrets.
            logger.warning(
                "api_keys set in the config file; prefer AVALUMA_API_KEYS in the environment",
                extra={"config_file": source},
            )

    overrides, origins = env_overrides(environ)
    # Layer over the dumped defaults so a partial override (AVALUMA_TTS__OPTIONS__VOICE alone) keeps the rest.
    merged = _deep_merge(_deep_merge(Config().model_dump(), data), overrides)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, Config, source=source, origins=origins)) from None


def _read_yaml(file: Path) -> dict[str, Any]:
    if not file.is_file():
        hint = "is a directory" if file.exists() else "was not found"
        raise ConfigError(
            f"config file {file} {hint}: pass an existing YAML file with --config (or $AVALUMA_CONFIG), "
            "or omit it to use the built-in defaults (see config.example.yaml)"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file} cannot be read ({exc}): check its permissions and encoding") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}: not valid YAML{where}: {problem}") from None
    if loaded is None:  # an empty file (or only comments) means "all defaults"
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{file}: the top level must be a mapping of keys (server:, render:, ...), not {type(loaded).__name__}"
        )
    return loaded


def env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[Loc, str]]:
    """Turn ``AVALUMA_*`` variables into a nested dict; also return which variable set each dotted key."""
    tree: dict[str, Any] = {}
    origins: dict[Loc, str] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in RESERVED_ENV:
            continue
        parts = tuple(p.lower() for p in var[len(ENV_PREFIX) :].split(ENV_NESTING))
        if not all(parts):
            raise ConfigError(f"environment variable {var}: empty key part; use single words joined by '__'")
        if parts[0] not in Config.model_fields:
            if len(parts) == 1:
                continue
            raise ConfigError(
                f"environment variable {var}: unknown key '{parts[0]}' (valid: {', '.join(Config.model_fields)})"
            )
        value: Any = env[var]
        if _is_sequence_field(Config, parts):
            value = [item.strip() for item in value.split(",") if item.strip()]
        node = tree
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
        origins[parts] = var
    return tree, origins


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            out[key] = _deep_merge(current, value)
        else:
            out[key] = value
    return out


def _is_sequence_field(model: type[BaseModel], loc: Loc) -> bool:
    sub = _model_at(model, loc[:-1])
    if sub is None or loc[-1] not in sub.model_fields:
        return False
    annotation = sub.model_fields[loc[-1]].annotation
    return typing.get_origin(annotation) in (list, tuple, set, frozenset)


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model describing the mapping at ``loc`` (``()`` is the root), if that location is a model."""
    current: type[BaseModel] = model
    for part in loc:
        field = current.model_fields.get(part)
        if field is None:
            return None
        sub = _as_model(field.annotation)
        if sub is None:
            return None
        current = sub
    return current


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            found = _as_model(arg)
            if found is not None:
                return found
    return None


def describe_validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    source: str,
    origins: Mapping[Loc, str] | None = None,
) -> str:
    """Translate a pydantic error into lines of ``<source>: <dotted.key>: <problem>``.

    ``origins`` maps dotted keys set from the environment to the variable's name, so the message points there
    instead of at the file. Also used by the plugin registry for provider options.
    """
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc) or "(top level)"
        where = (origins or {}).get(loc)
        prefix = f"environment variable {where} ({key})" if where else f"{source}: {key}"
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            valid = ", ".join(parent.model_fields) if parent is not None else "see config.example.yaml"
            lines.append(f"{prefix}: unknown key (valid: {valid})")
        elif err["type"] == "missing":
            lines.append(f"{prefix}: required key is missing")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"{prefix}: {err['msg']}{shown}")
    return "\n".join(lines)
