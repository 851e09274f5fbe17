"""Files written whole or not at all: a model joined from the chunks a package ships it in."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def write_joined(target: Path, sources: list[Path]) -> None:
    """``target`` made of ``sources`` one after the other, through a temporary file only this call writes, renamed
    into place: a reader (or a second process joining the same file) never sees half of it. Raises OSError."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as data:
                    shutil.copyfileobj(data, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())  # renamed after a crash, a file not yet on disk would be short
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the model from other users of the install
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
