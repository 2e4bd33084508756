"""Run a real NVIDIA Triton Inference Server from the ``nvidia-pytriton`` wheel, on loopback, for tests and development.

The wheel ships the ``tritonserver`` binary (2.51), the python backend and one python-backend stub per Python minor
version, but no onnxruntime/TensorRT backend: our models run onnxruntime inside the python backend's ``model.py``.
:func:`start_triton` assembles a backend directory for the running interpreter, starts the binary on free loopback
ports with ``--model-control-mode=explicit`` (or ``poll``), waits until the requested models are ready and returns a
:class:`TritonServer` whose :meth:`~TritonServer.stop` sends SIGTERM, waits, and removes everything it created:
the stubs (which the server starts in its own process group), the python backend's ``/dev/shm`` regions (named with a
per-server prefix, so leftovers of a crashed stub are found) and the temporary directory.

Why the environment is set the way it is (FACTS.md, "Triton"):

- the stub runs Python isolated and ignores ``PYTHONPATH``: it finds site-packages through ``python3`` on ``PATH``,
  so the directory of :data:`sys.executable` goes first on ``PATH`` (our virtualenv, where ``avaluma`` is installed);
- with a pyenv or other non-system Python the stub must load *that* ``libpython``: its ``LIBDIR`` goes first on
  ``LD_LIBRARY_PATH``, followed by the wheel's bundled libraries (``nvidia_pytriton.libs``);
- background jobs ignore SIGINT, so the server is stopped with SIGTERM;
- the stub's compiled numpy bridge (pybind11) predates NumPy 2: under NumPy 2 ``Tensor.as_numpy()`` reads zeros and
  output tensors arrive empty. The stub therefore runs in a small *stub environment* (:func:`ensure_stub_env`): a
  virtualenv holding only ``numpy<2`` whose ``.pth`` file appends our own site-packages (onnxruntime, pydantic,
  ``avaluma``), so ``model.py`` imports the same code as the caller with NumPy 1.26 underneath.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from avaluma.core.errors import FailedPrecondition, Unavailable

logger = logging.getLogger(__name__)

#: The python backend names its shared-memory regions ``<prefix><n>`` under this directory.
SHM_DIR = Path("/dev/shm")
#: How much of the server log an error message quotes.
LOG_TAIL_CHARS = 4000

ControlMode = Literal["explicit", "poll"]


@dataclass(frozen=True, slots=True)
class TritonInstall:
    """Where the pieces of a Triton installation are."""

    binary: Path
    python_backend: Path  #: directory holding ``libtriton_python.so`` and ``triton_python_backend_utils.py``
    stub: Path  #: ``triton_python_backend_stub`` for the running Python minor version
    libs: Path | None  #: bundled shared libraries (``nvidia_pytriton.libs``), if any


def find_triton() -> TritonInstall:
    """Locate ``tritonserver`` and the python backend inside the installed ``nvidia-pytriton`` wheel.

    Raises :class:`FailedPrecondition` saying what to install when it is absent. The wheel is located without being
    imported (importing ``pytriton`` pulls in its whole client stack).
    """
    spec = importlib.util.find_spec("pytriton")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FailedPrecondition(
            "the tritonserver binary was not found: install it with `pip install --no-deps nvidia-pytriton==0.7.0` "
            "(or run Triton yourself, e.g. the NGC container, and point lipsync.options.url at it)"
        )
    root = Path(locations[0]) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=_first_existing(Path(p).parent / "nvidia_pytriton.libs" for p in locations),
    )
    for path in (install.binary, install.python_backend / "libtriton_python.so", install.stub):
        if not path.exists():
            raise FailedPrecondition(
                f"incomplete Triton installation: {path} is missing (Python {version} needs a matching "
                "python-backend stub); reinstall with `pip install --force-reinstall --no-deps nvidia-pytriton==0.7.0`"
            )
    return install


def _first_existing(paths: Iterator[Path]) -> Path | None:
    for path in paths:
        if path.is_dir():
            return path
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the binary takes explicit ports; a clash is retried by the caller)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class TritonServer:
    """A running ``tritonserver`` process started by :func:`start_triton`. Stop it with :meth:`stop` (idempotent)
    or use it as a context manager."""

    process: subprocess.Popen[bytes]
    host: str
    grpc_port: int
    http_port: int
    repository: Path
    shm_prefix: str
    workdir: Path
    log_path: Path
    models: tuple[str, ...] = ()
    _stopped: bool = field(default=False, repr=False)

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint (what ``tritonclient.grpc`` and ``lipsync.options.url`` take)."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of the server's combined stdout/stderr."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-chars:].decode("utf-8", "replace")

    def kill(self) -> None:
        """Crash the server (SIGKILL to the server only), as a fault would: tests use this. Call :meth:`stop`
        afterwards to reap its stubs and shared memory."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; then reap stray stubs, ``/dev/shm`` regions, temp files."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver ignored SIGTERM; killing it", extra={"pid": self.process.pid})
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
        # The stubs are in the server's process group (it was started in a new session): a stub orphaned by a
        # crashed server must not outlive us.
        _kill_group(self.process.pid)
        removed = remove_shm_regions(self.shm_prefix)
        if removed:
            logger.info("removed leftover Triton shared memory", extra={"regions": removed})
        shutil.rmtree(self.workdir, ignore_errors=True)
        logger.info("tritonserver stopped", extra={"pid": self.process.pid, "returncode": self.process.returncode})

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _kill_group(pgid: int, timeout_s: float = 5.0) -> None:
    """SIGKILL every process left in the group and wait (bounded) until they are gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """True while a process of the group exists that is not a zombie (zombies hold no resources)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: fall back to signal 0, which also counts zombies
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def remove_shm_regions(prefix: str) -> list[str]:
    """Delete ``/dev/shm/<prefix>*`` (regions of the python backend named with our per-server prefix)."""
    removed: list[str] = []
    for path in glob.glob(str(SHM_DIR / (glob.escape(prefix) + "*"))):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(os.path.basename(path))
    return removed


