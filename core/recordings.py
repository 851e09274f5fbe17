"""Recordings: users' utterances kept on disk, each for exactly as long as the message that refers to it.

A recording is written while its utterance is transcribed (so the turn does not wait for the disk) and deleted at
once if no message is stored for it (no speech, a failed transcription, a store that refused the message). It is
deleted with its messages (``/clear``), when ``audio.keep_days`` passes, and, if the server died between writing a
file and storing its message, by the sweep of unreferenced files at start-up. Every method blocks on the disk:
call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

# A file younger than this may belong to a message another instance is storing right now: the sweep leaves it.
SWEEP_GRACE_S = 300.0

_Doomed = Callable[[Path, float], bool]  # (file, its mtime) -> delete it?


class Recordings:
    """The audio folder: server-chosen names under ``<dir>/<date>/``; nothing is kept when ``keep_days`` is 0."""

    def __init__(self, directory: str | Path, keep_days: float) -> None:
        self.dir = Path(directory)
        self.keep_days = keep_days

    @property
    def enabled(self) -> bool:
        return self.keep_days > 0

    def save(self, data: bytes, extension: str) -> str | None:
        """Write ``data`` under a new server-chosen name (never the client's name or id); its path, or None."""
        if not self.enabled:
            return None
        now = datetime.now(UTC)
        folder = self.dir / now.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{now.strftime('%H%M%S')}-{uuid.uuid4().hex}.{extension}"
        path.write_bytes(data)
        return str(path)

    def delete(self, paths: Iterable[str | None]) -> int:
        """Delete these recordings (only files inside the audio folder); returns how many were removed."""
        removed = 0
        root = self.dir.resolve()
        for name in paths:
            if not name:
                continue
            path = Path(name).resolve()
            if not path.is_relative_to(root):
                logger.warning("not deleting %s: it is outside %s", path, root)
                continue
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.warning("could not delete recording %s: %s", path, err)
        return removed

    def prune(self) -> int:
        """Delete recordings older than ``keep_days`` (everything when it is 0); returns how many went."""
        cutoff = time.time() - self.keep_days * 86400
        removed = self._remove(lambda path, mtime: mtime < cutoff)
        if removed:
            logger.info("pruned %d stored audio file(s) older than %s day(s)", removed, self.keep_days)
        return removed

    def sweep(self, referenced: set[str], *, grace_s: float = SWEEP_GRACE_S) -> int:
        """Delete recordings no message refers to (older than ``grace_s``); returns how many went."""
        cutoff = time.time() - grace_s
        known = {str(Path(p).resolve()) for p in referenced}
        removed = self._remove(lambda path, mtime: mtime < cutoff and str(path.resolve()) not in known)
        if removed:
            logger.info("swept %d recording(s) that no message refers to", removed)
        return removed

    def _remove(self, doomed: _Doomed) -> int:
        if not self.dir.is_dir():
            return 0
        removed = 0
        for path in self.dir.rglob("*"):
            if path.is_file() and not path.name.startswith(".") and doomed(path, path.stat().st_mtime):
                path.unlink(missing_ok=True)
                removed += 1
        for folder in sorted((p for p in self.dir.iterdir() if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        return removed
