"""The ``avaluma`` command. Sub-commands live with the code they drive and are added here.

Owner notes (issue 2 foundation): ``serve`` comes from ``avaluma.core.serve``, ``render`` from
``avaluma.renderer.cli``, ``plugins`` from ``avaluma.core.plugins``; plugins may add commands through the
``register_commands`` hook.
"""

from __future__ import annotations

import click


@click.group()
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
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["log_level"] = log_level
    ctx.obj["log_format"] = log_format


def main() -> None:
    cli(prog_name="avaluma")
