"""Built-in plugin registering the ``onnx`` lip-sync backend (the trained model, in-process onnxruntime).

Kept apart from :mod:`avaluma.renderer.plugin` so the renderer's plugin list gains one module; registering imports
nothing heavy: onnxruntime and the model load only when the factory runs (see :class:`OnnxModel`).
"""

from __future__ import annotations

from avaluma.core.hookspecs import Register, hookimpl
from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions


def make_onnx_backend(options: OnnxOptions) -> OnnxBackend:
    return OnnxBackend(options)


@hookimpl
def register_lipsync_backends(register: Register) -> None:
    register(
        "onnx",
        make_onnx_backend,
        options=OnnxOptions,
        description="Trained audio-to-viseme model (bundled ONNX, in-process onnxruntime, 72.5 ms lookahead)",
    )
