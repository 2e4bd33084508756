#!/usr/bin/env python3
"""Build the bundled demo avatars in assets/avatars/ from public-domain photos.

    .venv/bin/python scripts/build_demo_avatars.py [--out assets/avatars]

``astronaut``: NASA's portrait of Eileen Collins (public domain), shipped in scikit-image as ``skimage.data.astronaut``
(install scikit-image to rebuild; the built .hvia is committed, so users never need it). The mouth rig was measured by
hand on the 512x512 image with a 5 px grid overlay; she smiles with the upper teeth showing, so the inner lip lines are
apart. The avatar issue replaces this script with ``avaluma avatar build`` and detected landmarks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from avaluma.renderer.avatar import Avatar, MouthRig
from avaluma.renderer.hvia import load_hvia, save_hvia

ROOT = Path(__file__).resolve().parent.parent

ASTRONAUT_RIG = MouthRig(
    mouth_center=(223.5, 145.0),
    mouth_left=(203.0, 140.5),
    mouth_right=(244.0, 141.0),
    upper_lip_top=(223.0, 138.5),
    upper_lip_inner=(223.0, 141.5),
    lower_lip_inner=(223.0, 148.0),
    lower_lip_bottom=(223.0, 154.5),
    chin=(222.0, 177.5),
    jaw=(
        (190.0, 152.0),
        (193.0, 162.0),
        (203.0, 171.0),
        (222.0, 177.5),
        (242.0, 171.0),
        (252.0, 161.0),
        (256.0, 152.0),
    ),
)


def astronaut() -> Avatar:
    from skimage import data  # only needed to rebuild the asset

    rgb = np.ascontiguousarray(data.astronaut()[:, :, :3])
    return Avatar(
        id="astronaut",
        name="Astronaut (Eileen Collins)",
        kind="photo",
        width=rgb.shape[1],
        height=rgb.shape[0],
        fps=25,
        format_version=1,
        license="Public domain (NASA photograph, distributed with scikit-image as skimage.data.astronaut)",
        base=rgb,
        rig=ASTRONAUT_RIG,
        metadata={
            "source": "skimage.data.astronaut",
            "rig": "hand-measured",
            "builder": "scripts/build_demo_avatars.py",
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "avatars")
    args = parser.parse_args(argv)
    for build in (astronaut,):
        avatar = build()
        path = save_hvia(avatar, args.out / f"{avatar.id}.hvia")
        load_hvia(path)  # never ship a file our own reader rejects
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
