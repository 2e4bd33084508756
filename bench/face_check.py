#!/usr/bin/env python3
"""Does the builder tell a real, uncovered human face from everything else? Accept/refuse per input, with the scores.

    .venv/bin/python bench/face_check.py [--portraits ../shared/data/portraits] [--clips ../shared/data/talking-faces]
                                         [--frames 6]

Inputs:

- humans: every portrait in ``--portraits`` (its hard cases too: a profile, a group, a cat) and ``--frames`` frames
  spread over each clip in ``--clips``, plus the bundled demo avatars' photos; each should build (or be refused for
  the reason its README gives);
- the same people's photos blurred, at a quarter of their size, at JPEG quality 10, darkened, and under a cool
  (red x0.7, blue x1.4) and a tungsten (blue x0.55) white-balance cast;
- generated non-humans (tests/face_samples.py): drawn faces in flat colour, softened, JPEG-compressed, airbrushed,
  with grain; real faces painted (hue turned, saturation x2.5) out of the human skin range; crops of the cat's face
  where the face detector fires; stand-ins for a primate's face (people's photos with eyes without whites, lips
  without a red border, furred skin), and with ``--non-human DIR`` any real pictures of non-humans you have: the
  mandrill and Blender's Suzanne from the OpenCV source distribution's ``samples/data``, and the chimpanzee, gorilla
  and emperor tamarin of Debian's ``tuxpaint-stamps-default`` (``stamps/animals/mammals/apes``, small cut-outs:
  flatten them on grey and upscale them 4x, or the builder refuses them as too small before any face check);
- generated occlusions: a skin-coloured thing with the face's own cheek colour and grain held over the mouth of every
  human picture above, plain and with the dark gaps of four fingers across it; a dark grey microphone.

Each row: the builder's answer (``build_photo_avatar`` at 512x640) and the checks' scores on the framed picture (flat:
drawn flat colour, outline: inked jaw line, texture: skin detail in grey levels, skin: fraction of skin-coloured
pixels, ``-`` for black and white, relief: the lips' brightness relief, lips: the lips' chroma distance from the skin
around them and their saturation over the skin's). The limits are printed first. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np
from machine import describe
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import face_samples  # noqa: E402

from avaluma.core.errors import InvalidArgument  # noqa: E402
from avaluma.renderer import builder, face_check  # noqa: E402
from avaluma.renderer.facemesh import FaceMesh  # noqa: E402
from avaluma.renderer.hvia import load_hvia  # noqa: E402

SIZE = (512, 640)


def clip_frames(path: Path, count: int) -> dict[str, np.ndarray]:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return {f"{path.stem} frame {i}": frames[i] for i in picks}


def framed(mesh: FaceMesh, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The picture framed and fitted as the builder does, or None when it finds no single face."""
    try:
        face = builder.find_face(mesh, image, "x")
        rgb = builder._crop(image, builder.framing(face, image.shape[1], image.shape[0], SIZE), SIZE)
        return rgb, builder._fit(mesh, rgb, "x")
    except InvalidArgument:
        return None


