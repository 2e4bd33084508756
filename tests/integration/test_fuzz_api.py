"""Property-based fuzzing of the server's front doors: every gRPC method of the v1 API with random and
mutated request bytes, the HTTP API with hostile bodies and headers, and API keys. A real server (gRPC and HTTP, real
renderer, energy lip-sync, a room connector that refuses) runs on free ports in its own event-loop thread, so
hypothesis drives it with plain synchronous clients.

Allowed outcomes: success or the project's own error (a status that names the problem; HTTP 4xx, or 503 for a
dependency that is not there); never INTERNAL, UNKNOWN, HTTP 500, a hang (client deadline), a logged traceback or an
ERROR line, or unbounded memory. Derandomized and bounded (``max_examples``): seconds in total.
``pytest --hypothesis-show-statistics`` prints how many inputs each property tried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import API_KEY, server_config
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avaluma.core.config import RenderConfig
from avaluma.core.errors import Unavailable
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.server.app import RunningServer, start_server
from avaluma.core.server.http_api import RunningHttpApi, start_http_api
from avaluma.proto.v1 import avatar_registry_pb2, avatar_service_pb2, render_service_pb2

pytestmark = pytest.mark.integration

AUTH = (("x-api-key", API_KEY),)
#: A call that takes longer than this is a hang (the server's own timeouts are 1 s here).
CALL_TIMEOUT_S = 20.0
#: Resident memory the whole module may add to the process (server and clients live in it).
MAX_GROWTH_BYTES = 384 * 1024 * 1024

FUZZ = settings(
    derandomize=True,
    deadline=None,  # each call carries CALL_TIMEOUT_S; a hang fails as a client-side DEADLINE_EXCEEDED
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

#: gRPC statuses that are the project's own answers. DEADLINE_EXCEEDED only counts when the server sent it.
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class BadLogRecords(logging.Handler):
    """Collects what must never be logged under hostile input: tracebacks and ERROR lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


