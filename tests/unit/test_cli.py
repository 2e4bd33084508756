"""The ``avaluma`` command line: ``plugins`` output, lazily imported sub-commands, errors, config loading."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from avaluma.core import plugins
from avaluma.core.cli import AvalumaGroup, cli, context_config
from avaluma.core.errors import NotFound
from avaluma.core.hookspecs import Register, hookimpl
from avaluma.core.plugins import load_plugin_manager


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # The group callback configures the root logger with CliRunner's stream, which closes after each invoke.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class VoicePlugin:
    @hookimpl
    def register_tts(self, register: Register) -> None:
        register("fake-voice", lambda: None, description="Scripted voice")


class CrashingPlugin:
    @hookimpl
    def register_stt(self, register: Register) -> None:
        raise RuntimeError("no credentials module")


@pytest.fixture
def with_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CLI's plugin manager hold the built-ins plus two hand-registered plugins (one broken)."""

    def load(**kwargs: Any) -> plugins.PluginManager:
        pm = load_plugin_manager(entry_points=False)
        plugins._register(pm, VoicePlugin(), "voice", plugins.PluginInfo("voice", "avaluma-plugin-voice", "3.1", False))
        plugins._register(pm, CrashingPlugin(), "crash", plugins.PluginInfo("crash", "crash-dist", "0.1", False))
        return pm

    monkeypatch.setattr(plugins, "load_plugin_manager", load)


def test_plugins_prints_a_table_of_providers_and_failures(with_plugins: None) -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "PLUGIN", "DISTRIBUTION", "VERSION", "DESCRIPTION"]
    rows = [line.split(maxsplit=5) for line in lines[1:3]]
    assert rows[0] == ["tts", "fake-voice", "voice", "avaluma-plugin-voice", "3.1", "Scripted voice"]
    assert rows[1][:4] == ["lipsync_backend", "energy", "avaluma.renderer.plugin", "avaluma"]
    assert "Failed to load:" in lines
    assert "  crash (crash-dist): register_stt: no credentials module" in lines


def test_plugins_json_lists_providers_plugins_and_failures(with_plugins: None) -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {
        "kind": "tts",
        "name": "fake-voice",
        "plugin": "voice",
        "distribution": "avaluma-plugin-voice",
        "version": "3.1",
        "description": "Scripted voice",
    } in payload["providers"]
    assert {"name": "voice", "distribution": "avaluma-plugin-voice", "version": "3.1", "builtin": False} in payload[
        "plugins"
    ]
    assert payload["failures"] == [
        {"name": "crash", "distribution": "crash-dist", "error": "register_stt: no credentials module"}
    ]


def test_plugins_with_conflicting_providers_is_one_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(**kwargs: Any) -> plugins.PluginManager:
        pm = load_plugin_manager(entry_points=False)
        pm.register(VoicePlugin(), name="one")
        pm.register(VoicePlugin(), name="two")
        return pm

    monkeypatch.setattr(plugins, "load_plugin_manager", load)
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 1
    assert "Error: tts provider 'fake-voice' is registered twice: by plugin 'one' and by plugin 'two'" in result.output
    assert "Traceback" not in result.output


def test_help_lists_commands_without_importing_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from avaluma.core.cli import cli\n"
        "try:\n"
        "    cli(['--help'], prog_name='avaluma')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('livekit', 'onnxruntime', 'av', 'grpc', 'piper', 'avaluma.core.server.serve',\n"
        "                          'avaluma.renderer.cli') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("plugins", "render", "serve"):
        assert f"\n  {name} " in out
    assert "HEAVY []" in out


def _group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, modules: dict[str, str]) -> AvalumaGroup:
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    lazy = {name.removeprefix("avt_cmd_"): (f"{name}:command", f"Help of {name}.") for name in modules}
    lazy["ghost"] = ("avt_cmd_not_written_yet:command", "Ghost command.")
    return AvalumaGroup(name="avaluma", lazy_commands=lazy)


WORKING = """
import click

@click.command()
@click.option("--times", type=int, default=1)
def command(times):
    click.echo("ran " * times)
"""


def test_lazy_command_is_imported_only_when_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = _group(tmp_path, monkeypatch, {"avt_cmd_work": WORKING})
    help_result = CliRunner().invoke(group, ["--help"])
    assert "work   Help of avt_cmd_work." in help_result.output
    assert "avt_cmd_work" not in sys.modules
    result = CliRunner().invoke(group, ["work", "--times", "2"])
    assert result.exit_code == 0, result.output
    assert result.output == "ran ran \n"


def test_lazy_command_whose_module_is_absent_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = _group(tmp_path, monkeypatch, {})
    assert "ghost  Ghost command." in CliRunner().invoke(group, ["--help"]).output
    result = CliRunner().invoke(group, ["ghost", "--anything"])
    assert result.exit_code == 1
    assert "`avaluma ghost` is not available: module avt_cmd_not_written_yet is not part of this installation" in (
        result.output
    )


def test_lazy_command_with_missing_dependency_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = _group(tmp_path, monkeypatch, {"avt_cmd_needs": "import avt_heavy_dependency\n" + WORKING})
    result = CliRunner().invoke(group, ["needs"])
    assert result.exit_code == 1
    assert "it needs the 'avt_heavy_dependency' package, which is not installed" in result.output


def test_lazy_command_with_a_bug_is_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = _group(tmp_path, monkeypatch, {"avt_cmd_bug": "raise RuntimeError('typo in module')\n"})
    result = CliRunner().invoke(group, ["bug"])
    assert isinstance(result.exception, RuntimeError)
    assert str(result.exception) == "typo in module"


def _group_with_global_options(command: click.Command) -> AvalumaGroup:
    group = AvalumaGroup(name="avaluma", params=cli.params, callback=cli.callback, lazy_commands={})
    group.add_command(command)
    return group


@click.command("show-port")
@click.pass_context
def show_port(ctx: click.Context) -> None:
    click.echo(str(context_config(ctx).server.port))


def test_commands_read_config_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  port: 9100\n")
    group = _group_with_global_options(show_port)
    assert CliRunner().invoke(group, ["--config", str(path), "show-port"]).output == "9100\n"
    result = CliRunner().invoke(group, ["--config", str(path), "show-port"], env={"AVALUMA_SERVER__PORT": "9200"})
    assert result.output == "9200\n"


def test_bad_config_is_a_clean_cli_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  prot: 9100\n")
    result = CliRunner().invoke(_group_with_global_options(show_port), ["--config", str(path), "show-port"])
    assert result.exit_code == 1
    assert f"Error: {path}: server.prot: unknown key (valid: host, port" in result.output


def test_domain_errors_in_commands_become_one_line_errors() -> None:
    @click.command("find")
    def find() -> None:
        raise NotFound("avatar 'bob' not found: `avaluma avatars` lists the installed ones")

    result = CliRunner().invoke(_group_with_global_options(find), ["find"])
    assert result.exit_code == 1
    assert result.output == "Error: avatar 'bob' not found: `avaluma avatars` lists the installed ones\n"


def test_unknown_log_level_is_a_usage_error(with_plugins: None) -> None:
    result = CliRunner().invoke(cli, ["--log-level", "LOUD", "plugins"])
    assert result.exit_code == 2
    assert "unknown log level 'LOUD'" in result.output


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"avaluma {version('avaluma')}\n"
