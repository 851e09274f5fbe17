"""FailoverSTT: speech-to-text through a chain of engines (``stt.fallbacks``, ``core.fallback``)."""

from __future__ import annotations

import asyncio
import logging
import math

from core.errors import STTError
from core.fallback import Chain
from core.interfaces import STTEngine, TimedSTT
from core.models import AudioClip, EngineInfo, Transcript

logger = logging.getLogger(__name__)


class FailoverSTT:
    """Transcribes with the first engine of ``chain`` that answers within its share of ``stt.timeout_s``; any
    ``STTError`` of one engine hands the clip to the next. ``stt-unavailable`` when the deadline passes, else the
    last engine's error. ``engine`` (the configured one) is what ``info`` describes, with the chain's state."""

    def __init__(self, chain: Chain[STTEngine]) -> None:
        self.chain = chain
        self.engine = chain.primary

    def info(self) -> EngineInfo:
        info = self.engine.info()
        return EngineInfo(info.engine, info.model, info.ready, {**info.extra, "chain": self.chain.describe()})

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        return await self._first(audio, language, prompt, timed=None)

    async def transcribe_timed(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None, words: bool = False
    ) -> Transcript:
        """With segments from an engine that knows them (``TimedSTT``); another's transcript has none."""
        return await self._first(audio, language, prompt, timed=words)

    async def _first(
        self, audio: AudioClip, language: str | None, prompt: str | None, timed: bool | None
    ) -> Transcript:
        failure: STTError | None = None
        for member, allowed_s in self.chain.attempts():
            engine = member.engine
            try:
                async with asyncio.timeout(None if math.isinf(allowed_s) else allowed_s):
                    if timed is not None and isinstance(engine, TimedSTT):
                        transcript = await engine.transcribe_timed(audio, language=language, prompt=prompt, words=timed)
                    else:
                        transcript = await engine.transcribe(audio, language=language, prompt=prompt)
            except TimeoutError as err:
                failure = STTError("the speech-to-text service did not answer in time", code="stt-unavailable")
                failure.__cause__ = err
            except STTError as err:
                failure = err
            else:
                self.chain.used(member)
                return transcript
            member.failed(failure.code)
            logger.warning("stt %s failed: %s", member.name, failure.code)
        raise failure or STTError("the speech-to-text service did not answer in time", code="stt-unavailable")

    async def aclose(self) -> None:
        for member in self.chain.members:
            await member.engine.aclose()
