"""Structured logging: JSON lines and key=value text, both carrying ``extra`` fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner

from avaluma.core import plugins
from avaluma.core.cli import cli
from avaluma.core.hookspecs import Register, hookimpl
from avaluma.core.logging_setup import configure_logging
from avaluma.core.plugins import load_plugin_manager

log = logging.getLogger("avaluma.test")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_fixed_fields_and_extras() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    log.info("session started", extra={"session_id": "s-1", "frames": 3})
    [line] = lines(stream)
    entry = json.loads(line)
    assert {k: entry[k] for k in ("level", "logger", "message", "session_id", "frames")} == {
        "level": "INFO",
        "logger": "avaluma.test",
        "message": "session started",
        "session_id": "s-1",
        "frames": 3,
    }
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None


def test_json_extras_cannot_overwrite_fixed_fields() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    log.warning("careful", extra={"level": "spoofed", "logger": "spoofed"})
    entry = json.loads(lines(stream)[0])
    assert (entry["level"], entry["logger"]) == ("WARNING", "avaluma.test")


def test_json_includes_exceptions_and_stringifies_odd_values() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        raise ValueError("bad chunk")
    except ValueError:
        log.exception("render failed", extra={"path": object()})
    entry = json.loads(lines(stream)[0])
    assert "ValueError: bad chunk" in entry["exc_info"]
    assert entry["path"].startswith("<object object")


def test_text_lines_are_readable_with_key_value_extras() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "text", stream=stream)
    log.debug("avatar loaded", extra={"avatar_id": "astronaut", "note": "two words", "size": [512, 512]})
    [line] = lines(stream)
    assert line.endswith(' DEBUG avaluma.test: avatar loaded avatar_id=astronaut note="two words" size=[512, 512]')


def test_level_filters_and_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "text", stream=first)
    configure_logging("WARNING", "json", stream=second)
    log.info("dropped")
    log.warning("kept")
    assert first.getvalue() == ""
    assert [json.loads(line)["message"] for line in lines(second)] == ["kept"]


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "text"), ("INFO", "xml")])
def test_unknown_level_or_format_is_rejected(level: str, fmt: Any) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level, fmt)


class Crashing:
    @hookimpl
    def register_tts(self, register: Register) -> None:
        raise RuntimeError("boom")


def test_cli_log_format_json_applies_to_plugin_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(**kwargs: Any) -> plugins.PluginManager:
        pm = load_plugin_manager(entry_points=False)
        pm.register(Crashing(), name="crashing")
        return pm

    monkeypatch.setattr(plugins, "load_plugin_manager", load)
    result = CliRunner().invoke(cli, ["--log-format", "json", "plugins", "--json"])
    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert {
        "message": "plugin failed to register its providers and was skipped",
        "plugin": "crashing",
        "error": "register_tts: boom",
    }.items() <= entries[0].items()
    assert json.loads(result.stdout)["failures"][0]["name"] == "crashing"
