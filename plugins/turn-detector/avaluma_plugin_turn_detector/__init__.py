"""End-of-turn detection as Avaluma ``turn_detector`` providers.

Two providers:

``multilingual``
    LiveKit's multilingual text turn-detector model (``livekit-plugins-turn-detector``). Its weights come from the
    Hugging Face hub and must already be in the local cache (``python -m livekit.agents download-files``). When they
    are not (an offline machine) and ``fallback`` is true, the provider logs a warning and returns ``local`` instead.
``local``
    LiveKit's audio end-of-turn model bundled in ``livekit-local-inference`` (``turn-detector-v1-mini``): no
    download, no key.

Config::

    agent:
      turn_detector: {name: multilingual}          # or {name: local}
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from avaluma.core.errors import ConfigError
from avaluma.core.hookspecs import Register, hookimpl

logger = logging.getLogger(__name__)


class LocalOptions(BaseModel):
    """Options of the ``local`` turn detector (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Probability below which the user is taken as "not done yet"; unset = LiveKit's per-language defaults.
    unlikely_threshold: float | None = Field(None, gt=0, lt=1)


class MultilingualOptions(LocalOptions):
    """Options of the ``multilingual`` turn detector (unknown keys are errors)."""

    #: Use the bundled local model when the multilingual weights are not in the local cache.
    fallback: bool = True


def multilingual_model_cached() -> bool:
    """True when the multilingual model's files are in the local Hugging Face cache (checked without network)."""
    from huggingface_hub import try_to_load_from_cache

    # Names copied from livekit.plugins.turn_detector.models: importing that package registers LiveKit plugins,
    # which must happen on the main thread, so it is imported only once the model is known to be usable.
    repo, revision = "livekit/turn-detector", "v0.4.1-intl"
    needed = [("languages.json", None), ("model_q8.onnx", "onnx")]
    for filename, subfolder in needed:
        path = f"{subfolder}/{filename}" if subfolder else filename
        if not isinstance(try_to_load_from_cache(repo, path, revision=revision), str):
            return False
    return True


def make_local(options: LocalOptions) -> Any:
    """LiveKit's bundled audio end-of-turn model (``livekit.agents.inference.TurnDetector``, version v1-mini)."""
    from livekit.agents.inference import TurnDetector

    kwargs: dict[str, Any] = {}
    if options.unlikely_threshold is not None:
        kwargs["unlikely_threshold"] = options.unlikely_threshold
    return TurnDetector(version="v1-mini", **kwargs)


def make_multilingual(options: MultilingualOptions) -> Any:
    """LiveKit's multilingual turn detector, or the ``local`` one when its weights are not cached and
    ``fallback`` is on. Must be built inside an agent job (LiveKit runs the model in the worker's inference
    process)."""
    if not multilingual_model_cached():
        if not options.fallback:
            raise ConfigError(
                "the multilingual turn-detector model is not in the local cache: run "
                "`python -m livekit.agents download-files` with network access, set "
                "turn_detector.options.fallback: true, or pick turn_detector: {name: local}"
            )
        logger.warning(
            "multilingual turn-detector model not cached; using LiveKit's bundled local end-of-turn model",
            extra={"provider": "multilingual", "fallback": "local"},
        )
        return make_local(LocalOptions(unlikely_threshold=options.unlikely_threshold))

    from livekit.plugins.turn_detector.multilingual import MultilingualModel

    return MultilingualModel(unlikely_threshold=options.unlikely_threshold)


@hookimpl
def register_turn_detectors(register: Register) -> None:
    register(
        "multilingual",
        make_multilingual,
        options=MultilingualOptions,
        description="LiveKit multilingual turn detector (falls back to 'local' when its model is not cached)",
    )
    register(
        "local",
        make_local,
        options=LocalOptions,
        description="LiveKit's bundled local audio end-of-turn model (offline)",
    )