def _backend_dir(install: TritonInstall, workdir: Path) -> Path:
    """``<workdir>/backends/python`` with the backend library, its utils module and the stub for this Python."""
    python_dir = workdir / "backends" / "python"
    python_dir.mkdir(parents=True)
    for source in (
        install.python_backend / "libtriton_python.so",
        install.python_backend / "triton_python_backend_utils.py",
        install.stub,
    ):
        (python_dir / source.name).symlink_to(source)
    return python_dir.parent


#: Environment variable naming a prepared stub environment (a virtualenv whose ``python3`` the stub should use).
STUB_ENV_VAR = "AVALUMA_TRITON_STUB_ENV"
#: What the stub environment installs itself (everything else comes from our site-packages).
STUB_ENV_REQUIREMENT = "numpy>=1.26,<2"


def default_stub_env_path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = hashlib.sha256(sys.prefix.encode()).hexdigest()[:10]
    return cache / "avaluma" / f"triton-stub-env-py{sys.version_info.major}.{sys.version_info.minor}-{tag}"


def ensure_stub_env(path: Path | None = None) -> Path:
    """The virtualenv the python-backend stub runs in; created on first use (one ``pip install numpy<2``).

    ``$AVALUMA_TRITON_STUB_ENV`` names a prepared one instead (used as is). The environment holds only NumPy 1.x;
    a ``.pth`` file appends this interpreter's site-packages, so ``avaluma`` and its dependencies resolve exactly as
    they do for the caller. Built in a temporary directory and renamed into place, so a crash leaves no half-made one.
    """
    override = os.environ.get(STUB_ENV_VAR)
    if override:
        env_path = Path(override)
        if not (env_path / "bin" / "python3").exists():
            raise FailedPrecondition(f"{STUB_ENV_VAR}={override} is not a virtualenv (no bin/python3): fix or unset it")
        return env_path
    env_path = path or default_stub_env_path()
    if (env_path / "bin" / "python3").exists():
        return env_path
    env_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=env_path.name + ".tmp-", dir=env_path.parent))
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", "--clear", str(staging)], check=True, capture_output=True
        )
        site_dir = staging / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(site_dir),
                STUB_ENV_REQUIREMENT,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise FailedPrecondition(
                f"could not install {STUB_ENV_REQUIREMENT!r} for Triton's python backend stub (needs the package "
                f"index once): {result.stderr.strip()[-500:]}; or prepare a virtualenv with NumPy 1.x and set "
                f"{STUB_ENV_VAR}"
            )
        our_sites = [p for p in site.getsitepackages() if Path(p).is_dir()]
        lines = [f"import site; site.addsitedir({p!r})" for p in our_sites]
        (site_dir / "zz_avaluma_parent_env.pth").write_text("\n".join(lines) + "\n")
        try:
            staging.rename(env_path)
        except OSError:  # another process finished first: use theirs
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("created the Triton python stub environment", extra={"path": str(env_path)})
    return env_path


def server_environment(
    install: TritonInstall, base: dict[str, str] | None = None, *, stub_env: Path | None = None
) -> dict[str, str]:
    """The environment the binary and its python stubs need (see the module docstring for why)."""
    env = dict(os.environ if base is None else base)
    libdirs = [str(sysconfig.get_config_var("LIBDIR") or "")]
    if install.libs is not None:
        libdirs.append(str(install.libs))
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libdirs if p)
    python_bin = str((stub_env / "bin") if stub_env is not None else Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in (python_bin, env.get("PATH", "")) if p)
    env.pop("PYTHONPATH", None)  # ignored by the stub anyway; dropping it keeps both sides consistent
    return env


