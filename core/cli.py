"""The ``avaluma`` command. Sub-commands live with the code they drive and are added here.

- Built-in commands that pull in heavy dependencies (LiveKit, onnxruntime, PyAV) are listed in :data:`LAZY_COMMANDS`
  as ``"module:attribute"`` and imported only when that command runs, so ``avaluma --help`` stays fast. Their help
  line is stored here for the same reason.
- ``avaluma plugins`` lists installed providers and plugins that failed to load.
- Plugins add commands through the ``register_commands(cli=...)`` hook; they are collected the first time the command
  line needs a name it does not know (or lists all commands).

Sub-commands read the configuration with :func:`context_config`, which loads it once from ``--config`` /
``$AVALUMA_CONFIG`` plus ``AVALUMA_*`` variables.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from avaluma.core.errors import AvalumaError

if TYPE_CHECKING:
    from avaluma.core.config import Config

logger = logging.getLogger(__name__)

#: name -> ("module:attribute" of a click command, one-line help shown by ``avaluma --help`` without importing it).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "avaluma.core.server.serve:serve_command",
        "Run the Avatar Server (gRPC API, avatars, LiveKit sessions).",
    ),
    "render": (
        "avaluma.core.server.render_cli:render_command",
        "Render text or audio to an MP4 of the avatar speaking.",
    ),
    "agent": ("avaluma.agent.cli:agent_command", "Run the LiveKit voice agent (agent-1) with its avatar."),
    "send": ("avaluma.agent.cli:send_command", "Stream a WAV or raw PCM into a room's avatar (agent-2)."),
    "triton": ("avaluma.core.ops.triton.cli:triton_group", "Run NVIDIA Triton with the lip-sync model repository."),
    "models": ("avaluma.core.ops.triton.cli:models_group", "Push a new lip-sync model version into Triton."),
    "avatar": ("avaluma.renderer.cli:avatar_group", "Build, inspect and preview .hvia avatar files."),
    "playground": (
        "avaluma.core.server.playground.app:playground_command",
        "See and hear an avatar live in the browser (WebRTC, offline TTS, microphone).",
    ),
    "doctor": (
        "avaluma.core.server.doctor:doctor_command",
        "Check this machine for what Avaluma needs; say what to do.",
    ),
}


class AvalumaGroup(click.Group):
    """A click group with lazily imported built-in commands and commands contributed by plugins."""

    def __init__(self, *args: Any, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(LAZY_COMMANDS if lazy_commands is None else lazy_commands)
        self._plugin_commands_loaded = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(set(self.commands) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # Built-in lazy commands win over anything a plugin registers under the same name.
        if cmd_name in self.lazy_commands:
            return self._import_lazy(cmd_name)
        if cmd_name not in self.commands:
            self._load_plugin_commands()
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Same layout as click's, but lazy commands show their stored help line instead of being imported.
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            if name in self.lazy_commands:
                rows.append((name, self.lazy_commands[name][1]))
                continue
            cmd = self.commands.get(name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AvalumaError as exc:
            # Domain errors already say what to do; show them as a one-line CLI error, not a traceback.
            raise click.ClickException(exc.message) from exc

    def _import_lazy(self, name: str) -> click.Command:
        target, help_line = self.lazy_commands[name]
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                # The command's own module is absent from this build: say so when it is used, keep the CLI usable.
                return _unavailable_command(name, help_line, f"module {module_name} is not part of this installation")
            # A dependency of the command is missing: a clear install hint beats a traceback.
            return _unavailable_command(
                name,
                help_line,
                f"it needs the {exc.name!r} package, which is not installed "
                "(install the matching extra, e.g. pip install -e '.[server,agent]')",
            )
        command = getattr(module, attr, None)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command (got {type(command).__name__})")
        return command

    def _load_plugin_commands(self) -> None:
        if self._plugin_commands_loaded:
            return
        self._plugin_commands_loaded = True
        from avaluma.core.plugins import load_plugin_manager

        pm = load_plugin_manager()
        for impl in pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(**{arg: self for arg in impl.argnames})
            except Exception as exc:  # one plugin's broken command must not take the whole CLI down
                logger.warning(
                    "plugin failed to register its commands",
                    extra={"plugin": impl.plugin_name, "error": f"{type(exc).__name__}: {exc}"},
                )


def _unavailable_command(name: str, help_line: str, why: str) -> click.Command:
    def run() -> None:
        raise click.ClickException(f"`avaluma {name}` is not available: {why}")

    return click.Command(
        name, callback=run, help=help_line, context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
    )


@click.group(cls=AvalumaGroup)
@click.version_option(package_name="avaluma", prog_name="avaluma", message="%(prog)s %(version)s")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="AVALUMA_CONFIG",
    default=None,
    help="YAML config file (default: $AVALUMA_CONFIG, else built-in defaults).",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="AVALUMA_LOG_LEVEL")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, envvar="AVALUMA_LOG_FORMAT"
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Avaluma: open, self-hostable real-time talking avatars."""
    from avaluma.core.logging_setup import configure_logging

    try:
        configure_logging(log_level, "json" if log_format == "json" else "text")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--log-level") from None
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["log_level"] = log_level
    ctx.obj["log_format"] = log_format


def context_config(ctx: click.Context) -> Config:
    """The configuration for this invocation (``--config`` file + environment), loaded once and cached on ``ctx``.

    A :class:`~avaluma.core.errors.ConfigError` becomes a clean CLI error (the group turns domain errors into
    ``click.ClickException``).
    """
    from avaluma.core.config_loader import load_config

    root = ctx.find_root()
    root.ensure_object(dict)
    obj: dict[str, Any] = root.obj
    if "config" not in obj:
        obj["config"] = load_config(obj.get("config_path"))
    config: Config = obj["config"]
    return config


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (providers, plugins, failures) instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins, the providers they register, and plugins that failed to load."""
    from avaluma.core.plugins import ProviderRegistry, load_plugin_manager

    pm = load_plugin_manager()
    registry = ProviderRegistry.from_plugin_manager(pm)
    providers = registry.describe()
    plugins = sorted(pm.plugin_info.values(), key=lambda p: (not p.builtin, p.name))
    if as_json:
        payload = {
            "providers": [asdict(p) for p in providers],
            "plugins": [asdict(p) for p in plugins],
            "failures": [asdict(f) for f in registry.failures],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    header = ("KIND", "NAME", "PLUGIN", "DISTRIBUTION", "VERSION", "DESCRIPTION")
    rows = [header, *((p.kind, p.name, p.plugin, p.distribution, p.version, p.description) for p in providers)]
    if providers:
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        for row in rows:
            click.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip())
    else:
        click.echo("No providers installed. Install a plugin, e.g. pip install -e plugins/piper")
    if registry.failures:
        click.echo("\nFailed to load:")
        for failure in registry.failures:
            click.echo(f"  {failure.name} ({failure.distribution or 'unknown distribution'}): {failure.error}")


def main() -> None:
    cli(prog_name="avaluma")


if __name__ == "__main__":
    main()
