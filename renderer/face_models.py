"""The face models the avatar builder uses, fetched once into a cache directory.

MediaPipe 0.10.21 is the last release whose wheel ships the face detector and face mesh as ``.tflite`` files; the
``mediapipe`` package itself cannot be installed next to livekit (it pins numpy < 2 and protobuf < 5). So on first use
the wheel is downloaded with pip (no install, no dependencies), the two model files are extracted, checked against
pinned sha256 digests and kept under :func:`models_dir`. They run under ``ai-edge-litert``. Nothing third-party is
committed to the repository.

Offline machines: download the wheel elsewhere (``pip download --no-deps mediapipe==0.10.21``) and point
``AVALUMA_MEDIAPIPE_WHEEL`` at it, or copy the two ``.tflite`` files into ``$AVALUMA_MODELS_DIR``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from avaluma.core.errors import FailedPrecondition

MEDIAPIPE_VERSION = "0.10.21"

#: file name -> (path inside the mediapipe wheel, sha256 of the file).
MODEL_FILES: dict[str, tuple[str, str]] = {
    "face_detection_short_range.tflite": (
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "face_landmark.tflite": (
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
}

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def models_dir() -> Path:
    """``$AVALUMA_MODELS_DIR``, else ``$XDG_CACHE_HOME/avaluma/models``, else ``~/.cache/avaluma/models``."""
    configured = os.environ.get("AVALUMA_MODELS_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "avaluma" / "models" / f"mediapipe-{MEDIAPIPE_VERSION}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _have(directory: Path) -> bool:
    return all(
        (directory / name).is_file() and _sha256(directory / name) == digest
        for name, (_, digest) in MODEL_FILES.items()
    )


def _download_wheel(dest: Path, progress: Progress) -> Path:
    # The model files are the same in every platform's wheel: pin one so any host (and any Python) can fetch it.
    progress(f"downloading the MediaPipe {MEDIAPIPE_VERSION} wheel (~36 MB, once) for its face models...")
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
        f"mediapipe=={MEDIAPIPE_VERSION}", "-d", str(dest),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("mediapipe-*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel was saved"]
        raise FailedPrecondition(
            f"could not download mediapipe=={MEDIAPIPE_VERSION} for its face models ({detail[0]}); on a machine "
            f"without PyPI access run `pip download --no-deps mediapipe=={MEDIAPIPE_VERSION}` elsewhere and set "
            "AVALUMA_MEDIAPIPE_WHEEL to the .whl file"
        )
    return wheels[0]


def ensure_face_models(progress: Progress = _stderr) -> Path:
    """Return the directory holding the face models, fetching and verifying them first if needed."""
    directory = models_dir()
    if _have(directory):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="avaluma-mediapipe-") as tmp:
        wheel_env = os.environ.get("AVALUMA_MEDIAPIPE_WHEEL")
        wheel = Path(wheel_env) if wheel_env else _download_wheel(Path(tmp), progress)
        progress(f"extracting face models into {directory}")
        try:
            with zipfile.ZipFile(wheel) as zf:
                for name, (member, digest) in MODEL_FILES.items():
                    data = zf.read(member)
                    if hashlib.sha256(data).hexdigest() != digest:
                        raise FailedPrecondition(
                            f"{wheel}: {member} does not match its pinned sha256; use the official "
                            f"mediapipe=={MEDIAPIPE_VERSION} wheel"
                        )
                    part = directory / f".{name}.partial"
                    part.write_bytes(data)
                    os.replace(part, directory / name)
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise FailedPrecondition(
                f"{wheel}: cannot read the face models from it ({e}); use the official mediapipe=={MEDIAPIPE_VERSION} "
                "wheel"
            ) from None
    return directory


def main() -> int:
    """``python -m avaluma.renderer.face_models``: fetch the models now (set-up scripts call this)."""
    print(ensure_face_models())
    return 0


if __name__ == "__main__":
    sys.exit(main())