def start_triton(
    repository: str | os.PathLike[str],
    *,
    models: Sequence[str] = ("lipsync",),
    host: str = "127.0.0.1",
    grpc_port: int = 0,
    http_port: int = 0,
    control_mode: ControlMode = "explicit",
    poll_interval_s: int = 2,
    ready_timeout_s: float = 60.0,
    log_verbose: int = 0,
    extra_args: Sequence[str] = (),
) -> TritonServer:
    """Start ``tritonserver`` on ``repository`` and return once every model in ``models`` is ready.

    Ports of 0 pick free ones. In ``explicit`` mode only ``models`` are loaded (``avaluma models push`` loads new
    versions through the API); in ``poll`` mode every model in the repository is loaded and re-scanned every
    ``poll_interval_s`` seconds. Raises :class:`FailedPrecondition` (binary missing, repository missing, a model failed
    to load; the message quotes the server log) or :class:`Unavailable` (not ready in time).
    """
    repo = Path(repository).resolve()
    if not repo.is_dir():
        raise FailedPrecondition(f"Triton model repository {repo} does not exist: pass --repository or create it")
    for name in models:
        if not (repo / name / "config.pbtxt").is_file():
            raise FailedPrecondition(f"model {name!r} has no {repo / name / 'config.pbtxt'}: check the repository")
    install = find_triton()
    stub_env = ensure_stub_env()
    attempts = 3 if (grpc_port == 0 or http_port == 0) else 1
    last_error: Exception | None = None
    for _ in range(attempts):
        try:
            return _start_once(
                install,
                repo,
                stub_env=stub_env,
                models=tuple(models),
                host=host,
                grpc_port=grpc_port or free_port(host),
                http_port=http_port or free_port(host),
                control_mode=control_mode,
                poll_interval_s=poll_interval_s,
                ready_timeout_s=ready_timeout_s,
                log_verbose=log_verbose,
                extra_args=tuple(extra_args),
            )
        except _PortInUse as exc:  # another process took the port between our probe and the bind: try new ones
            last_error = exc
    raise Unavailable(f"could not bind free ports for tritonserver on {host}: {last_error}")


class _PortInUse(Exception):
    pass


def _start_once(
    install: TritonInstall,
    repo: Path,
    *,
    stub_env: Path,
    models: tuple[str, ...],
    host: str,
    grpc_port: int,
    http_port: int,
    control_mode: ControlMode,
    poll_interval_s: int,
    ready_timeout_s: float,
    log_verbose: int,
    extra_args: tuple[str, ...],
) -> TritonServer:
    workdir = Path(tempfile.mkdtemp(prefix="avaluma-triton-"))
    # Unique per server so stop() can find regions a crashed stub left behind, and never touches another server's.
    shm_prefix = f"avaluma_triton_{os.getpid()}_{secrets.token_hex(4)}_"
    args = [
        str(install.binary),
        f"--model-repository={repo}",
        f"--backend-directory={_backend_dir(install, workdir)}",
        f"--model-control-mode={control_mode}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        f"--http-address={host}",
        f"--http-port={http_port}",
        "--allow-metrics=false",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--log-verbose={log_verbose}",
        # SIGTERM -> the server waits for in-flight requests at most this long before exiting.
        "--exit-timeout-secs=10",
    ]
    if control_mode == "explicit":
        args += [f"--load-model={name}" for name in models]
    else:
        args += [f"--repository-poll-secs={poll_interval_s}"]
    args += list(extra_args)
    log_path = workdir / "tritonserver.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=server_environment(install, stub_env=stub_env),
            cwd=workdir,
            start_new_session=True,  # its own process group: stop() reaps the python stubs with it
        )
    server = TritonServer(process, host, grpc_port, http_port, repo, shm_prefix, workdir, log_path, models)
    logger.info(
        "tritonserver starting",
        extra={"pid": process.pid, "grpc_url": server.grpc_url, "repository": str(repo), "models": list(models)},
    )
    try:
        _wait_ready(server, ready_timeout_s)
    except BaseException:
        tail = server.log_tail()
        server.stop()
        if "Address already in use" in tail or "Failed to bind" in tail:
            raise _PortInUse(tail[-300:]) from None
        raise
    logger.info("tritonserver ready", extra={"pid": process.pid, "grpc_url": server.grpc_url})
    return server


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(server: TritonServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    urls = [f"{server.http_url}/v2/health/ready"] + [f"{server.http_url}/v2/models/{m}/ready" for m in server.models]
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise FailedPrecondition(
                f"tritonserver exited with code {code} while starting (a model failed to load or a port was taken); "
                f"its log ends with:\n{server.log_tail()}"
            )
        if all(_http_ok(url) for url in urls):
            return
        time.sleep(0.1)
    raise Unavailable(
        f"tritonserver on {server.grpc_url} was not ready after {timeout_s:.0f} s; its log ends with:\n"
        f"{server.log_tail()}"
    )


def list_shm_regions(prefix: str = "triton_python_backend_shm_region") -> list[str]:
    """Names in ``/dev/shm`` starting with ``prefix`` (tests check that a stopped server left none)."""
    if not SHM_DIR.is_dir():
        return []
    return sorted(name for name in os.listdir(SHM_DIR) if name.startswith(prefix))
