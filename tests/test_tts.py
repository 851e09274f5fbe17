"""The speech engines: the wire encoder, Piper with the bundled voice, Festival's Russian voice, OpenAI-compatible
speech on the fake, and the router that gives each language its voice.

Each text handed to an engine must come back as one continuous utterance: Piper's own sentence splitting used to
cut "Dr. Smith will see you at noon." into "Doctor." and the rest, with a quarter second of quiet between."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import pytest_asyncio

import core.tts
import core.tts.festival
from core.audio import decode_audio
from core.config import STTSettings, TTSSettings, load_settings
from core.errors import ConfigError, TTSError
from core.interfaces import STTEngine, TTSEngine
from core.models import AudioChunk
from core.speech_text import SentenceSplitter
from core.stt import build_stt
from core.stt.whisper import WhisperSTT
from core.tts import build_tts
from core.tts.encode import FORMATS, AudioEncoder, media_type
from core.tts.festival import FestivalTTS
from core.tts.openai_tts import OpenAITTS
from core.tts.piper import PiperTTS, one_utterance, spell_out_abbreviations
from core.tts.russian_text import for_festival, plain_words, scheme_string
from core.tts.voices import VoiceRouter
from tests import speech
from tests.fakes.engines import GatedTTS
from tests.fakes.openai_server import FakeOpenAI


def decode(data: bytes) -> tuple[str, int, float]:
    """Container name, sample rate and duration in seconds of an encoded file, decoded for real."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        samples = sum(int(frame.samples) for frame in container.decode(stream))
        return container.format.name, stream.sample_rate, samples / stream.sample_rate


def sweep(seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype("<i2").tobytes()


async def collect(engine: TTSEngine, text: str, *, language: str | None = None) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(text, language=language)]


def longest_quiet(pcm: bytes, rate: int, *, frame_s: float = 0.01, level: float = 0.003) -> float:
    """Seconds of the longest run of quiet 10 ms frames (RMS under -50 dBFS) between the first and last sound.

    Quiet consonants stay above it: inside one utterance the longest run is ~0.13 s, while the joint between
    two of Piper's sentences was 0.20-0.26 s.
    """
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    size = int(rate * frame_s)
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) >= level)
    if len(loud) < 2:
        return 0.0
    return float((np.diff(loud) - 1).max()) * frame_s


# --- encoder ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "container", "rate_in", "rate_out", "max_kb_per_s"),
    [
        ("mp3", "mp3", 22050, 22050, 8),
        ("mp3", "mp3", 16000, 16000, 8),
        ("mp3", "mp3", 20000, 22050, 8),  # not an MPEG rate: resampled up to the next one
        ("ogg-opus", "ogg", 22050, 48000, 6),
        ("wav", "wav", 22050, 22050, 45),
    ],
)
def test_encoding_round_trips(fmt: str, container: str, rate_in: int, rate_out: int, max_kb_per_s: float) -> None:
    pcm = sweep(1.5, rate_in)
    chunk = AudioEncoder(fmt).encode(pcm, rate_in)
    assert (chunk.format, chunk.sample_rate) == (fmt, rate_out)
    name, rate, duration = decode(chunk.data)
    assert (name, rate) == (container, rate_out)
    assert duration == pytest.approx(1.5, abs=0.03)
    assert len(chunk.data) / 1.5 / 1000 < max_kb_per_s


@pytest.mark.parametrize("fmt", ["mp3", "ogg-opus", "wav"])
@pytest.mark.parametrize("size", [0, 1, 300])
def test_encoding_a_sliver_still_gives_a_playable_file(fmt: str, size: int) -> None:
    chunk = AudioEncoder(fmt).encode(bytes(size), 22050)
    assert decode(chunk.data)[2] < 0.02


def test_encoder_rejects_unknown_formats() -> None:
    with pytest.raises(ConfigError, match=r"tts\.format"):
        AudioEncoder("aiff")
    assert media_type("mp3") == "audio/mpeg"
    assert set(FORMATS) == {"mp3", "ogg-opus", "wav"}


# --- Piper --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def piper() -> Iterator[PiperTTS]:
    engine = PiperTTS(max_concurrent=1, steady=True)  # the same samples every run, so what Whisper hears cannot flake
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.aclose())


@pytest.mark.slow
async def test_piper_speaks_a_sentence_as_one_mp3(piper: PiperTTS) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    chunks = await collect(piper, text)
    assert len(chunks) == 1
    chunk = chunks[0]
    assert (chunk.format, chunk.sample_rate) == ("mp3", 22050)
    name, rate, duration = decode(chunk.data)
    assert (name, rate) == ("mp3", 22050)
    assert 1.5 < duration < 5.0  # about 2.8 s: 44 characters at a speaking pace
    assert piper.info().ready and piper.info().extra["busy"] == 0


