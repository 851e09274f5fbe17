"""Recordings through the real server, Whisper included: a recording lives exactly as long as the message that
refers to it — none for an utterance that stored nothing, gone with `/clear`, and swept at start-up when nothing
refers to it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Served
from tests.speech import SENTENCES, encode, noise, silence, speak, wav

pytestmark = pytest.mark.slow


def recordings(served: Served) -> list[Path]:
    folder = Path(served.settings.audio.dir)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def referenced(served: Served) -> set[str]:
    with sqlite3.connect(served.settings.database.db_path) as db:
        return {r[0] for r in db.execute("SELECT audio_path FROM messages WHERE audio_path IS NOT NULL")}


async def upload(served: Served, data: bytes, client_id: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        return await http.post("/upload_audio", files={"file": ("clip", data)}, data={"client_id": client_id})


@pytest.fixture
def voice(serve, make_settings):
    return serve(make_settings({"stt": {"engine": "whisper"}}))


@pytest.mark.parametrize(
    "data",
    [
        wav(silence(3.0), 16000),  # digital silence (case 10)
        wav(noise(2.0, level=0.02), 16000),  # a quiet hiss
        encode(silence(2.0), 16000, "mp3"),
        encode(silence(2.0), 16000, "ogg-opus"),
    ],
    ids=["silence-wav", "noise-wav", "silence-mp3", "silence-opus"],
)
async def test_no_speech_leaves_no_recording(voice: Served, data: bytes) -> None:
    response = await upload(voice, data, "quiet")
    assert response.status_code == 422 and response.json()["code"] == "no-speech"
    await asyncio.sleep(0.3)  # a write that raced the transcription is deleted once it lands
    assert recordings(voice) == [] and referenced(voice) == set()


async def test_live_no_speech_over_the_socket_leaves_no_recording(voice: Served, connect) -> None:
    client = await connect(voice, "quiet-socket")
    await client.send(wav(noise(1.5, level=0.02), 16000))  # one whole utterance as a binary frame
    events = await client.until_any(("error", "reply"), timeout=60)
    assert events[-1]["code"] == "no-speech"
    await asyncio.sleep(0.3)
    assert recordings(voice) == []


async def test_clear_deletes_the_clients_recordings_and_no_one_elses(voice: Served, connect) -> None:
    pcm, rate = speak(SENTENCES[0])
    for client_id in ("c11", "c11", "bystander"):
        assert (await upload(voice, wav(pcm, rate), client_id)).status_code == 200
    assert len(recordings(voice)) == 3 and {str(p) for p in recordings(voice)} == referenced(voice)
    client = await connect(voice, "c11")
    await client.send("/clear")
    result = (await client.until("command"))[-1]
    assert result["data"] == {"deleted": 4}
    left = recordings(voice)
    assert len(left) == 1 and {str(p) for p in left} == referenced(voice)


async def test_unreferenced_recordings_are_swept_at_start_up(serve, make_settings, tmp_path: Path) -> None:
    settings = make_settings({"stt": {"engine": "whisper"}})
    audio = Path(settings.audio.dir) / "2026-01-01"
    audio.mkdir(parents=True)
    orphan, fresh = audio / "000000-orphan.wav", audio / "000001-fresh.wav"
    orphan.write_bytes(wav(silence(0.5), 16000))
    fresh.write_bytes(wav(silence(0.5), 16000))
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    served = serve(settings)
    pcm, rate = speak(SENTENCES[3])
    assert (await upload(served, wav(pcm, rate), "kept")).status_code == 200
    for _ in range(50):
        if not orphan.exists():
            break
        await asyncio.sleep(0.1)
    assert not orphan.exists(), "a recording no message refers to outlived the start-up sweep"
    assert fresh.exists(), "a file younger than the grace period may be about to be stored"
    assert len(referenced(served)) == 1 and all(Path(p).exists() for p in referenced(served))
