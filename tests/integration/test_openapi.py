"""The HTTP API's OpenAPI document: made from the typed models, valid OpenAPI 3.1 (checked by openapi-spec-validator),
committed without drift, served by the real server, and true to what the real server answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from avaluma.core.server import http_api, http_models
from avaluma.core.server.http_api import start_http_api

avaluma = pytest.importorskip("livekit.plugins.avaluma", reason="the LiveKit plugin (agent extra) mints tokens")

pytestmark = pytest.mark.integration


def test_the_committed_document_is_the_generated_one() -> None:
    assert http_models.DOCUMENT_PATH.read_text() == http_models.render_document(), (
        "docs/openapi.json is out of date: run python -m avaluma.core.server.http_models"
    )


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="needs the dev extra")
    validator.validate(http_models.openapi())


def test_the_start_model_names_exactly_the_fields_the_server_reads() -> None:
    assert set(http_models.StartAvatarRequest.model_fields) == set(http_api._START_FIELDS)


class StandInRoom:
    async def disconnect(self) -> None:
        return None


@pytest.fixture
async def base_url(make_server: Any) -> AsyncIterator[str]:
    async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> StandInRoom:
        return StandInRoom()

    running = await make_server(room_connector=connector)
    served = await start_http_api(running.sessions, running.slots, running.keys, host="127.0.0.1", port=0)
    try:
        yield f"http://127.0.0.1:{served.port}"
    finally:
        await served.stop()


async def test_the_server_serves_it_and_answers_as_it_says(base_url: str, api_key: str) -> None:
    token = avaluma.mint_token(
        api_key="devkey",
        api_secret="secret-secret-secret-secret-secret",
        room="r",
        identity="avatar-1",
        on_behalf_of="agent-1",
    )
    headers = {"api-secret": api_key}
    async with aiohttp.ClientSession() as http:
        async with http.get(base_url + "/openapi.json") as r:  # no key needed
            served = await r.json()
        assert served["paths"] == http_models.openapi()["paths"]
        body = {"livekit_url": "ws://lk.example:7880", "livekit_token": token}
        async with http.post(base_url + "/v1/livekit/start-avatar", json=body, headers=headers) as r:
            started = http_models.StartAvatarResponse.model_validate(await r.json())
        stop = {"session_id": started.session_id}
        async with http.post(base_url + "/v1/livekit/stop-avatar", json=stop, headers=headers) as r:
            http_models.StopAvatarResponse.model_validate(await r.json())
        async with http.get(base_url + "/health") as r:
            http_models.HealthResponse.model_validate(await r.json())
        async with http.post(base_url + "/v1/livekit/stop-avatar", json=stop, headers=headers) as r:
            assert r.status == 404
            error = http_models.ErrorResponse.model_validate(json.loads(await r.text()))
        assert error.code == "NOT_FOUND"
        assert "404" in served["paths"]["/v1/livekit/stop-avatar"]["post"]["responses"]