@pytest.mark.slow
async def test_piper_speaks_each_text_as_one_chunk(piper: PiperTTS) -> None:
    """Whatever espeak-ng calls sentences, the text we chose is one chunk, without a sentence's pause inside."""
    chunks = await collect(piper, "Yes. No.")
    assert len(chunks) == 1
    clip = decode_audio(chunks[0].data, max_duration_s=30)
    assert 0.4 < clip.duration_s < 2.0
    assert longest_quiet(clip.pcm, clip.sample_rate) < 0.15
    assert await collect(piper, "   ") == []


# --- Piper: abbreviations and initials, heard by Whisper ------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def whisper() -> AsyncIterator[WhisperSTT]:
    engine = WhisperSTT(model="tiny.en", language="en")  # these tests hear English only: the fast English model
    await engine.start()
    yield engine
    await engine.aclose()


# A reply, the units our splitter makes of it, and each unit as a listener should hear it (how espeak-ng is made
# to read "No." and "St.").
ABBREVIATED = [
    (
        "Okay. Dr. Smith will see you at noon.",
        ["Okay.", "Dr. Smith will see you at noon."],
        ["Okay.", "Doctor Smith will see you at noon."],
    ),
    ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."], ["J. R. R. Tolkien wrote it."]),
    ("Please use gate No. 5 today.", ["Please use gate No. 5 today."], ["Please use gate number 5 today."]),
    (
        "Mrs. Jones lives on Baker St. near the park.",
        ["Mrs. Jones lives on Baker St. near the park."],
        ["Missus Jones lives on Baker Street near the park."],
    ),
    ("Mr. T. lives in St. Louis.", ["Mr. T. lives in St. Louis."], ["Mister T. lives in Saint Louis."]),
    (
        "Sgt. Miller met Prof. Brown today.",
        ["Sgt. Miller met Prof. Brown today."],
        ["Sergeant Miller met Professor Brown today."],
    ),
]
# How Whisper writes what it hears, for comparing: titles abbreviated, initials and "p.m." with stops.
_WRITTEN = {"dr": "doctor", "mr": "mister", "mrs": "missus", "st": "saint", "sgt": "sergeant", "prof": "professor"}


def as_heard(text: str) -> str:
    words = [_WRITTEN.get(word, word) for word in speech.normalise(text).split()]
    out: list[str] = []
    for single, group in itertools.groupby(words, key=lambda word: len(word) == 1):
        run = list(group)
        out += ["".join(run)] if single and len(run) > 1 else run  # "J. R. R." and "JRR" alike
    return " ".join(out)


@pytest.mark.slow
@pytest.mark.parametrize(("reply", "units", "heard"), ABBREVIATED)
async def test_piper_speaks_each_unit_whole(
    piper: PiperTTS, whisper: WhisperSTT, reply: str, units: list[str], heard: list[str]
) -> None:
    splitter = SentenceSplitter()
    assert splitter.feed(reply) + splitter.flush() == units
    for unit, expected in zip(units, heard, strict=True):
        chunks = await collect(piper, unit)
        assert len(chunks) == 1, unit
        clip = decode_audio(chunks[0].data, max_duration_s=30)
        assert longest_quiet(clip.pcm, clip.sample_rate) < 0.15, unit
        transcript = (await whisper.transcribe(clip)).text
        # One misheard word is Whisper's (int8 on a CPU without VNNI hears "gate" as "skate"); a unit cut short at its
        # abbreviation loses several.
        allowed = max(speech.SENTENCE_WER, 1 / len(as_heard(expected).split()))
        assert speech.wer(as_heard(expected), as_heard(transcript)) <= allowed, (unit, transcript)


@pytest.mark.slow
async def test_piper_runs_at_most_max_concurrent_syntheses(piper: PiperTTS) -> None:
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(int(piper.info().extra["busy"]))  # type: ignore[call-overload]
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(*(collect(piper, f"This is sentence number {n}.") for n in range(3)))
    finally:
        watcher.cancel()
    assert [len(chunks) for chunks in results] == [1, 1, 1]
    assert max(seen) == 1
    assert piper.info().extra["busy"] == 0


