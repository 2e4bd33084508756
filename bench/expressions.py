"""Expressions (issue 17): what they cost per frame, and whether brows and nods land on accents and phrase ends.

    .venv/bin/python bench/expressions.py [--quick] [--seconds 20] [--utterances N] [--clip PATH]

Prints the machine, then:

1. render cost per frame at 512x640 through the real path (``RenderSession`` -> ``Animator`` -> ``Compositor``, the
   ``energy`` lip-sync backend so the model's cost does not hide the difference) with expressions off, on with a
   neutral face (prosody-driven brows, nods, tilts and glances) and on with a happy one (a smile held through the
   speech as well), side by side and interleaved in the same run, on one core (timed in the thread's CPU seconds,
   so other work on a shared box adds less noise), for the photo avatar (grace-hopper)
   and for a video avatar built from a talking-faces clip where the corpus is there, speaking real speech (one LJ
   Speech test speaker, where the human corpus is there; else the benches' speech-like buzz). The prosody analysis is
   counted in the "on" figures, and its cost without pixels is printed after them.
2. event timing on the lip-sync evaluation speech (the human test speakers of ``bench/lipsync_eval.py``: the same
   loader), driven as a session drives it (the trained model's voice activity, 25 fps, 100 ms chunks) but without
   pixels: brow raises vs reference pitch accents, nods vs phrase ends (and vs accents or phrase ends), precision and
   recall within +-150 ms, and the rates per minute; and the share of blinks that start mid-speech (by the model's
   voice activity) with expressions off (the plain timer) and on (blinks wait out words, up to 1 s).

References come from the whole utterance offline. Phrase ends: a pause (silence or a gap between phones) of at least
180 ms after at least 0.3 s of speech, per the corpus's phone timings; a pause can only be known once it has lasted
180 ms, so the reference time is the pause's start + 180 ms (the earliest any causal detector can know). Pitch
accents: f0 over the whole signal every 10 ms (the same YIN estimator, centred windows, median-filtered), peak f0 of
each vowel (the phone timings); a vowel is accented when its peak is >= 2.5 semitones above the utterance's median
f0 and >= 1 semitone above both neighbouring vowels' peaks; the reference time is the f0 peak.
"""

from __future__ import annotations

import os

# One core means one thread everywhere: set before numpy (and its BLAS) is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from signals import speech_like  # noqa: E402

from avaluma.core.media import AudioChunk  # noqa: E402
from avaluma.renderer.avatar import Avatar  # noqa: E402
from avaluma.renderer.engine import RenderedFrame, RenderSession  # noqa: E402
from avaluma.renderer.expression_motion import ExpressionMotion  # noqa: E402
from avaluma.renderer.hvia import load_hvia  # noqa: E402
from avaluma.renderer.idle import IdleMotion  # noqa: E402
from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE, LipSyncBackend  # noqa: E402
from avaluma.renderer.lipsync.energy import EnergyBackend  # noqa: E402
from avaluma.renderer.lipsync.visemes import SIL  # noqa: E402
from avaluma.renderer.prosody import (  # noqa: E402
    PHRASE_MIN_SPEECH_S,
    PHRASE_PAUSE_S,
    ProsodyAnalyzer,
    ProsodyTracker,
    estimate_f0,
)

ROOT = Path(__file__).resolve().parents[1]
FPS, SR = 25, LIPSYNC_SAMPLE_RATE
TOLERANCE_S = 0.15
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
F64 = npt.NDArray[np.float64]


# --- 1. render cost ---------------------------------------------------------------------------------------------


def video_avatar(clip: Path | None, seconds: float) -> Avatar | None:
    """A 512x640 video avatar built from a talking-faces clip, or None where there is none (or the build fails)."""
    if clip is None:
        folder = ROOT.parent / "shared" / "data" / "talking-faces"
        clips = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
        if not clips:
            return None
        clip = clips[0]
    from avaluma.renderer import builder

    started = time.perf_counter()
    try:
        frames, rate = builder.read_video(clip, max_s=seconds)
        avatar = builder.build_video_avatar(frames, rate, avatar_id="bench-video", size=(512, 640))
    except Exception as exc:  # a bench reports and goes on
        print(f"(video avatar from {clip.name} unavailable: {exc})")
        return None
    print(f"video avatar built from {clip.name} ({seconds:g} s) in {time.perf_counter() - started:.1f} s")
    return avatar


