"""Text to speech for the embedded render path: build the configured TTS provider and collect its audio.

The TTS is whatever a plugin registered under the ``tts`` kind (a LiveKit Agents ``tts.TTS``); the default is
``piper`` from ``plugins/piper``, which works offline. LiveKit is not imported here: the provider object is used
through the small part of its interface this module needs (``synthesize``, ``aclose``, ``sample_rate``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError, InvalidArgument
from avaluma.core.media import AudioChunk, FloatAudio, decode_pcm16
from avaluma.core.plugins import ProviderRegistry, load_registry

logger = logging.getLogger(__name__)

DEFAULT_TTS = ProviderRef(name="piper")
#: Longest text accepted in one call; longer scripts should be rendered in parts.
MAX_TEXT_CHARS = 10_000

NO_TTS_HINT = (
    "no TTS provider is installed: install the offline one with `pip install -e plugins/piper` "
    "(from the avaluma checkout) or another avaluma TTS plugin, or pass --audio with a WAV file instead"
)


async def synthesize_text(
    text: str, *, tts_ref: ProviderRef | None = None, registry: ProviderRegistry | None = None
) -> AudioChunk:
    """Speak ``text`` with the TTS named by ``tts_ref`` (default ``piper``) and return mono float32 audio.

    ``registry`` defaults to every installed plugin (honouring ``AVALUMA_PLUGINS``). Raises
    :class:`InvalidArgument` for empty or overlong text and :class:`ConfigError` when no TTS is installed or the
    name/options are wrong.
    """
    if not text.strip():
        raise InvalidArgument("text is empty: give at least one word to speak")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument(f"text has {len(text)} characters, more than {MAX_TEXT_CHARS}: split it into parts")
    ref = DEFAULT_TTS if tts_ref is None else tts_ref
    registry = load_registry() if registry is None else registry
    if not registry.names("tts"):
        raise ConfigError(NO_TTS_HINT)
    tts: Any = registry.create("tts", ref)
    try:
        sample_rate = int(tts.sample_rate)
        stream = tts.synthesize(text)
        parts: list[FloatAudio] = []
        try:
            async for event in stream:
                parts.append(decode_pcm16(bytes(event.frame.data), int(event.frame.num_channels)))
        finally:
            await stream.aclose()
    finally:
        await tts.aclose()
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    logger.info(
        "synthesized speech",
        extra={"tts": ref.name, "duration_s": round(len(samples) / sample_rate, 3), "chars": len(text)},
    )
    return AudioChunk(samples=samples, sample_rate=sample_rate)


def synthesize_text_sync(
    text: str, *, tts_ref: ProviderRef | None = None, registry: ProviderRegistry | None = None
) -> AudioChunk:
    """:func:`synthesize_text` for synchronous callers (the CLI); must not be called from a running event loop."""
    return asyncio.run(synthesize_text(text, tts_ref=tts_ref, registry=registry))