@pytest.mark.slow
async def test_an_abandoned_synthesis_frees_the_engine(piper: PiperTTS) -> None:
    task = asyncio.create_task(collect(piper, "A long sentence that nobody will hear because the user interrupted it."))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    assert len(await collect(piper, "Next.")) == 1
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        (
            "Dr. Smith and Mr. and Mrs. Jones, e.g. at 9 a.m., etc.",
            "Dr. Smith and Mr. and Mrs. Jones, e.g. at 9 a.m., etc.",
        ),
        ("Please use gate No. 5 today.", "Please use gate number 5 today."),
        (
            "See p. 7, pp. 8 and Fig. 2 of Vol. 3, Ch. 4, Sec. 5, Art. 6.",
            "See page 7, pages 8 and figure 2 of volume 3, chapter 4, section 5, article 6.",
        ),
        ("Mrs. Jones lives on Baker St. near the park.", "Mrs. Jones lives on Baker Street near the park."),
        ("He lives on Main St.", "He lives on Main Street."),
        ("Mr. T. lives in St. Louis.", "Mr. T. lives in Saint Louis."),
        (
            "Sgt. Miller met Prof. Brown and Ms. Lee on Mt. Fuji.",
            "Sergeant Miller met Professor Brown and Miz Lee on Mount Fuji.",
        ),
        ("John Smith, Jr. came and Sam Sr. left.", "John Smith, Junior came and Sam Senior left."),
        (
            "Cats vs. dogs, i.e. pets, approx. twice, esp. now, cf. cows",
            "Cats versus dogs, that is pets, approximately twice, especially now, compare cows",
        ),
        ("No. I won't. Gen Z is here.", "No. I won't. Gen Z is here."),
    ],
)
def test_abbreviations_espeak_misreads_are_spelled_out(text: str, spoken: str) -> None:
    assert spell_out_abbreviations(text) == spoken


def test_sentences_are_joined_into_one_utterance() -> None:
    doctor, smith = list("dˈɑːktɚ."), list("smˈɪθ.")
    assert one_utterance([doctor, smith]) == [*"dˈɑːktɚ smˈɪθ."]
    assert one_utterance([list("jˈɛs,"), [], list("nˈoʊ")]) == [*"jˈɛs, nˈoʊ"]
    assert one_utterance([doctor, smith], None) == [*"dˈɑːktɚ.smˈɪθ."]  # a voice without a space phoneme
    assert one_utterance([]) == []


def test_a_missing_piper_voice_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(TTSError) as caught:
        PiperTTS(voice=str(tmp_path / "nope.onnx"))
    assert caught.value.code == "tts-unavailable"


async def test_an_unloaded_piper_refuses_to_speak() -> None:
    engine = PiperTTS()
    with pytest.raises(TTSError) as caught:
        await collect(engine, "Hello.")
    assert caught.value.code == "tts-unavailable"
    assert not engine.info().ready
    await engine.aclose()


# --- OpenAI-compatible speech ---------------------------------------------------------------------------------------


def openai_tts(fake: FakeOpenAI, **options: object) -> OpenAITTS:
    settings: dict[str, object] = dict(api_key="sk-speech", base_url=f"{fake.url}/v1", timeout_s=5)  # type: ignore[attr-defined]
    settings.update(options)
    return OpenAITTS(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "requested", "container", "rate"),
    [("mp3", "mp3", "mp3", 24000), ("ogg-opus", "opus", "ogg", 48000), ("wav", "wav", "wav", 24000)],
)
async def test_openai_speech_in_the_wire_format(
    fake_openai: FakeOpenAI, fmt: str, requested: str, container: str, rate: int
) -> None:
    engine = openai_tts(fake_openai, fmt=fmt, model="tts-1-hd", voice="nova")
    try:
        text = "Hello there, how are you?"
        chunks = await collect(engine, text)
    finally:
        await engine.aclose()
    assert len(chunks) == 1
    assert (chunks[0].format, chunks[0].sample_rate) == (fmt, rate)
    name, decoded_rate, duration = decode(chunks[0].data)
    assert (name, decoded_rate) == (container, rate)
    assert duration == pytest.approx(len(text) * 0.06, abs=0.1)
    request = fake_openai.speech_requests[-1]
    assert request == {"model": "tts-1-hd", "voice": "nova", "input": text, "response_format": requested}
    assert fake_openai.auth_headers[-1] == "Bearer sk-speech"


