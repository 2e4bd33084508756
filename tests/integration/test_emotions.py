"""The emotion API on every front door of a real server on free ports: gRPC StartSession / SetEmotion / GetSession,
the Render stream's config and set_emotion, the HTTP API's start-avatar and set-emotion, and the LiveKit plugin's
``AvatarSession(emotion=...)`` / ``set_emotion`` over both transports. Sessions run the real session runtime
(``build_live_session``: receiver, playout, RenderSession) with a recording sink; the only stand-in is LiveKit's room.
Unknown names get one clear error listing the valid ones, and the server and its other sessions go on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import grpc.aio
import numpy as np
import pytest
from conftest import server_config

from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.livekit_session import LiveSession, build_live_session
from avaluma.core.live.sessions import RoomHandle, Session
from avaluma.core.media import EMOTIONS, pcm16_to_mono
from avaluma.core.server.app import RunningServer, start_server
from avaluma.core.server.http_api import start_http_api
from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc, render_service_pb2, render_service_pb2_grpc
from avaluma.renderer.engine import RenderedFrame
from avaluma.renderer.lipsync.energy import EnergyBackend

avaluma = pytest.importorskip("livekit.plugins.avaluma", reason="the LiveKit plugin (agent extra) mints tokens")

pytestmark = pytest.mark.integration

LK_KEY, LK_SECRET = "devkey", "secret-secret-secret-secret-secret"
WAIT_S = 30.0
VALID = "use one of neutral, happy, serious, surprised, concerned"


def token(identity: str) -> str:
    return avaluma.mint_token(
        api_key=LK_KEY, api_secret=LK_SECRET, room="room-1", identity=identity, on_behalf_of="agent-1", ttl_s=600
    )


def speech(seconds: float, rate: int = 16_000) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 170 * t)).astype("<i2").tobytes()


class StandInRoom:
    async def disconnect(self) -> None:
        return None


class EmotionSink:
    """The session's frame sink: notes the emotion each frame was rendered with (``prepare`` follows rendering)."""

    def __init__(self) -> None:
        self.runtime: LiveSession | None = None
        self.rendered: list[tuple[bool, str]] = []

    def prepare(self, frame: RenderedFrame) -> None:
        assert self.runtime is not None
        self.rendered.append((frame.speaking, self.runtime.playout.render_session.emotion))

    async def push(self, frame: RenderedFrame) -> None:
        return None

    async def clear(self) -> None:
        return None


@dataclass
class Live:
    server: RunningServer
    runtimes: dict[str, tuple[LiveSession, EmotionSink]]

    def runtime(self, session_id: str) -> tuple[LiveSession, EmotionSink]:
        return self.runtimes[session_id]


@pytest.fixture
async def live(avatars_dir: Any) -> AsyncIterator[Live]:
    runtimes: dict[str, tuple[LiveSession, EmotionSink]] = {}
    backend = EnergyBackend()

    async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> StandInRoom:
        return StandInRoom()

    async def runtime(session: Session, room: RoomHandle, avatar: Any, *, end: Any) -> LiveSession:
        async def send_rpc(destination: str, method: str, payload: str) -> str:
            return ""

        sink = EmotionSink()
        built = build_live_session(
            session, avatar, backend, sink, fps=25, audio_sample_rate=16_000, send_rpc=send_rpc, end=end
        )
        sink.runtime = built
        built.start()
        runtimes[session.id] = (built, sink)
        return built

    server = await start_server(
        server_config(avatars_dir), store=AvatarStore.open(avatars_dir), room_connector=connector, runtime=runtime
    )
    try:
        yield Live(server, runtimes)
    finally:
        await server.stop(0.5)


async def until(predicate: Callable[[], bool]) -> None:
    async def loop() -> None:
        while not predicate():  # noqa: ASYNC110 (the state changes in the render threads, no event to wait on)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), WAIT_S)


def speaking(sink: EmotionSink) -> list[str]:
    return [emotion for is_speech, emotion in sink.rendered if is_speech]


