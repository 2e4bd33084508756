"""``render.expressions``: the server-wide switch reaches the render options every front door resolves its
requests against, so sessions and ``Render`` streams are built with it."""

from __future__ import annotations

from avaluma.core.config import Config, RenderConfig
from avaluma.core.media import RenderOptions
from avaluma.core.server.grpc import convert
from avaluma.proto.v1 import common_pb2


def test_expressions_are_on_by_default() -> None:
    assert Config().render.expressions is True
    assert Config().render.options().expressions is True
    assert RenderOptions().expressions is True


def test_the_switch_survives_a_request_resolving_its_options() -> None:
    defaults = RenderConfig(expressions=False, fps=30).options()
    assert defaults.expressions is False
    resolved = defaults.resolve(fps=20, seed=7, field="render")
    assert (resolved.fps, resolved.seed, resolved.expressions) == (20, 7, False)
    wire = convert.render_options(common_pb2.RenderOptions(fps=25), defaults)
    assert (wire.fps, wire.expressions) == (25, False)
    assert RenderConfig().options().resolve(fps=20).expressions is True


def test_the_environment_turns_expressions_off() -> None:
    from avaluma.core.config_loader import load_config

    assert load_config(None, env={"AVALUMA_RENDER__EXPRESSIONS": "false"}).render.options().expressions is False
    assert load_config(None, env={}).render.expressions is True


def test_a_session_reports_the_switch_in_its_options() -> None:
    from pathlib import Path

    from avaluma.renderer.engine import RenderSession
    from avaluma.renderer.hvia import load_hvia
    from avaluma.renderer.lipsync.energy import EnergyBackend

    avatar = load_hvia(Path(__file__).resolve().parents[2] / "assets" / "avatars" / "astronaut.hvia")
    for on in (True, False):
        session = RenderSession(avatar, EnergyBackend(), fps=25, audio_sample_rate=16_000, expressions=on)
        assert session.options.expressions is on