async def test_openai_speech_gets_each_unit_whole_in_one_request(fake_openai: FakeOpenAI) -> None:
    engine = openai_tts(fake_openai)
    before = len(fake_openai.speech_requests)
    units = [unit for _, reply_units, _ in ABBREVIATED for unit in reply_units]
    try:
        counts = [len(await collect(engine, unit)) for unit in units]
    finally:
        await engine.aclose()
    assert counts == [1] * len(units)
    assert [r["input"] for r in fake_openai.speech_requests[before:]] == units


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("[status:500]", "tts-unavailable"),
        ("[status:503]", "tts-unavailable"),
        ("[status:400]", "tts-failed"),
        ("[status:401]", "tts-failed"),
    ],
)
async def test_openai_speech_errors_are_mapped(fake_openai: FakeOpenAI, directive: str, code: str) -> None:
    engine = openai_tts(fake_openai)
    try:
        with pytest.raises(TTSError) as caught:
            await collect(engine, f"Say this {directive}")
    finally:
        await engine.aclose()
    assert caught.value.code == code


async def test_a_hanging_speech_service_times_out(fake_openai: FakeOpenAI) -> None:
    engine = openai_tts(fake_openai, timeout_s=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(TTSError) as caught:
            await collect(engine, "Say this [hang]")
    finally:
        await engine.aclose()
    assert caught.value.code == "tts-unavailable"
    assert time.monotonic() - started < 3


async def test_a_down_speech_service_is_unavailable_fast() -> None:
    engine = OpenAITTS(base_url="http://127.0.0.1:9/v1", timeout_s=5)
    started = time.monotonic()
    try:
        with pytest.raises(TTSError) as caught:
            await collect(engine, "Hello.")
    finally:
        await engine.aclose()
    assert caught.value.code == "tts-unavailable"
    assert time.monotonic() - started < 2


async def test_openai_speech_honours_max_concurrent(fake_openai: FakeOpenAI) -> None:
    engine = openai_tts(fake_openai, max_concurrent=1, timeout_s=0.6)
    before = len(fake_openai.speech_requests)
    try:
        stuck = asyncio.create_task(collect(engine, "Never answered [hang]"))
        queued = asyncio.create_task(collect(engine, "Hello."))
        await asyncio.sleep(0.3)
        assert len(fake_openai.speech_requests) - before == 1  # the second waits for the only slot
        with pytest.raises(TTSError):
            await stuck
        assert len(await queued) == 1
    finally:
        await engine.aclose()
    assert [r["input"] for r in fake_openai.speech_requests[before:]] == ["Never answered [hang]", "Hello."]


# --- the factory ------------------------------------------------------------------------------------------------


async def test_build_tts_picks_the_engine(fake_openai: FakeOpenAI) -> None:
    assert await build_tts(TTSSettings(engine="none")) is None
    engine = await build_tts(
        TTSSettings(engine="openai", base_url=f"{fake_openai.url}/v1", voice="echo"),  # type: ignore[attr-defined]
        fmt="wav",
    )
    assert isinstance(engine, VoiceRouter)
    try:
        info = engine.info()
        assert (info.engine, info.model, info.extra["voice"], info.extra["format"]) == (
            "openai",
            "tts-1",
            "echo",
            "wav",
        )
        assert [c.format for c in await collect(engine, "Hi.")] == ["wav"]
        # One multilingual service speaks every language, in the same voice.
        assert engine.speaks("de") and engine.speaks(None)
        assert [c.format for c in await collect(engine, "Guten Tag.", language="de")] == ["wav"]
        assert fake_openai.speech_requests[-1]["voice"] == "echo"
    finally:
        await engine.aclose()


async def test_build_tts_speaks_the_configured_format(fake_openai: FakeOpenAI) -> None:
    url = f"{fake_openai.url}/v1"  # type: ignore[attr-defined]
    engine = await build_tts(TTSSettings(engine="openai", base_url=url, format="ogg-opus"))
    assert engine is not None
    try:
        assert [(c.format, c.sample_rate) for c in await collect(engine, "Hi.")] == [("ogg-opus", 48000)]
    finally:
        await engine.aclose()


async def test_build_tts_rejects_an_unknown_format() -> None:
    with pytest.raises(ConfigError):
        await build_tts(TTSSettings(engine="openai"), fmt="aiff")


# --- Russian text for Festival ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        # dashes of every kind between words are a pause; a hyphen inside a word stays
        ("Москва — столица России.", "Москва, столица России."),
        ("Москва – столица.", "Москва, столица."),
        ("Москва - столица.", "Москва, столица."),
        ("Москва -- столица.", "Москва, столица."),
        ("Москва ― столица.", "Москва, столица."),
        ("- Привет, - сказал он.", "Привет, сказал он."),
        ("Кто-то сказал: «нет»!", "Кто-то сказал: нет!"),
        ("Не‑разрывный дефис и ‐другой‐", "Не-разрывный дефис и другой"),
        ("5-10 минут", "5-10 минут"),
        # quotes, brackets, ellipsis, runs of punctuation
        ("«Привет», — сказал он… Да!", "Привет, сказал он. Да!"),
        ('Он сказал "да" и „нет“.', "Он сказал да и нет."),
        ("'цитата'", "цитата"),
        ("Rock'n'roll и д’Артаньян", "Rock'n'roll и д'Артаньян"),
        ("(в скобках) и [так]", "в скобках, и, так,"),
        ("Итак...", "Итак."),
        ("Да?!", "Да?"),
        ("Что? Да! Нет…", "Что? Да! Нет."),
        # symbols as words, numbers as festvox-ru reads them
        ("Скидка 20%.", "Скидка 20 процентов."),
        ("Дом № 5.", "Дом номер 5."),
        ("Том & Джерри", "Том и Джерри"),
        ("2+2=4", "2 плюс 2 равно 4"),
        ("$100 или 100 € или 50 ₽", "100 долларов или 100 евро или 50 рублей"),
        ("Температура −5 °C.", "Температура минус 5 градусов Цельсия."),
        ("Было -3 и (-7) градусов.", "Было минус 3 и, минус 7, градусов."),
        ("Цена 1 500 рублей.", "Цена 1500 рублей."),
        ("Цена 1\u00a0500\u00a0000 ₽.", "Цена 1500000 рублей."),
        ("Было 3,5 градуса, 2.71 и 3.14.", "Было 3 запятая 5 градуса, 2 запятая 71 и 3 запятая 14."),
        ("Встреча в 14:30.", "Встреча в 14: 30."),
        # Latin words stay; letters festvox-ru lacks become the nearest it has, or go
        ("Это Python и Linux.", "Это Python и Linux."),
        ("Café, naïve, Straße", "Cafe, naive, Strasse"),
        ("Привіт, світе", "Привит, свите"),
        ("за\u0301мок и замо\u0301к", "замок и замок"),
        ("Привет 😀 мир.", "Привет мир."),
        ("Привет\\ мир", "Привет мир"),
        ("Привет, мир!\nКак дела?", "Привет, мир! Как дела?"),
        ("#хештег ♥ 50/50", "хештег 50 50"),
        # nothing speakable: no audio, not an error
        ("—", ""),
        ("…", ""),
        ("😀", ""),
        ("«»", ""),
        ("", ""),
        ("   ", ""),
        ("? ! .", ""),
    ],
)
def test_russian_text_is_cleaned_for_festival(text: str, cleaned: str) -> None:
    assert for_festival(text) == cleaned


