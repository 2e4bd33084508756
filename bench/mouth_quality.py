#!/usr/bin/env python3
"""Mouth quality of photo and video avatars, before and after issue 14, in one run.

    .venv/bin/python bench/mouth_quality.py [--clips ../shared/data/talking-faces] [--seconds 12] [--baseline REV]
    .venv/bin/python bench/mouth_quality.py --sheets docs/avatars   # before/after contact sheets of the demo avatars

"Before" is the renderer and demo avatars at git revision ``--baseline`` (default: the commit before issue 14's
mouth work), loaded from git into this process; "after" is the working tree. Both render the same lip-sync track:
the trained ONNX model run on the real speech of each clip in ``--clips`` (people talking to the camera, with their
own audio).

Video avatars (built from each clip, by the baseline builder and by the current one):

- open-close rate: cycles per second of the on-screen mouth against the lip-sync track's visible opening
  (``jaw_open`` gated by ``lips_closed``, as a photo avatar's mouth shows it; the raw ``jaw_open``'s rate is printed
  too), both through a Schmitt trigger set on each signal's own range: the rendered signal is the ``jaw_open`` of the
  mouth on screen (the atlas tile's, measured on its source frame at build time; the baseline's two blended tiles'
  weighted mean), and, for reference, the inner lip gap landmarked on the rendered frames; goal within 10 %;
- closures: the share of the track's shut frames (visible opening <= 0.02: p/b/m and pauses) whose mouth on screen is
  shut too (tile jaw <= 0.04);
- mouth sharpness: variance of the Laplacian in the mouth region of rendered speech frames over the same measure on
  the clip's own speech frames; goal >= 0.9;
- the idle loop's seam: the mean pixel step from its last frame to its first, against its ordinary frame-to-frame
  steps (a visible jump is a seam step far above them).

Photo avatars (the demo avatars): the on-screen inner lip gap landmarked on rendered frames against the ``jaw_open`` the
renderer was given (after the session's smoother), Pearson r; goal >= 0.9; beside it r against the visible opening the
renderer is asked for (``jaw_open`` gated by ``lips_closed``: closures shut the lips whatever the jaw). And, for each
clip, a photo avatar built from one of its frames speaking the clip's audio beside the person speaking it: inside the
inner lip contour, the brightest tenth and the mean luma relative to the cheeks and the share of pixels brighter than
the cheeks, per size of opening (what a viewer comparing the two mouths sees: teeth and cavity as bright as a real
speaking mouth's), and the lower teeth down the middle of the opening: how far they show above the lower lip and how
bright they are against the upper teeth (also printed for the demo avatars).

Render cost: frames per second on one core of the session path (smoother, idle life, compositor) at 512x640
(grace-hopper) and for a video avatar, before and after, interleaved so machine load hits both alike.

Not a test: numbers depend on the machine (printed first, load average included); nothing here asserts.
"""

from __future__ import annotations

import os

# One core means one thread everywhere: set before numpy (and its BLAS) is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import inspect  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import soxr  # noqa: E402
from machine import describe  # noqa: E402

from avaluma.renderer import builder  # noqa: E402
from avaluma.renderer import compositor as comp_module  # noqa: E402
from avaluma.renderer.animator import Animator  # noqa: E402
from avaluma.renderer.avatar import Avatar  # noqa: E402
from avaluma.renderer.compositor import Compositor, PhotoMouth, Prepared, measured_teeth, prepared  # noqa: E402
from avaluma.renderer.facemesh import FaceMesh  # noqa: E402
from avaluma.renderer.hvia import load_hvia, load_hvia_bytes  # noqa: E402
from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE  # noqa: E402
from avaluma.renderer.mouth import mouth_shape  # noqa: E402
from avaluma.renderer.rig_builder import (  # noqa: E402
    LOWER_INNER,
    LOWER_LIP_INNER,
    UPPER_INNER,
    UPPER_LIP_INNER,
    lip_gap,
    mouth_measure,
)
from avaluma.renderer.smoothing import MouthSmoother  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FPS = 25
#: The last commit before issue 14 changed the mouth (renderer/mouth.py, atlas.py, builder.py, demo avatars).
BASELINE = "3a5f3df"
OPEN, SHUT = 0.6, 0.3


# --- the baseline, from git ------------------------------------------------------------------------------------


def git_bytes(rev: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, check=True).stdout


