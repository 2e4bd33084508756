"""Built-in plugin of the renderer: registers the ``energy`` lip-sync backend through the ordinary hook.

Loaded by :mod:`avaluma.core.plugins` as a built-in, so it shows up in ``avaluma plugins`` like any installed plugin.
"""

from __future__ import annotations

from avaluma.core.hookspecs import Register, hookimpl
from avaluma.renderer.lipsync.energy import EnergyBackend, EnergyOptions


def make_energy_backend(options: EnergyOptions) -> EnergyBackend:
    return EnergyBackend(options)


@hookimpl
def register_lipsync_backends(register: Register) -> None:
    register(
        "energy",
        make_energy_backend,
        options=EnergyOptions,
        description="Baseline: mouth opening from the audio loudness envelope (no phonemes)",
    )
