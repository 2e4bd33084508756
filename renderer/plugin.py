"""Built-in plugin of the renderer: registers its lip-sync backends (``energy``, ``onnx``, ``triton``) through the
ordinary hook, so they show up in ``avaluma plugins`` like any installed plugin.

Registering imports nothing heavy: onnxruntime and the model load only when the ``onnx`` factory runs, and
``tritonclient`` (the ``triton`` extra) only when the ``triton`` factory runs.
"""

from __future__ import annotations

from avaluma.core.hookspecs import Register, hookimpl
from avaluma.renderer.lipsync.energy import EnergyBackend, EnergyOptions
from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions
from avaluma.renderer.lipsync.triton_backend import TritonBackend, TritonOptions


def make_energy_backend(options: EnergyOptions) -> EnergyBackend:
    return EnergyBackend(options)


def make_onnx_backend(options: OnnxOptions) -> OnnxBackend:
    return OnnxBackend(options)


def make_triton_backend(options: TritonOptions) -> TritonBackend:
    return TritonBackend(options)


@hookimpl
def register_lipsync_backends(register: Register) -> None:
    register(
        "energy",
        make_energy_backend,
        options=EnergyOptions,
        description="Baseline: mouth opening from the audio loudness envelope (no phonemes)",
    )
    register(
        "onnx",
        make_onnx_backend,
        options=OnnxOptions,
        description="Trained audio-to-viseme model (bundled ONNX, in-process onnxruntime, 72.5 ms lookahead)",
    )
    register(
        "triton",
        make_triton_backend,
        options=TritonOptions,
        description="The trained model served by NVIDIA Triton (gRPC streaming, per-session sequences)",
    )