def old_module(rev: str, path: str, name: str) -> types.ModuleType:
    """A module of the renderer as it was at ``rev`` (its imports resolve to today's package)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(git_bytes(rev, path).decode(), f"{rev}:{path}", "exec"), module.__dict__)
    return module


def with_old_mouth(avatar: Avatar, old_mouth: types.ModuleType) -> Avatar:
    """Make every Compositor of ``avatar`` render its mouth with the baseline's MouthWarp (given the eyes and the
    measured teeth where the baseline's takes them)."""
    prep = prepared(avatar)
    takes = inspect.signature(old_mouth.MouthWarp).parameters
    extra = {"eyes": avatar.eyes, "teeth": measured_teeth(avatar)}
    warp = old_mouth.MouthWarp(avatar.base, avatar.rig, **{k: v for k, v in extra.items() if k in takes})
    mouth = PhotoMouth(avatar.base, warp)
    comp_module._CACHE[avatar] = Prepared(mouth=mouth, eyes=prep.eyes, head=prep.head)
    return avatar


# --- speech and its lip-sync track ----------------------------------------------------------------------------


def clip_audio(path: Path, seconds: float) -> np.ndarray:
    """The clip's speech, mono float32 at the lip-sync rate."""
    chunks, rate = [], 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        for frame in container.decode(stream):
            chunks.append(frame.to_ndarray().astype(np.float32).mean(axis=0))
    audio = np.concatenate(chunks)[: int(seconds * rate)]
    return np.asarray(soxr.resample(audio, rate, LIPSYNC_SAMPLE_RATE), dtype=np.float32)


def lipsync_track(audio: np.ndarray) -> np.ndarray:
    """Per-frame mouth parameters from the default (trained ONNX) backend, streamed in 100 ms chunks."""
    from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions

    stream = OnnxBackend(OnnxOptions(threads=1)).open_stream(fps=FPS)
    step = LIPSYNC_SAMPLE_RATE // 10
    parts = [stream.push(audio[i : i + step]).params for i in range(0, len(audio), step)]
    parts.append(stream.flush().params)
    return np.concatenate([p for p in parts if len(p)]).astype(np.float32)


def smoothed(track: np.ndarray) -> np.ndarray:
    smoother = MouthSmoother(fps=FPS)
    return np.stack([smoother(p) for p in track])


def cycles_per_s(signal: np.ndarray) -> float:
    """Open-close cycles per second through a Schmitt trigger set on the signal's own range (open above 60 %, shut
    below 30 % of its 10th..90th percentile span), so signals on different scales (the model's jaw_open, a tile's
    measured jaw, a landmarked lip gap) are counted alike."""
    q10, q90 = np.percentile(signal, [10, 90])
    high, low = q10 + OPEN * (q90 - q10), q10 + SHUT * (q90 - q10)
    is_open, cycles = False, 0
    for v in signal:
        if not is_open and v > high:
            is_open, cycles = True, cycles + 1
        elif is_open and v < low:
            is_open = False
    return cycles / (len(signal) / FPS)


# --- measuring rendered frames --------------------------------------------------------------------------------


class Landmarker:
    """Face mesh tracked through a sequence of frames (re-detected when lost)."""

    def __init__(self, mesh: FaceMesh) -> None:
        self.mesh = mesh
        self.previous: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        points, presence = (0.0, 0.0) if self.previous is None else self.mesh.track(rgb, self.previous)
        if self.previous is None or presence < 0.5:
            face = max(self.mesh.detect(rgb), key=lambda f: f.width)
            points, _ = self.mesh.landmarks_from_detection(rgb, face)
        self.previous = np.asarray(points)
        return self.previous


