"""Start requests an attacker sends, found by the API fuzz suite: each is INVALID_ARGUMENT, never a crash
that the gRPC interceptor turns into INTERNAL or the HTTP API into 500."""

from __future__ import annotations

import base64
import json

import pytest

from avaluma.core.errors import InvalidArgument
from avaluma.core.live.sessions import check_livekit_url, parse_livekit_token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("url", ["http://[::1", "ws://[", "http://[fe80::1%zz"])
def test_malformed_urls_are_invalid_argument(url: str) -> None:
    with pytest.raises(InvalidArgument, match="livekit_url must be"):
        check_livekit_url(url)


def test_deeply_nested_token_claims_are_invalid_argument() -> None:
    token = ".".join([b64(b'{"alg": "HS256"}'), b64(b"[" * 5000 + b"]" * 5000), "sig"])
    with pytest.raises(InvalidArgument, match="not a JWT"):
        parse_livekit_token(token)


@pytest.mark.parametrize("exp", ["Infinity", "NaN", "-Infinity"])
def test_non_finite_expiry_is_not_a_crash(exp: str) -> None:
    claims = b'{"sub": "avatar-1", "exp": ' + exp.encode() + b"}"
    token = ".".join([b64(json.dumps({"alg": "HS256"}).encode()), b64(claims), "sig"])
    info = parse_livekit_token(token)
    assert info.identity == "avatar-1" and info.expires_at is None
