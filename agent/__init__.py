"""Avaluma agent side: the LiveKit agent worker, AvatarSession and the external audio sender (issue 7)."""
