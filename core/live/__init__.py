"""Live sessions: the clocked playout, LiveKit session runtime, audio receiver, admission and the session registry.

Sits above the renderer and the base modules of ``avaluma.core``; never imports ``avaluma.core.server`` or
``avaluma.core.ops`` (checked by the import contract in pyproject.toml).
"""
