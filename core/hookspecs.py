"""The plugin contract: every hook Avaluma calls, grouped by lifecycle.

A plugin is a module (or object) with functions marked ``@hookimpl`` and is found through the ``avaluma.plugins``
entry-point group. Registration hooks are synchronous and cheap: they only register *factories*; heavy imports
wait until a factory is called. Example::

    from avaluma.core.plugin_api import hookimpl

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        voice: str = "joe"

    def make_tts(options: Options) -> "livekit.agents.tts.TTS":
        from my_provider import MyTTS          # heavy import only when used
        return MyTTS(voice=options.voice)

    @hookimpl
    def register_tts(register):
        register("my-tts", make_tts, options=Options, description="My TTS")

STT/LLM/TTS/VAD/turn-detector factories return LiveKit Agents' own objects (``stt.STT``, ``llm.LLM``, ``tts.TTS``,
``vad.VAD``, a turn detector); lip-sync backends return Avaluma's interface,
:class:`avaluma.renderer.lipsync.base.LipSyncBackend`. Plugin authors import all of this from one place,
:mod:`avaluma.core.plugin_api`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import click
import pluggy
from pydantic import BaseModel

if TYPE_CHECKING:
    from avaluma.core.config import Config

PROJECT = "avaluma"
ENTRY_POINT_GROUP = "avaluma.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callable handed to every ``register_*`` hook."""

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type[BaseModel] | None = None,
        description: str = "",
    ) -> None:
        """Register ``factory`` under ``name``. ``factory(options_instance)`` builds the provider; ``options`` is a
        pydantic model with ``extra="forbid"`` (omit it when the provider takes no options)."""


# --- Registration: called once when the registry is built ------------------------------------------------------


@hookspec
def register_stt(register: Register) -> None:
    """Register speech-to-text factories returning ``livekit.agents.stt.STT``."""


@hookspec
def register_llm(register: Register) -> None:
    """Register LLM factories returning ``livekit.agents.llm.LLM``."""


@hookspec
def register_tts(register: Register) -> None:
    """Register text-to-speech factories returning ``livekit.agents.tts.TTS``."""


@hookspec
def register_vad(register: Register) -> None:
    """Register voice-activity-detection factories returning ``livekit.agents.vad.VAD``."""


@hookspec
def register_turn_detectors(register: Register) -> None:
    """Register end-of-turn detector factories (LiveKit Agents' turn detector objects)."""


@hookspec
def register_noise_cancellers(register: Register) -> None:
    """Register noise-cancellation factories for the agent's microphone input, returning what LiveKit Agents'
    room input accepts: ``rtc.NoiseCancellationOptions`` or an ``rtc.FrameProcessor[rtc.AudioFrame]``."""


@hookspec
def register_lipsync_backends(register: Register) -> None:
    """Register factories returning :class:`avaluma.renderer.lipsync.base.LipSyncBackend`."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``avaluma`` command line."""


# --- Lifecycle: called by the server ---------------------------------------------------------------------------


@hookspec
def startup(config: Config) -> None:
    """The server is starting with this :class:`avaluma.core.config.Config`; nothing is served yet."""


@hookspec
def shutdown() -> None:
    """The server is stopping; release what ``startup`` acquired. Must return quickly."""


@hookspec
def session_started(session_id: str, avatar_id: str) -> None:
    """A session (LiveKit or Render stream) started."""


@hookspec
def session_ended(session_id: str, reason: str) -> None:
    """A session ended; ``reason`` is a short machine-readable word such as ``stopped`` or ``error``."""
