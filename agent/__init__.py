"""Avaluma agent side: the LiveKit agent worker (agent-1) and the external audio sender (agent-2).

``AvatarSession`` lives in the slim avaluma-livekit-plugin distribution (``from livekit.plugins import avaluma``).
"""