def row(mesh: FaceMesh, name: str, image: np.ndarray) -> tuple[bool, str]:
    t0 = time.perf_counter()
    try:
        builder.build_photo_avatar(image, avatar_id="bench", source=name, size=SIZE, mesh=mesh)
        verdict, accepted = "accept", True
    except InvalidArgument as e:
        verdict, accepted = "REFUSE: " + e.message[len(name) + 2 :][:90], False
    ms = 1000 * (time.perf_counter() - t0)
    fit = framed(mesh, image)
    if fit is None:
        scores = "(no single face to score)"
    else:
        a = face_check.appearance(*fit)
        skin = "-" if a.skin is None else f"{a.skin:.2f}"
        lips = "-" if a.lip_colour is None else f"{a.lip_colour:4.1f}"
        lip_sat = "-" if a.lip_saturation is None else f"{a.lip_saturation:.2f}"
        scores = (
            f"flat {a.flat:.3f} outline {a.outline:.2f} texture {a.texture:5.2f} skin {skin:>4} "
            f"relief {a.mouth_relief:.2f} lips {lips:>4} {lip_sat:>4}"
        )
    print(f"  {name[:34]:34s} {scores:84s} {ms:5.0f} ms  {verdict}", flush=True)
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portraits", type=Path, default=ROOT.parent / "shared" / "data" / "portraits")
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "talking-faces")
    parser.add_argument("--frames", type=int, default=6, help="frames sampled per clip")
    parser.add_argument(
        "--non-human",
        type=Path,
        default=None,
        help="a folder of real pictures that must be refused (animals, statues, masks), e.g. the mandrill "
        "(baboon.jpg) and Blender's Suzanne from OpenCV's samples/data",
    )
    args = parser.parse_args()
    print(describe())
    fc = face_check
    print(
        f"limits: flat <= {fc.MAX_FLAT} (where texture < {fc.FLAT_TEXTURE}), outline <= {fc.MAX_OUTLINE}, texture >= "
        f"{fc.MIN_TEXTURE}, skin >= {fc.MIN_SKIN} (colour pictures), relief >= {fc.MIN_MOUTH_RELIEF} (under "
        f"{fc.WEAK_MOUTH_RELIEF}: lips >= {fc.MIN_LIP_COLOUR}), lips' saturation >= {fc.MIN_LIP_SATURATION}"
    )
    mesh = FaceMesh(progress=lambda message: None)

    humans: dict[str, np.ndarray] = {}
    for name in ("grace-hopper", "astronaut"):
        humans[f"demo {name}"] = np.array(load_hvia(ROOT / "assets" / "avatars" / f"{name}.hvia").base)
    if args.portraits.is_dir():
        for path in sorted(args.portraits.glob("*.[jp][pn]g")):
            humans[path.stem] = np.asarray(Image.open(path).convert("RGB"))
    else:
        print(f"(no portraits at {args.portraits})")
    if args.clips.is_dir():
        for path in sorted(args.clips.glob("*.mp4")):
            humans.update(clip_frames(path, args.frames))
    else:
        print(f"(no clips at {args.clips})")

    print("\nreal people (the hard cases 12-14 are refused for their own reasons):")
    accepted = {name: row(mesh, name, image) for name, image in humans.items()}
    people = [n for n in humans if not n.startswith(("12_", "13_", "14_"))]
    print(f"  -> {sum(accepted[n] for n in people)} of {len(people)} pictures of people accepted")

    print("\nphotos of people, degraded (a refusal must say why):")
    for name in (n for n in humans if n.startswith(("01_", "02_", "06_", "08_"))):
        picture = Image.fromarray(humans[name])
        degraded = {
            "blurred": np.asarray(picture.filter(ImageFilter.GaussianBlur(3))),
            "quarter size": np.asarray(picture.resize((picture.width // 4, picture.height // 4))),
            "JPEG q10": face_samples.jpeg(humans[name], 10),
            "dark": (255 * (humans[name] / 255.0) ** 2.2 * 0.6).astype(np.uint8),
            "cool cast": np.clip(humans[name] * np.array([0.7, 0.95, 1.4]), 0, 255).astype(np.uint8),
            "tungsten cast": np.clip(humans[name] * np.array([1.25, 1.0, 0.55]), 0, 255).astype(np.uint8),
        }
        for how, image in degraded.items():
            row(mesh, f"{name[:20]} {how}", image)

    print("\nnot human faces:")
    others: dict[str, np.ndarray] = dict(face_samples.drawn_faces())
    for name in ["demo grace-hopper", "demo astronaut", *(n for n in humans if n.startswith(("01_", "08_")))]:
        for turn in (0.5, 0.75):  # cyan-green, blue-violet
            others[f"{name[:18]} painted {turn}"] = face_samples.recoloured(humans[name], turn)
    cat = args.portraits / "14_hard_cat_chelsea.png"
    if cat.exists():
        picture = Image.open(cat).convert("RGB")
        for cx, cy, side in ((100, 190, 180), (160, 160, 220), (190, 160, 150)):  # where the detector sees a face
            box = (cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2)
            others[f"cat, face crop {side} px"] = np.asarray(picture.crop(box).resize((320, 320)))
    refused = [not row(mesh, name, image) for name, image in others.items()]
    print(f"  -> {sum(refused)} of {len(refused)} refused")

    print(
        "\nstand-ins for a monkey's or an ape's face (generated from people: no real primate photo is available here):"
    )
    primates = []
    for name in ["demo grace-hopper", "demo astronaut", *(n for n in humans if n.startswith(("01_", "02_", "08_")))]:
        fit = framed(mesh, humans[name])
        if fit is not None:
            for how, image in (
                ("no eye whites", face_samples.dark_sclera(*fit)),
                ("no whites, bare lips", face_samples.primate_like(*fit, fur=False)),
                ("no whites, bare lips, fur", face_samples.primate_like(*fit)),
            ):
                primates.append(not row(mesh, f"{name[:14]} {how}", image))
    print(f"  -> {sum(primates)} of {len(primates)} refused")

    if args.non_human is not None:
        print(f"\nreal pictures that are not of a person ({args.non_human}):")
        pictures = sorted(args.non_human.glob("*.[jp][pn]g"))
        refused = [not row(mesh, p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in pictures]
        print(f"  -> {sum(refused)} of {len(refused)} refused")

    print("\nsomething held over the mouth:")
    covered = []
    for name in people:
        fit = framed(mesh, humans[name])
        if fit is not None:
            covered.append(not row(mesh, f"{name[:24]} covered", face_samples.occluded(*fit)))
            covered.append(not row(mesh, f"{name[:20]} 4 fingers", face_samples.occluded(*fit, fingers=4)))
            covered.append(not row(mesh, f"{name[:19]} microphone", face_samples.microphone(*fit)))
    print(f"  -> {sum(covered)} of {len(covered)} refused")


if __name__ == "__main__":
    main()
