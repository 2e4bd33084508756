"""Configuration and wiring of the Triton backend: the `triton:` section, closed options, the plugin, addresses,
and the server helpers that need no running server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from avaluma.core.config import Config
from avaluma.core.errors import FailedPrecondition, InvalidArgument
from avaluma.core.ops.triton import server as triton_server
from avaluma.core.ops.triton.cli import split_url
from avaluma.core.plugins import load_registry
from avaluma.renderer.lipsync.triton_backend import TritonOptions


def test_triton_section_feeds_the_backend_options() -> None:
    config = Config.model_validate(
        {"lipsync": {"name": "triton", "options": {"timeout_s": 2}}, "triton": {"url": "gpu:8001", "on_failure": "end"}}
    )
    assert config.lipsync.options == {"url": "gpu:8001", "model": "lipsync", "timeout_s": 2, "on_failure": "end"}
    TritonOptions.model_validate(config.lipsync.options)  # what the registry will validate
    assert Config().lipsync.name != "triton" and Config().lipsync.options == {}


def test_options_are_closed_and_checked() -> None:
    with pytest.raises(ValidationError):
        TritonOptions.model_validate({"urll": "x:1"})
    with pytest.raises(ValidationError):
        TritonOptions.model_validate({"on_failure": "retry"})
    with pytest.raises(ValidationError):
        TritonOptions.model_validate({"timeout_s": 0})


def test_plugin_registers_the_triton_backend() -> None:
    registry = load_registry(entry_points=False)
    assert "triton" in registry.names("lipsync_backend")
    options = registry.parse_options("lipsync_backend", Config.model_validate({"lipsync": {"name": "triton"}}).lipsync)
    assert isinstance(options, TritonOptions) and options.url == "127.0.0.1:8001"


@pytest.mark.parametrize(("url", "expected"), [("127.0.0.1:8001", ("127.0.0.1", 8001)), ("[::1]:0", ("::1", 0))])
def test_split_url(url: str, expected: tuple[str, int]) -> None:
    assert split_url(url) == expected


@pytest.mark.parametrize("url", ["localhost", ":80", "host:http", "host:70000"])
def test_split_url_rejects_bad_addresses(url: str) -> None:
    with pytest.raises(InvalidArgument, match="host:port"):
        split_url(url)


def test_missing_tritonserver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triton_server.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FailedPrecondition, match=r"pip install --no-deps nvidia-pytriton==0\.7\.0"):
        triton_server.find_triton()


def test_server_environment_puts_the_stub_python_first(tmp_path: Path) -> None:
    install = triton_server.TritonInstall(tmp_path / "bin", tmp_path, tmp_path / "stub", tmp_path / "libs")
    env = triton_server.server_environment(
        install, {"PATH": "/usr/bin", "PYTHONPATH": "/x", "LD_LIBRARY_PATH": "/l"}, stub_env=tmp_path / "env"
    )
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "env" / "bin")
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[-2:] == [str(tmp_path / "libs"), "/l"]
    assert "PYTHONPATH" not in env


def test_remove_shm_regions_only_touches_its_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(triton_server, "SHM_DIR", tmp_path)
    for name in ("avaluma_triton_1_ab_x", "avaluma_triton_1_ab_y", "avaluma_triton_2_cd_x"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(triton_server.remove_shm_regions("avaluma_triton_1_ab_")) == [
        "avaluma_triton_1_ab_x",
        "avaluma_triton_1_ab_y",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["avaluma_triton_2_cd_x"]


def test_stub_env_override_must_be_a_virtualenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(triton_server.STUB_ENV_VAR, str(tmp_path))
    with pytest.raises(FailedPrecondition, match="is not a virtualenv"):
        triton_server.ensure_stub_env()


def _model_config(path: Path) -> Any:
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_cpu_and_gpu_configs_share_the_wire_contract() -> None:
    """The GPU config (NGC container) cannot be loaded here; it is parsed as Triton's ModelConfig and must expose
    exactly the tensors and sequence controls the client sends, like the CPU config the integration tests run."""
    from avaluma.renderer.lipsync import triton_model as tm

    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")
    root = Path(__file__).resolve().parents[2] / "deploy" / "triton"
    cpu = _model_config(root / "model_repository" / "lipsync" / "config.pbtxt")
    gpu = _model_config(root / "gpu" / "lipsync" / "config.pbtxt")
    for config in (cpu, gpu):
        assert config.name == "lipsync" and config.backend == "python"
        assert [i.name for i in config.input] == [tm.INPUT_AUDIO, tm.INPUT_FPS, tm.INPUT_FLUSH]
        assert [o.name for o in config.output] == [tm.OUTPUT_PARAMS, tm.OUTPUT_VISEMES]
        controls = {c.name: c.control[0] for c in config.sequence_batching.control_input}
        assert set(controls) == {"START", "END", "CORRID"}
        assert controls["CORRID"].data_type == mc.TYPE_UINT64
        assert config.version_policy.latest.num_versions == 2
    assert cpu.input == gpu.input and cpu.output == gpu.output
    assert cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU


def test_multi_configs_carry_the_multi_contract() -> None:
    """``lipsync_multi`` (one request for many sessions), CPU and GPU: the per-entry tensors the client sends, no
    sequence batcher, one instance (the sessions' states live in it)."""
    from avaluma.renderer.lipsync import triton_model as tm

    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")
    root = Path(__file__).resolve().parents[2] / "deploy" / "triton"
    cpu = _model_config(root / "model_repository" / "lipsync_multi" / "config.pbtxt")
    gpu = _model_config(root / "gpu" / "lipsync_multi" / "config.pbtxt")
    for config in (cpu, gpu):
        assert config.name == "lipsync_multi" and config.backend == "python" and config.max_batch_size == 0
        assert [i.name for i in config.input] == [
            tm.INPUT_CORRID, tm.INPUT_START, tm.INPUT_END, tm.INPUT_FLUSH, tm.INPUT_FPS, tm.INPUT_LENGTH, tm.INPUT_AUDIO
        ]  # fmt: skip
        outputs = [tm.OUTPUT_COUNT, tm.OUTPUT_PARAMS, tm.OUTPUT_VISEMES, tm.OUTPUT_ERROR]
        assert [o.name for o in config.output] == outputs
        assert not config.HasField("sequence_batching") and config.instance_group[0].count == 1
        assert config.parameters["protocol"].string_value == "multi"
    assert cpu.input == gpu.input and cpu.output == gpu.output
    assert gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
