"""Speech as unencoded PCM from any speech engine: asked of an engine that can give it (``PCMSynthesizer``), else
decoded from the chunks it encodes (a lossy round trip, only for engines that cannot do better)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

from core.errors import TTSError
from core.interfaces import PCMSynthesizer, TTSEngine
from core.models import AudioChunk


def decode_pcm(data: bytes) -> tuple[bytes, int]:
    """Mono 16-bit PCM of encoded audio ``data`` (any container PyAV reads), at its own rate (blocking)."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.audio[0]
            rate = stream.sample_rate
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            pieces = [
                piece for frame in [*container.decode(stream), None] for piece in resampler.resample(frame)
            ]
    except (av.FFmpegError, IndexError, ValueError) as err:
        raise TTSError("the speech engine gave audio that cannot be decoded") from err
    # A plane is padded for SIMD; only the first samples * 2 bytes are audio.
    return b"".join(bytes(piece.planes[0])[: piece.samples * 2] for piece in pieces), rate


def to_pcm(chunk: AudioChunk) -> AudioChunk:
    """``chunk`` as PCM (blocking when it must be decoded)."""
    if chunk.format == "pcm":
        return chunk
    pcm, rate = decode_pcm(chunk.data)
    return AudioChunk(pcm, "pcm", rate, len(pcm) / 2 / rate)


async def pcm_speech(tts: TTSEngine, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
    """The speech of ``text`` as PCM chunks, from ``tts`` as it can best give them."""
    if isinstance(tts, PCMSynthesizer):
        async for chunk in tts.synthesize_pcm(text, language=language):
            yield chunk
        return
    async for chunk in tts.synthesize(text, language=language):
        yield await asyncio.to_thread(to_pcm, chunk)