def mouth_sharpness(rgb: np.ndarray, lm: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image in a box around the mouth (1.3 x 0.9 mouth widths)."""
    cx, cy, width, _ = mouth_measure(lm)
    x0, x1 = int(cx - 0.65 * width), int(cx + 0.65 * width)
    y0, y1 = int(cy - 0.45 * width), int(cy + 0.45 * width)
    grey = rgb[max(0, y0) : y1, max(0, x0) : x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(lap.var())


def on_screen_jaw(gaps: np.ndarray) -> np.ndarray:
    """Inner lip gaps (relative to the mouth width) as ``jaw_open`` (the atlas builder's mapping, rest subtracted)."""
    rest = float(np.percentile(gaps, 10))
    return np.asarray(np.clip((gaps - rest) / 0.38, 0.0, 1.0))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


# --- video avatars --------------------------------------------------------------------------------------------


def source_speech_sharpness(frames: list[np.ndarray], rate: float, mesh: FaceMesh, size: tuple[int, int]) -> float:
    """Mouth sharpness of the clip's own frames (framed as the builder frames them) while the mouth is open."""
    picked = [frames[i] for i in builder._resample_indices(len(frames), rate, FPS)]
    face = builder.find_face(mesh, picked[0], "clip")
    box = builder.framing(face, picked[0].shape[1], picked[0].shape[0], size)
    track = Landmarker(mesh)
    values = []
    for f in picked:
        crop = builder._crop(f, box, size)
        lm = track(crop)
        values.append((lip_gap(lm), mouth_sharpness(crop, lm)))
    gaps = np.array([g for g, _ in values])
    opened = gaps > np.percentile(gaps, 10) + 0.05
    return float(np.median(np.array([s for _, s in values])[opened]))


def render_video(
    avatar: Avatar, params: np.ndarray, old_atlas: types.ModuleType | None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of a video avatar speaking ``params`` (already smoothed), and the ``jaw_open`` of the mouth each shows
    (the tile's, as measured on its source frame at build time): today's compositor, or the baseline's atlas (two
    nearest tiles blended) placed on the same loop frames."""
    assert avatar.video is not None
    tiles = avatar.video.atlas.params
    out, shown = [], []
    if old_atlas is None:
        comp = Compositor(avatar)
        for i, p in enumerate(params):
            out.append(comp.render(p, frame=i))
            shown.append(float(tiles[comp._tile, 0]))
        return out, np.array(shown)
    atlas = old_atlas.AtlasMouth(avatar.video)
    one_tile = "previous" in inspect.signature(atlas.select).parameters  # a baseline from issue 14 on
    previous: int | None = None
    for i, p in enumerate(params):
        index = i % len(avatar.video.frames)
        frame = avatar.video.frames[index].copy()
        if one_tile:  # one real tile per frame, held while it matches
            previous = int(atlas.select(p, previous))
            atlas.paste(frame, index, previous)
            shown.append(float(tiles[previous, 0]))
        else:  # before issue 14: the two nearest tiles blended
            atlas.paste(frame, index, p)
            ids, weights = atlas.select(p)
            shown.append(float(sum(w * tiles[j, 0] for j, w in zip(ids, weights, strict=True))))
        out.append(frame)
    return out, np.array(shown)


def measure_video(frames: list[np.ndarray], mesh: FaceMesh) -> tuple[np.ndarray, np.ndarray]:
    track = Landmarker(mesh)
    gaps, sharp = [], []
    for f in frames:
        lm = track(f)
        gaps.append(lip_gap(lm))
        sharp.append(mouth_sharpness(f, lm))
    return np.array(gaps), np.array(sharp)


def bench_video(clip: Path, seconds: float, rev: str, mesh: FaceMesh) -> None:
    print(f"\nvideo avatar from {clip.name} ({seconds:g} s of its speech)")
    frames, rate = builder.read_video(clip, max_s=seconds)
    track = smoothed(lipsync_track(clip_audio(clip, seconds)))
    n = min(len(track), int(len(frames) / rate * FPS))
    track = track[:n]
    source = source_speech_sharpness(frames, rate, mesh, (512, 512))
    opening = np.array([mouth_shape(p).opening for p in track])
    target = cycles_per_s(opening)
    shut = opening <= 0.02
    print(
        f"  lip-sync track: {target:.2f} open-close cycles/s of the visible opening ({cycles_per_s(track[:, 0]):.2f} "
        f"of jaw_open alone), shut in {shut.mean():.0%} of its frames; source mouth sharpness {source:.0f} "
        "(Laplacian var)"
    )
    old_builder = old_module(rev, "renderer/builder.py", "old_builder")
    old_atlas = old_module(rev, "renderer/atlas.py", "old_atlas")
    for label, build, atlas_module in (
        ("before", old_builder.build_video_avatar, old_atlas),
        ("after", builder.build_video_avatar, None),
    ):
        started = time.perf_counter()
        avatar = build(frames, rate, avatar_id="bench", source=clip.name, mesh=mesh)
        built = time.perf_counter() - started
        rendered, shown = render_video(avatar, track, atlas_module)
        gaps, sharp = measure_video(rendered, mesh)
        rate_r = cycles_per_s(shown)
        rate_l = cycles_per_s(on_screen_jaw(gaps))
        speaking = track[:, 0] > 0.2
        ratio = float(np.median(sharp[speaking])) / source if speaking.any() else float("nan")
        report = builder.build_report(avatar)
        loop = avatar.video.frames.astype(np.float32)  # type: ignore[union-attr]
        steps = np.abs(np.diff(loop, axis=0)).mean(axis=(1, 2, 3))
        seam = float(np.abs(loop[0] - loop[-1]).mean())
        print(
            f"  {label:>6}: idle loop {len(loop)} frames, seam step {seam:.2f} grey levels against a median "
            f"frame-to-frame step of {float(np.median(steps)):.2f} (largest {float(steps.max()):.2f})"
        )
        print(
            f"  {label:>6}: open-close {rate_r:.2f} cycles/s ({100 * (rate_r / target - 1):+.0f} % vs track; "
            f"landmarked on screen {rate_l:.2f}), closures shown shut {(shown[shut] <= 0.04).mean():.0%}, "
            f"mouth sharpness {ratio:.2f} of the source, {len(avatar.video.atlas.params)} atlas tiles, "  # type: ignore[union-attr]
            f"built in {built:.0f} s" + (f"; {report[0]}" if report else "")
        )


# --- photo avatars --------------------------------------------------------------------------------------------


def bench_photo(name: str, track: np.ndarray, rev: str, mesh: FaceMesh) -> None:
    old_mouth = old_module(rev, "renderer/mouth.py", "old_mouth")
    path = f"assets/avatars/{name}.hvia"
    for label, avatar in (
        ("before", with_old_mouth(load_hvia_bytes(git_bytes(rev, path), source=f"{rev}:{path}"), old_mouth)),
        ("after", load_hvia(ROOT / path)),
    ):
        comp = Compositor(avatar)
        landmarks = Landmarker(mesh)
        gaps, teeth = [], []
        for p in track:
            frame = comp.render(p, press=1.0)
            lm = landmarks(frame)
            gaps.append(float(np.linalg.norm(lm[LOWER_LIP_INNER, :2] - lm[UPPER_LIP_INNER, :2])))
            teeth.append((lip_gap(lm), *lower_teeth(frame, lm)))
        g = np.array(gaps)
        mw = avatar.rig.mouth_width
        jaw = track[:, 0]
        closed = track[:, 1]
        coef = np.linalg.lstsq(np.c_[jaw, closed, np.ones_like(jaw)], g / mw, rcond=None)[0]
        # What the renderer is asked to show: jaw_open gated by lips_closed (a "p" shuts the lips whatever the jaw).
        visible = np.array([mouth_shape(p, press=1.0).opening for p in track])
        print(
            f"  {label:>6} {name}: gap vs jaw_open r = {pearson(g, jaw):.3f} (vs the visible opening "
            f"{pearson(g, visible):.3f}); gap at jaw_open > 0.6: "
            f"{np.mean(g[jaw > 0.6]) / mw if (jaw > 0.6).any() else float('nan'):.2f} of the mouth width; "
            f"regression gap/width = {coef[0]:+.3f} jaw_open {coef[1]:+.3f} lips_closed"
        )
        cells = []
        for (lo, hi), rows in zip(GAP_BINS[1:], by_gap(np.array(teeth), GAP_BINS[1:]), strict=True):
            height, light = (per_bin(np.nanmedian, rows, k) for k in (1, 2))
            cells.append(f"gap {lo:.2f}-{hi:.2f} {height:.3f} {light:.2f} ({len(rows)})")
        print(f"{'':10}lower teeth (height / mouth width, brightest / the upper teeth's): {';  '.join(cells)}")


#: Face-mesh points in the middle of each cheek: the skin the inside of the mouth is compared with.
CHEEKS = (50, 280)
#: Inner lip gap bins (relative to the mouth width) in which real and rendered mouths are compared.
GAP_BINS = ((0.05, 0.12), (0.12, 0.25), (0.25, 1.0))


def interior(rgb: np.ndarray, lm: np.ndarray) -> tuple[float, float, float]:
    """Inside the inner lip contour: the brightest tenth and the mean luma relative to the cheeks', and the share of
    its pixels brighter than the cheeks (NaN when the contour holds fewer than 20 pixels)."""
    from PIL import Image, ImageDraw

    polygon = [(float(lm[i, 0]), float(lm[i, 1])) for i in (*UPPER_INNER, *reversed(LOWER_INNER[1:-1]))]
    mask_img = Image.new("L", (rgb.shape[1], rgb.shape[0]))
    ImageDraw.Draw(mask_img).polygon(polygon, fill=1)
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    inside = luma[np.asarray(mask_img, bool)]
    r = max(2, int(0.08 * mouth_measure(lm)[2]))
    cheeks = [float(np.median(luma[int(y) - r : int(y) + r, int(x) - r : int(x) + r])) for x, y in lm[CHEEKS, :2]]
    skin = max(float(np.mean(cheeks)), 1.0)
    if inside.size < 20:
        return float("nan"), float("nan"), float("nan")
    return float(np.percentile(inside, 90)) / skin, float(inside.mean()) / skin, float((inside > skin).mean())


def by_gap(rows: np.ndarray, bins: tuple[tuple[float, float], ...]) -> list[np.ndarray]:
    """The rows (inner lip gap in the first column) in each gap bin."""
    return [rows[(rows[:, 0] >= lo) & (rows[:, 0] < hi)] for lo, hi in bins]


def per_bin(stat: Callable[[np.ndarray], float], rows: np.ndarray, column: int) -> float:
    """``stat`` of one column of a bin's rows; NaN for an empty bin."""
    return float(stat(rows[:, column])) if len(rows) else float("nan")


def lower_teeth(rgb: np.ndarray, lm: np.ndarray) -> tuple[float, float]:
    """Down the middle of an open mouth, from the upper inner lip to just below the lower: how far the bright band
    above the lower lip (the lower teeth: rows more than 60 % of the way from the gap's darkest row to the brightest
    row below it) reaches, / the mouth width, and that brightest row over the upper teeth's brightest."""
    _, _, width, _ = mouth_measure(lm)
    x = int(np.rint((lm[UPPER_LIP_INNER, 0] + lm[LOWER_LIP_INNER, 0]) / 2))
    top, bottom = int(lm[UPPER_LIP_INNER, 1]), int(lm[LOWER_LIP_INNER, 1] + 0.03 * width)
    luma = rgb[:, max(0, x - 1) : x + 2].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    column = luma.mean(axis=1)
    gap = column[top:bottom]
    if gap.size < 4:
        return float("nan"), float("nan")
    k = int(np.argmin(gap))
    below = gap[k:]
    line = gap[k] + 0.6 * (float(below.max()) - gap[k])
    upper = float(column[max(0, top - int(0.05 * width)) : top + k // 2 + 1].max())
    return float((below > line).sum()) / width, float(below.max()) / max(upper, 1.0)


def interior_table(frames: list[np.ndarray], mesh: FaceMesh) -> list[tuple[int, float, float, float, float, float]]:
    """Per gap bin: frames in it, the mean of :func:`interior`'s three figures and the median of
    :func:`lower_teeth`'s two."""
    track = Landmarker(mesh)
    rows = []
    for f in frames:
        lm = track(f)
        rows.append((lip_gap(lm), *interior(f, lm), *lower_teeth(f, lm)))
    out = []
    for binned in by_gap(np.array(rows), GAP_BINS):
        p90, mean, bright = (per_bin(np.nanmean, binned, k) for k in (1, 2, 3))
        height, light = (per_bin(np.nanmedian, binned, k) for k in (4, 5))
        out.append((len(binned), p90, mean, bright, height, light))
    return out


def bench_photo_vs_person(clip: Path, seconds: float, rev: str, mesh: FaceMesh) -> None:
    """A photo avatar built from one frame of ``clip`` (its most closed mouth in the first 3 s) speaks the clip's
    audio; inside its lips it should look like the person's own mouth speaking the same words."""
    from lipsync_eval import own_avatar  # the real-face measure's choice of frame, so both benches build the same

    frames, rate = builder.read_video(clip, max_s=seconds)
    frames = [frames[i] for i in builder._resample_indices(len(frames), rate, FPS)]
    track = Landmarker(mesh)
    gaps = np.array([lip_gap(track(f)) for f in frames[: 3 * FPS]])
    old_mouth = old_module(rev, "renderer/mouth.py", "old_mouth")
    params = lipsync_track(clip_audio(clip, seconds))
    tables = {"person": interior_table(frames, mesh)}
    for label in ("before", "after"):
        # Two avatars from the same frame: the baseline's mouth is attached to one of them.
        avatar = own_avatar(mesh, frames, gaps, FPS)
        if label == "before":
            with_old_mouth(avatar, old_mouth)
        animator = Animator(avatar, fps=FPS)
        tables[label] = interior_table([animator.next_frame(p, speaking=True) for p in params], mesh)
    print(
        f"\nphoto avatar from a frame of {clip.name}, speaking its audio, beside the person: inside the inner lips, "
        "p90 and mean luma / the cheeks', share brighter than the cheeks, per inner lip gap (/ mouth width); "
        "then the lower teeth: height / mouth width, brightest / the upper teeth's"
    )
    for k, (lo, hi) in enumerate(GAP_BINS):
        cells = []
        for label, table in tables.items():
            n, p90, mean, bright, height, light = table[k]
            cells.append(f"{label} {p90:4.2f} / {mean:4.2f} / {bright:4.2f} | {height:5.3f} {light:4.2f} ({n:3d})")
        print(f"  gap {lo:.2f}-{hi:.2f}: " + ";  ".join(cells))


# --- render cost ----------------------------------------------------------------------------------------------


def frames_per_s(avatar: Avatar, params: np.ndarray) -> Callable[[], float]:
    animator = Animator(avatar, fps=FPS)

    def run() -> float:
        started = time.perf_counter()
        for p in params:
            animator.next_frame(p, speaking=True)
        return len(params) / (time.perf_counter() - started)

    run()  # warm-up
    return run


def bench_cost(track: np.ndarray, rev: str, video: Avatar | None) -> None:
    old_mouth = old_module(rev, "renderer/mouth.py", "old_mouth")
    path = "assets/avatars/grace-hopper.hvia"
    runs = {
        "photo 512x640 before": frames_per_s(
            with_old_mouth(load_hvia_bytes(git_bytes(rev, path), source=path), old_mouth), track
        ),
        "photo 512x640 after": frames_per_s(load_hvia(ROOT / path), track),
    }
    if video is not None:
        runs["video 512x512 after"] = frames_per_s(video, track)
    results: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(3):
        for key, run in runs.items():
            results[key].append(run())
    print("\nrender cost on one core (session path: smoother, idle life, compositor; best of 3 interleaved runs)")
    for key, values in results.items():
        best = max(values)
        print(f"  {key:>22}: {best:6.0f} frames/s ({1000 / best:.2f} ms/frame)")


def write_sheets(directory: Path, rev: str) -> None:
    """``<id>-before.jpg`` (baseline code and avatar) and ``<id>-after.jpg`` contact sheets of the demo avatars."""
    from PIL import Image

    from avaluma.renderer.preview import contact_sheet

    old_mouth = old_module(rev, "renderer/mouth.py", "old_mouth")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "grace-hopper"):
        path = f"assets/avatars/{name}.hvia"
        before = with_old_mouth(load_hvia_bytes(git_bytes(rev, path), source=f"{rev}:{path}"), old_mouth)
        for label, avatar in (("before", before), ("after", load_hvia(ROOT / path))):
            sheet = contact_sheet(avatar)
            sheet = sheet.resize((sheet.width * 4 // 5, sheet.height * 4 // 5), Image.Resampling.LANCZOS)
            out = directory / f"{name}-{label}.jpg"
            sheet.save(out, quality=78, optimize=True)
            print(f"wrote {out} ({out.stat().st_size // 1024} kB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "talking-faces")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the 'before' code and avatars")
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--sheets", type=Path, default=None, help="write before/after contact sheets here and stop")
    args = parser.parse_args(argv)
    if args.sheets is not None:
        write_sheets(args.sheets, args.baseline)
        return 0
    print(describe(baseline=args.baseline))
    mesh = FaceMesh(progress=lambda message: None)
    clips = sorted(args.clips.glob("*.mp4")) if args.clips.is_dir() else []
    if not clips:
        print(f"(no clips in {args.clips}: the video part and real speech need them)")
        return 1
    track = smoothed(lipsync_track(clip_audio(clips[0], args.seconds)))
    rate = cycles_per_s(track[:, 0])
    print(f"\nphoto avatars speaking {clips[0].name}'s audio ({len(track)} frames, track {rate:.2f} cycles/s)")
    for name in ("grace-hopper", "astronaut"):
        bench_photo(name, track, args.baseline, mesh)
    for clip in clips:
        bench_photo_vs_person(clip, args.seconds, args.baseline, mesh)
    video = None
    if not args.skip_video:
        for clip in clips:
            bench_video(clip, args.seconds, args.baseline, mesh)
        frames, rate = builder.read_video(clips[0], max_s=args.seconds)
        video = builder.build_video_avatar(frames, rate, avatar_id="cost", mesh=mesh)
    bench_cost(track, args.baseline, video)
    return 0


if __name__ == "__main__":
    sys.exit(main())