async def grpc_error(awaitable: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return str(info.value.details())


async def test_grpc_start_with_an_emotion_change_it_and_refuse_unknown_names(live: Live, auth: Any) -> None:
    server = live.server
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)
        start = avatar_service_pb2.StartSessionRequest
        url = "ws://lk.example:7880"

        bad = await grpc_error(
            stub.StartSession(start(livekit_url=url, livekit_token=token("a0"), emotion="angry"), metadata=auth),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "unknown emotion 'angry'" in bad and VALID in bad
        assert server.sessions.list() == []  # nothing joined, no slot held

        happy = await stub.StartSession(
            start(livekit_url=url, livekit_token=token("a1"), emotion="happy"), metadata=auth
        )
        plain = await stub.StartSession(start(livekit_url=url, livekit_token=token("a2")), metadata=auth)
        get = avatar_service_pb2.GetSessionRequest
        assert (await stub.GetSession(get(session_id=happy.session_id), metadata=auth)).emotion == "happy"
        assert (await stub.GetSession(get(session_id=plain.session_id), metadata=auth)).emotion == "neutral"

        runtime, sink = live.runtime(happy.session_id)
        watch = stub.WatchSession(avatar_service_pb2.WatchSessionRequest(session_id=happy.session_id), metadata=auth)
        runtime.playout.push_audio(pcm16_to_mono(speech(0.4), 16_000, 1))
        changed = await stub.SetEmotion(
            avatar_service_pb2.SetEmotionRequest(session_id=happy.session_id, emotion="serious"), metadata=auth
        )
        assert changed.emotion == "serious"

        async def emotion_event() -> str:
            while True:
                event = await watch.read()
                if event.WhichOneof("event") == "emotion_changed":
                    return str(event.emotion_changed.emotion)

        assert await asyncio.wait_for(emotion_event(), WAIT_S) == "serious"  # watchers hear of the change
        watch.cancel()
        runtime.playout.push_audio(pcm16_to_mono(speech(0.4), 16_000, 1))
        runtime.playout.end_segment()
        await until(lambda: len(speaking(sink)) >= 20)
        # The audio sent before the change keeps "happy"; what came after shows "serious".
        assert speaking(sink)[:20] == ["happy"] * 10 + ["serious"] * 10

        unknown = await grpc_error(
            stub.SetEmotion(
                avatar_service_pb2.SetEmotionRequest(session_id=happy.session_id, emotion="Happy"), metadata=auth
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "unknown emotion 'Happy'" in unknown and VALID in unknown
        await grpc_error(
            stub.SetEmotion(
                avatar_service_pb2.SetEmotionRequest(session_id="ses_gone", emotion="happy"), metadata=auth
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        # Both sessions still serve, each with its own emotion.
        infos = await stub.ListSessions(avatar_service_pb2.ListSessionsRequest(), metadata=auth)
        assert {(s.session_id, s.emotion) for s in infos.sessions} == {
            (happy.session_id, "serious"),
            (plain.session_id, "neutral"),
        }
        assert live.runtime(plain.session_id)[0].playout.emotion == "neutral"


async def test_the_render_stream_takes_an_emotion_and_changes_it_in_band(live: Live, auth: Any) -> None:
    server = live.server
    request = render_service_pb2.RenderRequest
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = render_service_pb2_grpc.RenderServiceStub(channel)

        refused = stub.Render(metadata=auth)
        await refused.write(request(config=render_service_pb2.RenderConfig(emotion="sad")))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(refused.read(), WAIT_S)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "config.emotion: unknown emotion 'sad'" in str(info.value.details()) and VALID in str(
            info.value.details()
        )

        call = stub.Render(metadata=auth)
        await call.write(request(config=render_service_pb2.RenderConfig(emotion="surprised")))
        assert (await asyncio.wait_for(call.read(), WAIT_S)).WhichOneof("response") == "started"
        (stream,) = server._render._streams
        assert stream.playout.render_session.emotion == "surprised"
        chunk = render_service_pb2.AudioChunk(pcm=speech(0.2), sample_rate=16_000, num_channels=1)
        await call.write(request(set_emotion=render_service_pb2.SetEmotion(emotion="grumpy")))
        await call.write(request(set_emotion=render_service_pb2.SetEmotion(emotion="concerned")))
        await call.write(request(audio=chunk))
        await call.write(request(segment_end=render_service_pb2.SegmentEnd()))
        await call.done_writing()
        responses = []
        while (response := await asyncio.wait_for(call.read(), WAIT_S)) is not grpc.aio.EOF:
            responses.append(response)
        errors = [r.error for r in responses if r.WhichOneof("response") == "error"]
        assert [e.code for e in errors] == [grpc.StatusCode.INVALID_ARGUMENT.value[0]]
        assert "unknown emotion 'grumpy'" in errors[0].message and VALID in errors[0].message
        # The stream went on: the audio after the refused change played, with the accepted one.
        assert sum(r.video.speaking for r in responses if r.WhichOneof("response") == "video") == 5
        assert stream.playout.render_session.emotion == "concerned"
        assert await call.code() == grpc.StatusCode.OK


async def test_http_start_with_an_emotion_and_set_emotion(live: Live, api_key: str) -> None:
    server = live.server
    served = await start_http_api(server.sessions, server.slots, server.keys, host="127.0.0.1", port=0)
    base = f"http://127.0.0.1:{served.port}"
    headers = {"api-secret": api_key}

    async def post(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with http.post(base + path, json=body, headers=headers) as response:
            return response.status, await response.json()

    try:
        async with aiohttp.ClientSession() as http:
            start = {"livekit_url": "ws://lk.example:7880", "livekit_token": token("h1")}
            status, body = await post(http, "/v1/livekit/start-avatar", {**start, "emotion": "ecstatic"})
            assert status == 400 and body["code"] == "INVALID_ARGUMENT"
            assert "unknown emotion 'ecstatic'" in body["message"] and VALID in body["message"]
            status, body = await post(http, "/v1/livekit/start-avatar", {**start, "emotion": 7})
            assert status == 400 and "emotion must be a JSON string" in body["message"]
            assert server.sessions.list() == []

            status, started = await post(http, "/v1/livekit/start-avatar", {**start, "emotion": "concerned"})
            assert status == 200
            session_id = started["session_id"]
            assert server.sessions.get(session_id).emotion == "concerned"

            status, body = await post(http, "/v1/livekit/set-emotion", {"session_id": session_id, "emotion": "happy"})
            assert (status, body) == (200, {"status": "success", "session_id": session_id, "emotion": "happy"})
            runtime, sink = live.runtime(session_id)
            assert runtime.playout.emotion == "happy"
            runtime.playout.push_audio(pcm16_to_mono(speech(0.2), 16_000, 1))
            runtime.playout.end_segment()
            await until(lambda: len(speaking(sink)) >= 5)
            assert set(speaking(sink)) == {"happy"}

            for bad, (code, says) in {
                "furious": (400, "unknown emotion 'furious'"),
                None: (400, "emotion is required"),
            }.items():
                payload: dict[str, Any] = {"session_id": session_id}
                if bad is not None:
                    payload["emotion"] = bad
                status, body = await post(http, "/v1/livekit/set-emotion", payload)
                assert status == code and says in body["message"] and body["code"] == "INVALID_ARGUMENT"
            status, body = await post(http, "/v1/livekit/set-emotion", {"session_id": "ses_x", "emotion": "happy"})
            assert status == 404 and body["code"] == "NOT_FOUND"
            assert server.sessions.get(session_id).emotion == "happy"  # refusals changed nothing
    finally:
        await served.stop()


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_the_plugins_option_and_set_emotion_reach_the_server(live: Live, api_key: str, transport: str) -> None:
    rtc = pytest.importorskip("livekit.rtc")
    from livekit.agents import AgentSession
    from livekit.agents.testing import fake_job_context
    from livekit.plugins import avaluma

    server = live.server
    served = None
    url = server.address
    if transport == "http":
        served = await start_http_api(server.sessions, server.slots, server.keys, host="127.0.0.1", port=0)
        url = f"http://127.0.0.1:{served.port}"
    try:
        avatar = avaluma.AvatarSession(api_url=url, api_key=api_key, emotion="happy")
        room = rtc.Room()
        with fake_job_context(room=room):
            await avatar.start(
                AgentSession(),
                room=room,
                agent_identity="agent-1",
                livekit_url="ws://lk.example:7880",
                livekit_api_key=LK_KEY,
                livekit_api_secret=LK_SECRET,
            )
            assert avatar.session_id is not None
            assert server.sessions.get(avatar.session_id).emotion == "happy"
            await avatar.set_emotion("surprised")
            assert avatar.emotion == "surprised"
            assert server.sessions.get(avatar.session_id).emotion == "surprised"
            assert live.runtime(avatar.session_id)[0].playout.emotion == "surprised"
            with pytest.raises(avaluma.AvalumaException) as info:
                await avatar.set_emotion("bored")
            assert info.value.code == "INVALID_ARGUMENT" and VALID in str(info.value)
            assert server.sessions.get(avatar.session_id).emotion == "surprised"
            await avatar.aclose()
        assert server.sessions.list() == []

        wrong = avaluma.AvatarSession(api_url=url, api_key=api_key, emotion="gloomy", retry=avaluma.RetryPolicy())
        room = rtc.Room()
        with fake_job_context(room=room):
            with pytest.raises(avaluma.AvalumaException) as info:
                await wrong.start(
                    AgentSession(),
                    room=room,
                    agent_identity="agent-1",
                    livekit_url="ws://lk.example:7880",
                    livekit_api_key=LK_KEY,
                    livekit_api_secret=LK_SECRET,
                )
            await wrong.aclose()
        assert info.value.code == "INVALID_ARGUMENT" and "unknown emotion 'gloomy'" in str(info.value)
        assert server.sessions.list() == []
    finally:
        if served is not None:
            await served.stop()


def test_the_valid_names_are_the_ones_listed() -> None:
    assert ", ".join(EMOTIONS) in VALID


def wav(path: Any, seconds: float = 0.6, rate: int = 16_000) -> Any:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(speech(seconds, rate))
    return path


def render_cli(*args: str) -> tuple[int, str]:
    import logging

    from click.testing import CliRunner

    from avaluma.core.cli import cli

    root = logging.getLogger()  # the CLI group configures the root logger: later tests must not inherit it
    handlers, level = root.handlers[:], root.level
    env = {"AVALUMA_CONFIG": None, "AVALUMA_API_KEY": None, "AVALUMA_PLUGINS": ""}
    try:
        result = CliRunner().invoke(cli, ["render", *args], env=env)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return result.exit_code, result.output


async def test_avaluma_render_takes_an_emotion_locally_and_on_a_server(server: Any, api_key: str, tmp_path) -> None:
    from avaluma.core.errors import InvalidArgument
    from avaluma.core.media import AudioChunk
    from avaluma.core.server.grpc.render_client import render_remote

    audio = wav(tmp_path / "speech.wav")
    code, output = await asyncio.to_thread(render_cli, "--audio", str(audio), "--emotion", "angry")
    assert code == 2 and "'angry' is not one of 'neutral', 'happy', 'serious', 'surprised', 'concerned'" in output
    out = tmp_path / "local.mp4"
    code, output = await asyncio.to_thread(
        render_cli, "--audio", str(audio), "--lipsync", "energy", "--emotion", "happy", "-o", str(out)
    )
    assert code == 0 and "(happy)" in output and out.stat().st_size > 0, output
    out = tmp_path / "remote.mp4"
    args = ["--server", server.address, "--api-key", api_key, "--audio", str(audio), "-o", str(out)]
    code, output = await asyncio.to_thread(render_cli, *args, "--emotion", "serious")
    assert code == 0 and out.stat().st_size > 0, output
    # The Render stream carries the name: the server is the one that checks it.
    chunk = AudioChunk(np.zeros(1600, np.float32), 16_000)
    with pytest.raises(InvalidArgument, match="unknown emotion 'sad'"):
        await render_remote(server.address, [chunk], api_key=api_key, emotion="sad")
    assert (await render_remote(server.address, [chunk], api_key=api_key, emotion="surprised")).frames
