"""Speech through a chain of engines (``tts.fallbacks``, ``core.fallback``): per language, the voice of each
configured engine in turn."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence

from core.errors import TTSError
from core.fallback import Breaker, Chain, Member, member_names
from core.interfaces import TTSEngine
from core.models import AudioChunk, EngineInfo
from core.tts.pcm import pcm_speech
from core.tts.voices import VoiceRouter

logger = logging.getLogger(__name__)


class FailoverTTS:
    """Speaks a sentence with the first engine of ``chain`` whose first audio comes within its share of
    ``tts.timeout_s``; any ``TTSError`` before it hands the sentence to the next engine. Later audio must follow
    within the engine's own timeout (``tts-unavailable`` if not). Gives PCM too (``PCMSynthesizer``)."""

    def __init__(self, chain: Chain[TTSEngine]) -> None:
        self.chain = chain

    def info(self) -> EngineInfo:
        info = self.chain.primary.info()
        return EngineInfo(info.engine, info.model, info.ready, {**info.extra, "chain": self.chain.describe()})

    def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        return self._first(text, language, pcm=False)

    def synthesize_pcm(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        return self._first(text, language, pcm=True)

    async def _first(self, text: str, language: str | None, *, pcm: bool) -> AsyncIterator[AudioChunk]:
        failure: TTSError | None = None
        for member, allowed_s in self.chain.attempts():
            engine = member.engine
            chunks = pcm_speech(engine, text, language=language) if pcm else engine.synthesize(text, language=language)
            first: AudioChunk | None = None
            error: TTSError | None = None
            try:
                async with asyncio.timeout(_limit(allowed_s)):
                    first = await anext(chunks)
            except StopAsyncIteration:
                pass  # nothing to say is said
            except TimeoutError as err:
                error = TTSError("the speech engine did not answer in time", code="tts-unavailable")
                error.__cause__ = err
            except TTSError as err:
                error = err
            except BaseException:
                await _close(chunks)
                raise
            if error is not None:
                await _close(chunks)
                member.failed(error.code)
                logger.warning("tts %s failed: %s", member.name, error.code)
                failure = error
                continue
            self.chain.used(member)
            try:
                if first is not None:
                    yield first
                    while True:
                        try:
                            async with asyncio.timeout(_limit(member.timeout_s)):
                                chunk = await anext(chunks)
                        except StopAsyncIteration:
                            break
                        except TimeoutError as err:
                            raise TTSError("the speech engine stopped mid-sentence", code="tts-unavailable") from err
                        yield chunk
            finally:
                await _close(chunks)
            return
        raise failure or TTSError("the speech engine did not answer in time", code="tts-unavailable")

    async def aclose(self) -> None:
        """Nothing: the engines belong to their routers, which ``FailoverVoices`` closes."""


async def _close(chunks: AsyncIterator[AudioChunk]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


def _limit(seconds: float) -> float | None:
    return None if math.isinf(seconds) else seconds


class FailoverVoices(VoiceRouter):
    """The voices of several engines' routers (the configured one first): each language is spoken by a chain of
    the voices the routers have for it (its own voice, else a multilingual engine's); an engine shared by
    several languages is one member of each chain, with one breaker."""

    def __init__(
        self,
        stages: Sequence[tuple[Mapping[str, TTSEngine | None], TTSEngine | None, str]],
        *,
        timeout_s: Sequence[float],
        down_for_s: float,
        default_language: str | None,
    ) -> None:
        self._routers = [VoiceRouter(voices, multilingual=multi, name=name) for voices, multi, name in stages]
        languages = list(dict.fromkeys(language for voices, _, _ in stages for language in voices))
        engines: list[tuple[TTSEngine, str, float]] = []  # each distinct engine, its name and timeout
        for (voices, multi, name), seconds in zip(stages, timeout_s, strict=True):
            for language, engine in [*voices.items(), ("", multi)]:
                if engine is not None and all(engine is not seen for seen, _, _ in engines):
                    engines.append((engine, f"{name}:{language}" if language else name, seconds))
        names = member_names(name for _, name, _ in engines)
        members = [
            Member(name, engine, seconds, Breaker(down_for_s))
            for name, (engine, _, seconds) in zip(names, engines, strict=True)
        ]
        self.chains: list[Chain[TTSEngine]] = []

        def chain_of(found: list[TTSEngine | None]) -> TTSEngine | None:
            picked = [next(m for m in members if m.engine is e) for e in dict.fromkeys(e for e in found if e)]
            if not picked:
                return None
            chain = Chain("tts", picked, timeout_s=timeout_s[0])
            self.chains.append(chain)
            return FailoverTTS(chain)

        voices = {language: chain_of([_voice(v, m, language) for v, m, _ in stages]) for language in languages}
        multilingual = chain_of([m for _, m, _ in stages])
        super().__init__(voices, default_language=default_language, multilingual=multilingual, name=stages[0][2])

    async def aclose(self) -> None:
        for router in self._routers:
            await router.aclose()


def _voice(voices: Mapping[str, TTSEngine | None], multilingual: TTSEngine | None, language: str) -> TTSEngine | None:
    """What a router speaks ``language`` with: its own voice for it, else its multilingual engine."""
    own = voices.get(language)
    return own if own is not None else multilingual
