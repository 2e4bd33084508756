"""The in-process, AvatarRunner-style path: a :class:`Playout` driven by LiveKit Agents' ``AudioReceiver`` interface
(``QueueAudioOutput``, ``DataStreamAudioReceiver``). No room; used by the offline end-to-end tests, not by the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from avaluma.core.live.playout import Playout
from avaluma.core.media import AudioChunk, decode_pcm16
from avaluma.core.tasks import cancel_and_wait
from avaluma.renderer.engine import PlaybackEvent


class AgentAudioBridge:
    """Plays a LiveKit Agents ``AudioReceiver`` (``QueueAudioOutput``, ``DataStreamAudioReceiver``) with a
    :class:`Playout`, answering it the way an avatar worker does: ``notify_playback_started`` on the first published
    frame of a segment, ``notify_playback_finished`` after its last one or on ``clear_buffer``.

    Create it, hand :meth:`on_playback` the playback events of the playout's event stream (whoever reads it), then
    :meth:`start`. A clear is answered here, from what :meth:`Playout.clear` returns.
    """

    def __init__(self, receiver: Any) -> None:
        self._receiver = receiver
        self._playout: Playout | None = None
        self._task: asyncio.Task[None] | None = None
        #: Playback notifications still being sent: owned here, cancelled and awaited in :meth:`aclose`.
        self._notifications: set[asyncio.Future[Any]] = set()

    def on_playback(self, event: PlaybackEvent) -> None:
        if event.kind == "started":
            self._notify(self._receiver.notify_playback_started())
        else:
            self._notify(
                self._receiver.notify_playback_finished(
                    playback_position=event.position_s, interrupted=event.interrupted
                )
            )

    def _notify(self, result: Any) -> None:
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            self._notifications.add(task)
            task.add_done_callback(self._notifications.discard)
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def start(self, playout: Playout) -> None:
        from livekit.agents.voice.avatar import AudioSegmentEnd

        self._playout = playout
        self._receiver.on("clear_buffer", self._on_clear_buffer)

        async def read() -> None:
            async for item in self._receiver:
                if isinstance(item, AudioSegmentEnd):
                    playout.end_segment()
                    continue
                playout.push_audio(AudioChunk(decode_pcm16(bytes(item.data), item.num_channels), item.sample_rate))

        self._task = asyncio.create_task(read(), name="avaluma-agent-audio-bridge")

    def _on_clear_buffer(self) -> None:
        if self._playout is not None:
            for event in self._playout.clear():
                self.on_playback(event)

    async def aclose(self) -> None:
        self._receiver.off("clear_buffer", self._on_clear_buffer)
        await cancel_and_wait(*self._notifications)
        await cancel_and_wait(self._task, keep_errors=True)
