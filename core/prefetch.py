"""ReplyPrefetch: a reply started before the end of speech is certain, kept only if the turn asks the same.

A live utterance is transcribed early, a little into the silence that will end it (see ``core.voice.listener``). The
reply can start then too: the LLM streams into a buffer while the rest of the silence window is waited for. When
the turn comes, it takes the buffer only if its context (history and words) is exactly the one guessed, and the
rest of the reply streams on live; otherwise, or if speech resumes, the early request is cancelled and nothing of it
is shown or stored. This is what voice agents call preemptive generation.

Nothing here starts a task: ``run`` is a coroutine, run by the turn the reply was started for (``core.turn``), and
cancelling it cancels the model's stream and the held speech with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from core.interfaces import LLMEngine
from core.models import ChatMessage
from core.speaking import Speaker


class ReplyPrefetch:
    """Streams one reply into a buffer while it is ``run``; ``claim`` replays it, then follows it live."""

    def __init__(self, llm: LLMEngine, context: Sequence[ChatMessage], speaker: Speaker | None = None) -> None:
        self.context = tuple(context)
        self.speaker = speaker  # held: it speaks once the turn releases it
        self.started = time.perf_counter()
        self._llm = llm
        self._fragments: list[str] = []
        self._error: Exception | None = None
        self._finished = False
        self._claimed = False
        self.dropped = False  # a turn asked for another reply: whoever runs this one cancels it
        self._changed = asyncio.Event()
        self._first = asyncio.Event()  # a first fragment came, or the stream ended
        self._ended = asyncio.Event()  # the stream ended

    def claim(self, context: Sequence[ChatMessage], *, spoken: bool = False) -> AsyncIterator[str] | None:
        """The reply for ``context`` (spoken or not) if it is the one guessed, once; otherwise None, and the guess
        is ``dropped``. The claimed stream carries the text; a speaker was fed it already."""
        same = tuple(context) == self.context and spoken == (self.speaker is not None)
        if self._claimed or not same or self.dropped:
            self.dropped = not self._claimed
            return None
        self._claimed = True
        return self._replay()

    @property
    def ready(self) -> bool:
        """Whether the reply has something for the user at once, were it claimed now: its first audio synthesised
        (spoken; or all of it, if it has none), its first text (not spoken), or its error."""
        if self._error is not None:
            return True
        return self.speaker.ready.is_set() if self.speaker is not None else self._first.is_set()

    async def until_ready(self) -> None:
        """Return once ``ready``."""
        if self.speaker is None:
            await self._first.wait()
            return
        ended, spoken = asyncio.ensure_future(self._ended.wait()), asyncio.ensure_future(self.speaker.ready.wait())
        try:
            await asyncio.wait([ended, spoken], return_when=asyncio.FIRST_COMPLETED)
            if not self.ready:
                await spoken  # the text ended well: its last words are being synthesised
        finally:
            ended.cancel()
            spoken.cancel()

    async def run(self) -> None:
        """Stream the model's reply into the buffer (and the held speaker, which runs alongside) until both are
        done; an error of the model is kept for the turn that claims the reply."""
        async with asyncio.TaskGroup() as group:
            if self.speaker is not None:
                group.create_task(self.speaker.run(), name="early-speech")
            await self._pump()

    async def _pump(self) -> None:
        stream = self._llm.stream_reply(self.context)
        try:
            async for fragment in stream:
                self._fragments.append(fragment)
                if self.speaker is not None:
                    self.speaker.feed(fragment)
                self._changed.set()
                self._first.set()
            if self.speaker is not None:
                self.speaker.finish()  # its last words are synthesised too, held (claiming finishes it again)
        except Exception as err:  # handed to the turn that claims it, which handles it as its own
            self._error = err
        finally:
            self._finished = True
            self._changed.set()
            self._first.set()
            self._ended.set()
            # Closing the generator at once stops a cancelled model (and its HTTP stream) now, not at GC.
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    async def _replay(self) -> AsyncIterator[str]:
        sent = 0
        while True:
            self._changed.clear()
            while sent < len(self._fragments):
                yield self._fragments[sent]
                sent += 1
            if self._finished:
                if self._error is not None:
                    raise self._error
                return
            await self._changed.wait()