def test_the_last_resort_keeps_only_letters_and_digits() -> None:
    assert plain_words("Кто-то: «да», 5%!") == "Кто то да 5"
    assert plain_words("— … 😀") == ""
    assert scheme_string('a "b" \\c') == '"a \\"b\\" \\\\c"'


# --- Festival ------------------------------------------------------------------------------------------------------

FESTIVAL_MISSING = shutil.which("festival") is None or not speech.RUSSIAN_VOICE_DIR.is_dir()
needs_festival = pytest.mark.skipif(
    FESTIVAL_MISSING, reason="Festival's Russian voice is not installed: apt-get install festival festvox-ru"
)
# Subprocess pipes belong to the event loop that opened them: the shared engine and its tests use one loop.
in_session_loop = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def festival() -> AsyncIterator[FestivalTTS]:
    if FESTIVAL_MISSING:
        pytest.skip("Festival's Russian voice is not installed: apt-get install festival festvox-ru")
    engine = FestivalTTS()
    await engine.start()
    yield engine
    await engine.aclose()


@needs_festival
@in_session_loop
async def test_festival_speaks_each_russian_sentence_as_one_chunk(festival: FestivalTTS) -> None:
    info = festival.info()
    assert (info.engine, info.model, info.ready, info.extra["format"]) == (
        "festival",
        "voice_msu_ru_nsh_clunits",
        True,
        "mp3",
    )
    started = time.perf_counter()
    first = await collect(festival, "Да, конечно.")
    print(f"\nFestival, warm: first audio of a short sentence in {(time.perf_counter() - started) * 1000:.0f} ms")
    assert len(first) == 1
    for sentence in speech.RUSSIAN_SENTENCES[:6]:
        chunks = await collect(festival, sentence, language="ru")
        assert len(chunks) == 1, sentence
        assert (chunks[0].format, chunks[0].sample_rate) == ("mp3", 16000)
        name, rate, duration = decode(chunks[0].data)
        assert (name, rate) == ("mp3", 16000)
        assert 0.04 * len(sentence) < duration < 0.15 * len(sentence), sentence  # ~0.07 s a character
    assert festival.info().extra["busy"] == 0