async def refuse_rooms(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> Any:
    raise Unavailable("no LiveKit server in the fuzz suite")


@dataclass
class ServerThread:
    """A real server in its own event loop thread."""

    avatars_dir: Path
    loop: asyncio.AbstractEventLoop | None = None
    thread: threading.Thread | None = None
    grpc_server: RunningServer | None = None
    http: RunningHttpApi | None = None

    def call(self, coro: Any) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def start(self) -> ServerThread:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server", daemon=True)
        self.thread.start()
        config = server_config(self.avatars_dir, max_sessions=8).model_copy(
            update={"render": RenderConfig(first_message_timeout_s=1.0, idle_timeout_s=1.0)}
        )
        store = AvatarStore.open(self.avatars_dir)
        from avaluma.renderer.lipsync.energy import EnergyBackend

        self.grpc_server = self.call(
            start_server(config, store=store, lipsync_backend=EnergyBackend, room_connector=refuse_rooms)
        )
        running = self.grpc_server
        self.http = self.call(
            start_http_api(
                running.sessions,
                running.slots,
                running.keys,  # type: ignore[arg-type]
                host="127.0.0.1",
                port=0,
                rate_limit_per_minute=1e9,
                rate_limit_burst=10**9,
                header_timeout_s=1.0,
                body_timeout_s=1.0,
            )
        )
        return self

    def stop(self) -> None:
        assert self.loop is not None and self.thread is not None
        if self.http is not None:
            self.call(self.http.stop())
        if self.grpc_server is not None:
            self.call(self.grpc_server.stop(0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def address(self) -> str:
        assert self.grpc_server is not None
        return self.grpc_server.address


@pytest.fixture(scope="module")
def bad_logs() -> Iterator[BadLogRecords]:
    handler = BadLogRecords()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def _start(tmp_path_factory: pytest.TempPathFactory, demo: Path) -> ServerThread:
    directory = tmp_path_factory.mktemp("avatars")
    shutil.copy(demo, directory / demo.name)
    return ServerThread(directory).start()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, demo_avatar_path: Path) -> Iterator[ServerThread]:
    before = rss()
    server = _start(tmp_path_factory, demo_avatar_path)
    yield server
    server.stop()
    assert rss() - before < MAX_GROWTH_BYTES


@pytest.fixture(scope="module")
def channel(served: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.address) as ch:
        yield ch


@pytest.fixture(autouse=True)
def _clean_log(bad_logs: BadLogRecords) -> Iterator[None]:
    bad_logs.records.clear()
    yield
    shown = [f"{r.name}: {r.getMessage()}" for r in bad_logs.records]
    assert shown == [], shown


def still_serving(channel: grpc.Channel) -> None:
    """After a batch of hostile input, health answers and a normal call works."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    listed = channel.unary_unary(
        "/avaluma.v1.AvatarRegistry/ListAvatars",
        request_serializer=avatar_registry_pb2.ListAvatarsRequest.SerializeToString,
        response_deserializer=avatar_registry_pb2.ListAvatarsResponse.FromString,
    )(avatar_registry_pb2.ListAvatarsRequest(), metadata=AUTH, timeout=CALL_TIMEOUT_S)
    assert all(a.id for a in listed.avatars)  # (the unary fuzz may have deleted the demo avatar: a valid call)


def check_status(error: grpc.RpcError) -> None:
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        assert "timeout_s" in details, f"client-side deadline: the server hung ({details})"
        return
    assert code in ALLOWED, f"{code}: {details}"


# --- request messages: random, structured and mutated -----------------------------------------------------------

METHODS: list[MethodDescriptor] = [
    method
    for module, service in (
        (render_service_pb2, "RenderService"),
        (avatar_service_pb2, "AvatarService"),
        (avatar_registry_pb2, "AvatarRegistry"),
    )
    for method in module.DESCRIPTOR.services_by_name[service].methods
]

_INT_LIMITS = {
    FieldDescriptor.TYPE_INT32: 2**31,
    FieldDescriptor.TYPE_SINT32: 2**31,
    FieldDescriptor.TYPE_SFIXED32: 2**31,
    FieldDescriptor.TYPE_INT64: 2**63,
    FieldDescriptor.TYPE_SINT64: 2**63,
    FieldDescriptor.TYPE_SFIXED64: 2**63,
}
_UINT_LIMITS = {
    FieldDescriptor.TYPE_UINT32: 2**32,
    FieldDescriptor.TYPE_FIXED32: 2**32,
    FieldDescriptor.TYPE_UINT64: 2**64,
    FieldDescriptor.TYPE_FIXED64: 2**64,
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INT_LIMITS:
        limit = _INT_LIMITS[t]
        return st.integers(-limit, limit - 1) | st.sampled_from([0, -1, 1, 25, 16_000, 24_000, 48_000])
    if t in _UINT_LIMITS:
        return st.integers(0, _UINT_LIMITS[t] - 1) | st.sampled_from([0, 1, 25, 16_000, 24_000])
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=40) | st.sampled_from(
            ["astronaut", "", "wss://x.invalid", "http://[::1", "a.b.c", "../../etc", "eyJhbGciOiJIUzI1NiJ9.e30.x"]
        )
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=1024)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values] + [-1, 99, 2**31 - 1])
    raise AssertionError(field.type)


def message_dicts(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of a message's fields set to any values of their types (oneof members included)."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None:
            if depth >= 2 or field.message_type.GetOptions().map_entry:
                continue
            value: st.SearchStrategy[Any] = message_dicts(field.message_type, depth + 1)
        else:
            value = _scalar(field)
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        fields[field.name] = value
    return st.fixed_dictionaries({}, optional=fields)  # type: ignore[arg-type]


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Any:
    cls = message_factory.GetMessageClass(descriptor)
    message = cls()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(message, name) if field.message_type is not None or field.is_repeated else None
        if field.is_repeated:
            for item in value:
                if field.message_type is not None:
                    target.add().CopyFrom(_build(field.message_type, item))
                else:
                    target.append(item)
        elif field.message_type is not None:
            target.CopyFrom(_build(field.message_type, value))
        else:
            setattr(message, name, value)
    return message


@st.composite
def request_bytes(draw: st.DrawFn, descriptor: Descriptor) -> bytes:
    """Random bytes, a structured message, or a structured message with its bytes mutated."""
    how = draw(st.sampled_from(["random", "structured", "mutated"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    data = bytes(_build(descriptor, draw(message_dicts(descriptor))).SerializeToString())
    if how == "mutated" and data:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(buf) - 1))
            op = draw(st.sampled_from(["flip", "cut", "insert"]))
            if op == "flip":
                buf[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del buf[at:]
                if not buf:
                    break
            else:
                buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        data = bytes(buf)
    return data


def raw_method(channel: grpc.Channel, method: MethodDescriptor) -> Any:
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
    return getattr(channel, kind)(path, request_serializer=None, response_deserializer=None)


def invoke(channel: grpc.Channel, method: MethodDescriptor, requests: list[bytes]) -> None:
    call = raw_method(channel, method)
    try:
        if method.client_streaming:
            result = call(iter(requests), metadata=AUTH, timeout=CALL_TIMEOUT_S)
        else:
            result = call(requests[0], metadata=AUTH, timeout=CALL_TIMEOUT_S)
        if method.server_streaming:
            for _ in result:
                pass
    except grpc.RpcError as error:
        check_status(error)


UNARY = [m for m in METHODS if not m.client_streaming]
STREAMING = [m for m in METHODS if m.client_streaming]
# Test order matters: the streaming properties run first, while the demo avatar exists (the unary property may
# delete it with a perfectly valid DeleteAvatar).


@FUZZ
@given(data=st.data())
def test_every_streaming_request_method(channel: grpc.Channel, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(STREAMING), label="method")
    messages = data.draw(st.lists(request_bytes(method.input_type), min_size=0, max_size=5), label="requests")
    invoke(channel, method, messages)


@FUZZ
@given(data=st.data())
def test_render_streams_after_a_valid_config(channel: grpc.Channel, data: st.DataObject) -> None:
    # Past the first message, where most of a stream's code runs.
    method = next(m for m in STREAMING if m.name == "Render")
    config = render_service_pb2.RenderRequest(
        config=render_service_pb2.RenderConfig(avatar_id="astronaut", realtime=data.draw(st.booleans()))
    )
    rest = data.draw(st.lists(request_bytes(method.input_type), min_size=1, max_size=6), label="requests")
    invoke(channel, method, [config.SerializeToString(), *rest])


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_every_unary_request_method(channel: grpc.Channel, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(UNARY), label="method")
    invoke(channel, method, [data.draw(request_bytes(method.input_type), label="request")])


def test_the_server_still_serves_after_the_grpc_fuzz(channel: grpc.Channel) -> None:
    still_serving(channel)


# --- API keys -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, demo_avatar_path: Path) -> Iterator[ServerThread]:
    """A server of its own: failed authentication throttles the (loopback) address for everything after it."""
    server = _start(tmp_path_factory, demo_avatar_path)
    yield server
    server.stop()


ascii_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@FUZZ
@given(
    metadata=st.lists(
        st.tuples(st.sampled_from(["x-api-key", "authorization", "x-other"]), ascii_values), max_size=3
    ).map(tuple)
)
def test_api_keys_in_metadata(keyed: ServerThread, metadata: tuple[tuple[str, str], ...]) -> None:
    with grpc.insecure_channel(keyed.address) as ch:
        call = ch.unary_unary("/avaluma.v1.AvatarRegistry/ListAvatars", request_serializer=None)
        try:
            call(b"", metadata=metadata, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            check_status(error)


# --- HTTP -----------------------------------------------------------------------------------------------------------


def http(served: ServerThread, request: bytes) -> int | None:
    """Send ``request`` on a fresh connection; the status, or None when the server closed without one."""
    assert served.http is not None
    with socket.create_connection(("127.0.0.1", served.http.port), timeout=CALL_TIMEOUT_S) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    if not answer:
        return None
    status = int(answer.split(b" ", 2)[1])
    head, _, body = answer.partition(b"\r\n\r\n")
    if status != 200 and b"application/json" in head.lower():
        assert json.loads(body)["status"] == "error"
    return status


def post(path: str, body: bytes, headers: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n".encode()
        + headers
        + b"\r\n"
        + body
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
start_bodies = st.fixed_dictionaries(
    {},
    optional={
        "livekit_url": json_values | st.sampled_from(["wss://x.invalid", "ws://127.0.0.1:1", "http://[::1"]),
        "livekit_token": json_values | st.sampled_from(["a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"]),
        "avatar_id": json_values | st.just("astronaut"),
        "accepted_sender_identities": json_values,
        "agent_identity": json_values,
        "idle_timeout_s": json_values,
        "session_id": json_values,
    },
)


@FUZZ
@given(
    path=st.sampled_from(["/v1/livekit/start-avatar", "/v1/livekit/stop-avatar"]),
    body=st.one_of(
        start_bodies.map(lambda b: json.dumps(b, allow_nan=True).encode()),
        json_values.map(lambda b: json.dumps(b, allow_nan=True).encode()),
        st.binary(max_size=300),
        st.integers(1, 40_000).map(lambda n: b"[" * n + b"]" * n),
    ),
)
def test_http_bodies(served: ServerThread, path: str, body: bytes) -> None:
    status = http(served, post(path, body, f"api-secret: {API_KEY}\r\n".encode()))
    assert (status is not None and status < 500) or status == 503, status


header_bytes = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@FUZZ
@given(
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"\xff\xfe", b"P OST"]),
    path=st.sampled_from([b"/health", b"/v1/livekit/start-avatar", b"/v1/livekit/stop-avatar", b"/%ff", b"/../x"]),
    headers=st.lists(
        st.tuples(
            st.sampled_from([b"api-secret", b"x-api-key", b"authorization", b"content-type", b"x-junk"]) | header_bytes,
            header_bytes,
        ),
        max_size=4,
    ),
    body=st.binary(max_size=100),
)
def test_http_methods_paths_and_headers(
    keyed: ServerThread, method: bytes, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    request = (
        method
        + b" "
        + path
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + lines
        + b"\r\n"
        + body
    )
    status = http(keyed, request)
    assert status is None or status < 500 or status == 503, status


def test_the_http_api_still_serves_after_the_fuzz(served: ServerThread) -> None:
    assert http(served, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == 200
