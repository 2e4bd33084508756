"""``avaluma triton start`` as a developer runs it (a subprocess, stopped with SIGTERM), in poll mode, with a version
published by ``avaluma models push --no-load`` and picked up by the server; a clean stop leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from triton_support import copy_repository, require_triton

from avaluma.core.ops.triton.server import list_shm_regions
from avaluma.renderer.lipsync.onnx_backend import DEFAULT_MODEL

pytestmark = pytest.mark.integration


def _avaluma(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "avaluma.core.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def test_triton_start_poll_mode_push_and_clean_stop(tmp_path: Path) -> None:
    require_triton()
    import tritonclient.grpc as grpcclient

    repo = copy_repository(tmp_path)
    shm_before = set(list_shm_regions())
    proc = _avaluma(
        "triton", "start", "--repository", str(repo), "--url", "127.0.0.1:0", "--http-port", "0",
        "--control-mode", "poll",
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not line.startswith("Triton ready"):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "avaluma triton start exited before it was ready"
        assert line.startswith("Triton ready: grpc 127.0.0.1:"), line
        url = line.split()[3].rstrip(",")
        client = grpcclient.InferenceServerClient(url)
        assert client.is_model_ready("lipsync", "1")

        pushed = subprocess.run(
            [sys.executable, "-m", "avaluma.core.cli", "models", "push", str(DEFAULT_MODEL),
             "--repository", str(repo), "--no-load"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        assert "version 2" in pushed.stdout
        # Poll mode picks the new version up by itself (the repository is re-scanned every 2 s).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not client.is_model_ready("lipsync", "2"):
            time.sleep(0.3)
        assert client.is_model_ready("lipsync", "2")
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Triton stopped." in out
    assert set(list_shm_regions()) <= shm_before  # no shared memory left behind
    stray = subprocess.run(["pgrep", "-f", str(repo)], capture_output=True, text=True).stdout.split()
    assert [pid for pid in stray if int(pid) != os.getpid()] == []


def test_triton_start_reports_a_missing_repository(tmp_path: Path) -> None:
    proc = _avaluma("triton", "start", "--repository", str(tmp_path / "nope"))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"Triton model repository {tmp_path / 'nope'} does not exist" in out
