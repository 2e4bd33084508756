#!/usr/bin/env python3
"""Build the bundled demo avatars in assets/avatars/ from public-domain photos with ``avaluma avatar build``'s code.

    .venv/bin/python scripts/build_demo_avatars.py [--out assets/avatars]

- ``astronaut``: NASA's portrait of Eileen Collins (public domain), shipped in scikit-image as
  ``skimage.data.astronaut`` (512x512).
- ``grace-hopper``: the US Navy portrait of Grace Hopper (public domain), shipped in matplotlib's sample data as
  ``grace_hopper.jpg``. matplotlib is not a dependency: its wheel is fetched with ``pip download`` (no install) and the
  one JPEG is read from it. Built at 512x640, the seed's portrait size.

The face landmarks come from the MediaPipe models (fetched on first use, see avaluma.renderer.face_models). The built
files are committed, so users never need scikit-image or matplotlib.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from avaluma.renderer.avatar import Avatar
from avaluma.renderer.builder import build_photo_avatar
from avaluma.renderer.facemesh import FaceMesh
from avaluma.renderer.hvia import load_hvia, save_hvia

ROOT = Path(__file__).resolve().parent.parent
MATPLOTLIB = "matplotlib==3.9.2"


def astronaut(mesh: FaceMesh) -> Avatar:
    from skimage import data  # only needed to rebuild the asset

    return build_photo_avatar(
        np.ascontiguousarray(data.astronaut()[:, :, :3]),
        avatar_id="astronaut",
        name="Astronaut (Eileen Collins)",
        license="Public domain (NASA photograph, distributed with scikit-image as skimage.data.astronaut)",
        size=(512, 512),
        source="skimage.data.astronaut",
        mesh=mesh,
    )


def grace_hopper_jpeg() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", MATPLOTLIB, "-d", tmp]
        subprocess.run(cmd, check=True)
        wheel = next(Path(tmp).glob("matplotlib-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            return zf.read("matplotlib/mpl-data/sample_data/grace_hopper.jpg")


def grace_hopper(mesh: FaceMesh) -> Avatar:
    rgb = np.asarray(Image.open(io.BytesIO(grace_hopper_jpeg())).convert("RGB"))
    return build_photo_avatar(
        rgb,
        avatar_id="grace-hopper",
        name="Grace Hopper",
        license="Public domain (US Navy photograph, distributed with matplotlib as sample_data/grace_hopper.jpg)",
        size=(512, 640),
        source=f"{MATPLOTLIB} sample_data/grace_hopper.jpg",
        mesh=mesh,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "avatars")
    parser.add_argument("--only", choices=["astronaut", "grace-hopper"], default=None)
    args = parser.parse_args(argv)
    mesh = FaceMesh()
    for name, build in (("astronaut", astronaut), ("grace-hopper", grace_hopper)):
        if args.only and args.only != name:
            continue
        avatar = build(mesh)
        path = save_hvia(avatar, args.out / f"{avatar.id}.hvia")
        load_hvia(path)  # never ship a file our own reader rejects
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
