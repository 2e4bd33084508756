"""``avaluma doctor``: check this machine for what Avaluma needs, and say what to do about each problem.

Every check is real: ports are bound, avatars loaded, the lip-sync model run on a second of silence (through Triton
when it is configured), providers built with the keys in the environment. ``FAIL`` stops what the line names from
working and makes the command exit 1; ``warn`` only limits something (no LiveKit credentials: rooms cannot be joined).
"""

from __future__ import annotations

import asyncio
import ctypes.util
import errno
import importlib.util
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import click
import numpy as np

from avaluma.core.cli import context_config
from avaluma.core.config import Config
from avaluma.core.errors import AvalumaError

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Check:
    status: Status
    what: str
    detail: str
    fix: str = ""


def check_python() -> Check:
    # pip refuses Python < 3.11 (requires-python), so the version is only reported, with the interpreter in use.
    return Check("ok", "Python", f"{'.'.join(map(str, sys.version_info[:3]))} ({sys.executable})")


def _port_answers_grpc_health(host: str, port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
    return True


def check_port(what: str, host: str, port: int, option: str, *, grpc_health: bool) -> Check:
    if port == 0:
        return Check("ok", what, "a free port is picked at start-up (port 0)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return Check("FAIL", what, f"cannot bind {host}:{port}: {exc.strerror}", "check server.host")
            if grpc_health and _port_answers_grpc_health(host, port):
                return Check("ok", what, f"{host}:{port} is taken by a running gRPC server (avaluma serve?)")
            return Check(
                "FAIL", what, f"{host}:{port} is in use by another program", f"stop it, or pick another with {option}"
            )
    return Check("ok", what, f"{host}:{port} is free")


def check_avatars(config: Config) -> Check:
    from avaluma.renderer.cli import resolve_avatars_dir
    from avaluma.renderer.hvia import SUFFIX, load_hvia

    directory = resolve_avatars_dir(config.avatars_dir)
    files = sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []
    if not files:
        return Check(
            "FAIL",
            "avatars",
            f"no {SUFFIX} files in {directory}",
            "set avatars_dir, or `avaluma avatar build photo.jpg`",
        )
    broken: list[str] = []
    for path in files:
        try:
            load_hvia(path)
        except Exception as exc:
            broken.append(f"{path.name} ({exc})")
    ids = [p.stem for p in files]
    if broken:
        return Check("FAIL", "avatars", f"cannot load {', '.join(broken)}", "rebuild or remove these files")
    if config.default_avatar not in ids:
        return Check("warn", "avatars", f"{', '.join(ids)}; no default_avatar {config.default_avatar!r}", "set it")
    return Check("ok", "avatars", f"{', '.join(ids)} in {directory}")


def check_lipsync(config: Config, registry: Any) -> Check:
    """Build the configured backend as the server does and run one second of silence through it."""
    what = f"lip-sync ({config.lipsync.name})"
    try:
        backend = registry.create("lipsync_backend", config.lipsync)
        try:
            stream = backend.open_stream(fps=config.render.fps)
            frames = len(stream.push(np.zeros(16_000, np.float32))) + len(stream.flush())
        finally:
            backend.close()
    except AvalumaError as exc:
        fix = "`avaluma triton start`, or lipsync: {name: onnx}" if config.lipsync.name == "triton" else ""
        return Check("FAIL", what, exc.message, fix)
    except Exception as exc:
        return Check("FAIL", what, f"{type(exc).__name__}: {exc}")
    return Check("ok", what, f"model answered ({frames} frames for 1 s of audio)")


def check_api_keys(config: Config) -> Check:
    from avaluma.core.server.serve import dev_key_path

    if config.api_keys:
        return Check("ok", "API keys", f"{len(config.api_keys)} configured (AVALUMA_API_KEYS)")
    path = dev_key_path()
    if path.is_file():
        return Check("ok", "API keys", f"none configured: the development key in {path} is used")
    return Check("ok", "API keys", f"none configured: `avaluma serve` makes a development key in {path}")


def check_livekit() -> Check:
    missing = [v for v in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET") if not os.environ.get(v)]
    if missing:
        return Check(
            "warn",
            "LiveKit",
            f"{', '.join(missing)} not set: avatars cannot join rooms from here",
            "export them (`livekit-server --dev`: ws://127.0.0.1:7880, devkey, secret); render works without",
        )
    return Check("ok", "LiveKit", os.environ["LIVEKIT_URL"])


def check_agent_providers(config: Config, registry: Any) -> Check:
    try:
        from livekit.agents.testing import fake_job_context
    except ImportError:
        return Check("warn", "agent providers", "livekit-agents is not installed", "pip install -e '.[agent]'")

    problems: list[str] = []
    stages = ("stt", "llm", "tts", "vad", "turn_detector", "noise_cancellation")
    kinds = {"turn_detector": "turn_detector", "noise_cancellation": "noise_cancellation"}

    async def build() -> None:
        with fake_job_context():
            for stage in stages:
                ref = getattr(config.agent, stage)
                if ref is None:
                    continue
                try:
                    registry.create(kinds.get(stage, stage), ref)
                except AvalumaError as exc:
                    problems.append(f"{stage}: {exc.message}")

    asyncio.run(build())
    if problems:
        return Check("warn", "agent providers", "\n".join(problems), "only `avaluma agent` needs them")
    names = ", ".join(getattr(config.agent, s).name for s in stages if getattr(config.agent, s) is not None)
    return Check("ok", "agent providers", names)


def check_portaudio() -> Check:
    if ctypes.util.find_library("portaudio") is None:
        return Check(
            "warn",
            "PortAudio",
            "not found: `avaluma agent console` cannot use the microphone",
            "sudo apt-get install libportaudio2 (macOS: brew install portaudio)",
        )
    return Check("ok", "PortAudio", "found")


def check_livekit_plugin() -> Check:
    if importlib.util.find_spec("livekit.plugins.avaluma") is None:
        return Check(
            "warn", "LiveKit plugin", "avaluma-livekit-plugin is not installed", "pip install ./plugins/livekit-plugin"
        )
    from livekit.plugins import avaluma

    return Check("ok", "LiveKit plugin", f"avaluma-livekit-plugin {avaluma.__version__}")


def run_checks(config: Config, registry: Any) -> list[Check]:
    host = config.server.host
    checks: list[Callable[[], Check]] = [
        check_python,
        lambda: check_port("gRPC port", host, config.server.port, "--port", grpc_health=True),
        lambda: check_port("HTTP port", host, config.http.port, "--http-port", grpc_health=False),
        lambda: check_avatars(config),
        lambda: check_lipsync(config, registry),
        lambda: check_api_keys(config),
        check_livekit,
        check_livekit_plugin,
        lambda: check_agent_providers(config, registry),
        check_portaudio,
    ]
    if not config.http.enabled:
        checks.pop(2)
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # a check that breaks is a finding too, never a traceback
            results.append(Check("FAIL", getattr(check, "__name__", "check"), f"{type(exc).__name__}: {exc}"))
    return results


@click.command("doctor")
@click.pass_context
def doctor_command(ctx: click.Context) -> None:
    """Check Python, ports, avatars, the lip-sync model (or Triton), keys, LiveKit and PortAudio; say what to do."""
    from avaluma.core.plugins import load_registry

    results = run_checks(context_config(ctx), load_registry())
    width = max(len(r.what) for r in results)
    indent = " " * (width + 8)
    for r in results:
        first, *more = r.detail.splitlines() or [""]
        click.echo(f"{r.status:<4}  {r.what:<{width}}  {first}")
        for line in [*more, *([f"-> {r.fix}"] if r.fix and r.status != "ok" else [])]:
            click.echo(indent + line)
    failed = [r for r in results if r.status == "FAIL"]
    if failed:
        raise click.ClickException(f"{len(failed)} problem(s) above; each says what to do")
    click.echo("\nAll set" + (" (warnings above limit what works)" if any(r.status == "warn" for r in results) else ""))


__all__ = ["Check", "doctor_command", "run_checks"]
