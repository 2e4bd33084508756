"""The committed gRPC modules must match the .proto files (and the API's conventions must hold)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import EnumDescriptor, FileDescriptor

from avaluma.proto import codegen
from avaluma.proto.v1 import avatar_registry_pb2, avatar_service_pb2, common_pb2, render_service_pb2

FILES: list[FileDescriptor] = [
    m.DESCRIPTOR for m in (common_pb2, render_service_pb2, avatar_service_pb2, avatar_registry_pb2)
]

needs_codegen = pytest.mark.skipif(
    shutil.which("protoc-gen-mypy_grpc", path=str(codegen.Path(sys.executable).parent)) is None,
    reason="codegen needs the dev extra (grpcio-tools, mypy-protobuf)",
)


@needs_codegen
def test_generated_code_matches_proto_sources() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "avaluma.proto.codegen", "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@needs_codegen
def test_check_reports_a_changed_file(tmp_path, monkeypatch) -> None:
    # Prove the check can fail: a committed copy with one edited file must be reported by name.
    copy = tmp_path / "v1"
    shutil.copytree(codegen.OUTPUT_DIR, copy)
    (copy / "common_pb2.py").write_text("# edited by hand\n")
    (copy / "render_service_pb2_grpc.pyi").unlink()
    monkeypatch.setattr(codegen, "OUTPUT_DIR", copy)
    assert codegen.check() == ["common_pb2.py", "render_service_pb2_grpc.pyi"]


@needs_codegen
def test_check_covers_the_livekit_plugins_copy(tmp_path, monkeypatch) -> None:
    # avaluma-livekit-plugin ships its own stubs of the session API: an edited one is reported by its path.
    copy = tmp_path / "_proto"
    shutil.copytree(codegen.PLUGIN_OUTPUT_DIR, copy)
    (copy / "avatar_service_pb2.py").write_text("# edited by hand\n")
    (copy / "render_service_pb2.py").write_text("# not part of the plugin\n")
    monkeypatch.setattr(codegen, "PLUGIN_OUTPUT_DIR", copy)
    assert [Path(name).name for name in codegen.check()] == ["avatar_service_pb2.py", "render_service_pb2.py"]
    assert (
        "from livekit.plugins.avaluma._proto import avatar_service_pb2"
        in (copy / "avatar_service_pb2_grpc.pyi").read_text()
    )


def test_generated_imports_use_the_installed_package_name() -> None:
    text = (codegen.OUTPUT_DIR / "render_service_pb2_grpc.py").read_text()
    assert "from avaluma.proto.v1 import render_service_pb2" in text
    assert "from avaluma.v1 import" not in text
    assert render_service_pb2.RenderRequest.__module__ == "avaluma.proto.v1.render_service_pb2"


def test_rewrite_leaves_wire_names_alone() -> None:
    line = "x = b'\\x12\\navaluma.v1\\x1a' ; import avaluma.v1.common_pb2; '.avaluma.v1.AvatarInfo'"
    assert codegen.rewrite_imports(line) == (
        "x = b'\\x12\\navaluma.v1\\x1a' ; import avaluma.proto.v1.common_pb2; '.avaluma.v1.AvatarInfo'"
    )


def _enums(file: FileDescriptor) -> list[EnumDescriptor]:
    nested = [e for m in file.message_types_by_name.values() for e in m.enum_types]
    return [*file.enum_types_by_name.values(), *nested]


def test_every_enum_starts_with_unspecified_zero() -> None:
    enums = [e for f in FILES for e in _enums(f)]
    assert enums, "expected enums in the API"
    for enum in enums:
        zero = enum.values_by_number[0].name
        assert zero.endswith("_UNSPECIFIED"), f"{enum.full_name}: value 0 is {zero}"


def test_services_live_in_the_v1_package() -> None:
    services = {s.full_name for f in FILES for s in f.services_by_name.values()}
    assert services == {"avaluma.v1.RenderService", "avaluma.v1.AvatarService", "avaluma.v1.AvatarRegistry"}
    assert {f.package for f in FILES} == {"avaluma.v1"}


def test_render_request_is_a_oneof_with_config_first() -> None:
    oneof = render_service_pb2.RenderRequest.DESCRIPTOR.oneofs_by_name["request"]
    assert [(f.name, f.number) for f in oneof.fields] == [
        ("config", 1),
        ("audio", 2),
        ("segment_end", 3),
        ("clear", 4),
        ("set_emotion", 5),
    ]
