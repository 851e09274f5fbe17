"""FestivalTTS: a Festival voice (by default festvox-ru's Russian male voice) kept warm in ``festival --pipe``.

Debian's ``festival`` and ``festvox-ru`` packages are the only offline Russian voice we found that people (and
Whisper base: ~16 % of words missed) understand. Festival is single-threaded, so each worker is one ``festival
--pipe`` process, and ``max_concurrent`` workers make the pool. Loading the voice's unit database takes ~1.4 s;
warm, a short sentence's audio is ready in ~40 ms.

Per sentence a worker is sent, on stdin::

    (utt.save.wave (SynthText "<text>") "<private dir>/out-<n>.wav" 'riff)(print "done-<n>")(fflush nil)

and stdout is read up to ``"done-<n>"``. No file means the voice refused the text (its complaint is on stderr).
``festival --server`` is never used: it listens on every interface and runs any Scheme a client sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import shutil
import tempfile
import wave
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from core.errors import ConfigError, TTSError
from core.models import AudioChunk, EngineInfo
from core.tts.encode import DEFAULT_FORMAT, AudioEncoder
from core.tts.russian_text import for_festival, plain_words, scheme_string

logger = logging.getLogger(__name__)

DEFAULT_VOICE = "voice_msu_ru_nsh_clunits"
INSTALL = "apt-get install festival festvox-ru (Debian and Ubuntu packages)"
# Touches most of the voice's unit database once, so the first reply does not pay for it (~0.2-0.3 s otherwise).
WARM_UP = (
    "Съешь же ещё этих мягких французских булок, да выпей чаю. В чащах юга жил бы цитрус? Да, но фальшивый экземпляр!"
)
_VOICE_NAME = re.compile(r"[A-Za-z0-9_]+")
_CLOSE_WAIT_S = 2.0
_STDERR_LINES = 20
# What a worker that died or hung shows: it is killed and started again.
_BROKEN = (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, BrokenPipeError, ConnectionError)


def voice_function(voice: str) -> str:
    """The Scheme function that selects ``voice`` (``msu_ru_nsh_clunits`` or ``voice_msu_ru_nsh_clunits``)."""
    name = voice or DEFAULT_VOICE
    if not _VOICE_NAME.fullmatch(name):
        raise ConfigError(f"tts.voices: {name!r} is not a Festival voice name (letters, digits and _ only)")
    return name if name.startswith("voice_") else f"voice_{name}"


def _read_wave(path: Path) -> tuple[bytes, int] | None:
    """The 16-bit PCM and rate of a WAV Festival wrote, deleting it; None if it wrote none."""
    try:
        with wave.open(str(path), "rb") as audio:
            pcm, rate = audio.readframes(audio.getnframes()), audio.getframerate()
    except FileNotFoundError:
        return None
    finally:
        path.unlink(missing_ok=True)
    return (pcm, rate) if pcm else None


class _Worker:
    """One ``festival --pipe`` process with the voice loaded; one command at a time."""

    def __init__(self, voice: str, folder: Path, index: int, timeout_s: float) -> None:
        self._voice = voice
        self._folder = folder
        self._index = index
        self._timeout_s = timeout_s
        self._tags = itertools.count()
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive and self._proc is not None else None

    async def start(self) -> None:
        """Start festival, select the voice and warm it up; TTSError ``tts-unavailable`` if it cannot speak."""
        await self.stop()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                "festival",
                "--pipe",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._folder,
                start_new_session=True,  # a Ctrl-C meant for the server does not kill it mid-sentence
                limit=1 << 20,
            )
        except OSError as err:
            raise TTSError(f"cannot run festival: {err}; {INSTALL}", code="tts-unavailable") from err
        self._drain = asyncio.create_task(self._drain_stderr(self._proc), name=f"festival-stderr-{self._index}")
        try:
            bound = await self._command(f"(print (symbol-bound? '{self._voice}))")
            if bound.strip() != "t":
                raise TTSError(
                    f"Festival has no voice {self._voice}: for the Russian voice, {INSTALL}", code="tts-unavailable"
                )
            await self._command(f"({self._voice})")
            if await self.speak(WARM_UP) is None:
                raise TTSError(f"Festival cannot speak with {self._voice}: {self.complaint()}", code="tts-unavailable")
        except _BROKEN as err:
            message = f"Festival did not start: {self.complaint() or repr(err)}"
            await self.stop()
            raise TTSError(message, code="tts-unavailable") from err
        except BaseException:  # no voice, or cancelled while starting: no process is left behind
            await self.stop()
            raise

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        """Keep the last lines festival wrote to stderr: a full pipe would stall it."""
        assert proc.stderr is not None
        async for line in proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def complaint(self) -> str:
        """What festival last wrote to stderr."""
        return " | ".join(line for line in self._stderr if line)

    async def _command(self, expression: str) -> str:
        """Run one Scheme expression; what festival printed on stdout before our tag."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        tag = f'"done-{next(self._tags)}"'
        proc.stdin.write(f"{expression}(print {tag})(fflush nil)\n".encode())
        await proc.stdin.drain()
        async with asyncio.timeout(self._timeout_s):
            out = await proc.stdout.readuntil(f"{tag}\n".encode())
        return out[: -len(tag) - 1].decode("utf-8", "replace")

    async def speak(self, text: str) -> tuple[bytes, int] | None:
        """16-bit mono PCM and its rate, or None if the voice would not say ``text``."""
        path = self._folder / f"out-{self._index}-{next(self._tags)}.wav"
        self._stderr.clear()
        save = f"(utt.save.wave (SynthText {scheme_string(text)}) {scheme_string(str(path))} 'riff)"
        printed = await self._command(save)
        spoken = await asyncio.to_thread(_read_wave, path)
        if spoken is None:
            await asyncio.sleep(0.01)  # let the stderr drain catch up, for the log
            logger.debug("festival said nothing for %r: %s %s", text[:80], printed.strip(), self.complaint())
        return spoken

    def kill(self) -> None:
        if self.alive and self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def stop(self) -> None:
        """Close stdin (``festival --pipe`` then exits); kill it if it has not after 2 s."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        elif proc is not None:
            await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None


class FestivalTTS:
    """Speaks each text as one utterance with a Festival voice; ``max_concurrent`` warm processes.

    A sentence's synthesis is shielded from its caller: a caller that gives up (barge-in) leaves the worker to
    finish and read its reply, so the next sentence is never answered with the last one's audio. A worker that
    dies, hangs or breaks its pipe costs that one sentence a ``tts-failed`` error; it is started again at once.
    """

    def __init__(
        self, *, voice: str = DEFAULT_VOICE, max_concurrent: int = 1, fmt: str = DEFAULT_FORMAT, timeout_s: float = 30.0
    ) -> None:
        self._voice = voice_function(voice)
        self._encoder = AudioEncoder(fmt)
        self._max_concurrent = max_concurrent
        self._timeout_s = timeout_s
        self._folder: Path | None = None
        self._workers: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._tasks: set[asyncio.Task[object]] = set()
        self._busy = 0
        self._ready = False

    def info(self) -> EngineInfo:
        extra: dict[str, object] = {
            "format": self._encoder.format,
            "max_concurrent": self._max_concurrent,
            "busy": self._busy,
            "pids": [worker.pid for worker in self._workers if worker.pid is not None],
        }
        return EngineInfo("festival", self._voice, self._ready, extra)

    async def start(self) -> None:
        """Start the workers (~1.4 s, in parallel); TTSError ``tts-unavailable`` if festival or the voice is missing."""
        if shutil.which("festival") is None:
            raise TTSError(f"festival is not installed: {INSTALL}", code="tts-unavailable")
        # Private (0700): the audio of what the bot says is nobody else's to read.
        self._folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="web-bot-festival-"))
        self._workers = [_Worker(self._voice, self._folder, n, self._timeout_s) for n in range(self._max_concurrent)]
        try:
            await asyncio.gather(*(worker.start() for worker in self._workers))
        except BaseException:
            await self.aclose()
            raise
        for worker in self._workers:
            self._idle.put_nowait(worker)
        self._ready = True
        logger.info("Festival voice %s ready in %d process(es)", self._voice, len(self._workers))

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """One encoded chunk for the whole of ``text``; nothing if it holds nothing the voice can say."""
        async for chunk in self._chunks(text, encode=True):
            yield chunk

    async def synthesize_pcm(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """As ``synthesize``, unencoded: one chunk of 16-bit PCM at the voice's rate (``PCMSynthesizer``)."""
        async for chunk in self._chunks(text, encode=False):
            yield chunk

    async def _chunks(self, text: str, *, encode: bool) -> AsyncIterator[AudioChunk]:
        if not self._ready:
            raise TTSError("the Festival voice is not started", code="tts-unavailable")
        spoken = for_festival(text)
        if not spoken:
            return
        job: asyncio.Task[object] = asyncio.create_task(self._job(spoken, encode), name="festival-sentence")
        self._tasks.add(job)
        job.add_done_callback(self._forget)
        chunk = await asyncio.shield(job)
        if isinstance(chunk, AudioChunk):
            yield chunk

    def _forget(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a caller that gave up will not read it; it was logged where it happened

    async def _job(self, text: str, encode: bool = True) -> AudioChunk | None:
        worker: _Worker | None = await self._idle.get()
        assert worker is not None
        self._busy += 1
        try:
            if not worker.alive:  # it died while idle, or a restart failed: try once more now
                await worker.start()
            spoken = await worker.speak(text)
            if spoken is None and (plain := plain_words(text)) and plain != text:
                spoken = await worker.speak(plain)
            if spoken is None:
                logger.warning("the Festival voice said nothing for %r: %s", text[:80], worker.complaint())
        except _BROKEN as err:
            logger.warning("festival failed on %r (%r, %s); starting it again", text[:80], err, worker.complaint())
            worker.kill()
            self._restart(worker)
            worker = None
            raise TTSError("Festival could not synthesise speech") from err
        finally:
            self._busy -= 1
            if worker is not None:
                self._idle.put_nowait(worker)
        if spoken is None:
            return None
        pcm, rate = spoken
        if not encode:
            return AudioChunk(pcm, "pcm", rate, len(pcm) / 2 / rate)
        return await asyncio.to_thread(self._encoder.encode, pcm, rate)

    def _restart(self, worker: _Worker) -> None:
        async def restart() -> None:
            try:
                await worker.start()
            except TTSError as err:
                logger.warning("festival did not start again (%s); the next sentence tries once more", err)
            finally:
                self._idle.put_nowait(worker)

        task: asyncio.Task[object] = asyncio.create_task(restart(), name="festival-restart")
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    async def aclose(self) -> None:
        self._ready = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(worker.stop() for worker in self._workers), return_exceptions=True)
        if self._folder is not None:
            await asyncio.to_thread(shutil.rmtree, self._folder, True)
            self._folder = None
