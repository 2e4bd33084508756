"""``avaluma serve``: run the Avatar Server until SIGTERM / SIGINT, then shut down gracefully in bounded time.

Without configured API keys (``AVALUMA_API_KEYS``) a development key is made once, kept for this user in
``~/.config/avaluma/dev-api-key`` (mode 0600; ``$XDG_CONFIG_HOME`` moves it) and printed when it is made, so a local
server works out of the box, keeps its key across restarts (clients on this machine, like the LiveKit plugin, read
it there), and no server is ever open by accident.

"listening" is printed only once every port (gRPC, HTTP) is bound; a busy port is one error that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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


def apply_overrides(
    config: Config, *, host: str | None, port: int | None, avatars_dir: Path | None, http_port: int | None = None
) -> Config:
    """Command-line options win over the config file and the environment."""
    server_updates = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    updates: dict[str, object] = {}
    if server_updates:
        updates["server"] = config.server.model_copy(update=server_updates)
    if http_port is not None:
        updates["http"] = config.http.model_copy(update={"port": http_port})
    if avatars_dir is not None:
        updates["avatars_dir"] = avatars_dir
    return config.model_copy(update=updates) if updates else config


def dev_key_path() -> Path:
    """Where the development API key is kept. The LiveKit plugin (``livekit.plugins.avaluma.dev_key_path``) reads the
    same file, for servers on this machine."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "avaluma" / "dev-api-key"


def load_or_create_dev_key(path: Path) -> tuple[str, bool]:
    """The key stored at ``path``, or a new one written there readable by this user only; ``(key, created)``.

    Raises :class:`OSError` when the file can be neither read nor written (a read-only home in a container)."""
    for _ in range(3):
        with contextlib.suppress(FileNotFoundError):
            key = path.read_text(encoding="utf-8").strip()
            if key:
                if path.stat().st_mode & 0o077:  # copied around or made by hand: keep it private
                    path.chmod(0o600)
                return key, False
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = generate_api_key()
        try:  # O_EXCL: two servers starting at once agree on the first one's key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(key + "\n")
        return key, True
    raise OSError(f"{path} exists but holds no key: delete it")


def development_key() -> str:
    """The development key for a server started without ``AVALUMA_API_KEYS``; says on stdout where it comes from
    (the key itself only when it was just made: it is never logged)."""
    path = dev_key_path()
    try:
        key, created = load_or_create_dev_key(path)
    except OSError as exc:
        key = generate_api_key()
        click.echo(f"No API keys configured (AVALUMA_API_KEYS); generated one for this run ({exc}): {key}")
        return key
    if created:
        click.echo(
            f"No API keys configured (AVALUMA_API_KEYS): made a development key, kept in {path} (only you can read "
            f"it) and used at every start from now on:\n  AVALUMA_API_KEY={key}"
        )
    else:
        click.echo(f"No API keys configured (AVALUMA_API_KEYS): using the development key in {path}")
    return key


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
                    header_timeout_s=config.http.header_timeout_s,
                    body_timeout_s=config.http.body_timeout_s,
                )
            except BaseException:
                await running.stop(0)
                raise
        # Only now is every port bound: a client that waits for these lines can connect to both.
        click.echo(f"Avaluma gRPC server listening on {running.address}")
        if http is not None:
            click.echo(f"Avaluma HTTP API listening on {running.host}:{http.port}")
        sys.stdout.flush()
        await stop.wait()
        if config.server.drain_timeout_s > 0:
            # Drain: health NOT_SERVING and /ready 503 (load balancers send new sessions elsewhere), nothing new is
            # admitted, running sessions and render streams get drain_timeout_s to end by themselves; the HTTP API
            # keeps answering.
            drain_s = config.server.drain_timeout_s
            log.info("draining sessions before shutdown", extra={"drain_timeout_s": drain_s})
            sessions, streams = await running.drain(timeout_s=drain_s)
            extra = {"sessions_ended_at_deadline": sessions, "render_streams_ended_at_deadline": streams}
            log.info("drain finished", extra=extra)
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
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="HTTP API port; 0 picks a free one (default: http.port, 8081).",
)
@click.option(
    "--avatars-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of .hvia avatars, loaded at start-up (default: avatars_dir, assets/avatars).",
)
@click.pass_context
def serve_command(
    ctx: click.Context, host: str | None, port: int | None, http_port: int | None, avatars_dir: Path | None
) -> None:
    """Run the Avatar Server: the gRPC API (render streams, LiveKit sessions, avatar registry) and the HTTP API
    until stopped."""
    config = apply_overrides(context_config(ctx), host=host, port=port, avatars_dir=avatars_dir, http_port=http_port)
    if not config.api_keys:
        # Set AVALUMA_API_KEYS to choose keys yourself.
        config = config.model_copy(update={"api_keys": (development_key(),)})
    try:
        asyncio.run(serve(config))
    except asyncio.CancelledError:
        raise SystemExit(1) from None
