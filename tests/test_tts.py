"""The speech engines: the wire encoder, Piper with the bundled voice, and OpenAI-compatible speech on the fake.

Each text handed to an engine must come back as one continuous utterance: Piper's own sentence splitting used to
cut "Dr. Smith will see you at noon." into "Doctor." and the rest, with a quarter second of quiet between."""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import pytest_asyncio

from core.audio import decode_audio
from core.config import TTSSettings
from core.errors import ConfigError, TTSError
from core.interfaces import TTSEngine
from core.models import AudioChunk
from core.speech_text import SentenceSplitter
from core.stt.whisper import WhisperSTT
from core.tts import build_tts
from core.tts.encode import FORMATS, AudioEncoder, media_type
from core.tts.openai_tts import OpenAITTS
from core.tts.piper import PiperTTS, one_utterance, spell_out_abbreviations
from tests import speech
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


async def collect(engine: TTSEngine, text: str) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(text)]


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
    engine = WhisperSTT()  # the defaults build_stt uses: bundled tiny.en, English
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
        assert speech.wer(as_heard(expected), as_heard(transcript)) <= speech.SENTENCE_WER, (unit, transcript)


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
    assert isinstance(engine, OpenAITTS)
    try:
        info = engine.info()
        assert (info.engine, info.model, info.extra["voice"], info.extra["format"]) == (
            "openai",
            "tts-1",
            "echo",
            "wav",
        )
        assert [c.format for c in await collect(engine, "Hi.")] == ["wav"]
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
