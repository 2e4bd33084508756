"""The avatars a server can render: every ``*.hvia`` file of one directory, loaded at start-up.

The file name is the avatar id (``<id>.hvia``), so what a client uploads under an id is what it gets back after a
restart. A file that fails to load (for any reason) is logged with the reason, skipped and remembered in
:attr:`AvatarStore.skipped` (``ListAvatars`` reports it): one bad file must never stop a server from starting.
Writes are atomic (temporary file + rename), so a crash never leaves a half-written avatar for the next start-up.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import os
import tempfile
import threading
from pathlib import Path

from avaluma.core.errors import AlreadyExists, InvalidArgument, NotFound
from avaluma.renderer.avatar import AVATAR_ID_RE, Avatar
from avaluma.renderer.hvia import SUFFIX, load_hvia, load_hvia_bytes

log = logging.getLogger(__name__)

ID_RULE = "1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"


def check_avatar_id(avatar_id: str) -> str:
    """Return ``avatar_id`` if it is a safe name (no path separators, no dots), else raise :class:`InvalidArgument`."""
    if not AVATAR_ID_RE.fullmatch(avatar_id):
        shown = avatar_id if len(avatar_id) <= 80 else avatar_id[:80] + "..."
        raise InvalidArgument(f"invalid avatar id {shown!r}: use {ID_RULE}")
    return avatar_id


class AvatarStore:
    """Avatars by id, backed by a directory of ``.hvia`` files. Thread-safe."""

    def __init__(
        self, directory: Path, avatars: dict[str, Avatar] | None = None, skipped: dict[str, str] | None = None
    ) -> None:
        self.directory = directory
        self._avatars: dict[str, Avatar] = dict(avatars or {})
        #: Files of the directory that failed to load at start-up: file name -> reason.
        self.skipped: dict[str, str] = dict(skipped or {})
        self._lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path | str) -> AvatarStore:
        """Load every ``*.hvia`` in ``directory`` (created if missing); files that fail to load are skipped."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        avatars: dict[str, Avatar] = {}
        skipped: dict[str, str] = {}
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            avatar_id = path.stem
            if not AVATAR_ID_RE.fullmatch(avatar_id):
                reason = f"its name is not a valid avatar id: rename it to <id>{SUFFIX} where <id> is {ID_RULE}"
            else:
                try:
                    avatars[avatar_id] = _with_id(load_hvia(path), avatar_id)
                    continue
                except InvalidArgument as exc:  # AvatarFileError: corrupt, truncated, too large, unknown version
                    reason = exc.message
                except (Exception, RecursionError, MemoryError) as exc:  # the loader translates all it knows
                    log.warning("unexpected error loading an avatar file", exc_info=exc, extra={"path": str(path)})
                    reason = f"{path}: cannot be loaded ({type(exc).__name__}); see the server log"
            skipped[path.name] = reason
            log.warning("skipping avatar file that failed to load", extra={"path": str(path), "reason": reason})
        log.info(
            "avatars loaded",
            extra={"directory": str(directory), "avatar_ids": sorted(avatars), "skipped_files": sorted(skipped)},
        )
        return cls(directory, avatars, skipped)

    def ids(self) -> builtins.list[str]:
        with self._lock:
            return sorted(self._avatars)

    def list(self) -> builtins.list[Avatar]:
        """All avatars, sorted by id."""
        with self._lock:
            return [self._avatars[k] for k in sorted(self._avatars)]

    def get(self, avatar_id: str) -> Avatar:
        """The avatar named ``avatar_id``; :class:`NotFound` lists the available ids."""
        with self._lock:
            avatar = self._avatars.get(avatar_id)
            if avatar is not None:
                return avatar
            available = sorted(self._avatars)
        shown = avatar_id if len(avatar_id) <= 80 else avatar_id[:80] + "..."
        hint = f"available: {', '.join(available)}" if available else "no avatars are loaded: upload one first"
        raise NotFound(f"unknown avatar {shown!r} ({hint})")

    def add(self, data: bytes, avatar_id: str, *, overwrite: bool = False) -> Avatar:
        """Validate ``data`` as a ``.hvia`` file and store it as ``<avatar_id>.hvia``.

        Raises :class:`InvalidArgument` (bad id, corrupt file) or :class:`AlreadyExists` (id taken, no overwrite).
        CPU-bound (decodes the images): call it off the event loop.
        """
        check_avatar_id(avatar_id)
        if not overwrite and self._exists(avatar_id):
            raise AlreadyExists(f"avatar {avatar_id!r} already exists: set overwrite to replace it, or pick another id")
        avatar = _with_id(load_hvia_bytes(data, source=f"upload {avatar_id!r}"), avatar_id)
        avatar = dataclasses.replace(avatar, size_bytes=len(data))
        with self._lock:
            # Checked again under the lock: two concurrent uploads of one id must not both succeed.
            if not overwrite and avatar_id in self._avatars:
                raise AlreadyExists(
                    f"avatar {avatar_id!r} already exists: set overwrite to replace it, or pick another id"
                )
            _atomic_write(self._path(avatar_id), data)
            self._avatars[avatar_id] = avatar
            self.skipped.pop(self._path(avatar_id).name, None)  # replaced by a good file
        log.info("avatar stored", extra={"avatar_id": avatar_id, "size_bytes": len(data), "overwrite": overwrite})
        return avatar

    def delete(self, avatar_id: str) -> None:
        """Remove the avatar and its file; :class:`NotFound` when unknown. Streams already rendering it keep it."""
        with self._lock:
            if avatar_id not in self._avatars:
                available = ", ".join(sorted(self._avatars)) or "none"
                shown = avatar_id if len(avatar_id) <= 80 else avatar_id[:80] + "..."
                raise NotFound(f"unknown avatar {shown!r} (available: {available})")
            self._path(avatar_id).unlink(missing_ok=True)
            del self._avatars[avatar_id]
        log.info("avatar deleted", extra={"avatar_id": avatar_id})

    def _exists(self, avatar_id: str) -> bool:
        with self._lock:
            return avatar_id in self._avatars

    def _path(self, avatar_id: str) -> Path:
        # avatar_id is validated (no separators or dots), so the path cannot leave the directory.
        return self.directory / f"{avatar_id}{SUFFIX}"


def _with_id(avatar: Avatar, avatar_id: str) -> Avatar:
    return avatar if avatar.id == avatar_id else dataclasses.replace(avatar, id=avatar_id)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
