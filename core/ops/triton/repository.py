"""Model repository operations behind ``avaluma models push``: add a model version atomically.

A Triton model directory holds ``config.pbtxt`` and one numeric sub-directory per version. A new version is
assembled in a hidden staging directory next to them (Triton ignores non-numeric names) and renamed into place in one
``rename(2)``, so a server polling the repository never sees a half-written version. The new version carries the
``model.py`` of the newest existing version (the thin python-backend adapter) and the pushed ONNX file as
``model.onnx``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from avaluma.core.errors import FailedPrecondition, InvalidArgument

#: Name the pushed ONNX file gets inside the version directory (``model.py`` looks for it).
MODEL_FILENAME = "model.onnx"
#: Files copied from the newest existing version into a new one.
ADAPTER_FILES = ("model.py",)


@dataclass(frozen=True, slots=True)
class PushedVersion:
    model: str
    version: int
    path: Path


def versions(model_dir: Path) -> list[int]:
    """Numeric version directories of a model, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def push_model_version(repository: Path, model: str, onnx_file: Path) -> PushedVersion:
    """Write ``onnx_file`` as the next version of ``model`` in ``repository``; return the version written.

    Raises :class:`InvalidArgument` for a missing input file and :class:`FailedPrecondition` when the repository has
    no such model (it needs ``config.pbtxt`` and at least one version holding ``model.py`` to copy).
    """
    source = Path(onnx_file)
    if not source.is_file():
        raise InvalidArgument(f"model file {source} does not exist: pass the path of an .onnx file")
    model_dir = Path(repository) / model
    if not (model_dir / "config.pbtxt").is_file():
        raise FailedPrecondition(
            f"{model_dir} is not a Triton model directory (no config.pbtxt): check --repository and --model"
        )
    existing = versions(model_dir)
    template = next(
        (model_dir / str(v) for v in reversed(existing) if (model_dir / str(v) / "model.py").is_file()), None
    )
    if template is None:
        raise FailedPrecondition(f"no version of {model_dir} has a model.py to copy: restore version 1 from git")
    staging = model_dir / f".staging-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        for name in ADAPTER_FILES:
            if (template / name).is_file():
                shutil.copy2(template / name, staging / name)
        shutil.copyfile(source, staging / MODEL_FILENAME)
        _fsync_tree(staging)
        version = (existing[-1] if existing else 0) + 1
        while True:
            target = model_dir / str(version)
            try:
                # rename() onto an existing non-empty directory fails, so two concurrent pushes cannot collide.
                os.rename(staging, target)
                break
            except OSError:
                if not target.exists():
                    raise
                version += 1
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(model_dir)
    return PushedVersion(model, version, target)


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
