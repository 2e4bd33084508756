"""The ``onnx`` backend registers through the ordinary hook and is built with validated, closed options."""

from __future__ import annotations

import pytest

from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager
from avaluma.renderer.lipsync import plugin as lipsync_plugin
from avaluma.renderer.lipsync.onnx_backend import OnnxBackend


@pytest.fixture
def registry() -> ProviderRegistry:
    pm = load_plugin_manager(entry_points=False)
    if not pm.is_registered(lipsync_plugin):  # once the lead lists it as a built-in, it is already there
        pm.register(lipsync_plugin, name="avaluma.renderer.lipsync.plugin")
    return ProviderRegistry.from_plugin_manager(pm)


def test_onnx_is_registered_next_to_energy(registry: ProviderRegistry) -> None:
    assert {"onnx", "energy"} <= set(registry.names("lipsync_backend"))


def test_factory_builds_the_bundled_model(registry: ProviderRegistry) -> None:
    backend = registry.create("lipsync_backend", ProviderRef(name="onnx", options={"threads": 1}))
    assert isinstance(backend, OnnxBackend)
    assert backend.open_stream(fps=30).lookahead_s <= 0.08


def test_unknown_option_is_a_config_error(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="model"):
        registry.create("lipsync_backend", ProviderRef(name="onnx", options={"modle_path": "x.onnx"}))
