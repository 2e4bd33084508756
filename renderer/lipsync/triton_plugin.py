"""Built-in plugin registering the ``triton`` lip-sync backend (the model served by NVIDIA Triton over gRPC).

Registering imports nothing heavy: ``tritonclient`` loads only when the factory runs (the ``triton`` extra).
"""

from __future__ import annotations

from avaluma.core.hookspecs import Register, hookimpl
from avaluma.renderer.lipsync.triton_backend import TritonBackend, TritonOptions


def make_triton_backend(options: TritonOptions) -> TritonBackend:
    return TritonBackend(options)


@hookimpl
def register_lipsync_backends(register: Register) -> None:
    register(
        "triton",
        make_triton_backend,
        options=TritonOptions,
        description="The trained model served by NVIDIA Triton (gRPC streaming, per-session sequences)",
    )
