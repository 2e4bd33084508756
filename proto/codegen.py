"""Generate the Python gRPC modules in ``avaluma.proto.v1`` from ``proto/avaluma/v1/*.proto``.

Usage::

    python -m avaluma.proto.codegen           # regenerate proto/v1/*_pb2*.py(i)
    python -m avaluma.proto.codegen --check   # exit 1 and list the files that differ from the .proto sources

The generated code is committed, so users need neither grpcio-tools nor mypy-protobuf; ``--check`` (run by
tests/unit/test_proto_drift.py) catches a .proto edit without regeneration. Output is deterministic for pinned
grpcio-tools and mypy-protobuf versions (see the ``dev`` extra).

protoc names modules after the proto package (``avaluma.v1``); the package lives at ``avaluma.proto.v1``, so the
generated imports are rewritten. The serialized descriptors keep ``avaluma.v1`` (the wire-level package name).

The slim ``avaluma-livekit-plugin`` distribution (plugins/livekit-plugin) carries its own copy of the session API's
modules as ``livekit.plugins.avaluma._proto``, so a LiveKit agent needs neither this package nor grpcio-tools. Both
copies are generated and checked here, from the same sources; in one process they share one descriptor pool entry
(identical serialized files are accepted twice).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
SOURCE_DIR = PROTO_ROOT / "avaluma" / "v1"
OUTPUT_DIR = PROTO_ROOT / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
PACKAGE = "avaluma.proto.v1"
#: The plugin's copy; absent from an installed wheel (the plugin is another distribution), then only ours is checked.
PLUGIN_OUTPUT_DIR = PROTO_ROOT.parent / "plugins" / "livekit-plugin" / "livekit" / "plugins" / "avaluma" / "_proto"
PLUGIN_PACKAGE = "livekit.plugins.avaluma._proto"
#: What an agent needs: the session API and the messages it imports (not rendering, not the avatar registry).
PLUGIN_PROTOS = ("common", "avatar_service")


@dataclass(frozen=True)
class Target:
    """One place generated modules are committed: its folder, import package, and which .proto files (None: all)."""

    out_dir: Path
    package: str
    protos: tuple[str, ...] | None = None

    def wants(self, module: str) -> bool:
        return self.protos is None or module.split("_pb2")[0] in self.protos


def targets() -> list[Target]:
    found = [Target(OUTPUT_DIR, PACKAGE)]
    if PLUGIN_OUTPUT_DIR.parent.is_dir():
        found.append(Target(PLUGIN_OUTPUT_DIR, PLUGIN_PACKAGE, PLUGIN_PROTOS))
    return found


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


def rewrite_imports(text: str, package: str = PACKAGE) -> str:
    """Point generated imports at ``package`` (``avaluma.proto.v1``) instead of the proto package ``avaluma.v1``."""
    text = _FROM_IMPORT.sub(f"from {package} import ", text)
    return _MODULE_REF.sub(package + r".\1", text)


def generate(out_dir: Path, *, package: str = PACKAGE, protos: tuple[str, ...] | None = None) -> list[Path]:
    """Run protoc on every .proto of the v1 API and write the rewritten modules (of ``protos`` only, when given)
    into ``out_dir``, importing each other as ``package``.

    Returns the written files, sorted.
    """
    target = Target(out_dir, package, protos)
    sources = sorted(SOURCE_DIR.glob("*.proto"))
    if not sources:
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
            *(str(p.relative_to(PROTO_ROOT)) for p in sources),
        ]
        # A subprocess keeps the plugins' progress chatter out of the output unless protoc fails.
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"protoc failed with exit status {result.returncode}:\n{result.stderr}")
        produced = Path(raw) / "avaluma" / "v1"
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for path in sorted(produced.iterdir()):
            if not path.name.endswith(GENERATED_SUFFIXES) or not target.wants(path.name):
                continue
            destination = out_dir / path.name
            destination.write_text(rewrite_imports(path.read_text(encoding="utf-8"), package), encoding="utf-8")
            written.append(destination)
    for stale in out_dir.iterdir():  # a deleted .proto must not leave its modules behind
        if stale.name.endswith(GENERATED_SUFFIXES) and stale not in written:
            stale.unlink()
    return written


def _generated_files(directory: Path) -> dict[str, bytes]:
    found = sorted(directory.iterdir())
    return {p.name: p.read_bytes() for p in found if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)}


def check() -> list[str]:
    """Regenerate into a temporary directory and return the files that differ (missing, stale or changed): names for
    ``proto/v1``, paths from the repository root for the plugin's copy."""
    differing: list[str] = []
    for target in targets():
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp), package=target.package, protos=target.protos)
            fresh = _generated_files(Path(tmp))
        committed = _generated_files(target.out_dir) if target.out_dir.is_dir() else {}
        names = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
        if target.out_dir == OUTPUT_DIR:
            differing += names
        else:
            root = PROTO_ROOT.parent
            where = target.out_dir.relative_to(root) if target.out_dir.is_relative_to(root) else target.out_dir
            differing += [str(where / name) for name in names]
    return differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avaluma.proto.codegen", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code differs from the .proto files")
    args = parser.parse_args(argv)
    if args.check:
        differing = check()
        if differing:
            print("generated code is out of date with proto/avaluma/v1/*.proto:", file=sys.stderr)
            for name in differing:
                print(f"  {name if '/' in name else 'proto/v1/' + name}", file=sys.stderr)
            print("run: python -m avaluma.proto.codegen", file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0
    for target in targets():
        for path in generate(target.out_dir, package=target.package, protos=target.protos):
            print(f"wrote {path.relative_to(PROTO_ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
