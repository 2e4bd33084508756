"""``avaluma triton start`` and ``avaluma models push``: run Triton for development, publish new model versions.

Both read the ``triton:`` config section (:class:`~avaluma.core.config.TritonConfig`); options override it.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from avaluma.core.cli import context_config
from avaluma.core.errors import FailedPrecondition, InvalidArgument, Unavailable

#: How long ``models push`` waits for the new version to become ready.
PUSH_READY_TIMEOUT_S = 60.0


def split_url(url: str) -> tuple[str, int]:
    """``host:port`` -> (host, port), with a clear error for anything else."""
    host, sep, port = url.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidArgument(f"Triton address {url!r} is not host:port (e.g. 127.0.0.1:8001)")
    return host.strip("[]"), int(port)


@click.group("triton")
def triton_group() -> None:
    """Run NVIDIA Triton with the lip-sync model repository."""


@triton_group.command("start")
@click.option("--repository", type=click.Path(file_okay=False, path_type=Path), default=None, help="Model repository.")
@click.option("--url", default=None, help="gRPC address to bind, host:port (port 0 = a free one). Default: triton.url.")
@click.option("--http-port", type=int, default=None, help="HTTP port (0 = a free one). Default: triton.http_port.")
@click.option("--model", "models", multiple=True, help="Model to load (repeatable). Default: triton.model.")
@click.option("--control-mode", type=click.Choice(["explicit", "poll"]), default=None, help="Model control mode.")
@click.pass_context
def start_command(
    ctx: click.Context,
    repository: Path | None,
    url: str | None,
    http_port: int | None,
    models: tuple[str, ...],
    control_mode: str | None,
) -> None:
    """Start tritonserver (from the nvidia-pytriton wheel) on our model repository; Ctrl-C or SIGTERM stops it.

    \b
    explicit mode (default): only the named models load; `avaluma models push` loads new versions.
    poll mode: every model in the repository loads, and new version directories are picked up automatically.
    """
    from avaluma.core.ops.triton.server import start_triton

    config = context_config(ctx).triton
    host, grpc_port = split_url(url or config.url)
    mode = control_mode or config.control_mode
    server = start_triton(
        repository or config.repository,
        models=models or (config.model,),
        host=host,
        grpc_port=grpc_port,
        http_port=config.http_port if http_port is None else http_port,
        control_mode="poll" if mode == "poll" else "explicit",
        poll_interval_s=config.poll_interval_s,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"Triton ready: grpc {server.grpc_url}, http {server.http_url}, pid {server.pid} ({mode} mode)")
        click.echo("Press Ctrl-C to stop.")
        while not stop.wait(0.5):
            if not server.is_running():
                raise click.ClickException(f"tritonserver exited unexpectedly; its log ends with:\n{server.log_tail()}")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("Triton stopped.")


@click.group("models")
def models_group() -> None:
    """Manage lip-sync model versions in a Triton model repository."""


@models_group.command("push")
@click.argument("onnx_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--repository", type=click.Path(file_okay=False, path_type=Path), default=None, help="Model repository.")
@click.option("--model", default=None, help="Model name in the repository. Default: triton.model.")
@click.option("--url", default=None, help="Triton gRPC address to load the version on. Default: triton.url.")
@click.option("--no-load", is_flag=True, help="Only write the version (poll mode picks it up by itself).")
@click.option("--skip-validation", is_flag=True, help="Do not load the file with onnxruntime before publishing it.")
@click.pass_context
def push_command(
    ctx: click.Context,
    onnx_file: Path,
    repository: Path | None,
    model: str | None,
    url: str | None,
    no_load: bool,
    skip_validation: bool,
) -> None:
    """Write ONNX_FILE as the next version of the model, atomically, and load it on the running Triton.

    Sessions keep streaming during the swap: a segment under way finishes on the version it started on (the two
    newest versions stay loaded), new segments use the new version.
    """
    from avaluma.core.ops.triton.repository import push_model_version

    config = context_config(ctx).triton
    model_name = model or config.model
    if not skip_validation:
        _validate_onnx(onnx_file)
    pushed = push_model_version(repository or config.repository, model_name, onnx_file)
    click.echo(f"wrote {pushed.path} (version {pushed.version})")
    if no_load:
        return
    target = url or config.url
    load_version(target, model_name, pushed.version)
    click.echo(f"version {pushed.version} of {model_name!r} is ready on {target}")


def _validate_onnx(path: Path) -> None:
    """Refuse a file the lip-sync model code cannot serve, before it reaches the repository."""
    if not path.is_file():
        raise InvalidArgument(f"model file {path} does not exist: pass the path of an .onnx file")
    from avaluma.renderer.lipsync.onnx_backend import OnnxModel

    try:
        OnnxModel(path)
    except Exception as exc:
        raise InvalidArgument(
            f"{path} is not a usable lip-sync model ({type(exc).__name__}: {exc}); nothing was pushed"
        ) from None


def load_version(url: str, model: str, version: int, *, timeout_s: float = PUSH_READY_TIMEOUT_S) -> None:
    """Ask Triton (explicit mode) to reload ``model`` and wait until ``version`` answers ready."""
    try:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise FailedPrecondition(
            "loading needs tritonclient: pip install 'avaluma[triton]' (or use --no-load)"
        ) from None
    client: Any = grpcclient.InferenceServerClient(url)
    try:
        try:
            client.load_model(model, client_timeout=timeout_s)
        except InferenceServerException as exc:
            raise Unavailable(
                f"Triton at {url} did not load {model!r} version {version}: {exc.message()} (is the server running "
                "in explicit mode? In poll mode use --no-load)"
            ) from None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if client.is_model_ready(model, str(version)):
                    return
            except InferenceServerException:
                pass
            time.sleep(0.2)
        raise Unavailable(f"version {version} of {model!r} was not ready on {url} after {timeout_s:.0f} s")
    finally:
        client.close()
