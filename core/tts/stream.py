"""StreamEncoder: speech fed a sentence at a time, out as ONE continuous file, sent piece by piece as it is encoded.

The formats are OpenAI's speech formats, at its 24 kHz mono: ``mp3``, ``opus`` (in Ogg), ``aac`` (ADTS), ``flac``,
``wav`` (its sizes left open, 0xFFFFFFFF, as a stream's must be) and ``pcm`` (raw 16-bit little-endian samples).
PyAV writes to a sink that cannot seek, so every muxer writes a file that needs no header patched at the end, and
each packet is flushed to the sink at once. Sentences of voices at other rates (Piper's 22.05 kHz, Festival's
16 kHz) are resampled to 24 kHz, so one file holds them all. ``speed`` changes the tempo without changing the pitch
(FFmpeg's ``atempo``, two in a row below 0.5). Every call blocks: run them in worker threads; they take turns, so a
``close`` from a listener that left waits for the ``feed`` still running.
"""

from __future__ import annotations

import logging
import struct
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from core.errors import TTSError

logger = logging.getLogger(__name__)

OUTPUT_RATE = 24000
MIN_SPEED, MAX_SPEED = 0.25, 4.0
TEMPO_FRAME = 1024  # samples


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """How one response format is muxed and encoded; no container: raw samples (``wav`` and ``pcm``)."""

    media_type: str
    container: str | None = None
    codec: str | None = None
    bitrate: int = 0
    options: tuple[tuple[str, str], ...] = ()


FORMATS: dict[str, StreamFormat] = {
    "mp3": StreamFormat("audio/mpeg", "mp3", "libmp3lame", 64_000),
    # Pages of at most 0.1 s instead of Ogg's default 1 s: each sentence's end reaches the listener with it.
    "opus": StreamFormat("audio/ogg", "ogg", "libopus", 32_000, (("page_duration", "100000"),)),
    "aac": StreamFormat("audio/aac", "adts", "aac", 64_000),
    "flac": StreamFormat("audio/flac", "flac", "flac"),
    "wav": StreamFormat("audio/wav"),
    "pcm": StreamFormat("audio/pcm"),
}


def wav_header(rate: int) -> bytes:
    """A mono 16-bit WAV header whose RIFF and data sizes are left open (0xFFFFFFFF): the samples follow until
    the stream ends."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + (
        b"data" + struct.pack("<I", 0xFFFFFFFF)
    )


class _Sink:
    """A write-only file for PyAV: what the muxer writes is kept until taken. It has no ``seek``, so muxers write a
    streamable file."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _frame(pcm: bytes, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return frame


def _samples(frame: av.AudioFrame) -> bytes:
    # A plane is padded for SIMD; only the first samples * 2 bytes are audio.
    return bytes(frame.planes[0])[: frame.samples * 2]


class _Tempo:
    """FFmpeg's ``atempo`` over the whole stream: faster or slower speech at the same pitch. It gives out each frame
    pushed when the next one comes, so frames go in small: a sentence is held back by one 43 ms frame at most."""

    def __init__(self, speed: float, rate: int) -> None:
        factors = [0.5, speed / 0.5] if speed < 0.5 else [speed]
        self._graph = av.filter.Graph()
        source = self._graph.add_abuffer(format="s16", sample_rate=rate, layout="mono", time_base=Fraction(1, rate))
        last: Any = source
        for factor in factors:
            tempo = self._graph.add("atempo", f"{factor:.6f}")
            last.link_to(tempo)
            last = tempo
        last.link_to(self._graph.add("abuffersink"))
        self._graph.configure()
        self._pts = 0

    def push(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        if frame is None:
            return self._filtered(None)
        samples = np.frombuffer(_samples(frame), dtype="<i2")
        out: list[av.AudioFrame] = []
        for start in range(0, samples.size, TEMPO_FRAME):
            piece = _frame(samples[start : start + TEMPO_FRAME].tobytes(), frame.sample_rate)
            piece.pts, piece.time_base = self._pts, Fraction(1, frame.sample_rate)
            self._pts += piece.samples
            out += self._filtered(piece)
        return out

    def _filtered(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        self._graph.push(frame)
        out: list[av.AudioFrame] = []
        while True:
            try:
                pulled = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return out
            assert isinstance(pulled, av.AudioFrame)
            out.append(pulled)


class StreamEncoder:
    """One response's audio: ``feed`` each sentence's PCM, send what it returns, then what ``finish`` returns."""

    def __init__(self, fmt: str, *, speed: float = 1.0, rate: int = OUTPUT_RATE) -> None:
        if fmt not in FORMATS:
            raise TTSError(f"unknown audio format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.format = fmt
        self.spec = FORMATS[fmt]
        self.rate = rate
        self._tempo = _Tempo(speed, rate) if abs(speed - 1.0) > 1e-3 else None
        self._sink = _Sink()
        self._container: Any = None
        self._stream: Any = None
        self._header = wav_header(rate) if fmt == "wav" else b""
        self._lock = threading.Lock()
        if self.spec.container is not None:
            self._open()

    @property
    def media_type(self) -> str:
        return self.spec.media_type

    def _open(self) -> None:
        spec = self.spec
        try:
            self._container = av.open(
                self._sink, "w", format=spec.container,
                container_options={"flush_packets": "1", **dict(spec.options)},
            )
            self._stream = self._container.add_stream(spec.codec, rate=self.rate, layout="mono")
            if spec.bitrate:
                self._stream.bit_rate = spec.bitrate
        except (av.FFmpegError, ValueError) as err:
            raise TTSError(f"cannot encode speech as {self.format}") from err

    def feed(self, pcm: bytes, rate: int) -> bytes:
        """Add one piece of mono 16-bit ``pcm`` at ``rate``; the encoded bytes that are ready."""
        pcm = pcm[: len(pcm) // 2 * 2]
        with self._lock:
            if not pcm:
                return self._take()
            frames = [_frame(pcm, rate)]
            if rate != self.rate:
                resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
                frames = [*resampler.resample(frames[0]), *resampler.resample(None)]
            if self._tempo is not None:
                frames = [out for frame in frames for out in self._tempo.push(frame)]
            return self._encode(frames)

    def finish(self) -> bytes:
        """The rest of the file: what the tempo filter and the encoder still held, and the muxer's trailer."""
        with self._lock:
            return self._finish()

    def _finish(self) -> bytes:
        frames = self._tempo.push(None) if self._tempo is not None else []
        out = self._encode(frames)
        if self._container is None:
            return out
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except (av.FFmpegError, ValueError) as err:
            raise TTSError(f"cannot encode speech as {self.format}") from err
        finally:
            self._container = None
        return out + self._sink.take()

    def close(self) -> None:
        """Let go of the encoder without finishing the file (the listener left)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, ValueError) as err:
                logger.debug("closing an unfinished %s stream: %s", self.format, err)
            self._container = None

    def _encode(self, frames: list[av.AudioFrame]) -> bytes:
        if self._container is None:
            return self._take() + b"".join(_samples(frame) for frame in frames)
        try:
            for frame in frames:
                frame.pts = None  # the encoder counts the samples itself
                self._container.mux(self._stream.encode(frame))
        except (av.FFmpegError, ValueError) as err:
            raise TTSError(f"cannot encode speech as {self.format}") from err
        return self._sink.take()

    def _take(self) -> bytes:
        header, self._header = self._header, b""
        return header
