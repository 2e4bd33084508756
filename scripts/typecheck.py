"""Run mypy over the avaluma packages under their import names.

The top-level folders core/, renderer/, ... are mapped to avaluma.* by pyproject's package-dir, which mypy cannot
follow through the editable-install finder; a tree of symlinks under build/typecheck gives it the real layout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"core": "core", "renderer": "renderer", "proto": "proto", "agent": "agent"}


def main() -> int:
    tree = ROOT / "build" / "typecheck" / "avaluma"
    tree.mkdir(parents=True, exist_ok=True)
    for name, folder in PACKAGES.items():
        link = tree / name
        if not link.is_symlink():
            link.symlink_to(ROOT / folder, target_is_directory=True)
    targets = [arg for name in PACKAGES for arg in ("-p", f"avaluma.{name}")]
    return subprocess.call([sys.executable, "-m", "mypy", *targets, *sys.argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
