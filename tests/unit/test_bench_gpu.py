"""bench/gpu.py on machines without a usable GPU (CI never has one): one SKIP line that says why, exit status 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(path_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(path_dir)}
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py")], capture_output=True, text=True, env=env, timeout=120
    )


def test_without_nvidia_smi_it_skips_cleanly(tmp_path: Path) -> None:
    result = run_bench(tmp_path)  # a PATH holding no nvidia-smi
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        "SKIP bench/gpu.py: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU); no GPU figures measured."
    ]


def test_with_a_gpu_but_no_cuda_onnxruntime_it_says_what_to_install(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    fake = tmp_path / "nvidia-smi"  # stands in for the NVIDIA driver's tool, answering the one query the bench makes
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771'\n")
    fake.chmod(0o755)
    result = run_bench(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SKIP bench/gpu.py: onnxruntime has no CUDA provider" in result.stdout
    assert "pip install onnxruntime-gpu" in result.stdout
