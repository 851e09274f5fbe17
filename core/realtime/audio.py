"""Audio as the Realtime API carries it: base64 24 kHz mono PCM16, in and out."""

from __future__ import annotations

import base64
import binascii
import io

import av
import numpy as np

from core.errors import TTSError
from core.realtime.protocol import PCM_RATE, RealtimeError


def decode_base64_pcm(value: object, param: str = "audio") -> bytes:
    """The PCM16 bytes of a base64 string; raises RealtimeError for anything else (or an odd byte count)."""
    if not isinstance(value, str):
        raise RealtimeError(f"{param} must be base64-encoded PCM16", param=param)
    try:
        pcm = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RealtimeError(f"{param} is not valid base64", param=param) from err
    if len(pcm) % 2:
        raise RealtimeError(f"{param} must hold whole 16-bit samples (an even number of bytes)", param=param)
    return pcm


def encode_base64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def to_pcm24k(data: bytes, fmt: str, sample_rate: int) -> bytes:
    """Blocking: one synthesised sentence (a file in ``fmt``: mp3, ogg-opus or wav, or raw ``pcm`` at
    ``sample_rate``) as 24 kHz mono PCM16. Raises TTSError tts-failed if it cannot be decoded."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_RATE)
    pieces: list[bytes] = []
    try:
        if fmt == "pcm":
            samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").reshape(1, -1)
            raw = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            raw.sample_rate = sample_rate
            frames = [raw]
        else:
            with av.open(io.BytesIO(data), mode="r") as container:
                frames = list(container.decode(audio=0))
        for each in [*frames, None]:  # None flushes the resampler
            for out in resampler.resample(each):
                pieces.append(bytes(out.planes[0])[: out.samples * 2])
    except (av.FFmpegError, ValueError) as err:
        raise TTSError("the synthesised speech could not be decoded", code="tts-failed") from err
    return b"".join(pieces)
