"""What a new user reads first holds: the README's three-line diff fits the plugin's real signatures, install lines
name what can be installed (nothing is on PyPI yet), links point at files that exist, the licence is declared."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1].parent
FIRST_READ = [ROOT / "README.md", ROOT / "docs" / "quickstart.md"]


def diff_block(path: Path) -> str:
    found = re.search(r"```diff\n(.*?)```", path.read_text(), flags=re.DOTALL)
    assert found, f"{path.name} has no ```diff block"
    return found.group(1)


def test_readme_and_quickstart_show_the_same_three_added_lines() -> None:
    readme, quickstart = diff_block(ROOT / "README.md"), diff_block(ROOT / "docs" / "quickstart.md")
    assert readme == quickstart
    added = [line[1:].strip() for line in readme.splitlines() if line.startswith("+")]
    assert added == [
        "from livekit.plugins import avaluma",
        'avatar = avaluma.AvatarSession(avatar_id="astronaut")',
        "await avatar.start(session, room=ctx.room)",
    ]


def test_the_three_lines_fit_the_plugins_signatures() -> None:
    avaluma = pytest.importorskip("livekit.plugins.avaluma", reason="needs avaluma-livekit-plugin installed")
    inspect.signature(avaluma.AvatarSession).bind(avatar_id="astronaut")
    inspect.signature(avaluma.AvatarSession.start).bind(object(), object(), room=object())


def test_no_install_line_asks_a_registry_for_a_distribution_that_is_not_published() -> None:
    unpublished = re.compile(r"pip install\s+(?:-\S+\s+)*['\"]?(avaluma-plugin-[\w-]+|avaluma-livekit-plugin)\b")
    docs = [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"), *(ROOT / "plugins").glob("*/README.md")]
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in docs for m in unpublished.finditer(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("path", FIRST_READ, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(path: Path) -> None:
    targets = re.findall(r"\]\(([^)#\s]+)\)", path.read_text())
    local = [t for t in targets if "://" not in t]
    assert local
    missing = [t for t in local if not (path.parent / t).exists()]
    assert missing == []


def test_every_distribution_declares_the_apache_licence_it_ships() -> None:
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License\n")
    for pyproject in [ROOT / "pyproject.toml", *(ROOT / "plugins").glob("*/pyproject.toml")]:
        assert tomllib.loads(pyproject.read_text())["project"]["license"] == "Apache-2.0", pyproject
    assert (ROOT / "plugins" / "livekit-plugin" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
