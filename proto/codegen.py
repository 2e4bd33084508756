"""Generate the Python gRPC modules in ``avaluma.proto.v1`` from ``proto/avaluma/v1/*.proto``.

Usage::

    python -m avaluma.proto.codegen           # regenerate proto/v1/*_pb2*.py(i)
    python -m avaluma.proto.codegen --check   # exit 1 and list the files that differ from the .proto sources

The generated code is committed, so users need neither grpcio-tools nor mypy-protobuf; ``--check`` (run by
tests/unit/test_proto_drift.py) catches a .proto edit without regeneration. Output is deterministic for pinned
grpcio-tools and mypy-protobuf versions (see the ``dev`` extra).

protoc names modules after the proto package (``avaluma.v1``); the package lives at ``avaluma.proto.v1``, so the
generated imports are rewritten. The serialized descriptors keep ``avaluma.v1`` (the wire-level package name).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
SOURCE_DIR = PROTO_ROOT / "avaluma" / "v1"
OUTPUT_DIR = PROTO_ROOT / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")

# Only module references are rewritten (they all end in _pb2 / _pb2_grpc), never the serialized descriptor bytes.
_MODULE_REF = re.compile(r"(?<![\w./])avaluma\.v1\.(\w+_pb2(?:_grpc)?)\b")
_FROM_IMPORT = re.compile(r"^from avaluma\.v1 import ", re.MULTILINE)


def _find_plugin(name: str) -> str:
    """protoc plugins are console scripts installed next to the interpreter (a venv's bin/)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install the dev extra (pip install -e '.[dev]'), it ships mypy-protobuf")
    return found


def rewrite_imports(text: str) -> str:
    """Point generated imports at ``avaluma.proto.v1`` instead of the proto package ``avaluma.v1``."""
    text = _FROM_IMPORT.sub("from avaluma.proto.v1 import ", text)
    return _MODULE_REF.sub(r"avaluma.proto.v1.\1", text)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every .proto of the v1 API and write the rewritten modules into ``out_dir``.

    Returns the written files, sorted.
    """
    protos = sorted(SOURCE_DIR.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {SOURCE_DIR}")
    try:
        well_known = str(resources.files("grpc_tools") / "_proto")
    except ModuleNotFoundError:
        raise SystemExit("grpcio-tools is not installed: install the dev extra (pip install -e '.[dev]')") from None
    with tempfile.TemporaryDirectory() as raw:
        args = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            f"--plugin=protoc-gen-mypy_grpc={_find_plugin('protoc-gen-mypy_grpc')}",
            f"--mypy_grpc_out={raw}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        # A subprocess keeps the plugins' progress chatter out of the output unless protoc fails.
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"protoc failed with exit status {result.returncode}:\n{result.stderr}")
        produced = Path(raw) / "avaluma" / "v1"
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for path in sorted(produced.iterdir()):
            if not path.name.endswith(GENERATED_SUFFIXES):
                continue
            target = out_dir / path.name
            target.write_text(rewrite_imports(path.read_text(encoding="utf-8")), encoding="utf-8")
            written.append(target)
    for stale in out_dir.iterdir():  # a deleted .proto must not leave its modules behind
        if stale.name.endswith(GENERATED_SUFFIXES) and stale not in written:
            stale.unlink()
    return written


def _generated_files(directory: Path) -> dict[str, bytes]:
    found = sorted(directory.iterdir())
    return {p.name: p.read_bytes() for p in found if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)}


def check() -> list[str]:
    """Regenerate into a temporary directory and return the names of files that differ (missing, stale or changed)."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = _generated_files(Path(tmp))
    committed = _generated_files(OUTPUT_DIR)
    return sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avaluma.proto.codegen", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code differs from the .proto files")
    args = parser.parse_args(argv)
    if args.check:
        differing = check()
        if differing:
            print("generated code is out of date with proto/avaluma/v1/*.proto:", file=sys.stderr)
            for name in differing:
                print(f"  proto/v1/{name}", file=sys.stderr)
            print("run: python -m avaluma.proto.codegen", file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0
    for path in generate(OUTPUT_DIR):
        print(f"wrote {path.relative_to(PROTO_ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
