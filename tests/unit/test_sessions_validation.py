"""Pure validation behind StartSession: LiveKit URLs and tokens, and the shared capacity."""

from __future__ import annotations

import base64
import json

import pytest

from avaluma.core.errors import InvalidArgument, ResourceExhausted
from avaluma.core.live.sessions import SessionSlots, check_livekit_url, parse_livekit_token


def jwt(claims: dict, header: dict | None = None) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.mark.parametrize("url", ["ws://localhost:7880", "wss://x.livekit.cloud", "http://10.0.0.1", "https://h/p"])
def test_good_urls(url: str) -> None:
    assert check_livekit_url(url) == url


@pytest.mark.parametrize("url", ["", "localhost:7880", "ftp://host", "ws://", "grpc://host:1"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidArgument, match="livekit_url"):
        check_livekit_url(url)


def test_token_claims_are_read() -> None:
    token = jwt(
        {
            "sub": "avatar-1",
            "video": {"room": "lobby", "roomJoin": True},
            "attributes": {"lk.publish_on_behalf": "agent-7"},
            "exp": 2_000,
        }
    )
    info = parse_livekit_token(token, now=1_000)
    assert (info.identity, info.room, info.publish_on_behalf, info.expires_at) == ("avatar-1", "lobby", "agent-7", 2000)


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("", "empty"),
        ("abc", "three dot-separated parts"),
        ("a.b.c", "not base64url JSON"),
        (jwt({"sub": "x"}, header={"typ": "JWT"}), "no header alg"),
        (jwt({"video": {}}), "no identity"),
        (jwt({"sub": ""}), "no identity"),
        (jwt({"sub": "x", "exp": 999}), "expired"),
        ("x" * 20_000, "more than a LiveKit token has"),
    ],
)
def test_bad_tokens(token: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        parse_livekit_token(token, now=1_000)


def test_slots_limit_and_release() -> None:
    slots = SessionSlots(2)
    first = slots.take("session")
    with slots.acquire("render stream"):
        assert slots.used == 2
        with pytest.raises(ResourceExhausted, match="limit of 2"):
            slots.take("session")
    first.release()
    first.release()  # idempotent
    assert slots.used == 0