#: The cost runs: expressions off (today's frames), on with the neutral face (prosody-driven brows, nods, tilts and
#: glances only) and on with a happy face (a smile warped into every frame as well).
MODES = (("off", False, "neutral"), ("on, neutral", True, "neutral"), ("on, happy", True, "happy"))


def render_run(avatar: Avatar, audio: npt.NDArray[np.float32], *, expressions: bool, emotion: str) -> tuple[int, float]:
    """Frames and seconds for one session speaking ``audio`` (100 ms chunks) then a second of idle frames."""
    backend: LipSyncBackend = EnergyBackend()
    s = RenderSession(avatar, backend, fps=FPS, audio_sample_rate=SR, expressions=expressions, emotion=emotion)
    step = SR // 10
    n = 0
    started = time.thread_time()
    for i in range(0, len(audio), step):
        n += sum(isinstance(o, RenderedFrame) for o in s.push_audio(AudioChunk(audio[i : i + step], SR)))
    n += sum(isinstance(o, RenderedFrame) for o in s.end_segment())
    n += len(s.idle_frames(FPS))
    return n, time.thread_time() - started


def motion_cost(audio: npt.NDArray[np.float32], rounds: int) -> float:
    """Seconds per frame of the pixel-free part: prosody analysis, tracking and the expression motion."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        analyzer, tracker, motion = ProsodyAnalyzer(FPS), ProsodyTracker(FPS), ExpressionMotion(FPS, 0)
        frames = []
        for i in range(0, len(audio), SR // 10):
            frames += analyzer.push(audio[i : i + SR // 10])
        frames += analyzer.flush()
        for f in frames:
            motion.step(tracker.step(f))
        best = min(best, (time.thread_time() - started) / len(frames))
    return best


def cost_speech(seconds: float) -> tuple[npt.NDArray[np.float32], str]:
    """Real speech for the cost runs where the corpus is there (how often brows, nods and tilts are active, and so
    what they cost, depends on the speech's phrasing): one test speaker's utterances with 0.5 s pauses; else the
    benches' speech-like buzz (bursts 3 times a second, which ends a "phrase" nearly every second)."""
    try:
        from avaluma.renderer.lipsync.training import human
    except ImportError:
        human = None  # type: ignore[assignment]
    root = human.corpus_root() if human is not None else None
    if root is not None:
        parts: list[npt.NDArray[np.float32]] = []
        for u in human.utterances(root, split="test"):
            if u.speaker == "lj_LJ" and sum(len(p) for p in parts) < seconds * SR:
                parts += [u.audio(), np.zeros(SR // 2, np.float32)]
        if parts:
            return np.concatenate(parts)[: round(seconds * SR)], "LJ Speech test utterances"
    return speech_like(seconds, seed=3), "speech-like buzz (bench/signals.py)"


def bench_cost(avatars: list[Avatar], seconds: float, rounds: int) -> None:
    audio, what = cost_speech(seconds)
    print(f"\n1. render cost, {seconds:g} s of speech ({what}) + 1 s idle per run, {rounds} interleaved runs each")
    print(f"{'avatar':<28}{'expressions':>13}{'frames/s':>10}{'best ms':>10}{'median ms':>11}{'added ms':>10}")
    for avatar in avatars:
        runs: dict[str, list[float]] = {name: [] for name, _, _ in MODES}
        for _ in range(rounds):
            for name, on, emotion in MODES:
                n, secs = render_run(avatar, audio, expressions=on, emotion=emotion)
                runs[name].append(secs / n)
        label = f"{avatar.id} {avatar.width}x{avatar.height} {avatar.kind}"
        off = min(runs["off"])
        for name, _, _ in MODES:
            best, median = min(runs[name]), statistics.median(runs[name])
            added = f"{(best - off) * 1000:+.2f}" if name != "off" else ""
            print(f"{label:<28}{name:>13}{1 / best:>10.0f}{best * 1000:>10.2f}{median * 1000:>11.2f}{added:>10}")
    print(f"of which prosody + motion (no pixels): {motion_cost(audio, rounds) * 1000:.3f} ms per frame")


# --- 2. event timing --------------------------------------------------------------------------------------------


def phrase_ends(rows: Sequence[tuple[float, float, str]], total_s: float) -> list[float]:
    """Reference phrase ends: pause start + PHRASE_PAUSE_S for every pause >= PHRASE_PAUSE_S after >= 0.3 s of
    speech (a pause: SIL/SPN phones, gaps between phones, and the end of the utterance)."""
    speech = [(s, e) for s, e, ph in rows if ph not in ("SIL", "SPN", "")]
    out: list[float] = []
    spoken = 0.0
    for k, (s, e) in enumerate(speech):
        spoken += e - s
        nxt = speech[k + 1][0] if k + 1 < len(speech) else total_s
        if nxt - e >= PHRASE_PAUSE_S and spoken >= PHRASE_MIN_SPEECH_S:
            out.append(e + PHRASE_PAUSE_S)
            spoken = 0.0
        elif nxt - e >= PHRASE_PAUSE_S:
            spoken = 0.0
    return out


def offline_f0(audio: npt.NDArray[np.float32]) -> tuple[F64, F64]:
    """Times and f0 in semitones re 100 Hz (NaN unvoiced) every 10 ms, centred windows over the whole signal,
    median-filtered over 50 ms (numpy only)."""
    half = 748 // 2
    padded = np.concatenate([np.zeros(half, np.float32), audio, np.zeros(half, np.float32)])
    times = np.arange(0, len(audio) / SR, 0.01)
    st = np.full(len(times), np.nan)
    for k, t in enumerate(times):
        c = round(t * SR) + half
        f0, _ = estimate_f0(padded[c - half : c + half])
        if f0 > 0:
            st[k] = 12.0 * np.log2(f0 / 100.0)
    filled = np.where(np.isnan(st), -999.0, st)
    smooth = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(filled, 2, mode="edge"), 5), axis=1)
    smooth[(smooth < -900) | np.isnan(st)] = np.nan
    return times, smooth


def pitch_accents(audio: npt.NDArray[np.float32], rows: Sequence[tuple[float, float, str]]) -> list[float]:
    times, st = offline_f0(audio)
    if np.isnan(st).all():
        return []
    median = float(np.nanmedian(st))
    peaks: list[tuple[float, float]] = []  # (time, peak st) per vowel
    for s, e, ph in rows:
        if ph not in VOWELS:
            continue
        sel = (times >= s) & (times < e) & ~np.isnan(st)
        if sel.any():
            k = int(np.nanargmax(np.where(sel, st, -np.inf)))
            peaks.append((float(times[k]), float(st[k])))
    out = []
    for k, (t, p) in enumerate(peaks):
        left = peaks[k - 1][1] if k > 0 else -np.inf
        right = peaks[k + 1][1] if k + 1 < len(peaks) else -np.inf
        if p - median >= 2.5 and p - left >= 1.0 and p - right >= 1.0:
            out.append(t)
    return out


def match(found: Sequence[float], truth: Sequence[float]) -> tuple[int, int]:
    """(found events within TOLERANCE_S of some truth, truth events with some found event within TOLERANCE_S)."""
    f, t = np.asarray(found), np.asarray(truth)
    if not len(f) or not len(t):
        return 0, 0
    d = np.abs(f[:, None] - t[None, :]) <= TOLERANCE_S
    return int(d.any(axis=1).sum()), int(d.any(axis=0).sum())


class Session:
    """What a session computes for expressions, without pixels: one speaker's utterances one after the other (the
    speaker statistics carry over, as in a conversation), each followed by a second of idle frames. Blinks run twice,
    steered by the speech (expressions on) and on the plain timer (off), and are counted against the lip-sync
    model's own voice activity."""

    def __init__(self, backend: LipSyncBackend, seed: int) -> None:
        self.stream = backend.open_stream(fps=FPS)
        self.tracker, self.motion = ProsodyTracker(FPS), ExpressionMotion(FPS, seed)
        self.idle = {True: IdleMotion(fps=FPS, seed=seed), False: IdleMotion(fps=FPS, seed=seed)}
        self.blinks = {True: [0, 0], False: [0, 0]}  # [blinks started during speech audio, of them mid-speech]

    def detect(self, audio: npt.NDArray[np.float32]) -> tuple[list[float], list[float]]:
        """Brow-raise and nod start times (s from the utterance's start)."""
        analyzer = ProsodyAnalyzer(FPS)
        voice, feats = [], []
        step = SR // 10
        for i in range(0, len(audio) + step, step):
            mf = self.stream.push(audio[i : i + step]) if i < len(audio) else self.stream.flush()
            voice.append(1.0 - mf.visemes[:, SIL] if mf.visemes is not None else np.full(len(mf), np.nan))
            feats += analyzer.push(audio[i : i + step]) if i < len(audio) else analyzer.flush()
        v = np.concatenate(voice)
        speech = np.nan_to_num(v) > 0.5
        brows: list[float] = []
        nods: list[float] = []
        for i in range(len(v) + FPS):
            if i < len(v):
                vi = float(v[i])
                f = self.motion.step(
                    self.tracker.step(feats[i] if i < len(feats) else None, None if np.isnan(vi) else vi)
                )
            else:
                f = self.motion.step(self.tracker.step(None))
            if f.brow_event:
                brows.append(i / FPS)
            if f.nod_event:
                nods.append(i / FPS)
            for on, idle in self.idle.items():
                before = len(idle.blink_frames)
                if on:
                    idle.step(speaking=i < len(v), blink_ok=f.blink.ok, blink_prefer=f.blink.prefer)
                else:
                    idle.step(speaking=i < len(v))
                if len(idle.blink_frames) > before and i < len(v):
                    self.blinks[on][0] += 1
                    self.blinks[on][1] += bool(speech[max(0, i - 1) : i + 2].all())
        return brows, nods


def coverage(events: Sequence[float], duration: float) -> float:
    """Seconds of ``[0, duration]`` within TOLERANCE_S of an event: what random event times would hit."""
    grid = np.arange(0.0, duration, 0.005)
    if not len(events) or not len(grid):
        return 0.0
    near = (np.abs(grid[:, None] - np.asarray(events)[None, :]) <= TOLERANCE_S).any(axis=1)
    return float(near.sum() * 0.005)


def bench_events(n_utterances: int) -> None:
    from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions
    from avaluma.renderer.lipsync.training import human

    root = human.corpus_root()
    if root is None:
        print("\n2. event timing: skipped (no ../shared/data/human-speech)")
        return
    utts = list(human.utterances(root, split="test"))
    if n_utterances:
        # A few speakers with all their utterances (sessions), spread over the corpus's sources.
        by_speaker: dict[str, list[human.HumanUtterance]] = {}
        for u in utts:
            by_speaker.setdefault(u.speaker, []).append(u)
        speakers = sorted(by_speaker, key=lambda s: (len(by_speaker[s]) > 20, s))
        picked: list[human.HumanUtterance] = []
        for s in speakers:
            if len(picked) >= n_utterances:
                break
            picked += by_speaker[s][: n_utterances - len(picked)]
        utts = picked
    backend = OnnxBackend(OnnxOptions(threads=1))
    totals = dict(brow=0, nod=0, acc=0, pe=0, brow_hit=0, acc_hit=0, nod_hit_pe=0, pe_hit=0, nod_hit_any=0)
    lags: list[float] = []
    cover = dict(acc=0.0, pe=0.0, any=0.0)  # seconds within TOLERANCE_S of a reference event
    seconds = 0.0
    started = time.perf_counter()
    sessions: dict[str, Session] = {}
    for u in utts:
        audio = u.audio()
        rows = read_rows(u.label_path)
        dur = len(audio) / SR
        seconds += dur
        if u.speaker not in sessions:
            sessions[u.speaker] = Session(backend, seed=len(sessions))
        brows, nods = sessions[u.speaker].detect(audio)
        acc, pe = pitch_accents(audio, rows), phrase_ends(rows, dur)
        totals["brow"] += len(brows)
        totals["nod"] += len(nods)
        totals["acc"] += len(acc)
        totals["pe"] += len(pe)
        a, b = match(brows, acc)
        totals["brow_hit"] += a
        totals["acc_hit"] += b
        a, b = match(nods, pe)
        totals["nod_hit_pe"] += a
        totals["pe_hit"] += b
        totals["nod_hit_any"] += match(nods, sorted(acc + pe))[0]
        cover["acc"] += coverage(acc, dur)
        cover["pe"] += coverage(pe, dur)
        cover["any"] += coverage(acc + pe, dur)
        for t in pe:
            near = [n - t for n in nods if abs(n - t) <= TOLERANCE_S]
            if near:
                lags.append(min(near, key=abs))
    minutes = seconds / 60

    def ratio(a: int, b: int) -> str:
        return f"{a / b:.2f}" if b else "-"

    print(
        f"\n2. event timing on {len(utts)} human test utterances ({minutes:.1f} min, {len(sessions)} speakers, "
        f"one session each; {time.perf_counter() - started:.0f} s), matched within +-{TOLERANCE_S * 1000:.0f} ms"
    )
    print(
        f"reference: {totals['acc']} pitch accents ({totals['acc'] / minutes:.1f}/min), "
        f"{totals['pe']} phrase ends ({totals['pe'] / minutes:.1f}/min)"
    )
    print(f"{'motion event':<34}{'count':>7}{'per min':>9}{'precision':>11}{'recall':>8}")
    print(
        f"{'brow raises vs pitch accents':<34}{totals['brow']:>7}{totals['brow'] / minutes:>9.1f}"
        f"{ratio(totals['brow_hit'], totals['brow']):>11}{ratio(totals['acc_hit'], totals['acc']):>8}"
    )
    print(
        f"{'nods vs phrase ends':<34}{totals['nod']:>7}{totals['nod'] / minutes:>9.1f}"
        f"{ratio(totals['nod_hit_pe'], totals['nod']):>11}{ratio(totals['pe_hit'], totals['pe']):>8}"
    )
    print(
        f"{'nods vs accents or phrase ends':<34}{totals['nod']:>7}{totals['nod'] / minutes:>9.1f}"
        f"{ratio(totals['nod_hit_any'], totals['nod']):>11}{'':>8}"
    )
    if lags:
        print(
            f"phrase-end nods: {1000 * statistics.mean(lags):+.0f} ms mean offset from the reference (pause + 180 ms)"
        )
    for on in (False, True):
        total, mid = (sum(x.blinks[on][k] for x in sessions.values()) for k in (0, 1))
        print(
            f"blinks, expressions {'on ' if on else 'off'}: {total} during the utterances, {mid} starting mid-speech "
            f"(the model's voice activity) = {mid / max(total, 1):.0%}"
        )
    print(
        f"(chance precision, events at random times: {cover['acc'] / seconds:.2f} vs accents, "
        f"{cover['pe'] / seconds:.2f} vs phrase ends, {cover['any'] / seconds:.2f} vs either)"
    )


def read_rows(path: Path) -> list[tuple[float, float, str]]:
    rows: list[tuple[float, float, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 3:
            rows.append((float(parts[0]), float(parts[1]), parts[2].strip().upper()))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer runs and utterances (about a minute)")
    parser.add_argument("--seconds", type=float, default=20.0, help="speech per cost run")
    parser.add_argument("--utterances", type=int, default=0, help="human test utterances (0: all; --quick: 30)")
    parser.add_argument("--clip", type=Path, default=None, help="talking-faces clip for the video avatar")
    parser.add_argument("--no-video", action="store_true", help="photo avatar only")
    args = parser.parse_args(argv)
    print(describe(threads=1))
    rounds = 2 if args.quick else 4
    seconds = 6.0 if args.quick else args.seconds
    avatars = [load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")]
    if not args.no_video:
        video = video_avatar(args.clip, 4.0)
        if video is not None:
            avatars.append(video)
    bench_cost(avatars, seconds, rounds)
    bench_events(args.utterances or (30 if args.quick else 0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
