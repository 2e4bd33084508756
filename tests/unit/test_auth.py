"""API-key extraction and checking (the interceptor itself is exercised over a real server in integration tests)."""

from __future__ import annotations

import pytest

from avaluma.core.server.auth import ApiKeys, extract_api_key, generate_api_key


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((("x-api-key", "k1"),), "k1"),
        ((("X-Api-Key", " k1 "),), "k1"),
        ((("x-api-key", b"k1"),), "k1"),
        ((("authorization", "Bearer k2"),), "k2"),
        ((("authorization", "bearer   k2 "),), "k2"),
        ((("authorization", "Bearer k2"), ("x-api-key", "k1")), "k1"),  # x-api-key wins
        ((("authorization", "Basic dXNlcjpwdw=="),), None),
        ((("authorization", "Bearer "),), None),
        ((("user-agent", "grpc-python"),), None),
        ((), None),
        (None, None),
    ],
)
def test_extract_api_key(metadata, expected) -> None:
    assert extract_api_key(metadata) == expected


def test_keys_are_checked_against_every_configured_key() -> None:
    keys = ApiKeys(["alpha", "beta"])
    assert keys.is_valid("alpha") and keys.is_valid("beta")
    for wrong in ("", "alph", "alpha ", "ALPHA", "betaa", "é"):
        assert not keys.is_valid(wrong)
    assert len(keys) == 2


def test_no_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one API key"):
        ApiKeys([])
    with pytest.raises(ValueError):
        ApiKeys([""])


def test_generated_keys_are_random_and_long() -> None:
    first, second = generate_api_key(), generate_api_key()
    assert first != second
    assert first.startswith("avk_") and len(first) >= 40
