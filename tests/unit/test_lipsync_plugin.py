"""The ``onnx`` backend registers through the ordinary hook and is built with validated, closed options."""

from __future__ import annotations

import pytest

from avaluma.core.config import ProviderRef
from avaluma.core.errors import ConfigError
from avaluma.core.plugins import ProviderRegistry, load_plugin_manager
from avaluma.renderer.lipsync.onnx_backend import OnnxBackend


@pytest.fixture
def registry() -> ProviderRegistry:
    return ProviderRegistry.from_plugin_manager(load_plugin_manager(entry_points=False))


def test_the_renderer_registers_its_three_backends(registry: ProviderRegistry) -> None:
    assert {"onnx", "energy", "triton"} <= set(registry.names("lipsync_backend"))


def test_factory_builds_the_bundled_model(registry: ProviderRegistry) -> None:
    backend = registry.create("lipsync_backend", ProviderRef(name="onnx", options={"threads": 1}))
    assert isinstance(backend, OnnxBackend)
    assert backend.open_stream(fps=30).lookahead_s <= 0.08


def test_unknown_option_is_a_config_error(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="model"):
        registry.create("lipsync_backend", ProviderRef(name="onnx", options={"modle_path": "x.onnx"}))
