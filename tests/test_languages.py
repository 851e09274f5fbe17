"""A spoken conversation in the user's own language, end to end through the real server: Russian and English
speech (Festival's Russian voice, Piper's English one) uploaded and streamed live, detected within the allow-list,
answered in that language, and spoken back by that language's voice — checked by transcribing the reply audio."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from core.audio import decode_audio
from core.config import STTSettings
from core.stt import build_stt
from tests.conftest import Client, Served
from tests.fakes.openai_server import FakeOpenAI
from tests.speech import (
    RECORDINGS_DIR,
    RUSSIAN_SENTENCES,
    SENTENCES,
    resample,
    silence,
    speak,
    speak_russian,
    wav,
    wer,
    wer_russian,
)

pytestmark = pytest.mark.slow

RUSSIAN_REPLY = "Сегодня в Москве солнечно и тепло. Возьмите с собой воду."
ENGLISH_REPLY = "It is sunny and warm today. Take some water with you."
CHUNK = 640  # 20 ms of 16 kHz PCM16


@pytest.fixture
def bilingual(serve, make_settings, fake_openai: FakeOpenAI, monkeypatch) -> Served:
    monkeypatch.setitem(fake_openai.by_system, "Always answer in Russian.", RUSSIAN_REPLY)
    monkeypatch.setitem(fake_openai.by_system, "Always answer in English.", ENGLISH_REPLY)
    return serve(make_settings({"stt": {"engine": "whisper"}, "tts": {"engine": "piper"}}))


@pytest.fixture
async def ears():
    """Multilingual Whisper, to hear what the server said."""
    engine = await build_stt(STTSettings(languages=["en", "ru"]))
    assert engine is not None
    yield engine
    await engine.aclose()


async def spoken_reply(client: Client) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Events and audio frames up to ``audio_done``."""
    events: list[dict[str, Any]] = []
    frames: list[bytes] = []
    while not events or events[-1]["type"] != "audio_done":
        frame = await asyncio.wait_for(client.ws.recv(), 90)
        if isinstance(frame, bytes):
            frames.append(frame)
        else:
            events.append(json.loads(frame))
            assert events[-1]["type"] != "error", events[-1]
    return events, frames


async def heard(ears, frames: list[bytes], language: str) -> str:
    texts = []
    for frame in frames:
        texts.append((await ears.transcribe(decode_audio(frame, max_duration_s=60), language=language)).text)
    return " ".join(texts)


@pytest.mark.parametrize("language", ["ru", "en"])
async def test_an_upload_is_answered_and_spoken_in_its_language(bilingual: Served, connect, fake_openai, ears,
                                                                language: str) -> None:
    said = RUSSIAN_SENTENCES[0] if language == "ru" else SENTENCES[2]
    pcm, rate = speak_russian(said) if language == "ru" else speak(said)
    tab = await connect(bilingual, f"upload-{language}")
    async with httpx.AsyncClient(base_url=bilingual.url, timeout=120) as http:
        response = await http.post(
            "/upload_audio", files={"file": ("q.wav", wav(pcm, rate))}, data={"client_id": f"upload-{language}"}
        )
    assert response.status_code == 200, response.text
    events, frames = await spoken_reply(tab)
    transcription = next(e for e in events if e["type"] == "transcription")
    assert transcription["language"] == language and transcription["language_probability"] > 0.9
    score = wer_russian if language == "ru" else wer
    assert score(said, transcription["text"]) <= 0.25, transcription["text"]
    reply = next(e for e in events if e["type"] == "reply")
    expected = RUSSIAN_REPLY if language == "ru" else ENGLISH_REPLY
    assert reply["text"] == expected
    # Spoken by the right voice: Whisper hears the reply's words back in that language.
    assert len(frames) == 2
    assert score(expected, await heard(ears, frames, language)) <= 0.35
    stored = bilingual.stored(f"upload-{language}")
    assert [role for role, _, _ in stored] == ["user", "assistant"]


async def test_a_live_russian_utterance_is_answered_and_spoken_in_russian(bilingual: Served, connect, ears) -> None:
    tab = await connect(bilingual, "live-ru")
    pcm, rate = speak_russian(RUSSIAN_SENTENCES[3])
    stream = resample(pcm, rate, 16000) + silence(1.2)
    await tab.send({"type": "audio_start", "format": "pcm16", "sample_rate": 16000})
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, offset in enumerate(range(0, len(stream), CHUNK)):
        await tab.send(stream[offset : offset + CHUNK])
        await asyncio.sleep(max(0, start + (index + 1) * 0.02 - loop.time()))
    events, frames = await spoken_reply(tab)
    transcription = next(e for e in events if e["type"] == "transcription")
    assert transcription["language"] == "ru"
    assert wer_russian(RUSSIAN_SENTENCES[3], transcription["text"]) <= 0.25, transcription["text"]
    assert next(e for e in events if e["type"] == "reply")["text"] == RUSSIAN_REPLY
    assert wer_russian(RUSSIAN_REPLY, await heard(ears, frames, "ru")) <= 0.35


async def test_the_allow_list_refuses_an_unlisted_languages_detection(bilingual: Served) -> None:
    """The real French recording: French is not among stt.languages (en, ru), so it is never reported as French."""
    async with httpx.AsyncClient(base_url=bilingual.url, timeout=120) as http:
        response = await http.post(
            "/upload_audio", files={"file": ("fr.aiff", (RECORDINGS_DIR / "french.aiff").read_bytes())},
            data={"client_id": "french"},
        )
    assert response.status_code == 200, response.text
    assert bilingual.stored("french")[0][0] == "user"
    import sqlite3

    with sqlite3.connect(bilingual.settings.database.db_path) as db:
        (language,) = db.execute("SELECT language FROM messages WHERE client_id='french' AND role='user'").fetchone()
    assert language in ("en", "ru")


async def test_a_language_without_a_voice_is_shown_with_a_notice(serve, make_settings, connect, fake_openai,
                                                                 monkeypatch) -> None:
    monkeypatch.setitem(fake_openai.by_system, "Always answer in Russian.", RUSSIAN_REPLY)
    served = serve(make_settings({"tts": {"engine": "piper", "voices": {"en": "piper"}},
                                  "voice": {"replies": "always"}}))
    tab = await connect(served, "no-russian-voice")
    await tab.send("Расскажи мне, пожалуйста, какая сегодня погода в Москве?")
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] != "audio_done":
        frame = await asyncio.wait_for(tab.ws.recv(), 60)
        assert isinstance(frame, str), "a Russian sentence must never be read by the English voice"
        events.append(json.loads(frame))
    assert [e["code"] for e in events if e["type"] == "error"] == ["tts-no-voice"]
    assert next(e for e in events if e["type"] == "reply")["text"] == RUSSIAN_REPLY
    assert events[-1]["frames"] == 0