@needs_festival
@in_session_loop
async def test_festival_says_what_it_cannot_read_without_failing(festival: FestivalTTS) -> None:
    for text in ["—", "…", "😀", "", "«»"]:
        assert await collect(festival, text) == [], text
    # Each of these alone silenced the whole sentence before it was cleaned.
    for text in ["Цена 1 500 рублей, скидка 20% — «выгодно»…", "Температура −5 °C, 3,5 балла.", "Привет 😀 мир."]:
        chunks = await collect(festival, text)
        assert len(chunks) == 1 and decode(chunks[0].data)[2] > 0.5, text


@needs_festival
@in_session_loop
async def test_text_the_voice_refuses_is_retried_as_plain_words(
    festival: FestivalTTS, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(core.tts.festival, "for_festival", lambda text: text)  # as if the cleaning missed something
    chunks = await collect(festival, "Привет — мир")  # "—" silences the sentence; "Привет мир" is said
    assert len(chunks) == 1 and decode(chunks[0].data)[2] > 0.5
    with caplog.at_level(logging.WARNING, logger="core.tts.festival"):
        assert await collect(festival, "— «»") == []  # nothing left to try: no audio, a warning, no error
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["the Festival voice said nothing for '— «»'"]
    assert len(await collect(festival, "Всё хорошо.")) == 1


@needs_festival
@in_session_loop
async def test_an_abandoned_festival_sentence_does_not_answer_the_next(festival: FestivalTTS) -> None:
    task = asyncio.create_task(collect(festival, "Очень длинное предложение, которое никто не услышит. " * 6))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    chunks = await collect(festival, "Спасибо.")
    assert len(chunks) == 1
    assert decode(chunks[0].data)[2] < 1.5  # "Спасибо" (~0.8 s), not the long one


@needs_festival
@in_session_loop
async def test_a_killed_festival_worker_costs_one_sentence(festival: FestivalTTS) -> None:
    pids = festival.info().extra["pids"]
    assert isinstance(pids, list) and len(pids) == 1
    task = asyncio.create_task(collect(festival, "Очень длинное предложение, которое прервётся. " * 10))
    await asyncio.sleep(0.05)
    os.kill(pids[0], signal.SIGKILL)
    with pytest.raises(TTSError) as caught:
        await task
    assert caught.value.code == "tts-failed"
    assert len(await collect(festival, "Всё снова работает.")) == 1  # it waits for the worker to start again
    assert festival.info().extra["pids"] != pids

    # Killed while idle: the next sentence starts it again (at most one sentence is lost on the way).
    os.kill(festival.info().extra["pids"][0], signal.SIGKILL)  # type: ignore[index]
    await asyncio.sleep(0.2)
    errors = 0
    for _ in range(2):
        try:
            chunks = await collect(festival, "Спасибо.")
            break
        except TTSError:
            errors += 1
    assert errors <= 1 and len(chunks) == 1


@needs_festival
@in_session_loop
async def test_festival_runs_one_process_per_concurrent_sentence() -> None:
    engine = FestivalTTS(max_concurrent=2, fmt="wav")
    await engine.start()
    try:
        assert len(set(engine.info().extra["pids"])) == 2  # type: ignore[arg-type]
        results = await asyncio.gather(*(collect(engine, text) for text in ["Раз, два, три.", "Четыре, пять."]))
        assert [(len(chunks), chunks[0].format, chunks[0].sample_rate) for chunks in results] == [(1, "wav", 16000)] * 2
        folder = engine._folder
        assert folder is not None and folder.is_dir()
        assert oct(folder.stat().st_mode & 0o777) == "0o700"  # nobody else reads what the bot says
    finally:
        await engine.aclose()
    assert engine.info().extra["pids"] == [] and not folder.exists()


@needs_festival
async def test_a_missing_festival_voice_is_unavailable() -> None:
    engine = FestivalTTS(voice="voice_nobody_here")
    with pytest.raises(TTSError) as caught:
        await engine.start()
    assert caught.value.code == "tts-unavailable"
    assert "voice_nobody_here" in caught.value.message and "festvox-ru" in caught.value.message
    assert not engine.info().ready
    await engine.aclose()


async def test_festival_not_installed_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = FestivalTTS()
    with pytest.raises(TTSError) as caught:
        await engine.start()
    assert caught.value.code == "tts-unavailable"
    assert "apt-get install festival festvox-ru" in caught.value.message
    with pytest.raises(TTSError) as refused:
        await collect(engine, "Привет.")
    assert refused.value.code == "tts-unavailable"
    await engine.aclose()


def test_a_festival_voice_name_cannot_carry_scheme() -> None:
    with pytest.raises(ConfigError, match=r"tts\.voices"):
        FestivalTTS(voice='x) (system "id")')
    assert FestivalTTS(voice="msu_ru_nsh_clunits").info().model == "voice_msu_ru_nsh_clunits"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def russian_stt() -> AsyncIterator[STTEngine]:
    """The project's default speech-to-text engine, told the speech is Russian."""
    engine = await build_stt(STTSettings(language="ru"))
    assert engine is not None
    yield engine
    await engine.aclose()


@pytest.mark.slow
@needs_festival
@in_session_loop
async def test_festival_is_understood_by_whisper(festival: FestivalTTS, russian_stt: STTEngine) -> None:
    """Whisper base hears the sentences Festival says with at most one word in four wrong (measured: ~1 in 10)."""
    references, heard = [], []
    for sentence in speech.RUSSIAN_SENTENCES:
        chunks = await collect(festival, sentence, language="ru")
        clip = decode_audio(chunks[0].data, max_duration_s=30)
        transcript = await russian_stt.transcribe(clip, language="ru")
        references.append(sentence)
        heard.append(transcript.text)
    error_rate = speech.wer_russian(" ".join(references), " ".join(heard))
    print(f"\nWhisper on Festival's Russian: WER {error_rate:.1%}")
    for reference, text in zip(references, heard, strict=True):
        print(f"  {reference} -> {text}")
    assert error_rate <= 0.25


# --- voices per language ----------------------------------------------------------------------------------------


async def test_each_language_is_spoken_in_its_own_voice() -> None:
    english, russian = GatedTTS(), GatedTTS()
    router = VoiceRouter({"en": english, "ru": russian, "de": None})
    assert router.languages == ("en", "ru") and router.default_language == "en"
    assert [router.speaks(language) for language in ("en", "ru", "en-US", "RU", None, "de", "fr")] == [
        *[True, True, True, True, True],
        *[False, False],
    ]
    await collect(router, "Hello.", language="en")
    await collect(router, "Привет.", language="ru")
    await collect(router, "Hi.", language="en_GB")
    await collect(router, "Unknown.")  # no language known: the first configured one's voice
    assert (english.sentences, english.languages) == (["Hello.", "Hi.", "Unknown."], ["en", "en", "en"])
    assert (russian.sentences, russian.languages) == (["Привет."], ["ru"])

    for language, name in [("de", "German"), ("fr", "French"), ("xx", "the language 'xx'")]:
        with pytest.raises(TTSError) as caught:
            await collect(router, "Guten Tag.", language=language)
        assert caught.value.code == "tts-no-voice"
        assert caught.value.message == f"there is no voice for {name}; the reply is shown as text"
    assert await collect(router, "   ", language="de") == []  # nothing to say is never an error

    info = router.info().to_dict()
    assert info["engine"] == "voices" and info["ready"] is True and info["languages"] == ["en", "ru"]
    assert info["voices"] == {"en": english.info().to_dict(), "ru": russian.info().to_dict(), "de": None}


async def test_a_multilingual_engine_speaks_the_languages_without_a_voice() -> None:
    russian, everyone = GatedTTS(), GatedTTS()
    router = VoiceRouter({"ru": russian}, multilingual=everyone)
    await collect(router, "Guten Tag.", language="de")
    await collect(router, "Привет.", language="ru")
    assert (everyone.sentences, everyone.languages, russian.sentences) == (["Guten Tag."], ["de"], ["Привет."])
    assert router.speaks("ja")


async def test_the_router_closes_each_engine_once() -> None:
    shared, other = GatedTTS(), GatedTTS()
    router = VoiceRouter({"en": shared, "en-GB": shared, "ru": other, "de": None})
    await router.aclose()
    assert (shared.closed, other.closed) == (1, 1)


@pytest.fixture
def fake_voices(monkeypatch: pytest.MonkeyPatch) -> list[GatedTTS]:
    """A ``fake`` voice engine for build_tts: ``fake:missing`` is not installed, ``fake:crash`` fails unexpectedly,
    ``fake:misconfigured`` is a configuration mistake, ``fake:slow`` takes 0.3 s to start; the others start."""
    started: list[GatedTTS] = []

    async def factory(settings: TTSSettings, voice: str, fmt: str) -> TTSEngine:
        if voice == "missing":
            raise TTSError("the fake voice is not installed", code="tts-unavailable")
        if voice == "crash":
            raise RuntimeError("the fake voice crashed")
        if voice == "misconfigured":
            raise ConfigError("tts.voices: the fake voice is misconfigured")
        if voice == "slow":
            await asyncio.sleep(0.3)
        engine = GatedTTS()
        started.append(engine)
        return engine

    monkeypatch.setitem(core.tts.VOICES, "fake", factory)
    return started


async def test_a_voice_that_fails_to_start_leaves_only_its_language_silent(
    fake_voices: list[GatedTTS], caplog: pytest.LogCaptureFixture
) -> None:
    settings = TTSSettings(voices={"en": "fake", "ru": "fake:missing", "uk": "fake:crash", "be": "fake:missing"})
    with caplog.at_level(logging.WARNING, logger="core.tts"):
        router = await build_tts(settings)
    assert router is not None
    try:
        assert router.languages == ("en",) and router.speaks("en") and not router.speaks("ru")
        assert len(await collect(router, "Hello.", language="en")) == 1
        for language in ("ru", "uk", "be"):
            with pytest.raises(TTSError) as caught:
                await collect(router, "Привет.", language=language)
            assert caught.value.code == "tts-no-voice"
    finally:
        await router.aclose()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [  # once per voice that failed, naming every language it was to speak
        "no voice for Russian (ru), Belarusian (be): the fake voice is not installed; replies in it are shown as text",
        "no voice for Ukrainian (uk): it failed to start",
    ]
    assert fake_voices[0].closed == 1


async def test_a_voice_configuration_mistake_stops_start_up(fake_voices: list[GatedTTS]) -> None:
    with pytest.raises(ConfigError, match="misconfigured"):
        await build_tts(TTSSettings(voices={"en": "fake:slow", "ru": "fake:misconfigured"}))
    assert [engine.closed for engine in fake_voices] == [1]  # what had started is closed
    with pytest.raises(ConfigError, match=r"tts\.voices\.ru: unknown engine 'espeak'"):
        await build_tts(TTSSettings(voices={"en": "fake", "ru": "espeak"}))


async def test_languages_sharing_a_voice_share_its_engine(fake_voices: list[GatedTTS]) -> None:
    router = await build_tts(TTSSettings(voices={"en": "fake:a", "es": "fake:b", "pt": "fake:a"}))
    assert router is not None
    await router.aclose()
    assert [engine.closed for engine in fake_voices] == [1, 1]


@pytest.mark.parametrize(
    ("environ", "voices"),
    [
        ({}, {"en": "piper", "ru": "festival"}),
        ({"WEB_BOT_TTS__VOICES": "en=piper, ru=festival:voice_msu_ru_nsh_clunits"}, None),
        ({"WEB_BOT_TTS__VOICES": '{"de": "piper:/voices/de DE.onnx"}'}, {"de": "piper:/voices/de DE.onnx"}),
    ],
)
def test_voices_are_configured_per_language(environ: dict[str, str], voices: dict[str, str] | None) -> None:
    expected = voices or {"en": "piper", "ru": "festival:voice_msu_ru_nsh_clunits"}
    assert load_settings(environ=environ).tts.voices == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("en", "is not language=voice"),
        ("EN=piper", "is not a language code"),
        ("en=", "is not engine or engine:voice"),
        ("{}", "at least 1 item"),
        ("{bad", "tts.voices"),
    ],
)
def test_bad_voices_name_the_key(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"tts\.voices") as caught:
        load_settings(environ={"WEB_BOT_TTS__VOICES": value})
    assert problem in caught.value.message


@pytest.mark.slow
@needs_festival
async def test_the_default_voices_speak_english_and_russian() -> None:
    router = await build_tts(TTSSettings(), fmt="wav")
    assert router is not None
    try:
        english = await collect(router, "The quick brown fox jumps over the lazy dog.", language="en")
        russian = await collect(router, "Съешь же ещё этих мягких французских булок.", language="ru")
        unknown = await collect(router, "Hello there.")
        assert [(c.format, c.sample_rate) for c in english + russian + unknown] == [
            ("wav", 22050),  # Piper's joe
            ("wav", 16000),  # Festival's msu_ru_nsh
            ("wav", 22050),  # no language known: the first voice, English
        ]
        with pytest.raises(TTSError) as caught:
            await collect(router, "Guten Tag.", language="de")
        assert caught.value.code == "tts-no-voice"
        info = router.info()
        assert (info.engine, info.ready, info.extra["languages"]) == ("piper", True, ["en", "ru"])
        assert info.model == "en:en_US-joe-medium ru:voice_msu_ru_nsh_clunits"
    finally:
        await router.aclose()
