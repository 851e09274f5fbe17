"""AudioEncoder: mono 16-bit PCM to a self-contained file per sentence, in a format browsers play natively.

MP3 is the default: every browser decodes it with ``decodeAudioData`` and ``<audio>``, it costs about 6 KB
a second of speech at 48 kbit/s, LAME encodes it at ~1/100 of real time, and its gapless header keeps the
decoded length exact. ``wav`` (no encoding, 44 KB/s at 22.05 kHz) and ``ogg-opus`` (4 KB/s, same encode time,
but older Safari cannot decode Ogg) can be chosen instead.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from core.audio import pcm_to_wav
from core.errors import ConfigError, TTSError
from core.models import AudioChunk

logger = logging.getLogger(__name__)

DEFAULT_FORMAT = "mp3"


@dataclass(frozen=True, slots=True)
class WireFormat:
    """How one wire format is muxed and encoded."""

    container: str
    codec: str
    media_type: str
    bitrate: int
    rates: tuple[int, ...]


# MPEG-1/2 layer III takes only these rates; Opus takes 8-48 kHz but always decodes at 48 kHz.
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
FORMATS: dict[str, WireFormat] = {
    "mp3": WireFormat("mp3", "libmp3lame", "audio/mpeg", 48_000, _MP3_RATES),
    "ogg-opus": WireFormat("ogg", "libopus", "audio/ogg; codecs=opus", 32_000, (48000,)),
    "wav": WireFormat("wav", "pcm_s16le", "audio/wav", 0, ()),
}


def media_type(fmt: str) -> str:
    """The MIME type a browser needs to play ``fmt`` (for a Blob or an ``<audio>`` source)."""
    return FORMATS[fmt].media_type


def _target_rate(spec: WireFormat, rate: int) -> int:
    if not spec.rates or rate in spec.rates:
        return rate
    higher = [r for r in spec.rates if r >= rate]
    return min(higher) if higher else max(spec.rates)


class AudioEncoder:
    """Encodes mono 16-bit PCM into one complete file per call; stateless, so any thread may use it."""

    def __init__(self, fmt: str = DEFAULT_FORMAT, *, bitrate: int | None = None) -> None:
        if fmt not in FORMATS:
            raise ConfigError(f"tts.format: unknown audio format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self._fmt = fmt
        self._spec = FORMATS[fmt]
        self._bitrate = bitrate or self._spec.bitrate

    @property
    def format(self) -> str:
        return self._fmt

    @property
    def media_type(self) -> str:
        return self._spec.media_type

    def output_rate(self, sample_rate: int) -> int:
        """The rate the encoded audio decodes at, for input at ``sample_rate``."""
        return _target_rate(self._spec, sample_rate)

    def encode(self, pcm: bytes, sample_rate: int) -> AudioChunk:
        """Encode ``pcm`` (blocking: call it from a worker thread)."""
        duration_s = len(pcm) // 2 / sample_rate
        if self._fmt == "wav":
            return AudioChunk(pcm_to_wav(pcm[: len(pcm) // 2 * 2], sample_rate), "wav", sample_rate, duration_s)
        try:
            data = self._encode_av(pcm, sample_rate)
        except Exception as err:  # PyAV raises FFmpegError subclasses and ValueError from many layers
            logger.exception("cannot encode %d bytes of PCM as %s", len(pcm), self._fmt)
            raise TTSError(f"cannot encode speech as {self._fmt}") from err
        return AudioChunk(data, self._fmt, self.output_rate(sample_rate), duration_s)

    def _encode_av(self, pcm: bytes, sample_rate: int) -> bytes:
        import av
        import numpy as np

        out_rate = self.output_rate(sample_rate)
        # Encoders emit nothing (or fail) for a handful of samples: give them at least 10 ms.
        pcm = pcm[: len(pcm) // 2 * 2].ljust(sample_rate // 100 * 2, b"\0")
        buf = io.BytesIO()
        with av.open(buf, "w", format=self._spec.container) as container:
            stream = container.add_stream(self._spec.codec, rate=out_rate, layout="mono")
            assert isinstance(stream, av.AudioStream)
            stream.bit_rate = self._bitrate
            samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = sample_rate
            resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=out_rate)
            for piece in [*resampler.resample(frame), *resampler.resample(None)]:
                container.mux(stream.encode(piece))
            container.mux(stream.encode(None))
        return buf.getvalue()
