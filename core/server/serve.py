"""``avaluma serve``: run the Avatar Server until SIGTERM / SIGINT, then shut down gracefully in bounded time.

Without configured API keys (``AVALUMA_API_KEYS``) a random key is generated and printed once, so a local server
works out of the box and no server is ever open by accident.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click

from avaluma.core.cli import context_config
from avaluma.core.config import Config
from avaluma.core.server.auth import generate_api_key

log = logging.getLogger(__name__)

#: Extra time beyond the grace period for closing sessions and the backend before the process gives up waiting.
SHUTDOWN_MARGIN_S = 5.0


def apply_overrides(config: Config, *, host: str | None, port: int | None, avatars_dir: Path | None) -> Config:
    """Command-line options win over the config file and the environment."""
    server_updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    updates: dict[str, object] = {}
    if server_updates:
        updates["server"] = config.server.model_copy(update=server_updates)
    if avatars_dir is not None:
        updates["avatars_dir"] = avatars_dir
    return config.model_copy(update=updates) if updates else config


async def serve(config: Config) -> None:
    """Start the server, wait for a stop signal, stop gracefully (``server.shutdown_grace_s`` plus a margin)."""
    from avaluma.core.plugins import ProviderRegistry, load_plugin_manager
    from avaluma.core.server.app import start_server

    pm = load_plugin_manager()
    registry = ProviderRegistry.from_plugin_manager(pm)
    pm.hook.startup(config=config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            # A second signal: the operator does not want to wait for the grace period.
            log.warning("second stop signal: exiting without waiting", extra={"signal": signal.Signals(signum).name})
            if main is not None:
                main.cancel()
            return
        log.info("stop signal received", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        running = await start_server(config, registry=registry, hooks=pm.hook)
        click.echo(f"Avaluma gRPC server listening on {running.address}")
        http = None
        if config.http.enabled and running.slots is not None and running.keys is not None:
            from avaluma.core.server.http_api import start_http_api

            try:
                http = await start_http_api(
                    running.sessions,
                    running.slots,
                    running.keys,
                    host=config.server.host,
                    port=config.http.port,
                    rate_limit_per_minute=config.http.rate_limit_per_minute,
                    rate_limit_burst=config.http.rate_limit_burst,
                )
            except BaseException:
                await running.stop(0)
                raise
            click.echo(f"Avaluma HTTP API listening on {running.host}:{http.port}")
        sys.stdout.flush()
        await stop.wait()
        if http is not None:
            await http.stop()
        grace = config.server.shutdown_grace_s
        try:
            await asyncio.wait_for(running.stop(grace), grace + SHUTDOWN_MARGIN_S)
        except TimeoutError:
            log.error("shutdown did not finish in time; exiting anyway", extra={"grace_s": grace})
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        pm.hook.shutdown()


@click.command("serve")
@click.option("--host", default=None, help="Interface to listen on (default: server.host, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="gRPC port; 0 picks a free one (default: server.port)."
)
@click.option(
    "--avatars-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of .hvia avatars, loaded at start-up (default: avatars_dir, assets/avatars).",
)
@click.pass_context
def serve_command(ctx: click.Context, host: str | None, port: int | None, avatars_dir: Path | None) -> None:
    """Run the Avatar Server: the gRPC API (render streams, LiveKit sessions, avatar registry) until stopped."""
    config = apply_overrides(context_config(ctx), host=host, port=port, avatars_dir=avatars_dir)
    if not config.api_keys:
        key = generate_api_key()
        config = config.model_copy(update={"api_keys": (key,)})
        # Printed once, on stdout only (never logged): set AVALUMA_API_KEYS to choose keys yourself.
        click.echo(f"No API keys configured (AVALUMA_API_KEYS); generated one for this run: {key}")
    try:
        asyncio.run(serve(config))
    except asyncio.CancelledError:
        raise SystemExit(1) from None
