"""The playground's HTTP side on a free port, without a browser: avatars with their mouth box, an avatar built from an
uploaded photo (progress, stored, preview sheet), a photo without a face refused with the builder's message, and
clear errors for unknown sessions. (The page itself runs in Chromium in tests/e2e/test_playground_browser.py.)"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("aiortc", reason="the playground needs aiortc: pip install -e '.[playground]'")

from avaluma.core.config import Config
from avaluma.core.plugins import load_registry
from avaluma.core.server.playground.app import RunningPlayground, start_playground
from avaluma.renderer.hvia import load_hvia

pytestmark = pytest.mark.integration


@pytest.fixture
async def playground(avatars_dir: Path) -> AsyncIterator[tuple[str, RunningPlayground]]:
    running = await start_playground(Config(avatars_dir=avatars_dir), load_registry(), host="127.0.0.1", port=0)
    try:
        yield running.url.rstrip("/"), running
    finally:
        await running.stop()


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


async def build(http: aiohttp.ClientSession, base: str, avatar_id: str, photo: bytes) -> dict[str, Any]:
    async with http.post(f"{base}/api/build?id={avatar_id}&kind=photo", data=photo) as r:
        assert r.status == 200, await r.text()
        job = (await r.json())["job"]
    fractions = []
    for _ in range(600):  # hang guard: the builder runs in a thread
        async with http.get(f"{base}/api/build/{job}") as r:
            status = await r.json()
        fractions.append(status["fraction"])
        if status["status"] != "running":
            return {**status, "job": job, "fractions": fractions}
        await asyncio.sleep(0.1)
    raise AssertionError("the build never finished")


async def test_an_avatar_built_from_an_uploaded_photo_is_stored_listed_and_previewed(
    playground: tuple[str, RunningPlayground], avatars_dir: Path, demo_avatar_path: Path
) -> None:
    base, _ = playground
    photo = png(np.array(load_hvia(demo_avatar_path).base))
    async with aiohttp.ClientSession() as http:
        done = await build(http, base, "me", photo)
        assert done["status"] == "done", done["error"]
        assert done["fractions"] == sorted(done["fractions"]) and done["fractions"][-1] == 1.0
        async with http.get(f"{base}/api/build/{done['job']}/preview.png") as r:
            assert r.content_type == "image/png"
            sheet = Image.open(io.BytesIO(await r.read()))
        assert sheet.width > 512
        async with http.get(f"{base}/api/avatars") as r:
            avatars = {a["id"]: a for a in (await r.json())["avatars"]}
    assert (avatars_dir / "me.hvia").is_file()
    x0, y0, x1, y1 = avatars["me"]["mouth"]
    assert 0 < x0 < x1 < avatars["me"]["width"] and 0 < y0 < y1 < avatars["me"]["height"]


async def test_a_photo_without_a_face_is_refused_with_the_builders_message(
    playground: tuple[str, RunningPlayground], avatars_dir: Path
) -> None:
    base, _ = playground
    async with aiohttp.ClientSession() as http:
        failed = await build(http, base, "nobody", png(np.full((600, 600, 3), 200, np.uint8)))
    assert failed["status"] == "error"
    assert "face" in failed["error"]
    assert not (avatars_dir / "nobody.hvia").exists()


async def test_unknown_sessions_and_bad_ids_are_clear_errors(playground: tuple[str, RunningPlayground]) -> None:
    base, _ = playground
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/sessions/nope/say", json={"text": "hi"}) as r:
            assert r.status == 404 and "reconnect the page" in (await r.json())["message"]
        async with http.post(f"{base}/api/sessions/nope/emotion", json={"emotion": "happy"}) as r:
            assert r.status == 404 and "reconnect the page" in (await r.json())["message"]
        async with http.post(f"{base}/api/build?id=Bad Id", data=b"x") as r:
            assert r.status == 400 and "avatar id" in (await r.json())["message"]


def test_the_page_is_plain_static_files() -> None:
    from avaluma.core.server.playground.app import STATIC_DIR

    assert sorted(p.name for p in STATIC_DIR.iterdir()) == ["app.js", "index.html"]  # no build step, no bundle
