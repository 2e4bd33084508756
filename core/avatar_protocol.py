"""Names of LiveKit's stock avatar protocol (``livekit.agents.voice.avatar``), shared by the server and agent-2.

Kept in a module of their own, with no heavy imports, so a sender can use them without loading the server's playout and
renderer. Values are LiveKit's: changing one breaks interoperability with stock agents.
"""

from __future__ import annotations

from typing import Final

#: Topic of the byte streams carrying audio segments (one stream per segment; closing it ends the segment).
AUDIO_STREAM_TOPIC: Final = "lk.audio_stream"
#: RPC from the sender to the avatar: drop queued audio and stop speaking.
RPC_CLEAR_BUFFER: Final = "lk.clear_buffer"
#: RPCs from the avatar back to the sender of a segment.
RPC_PLAYBACK_STARTED: Final = "lk.playback_started"
RPC_PLAYBACK_FINISHED: Final = "lk.playback_finished"
#: RPC of the hosted avatar API from the agent: show an agent state (payload ``{"state": "listening"}``).
RPC_AGENT_STATE_CHANGED: Final = "agent_state_changed"
#: RPC from the agent (Avaluma's, not LiveKit's): show an emotion from this point of the audio on (payload
#: ``{"emotion": "happy"}``); ``agent_state_changed`` may carry the same ``emotion`` key next to its ``state``.
RPC_SET_EMOTION: Final = "set_emotion"
#: Attribute of the avatar's token naming the agent it publishes on behalf of (``livekit.agents.types``).
PUBLISH_ON_BEHALF_ATTRIBUTE: Final = "lk.publish_on_behalf"
