"""ChatPipeline: builds each turn (``core.turn``), queues it in its client's lane, and holds what turns share.

Each client has a lane (``core.lanes``): its turns run one after another, in order, while other clients' lanes run
alongside. A new message or the user starting to speak while a reply is being written or spoken interrupts that
reply (barge-in). The pipeline also knows each client's preferences and the reply being spoken to it, if any.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from core.config import VoiceReplies
from core.cpu import CpuGate
from core.errors import BotError
from core.events import ReplyPaused, ReplyResumed
from core.hub import Hub
from core.interfaces import HistoryStore, LLMEngine, PromptCache, TokenCounter, TTSEngine, TurnTextJudge
from core.lanes import Lanes
from core.language import TextLanguage, language_name
from core.llm.guard import without_echoes
from core.metrics import Metrics
from core.models import AudioClip, ChatMessage, Source, StoredMessage
from core.outlet import TurnOutlet, new_turn_id
from core.prefetch import ReplyPrefetch
from core.speaking import Speaker
from core.transcription import Transcriber
from core.turn import Turn, TurnRequest, TurnResult, TurnState, elapsed_ms

__all__ = ["ANSWER_IN", "ChatPipeline", "Turn", "TurnRequest", "TurnResult", "TurnState", "elapsed_ms"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
CONTEXT_STATUSES = ("ok", "interrupted")
# How long after a spoken reply has played out its tail may still come back through the microphone (the page's
# playback lags the server's clock by its network and decoding delay).
ECHO_TAIL_S = 0.5
# Appended to the system prompt when the turn's language is known, so the model answers in the user's language.
ANSWER_IN = "Always answer in {language}."


class ChatPipeline:
    """Builds and queues turns (``core.turn``), and holds what they share: engines, history, preferences, voices."""

    def __init__(
        self,
        *,
        llm: LLMEngine,
        history: HistoryStore,
        hub: Hub,
        system_prompt: str,
        history_messages: int,
        delta_interval_ms: float = 0.0,
        transcriber: Transcriber | None = None,
        tts: TTSEngine | None = None,
        voice_replies: VoiceReplies = "auto",
        barge_in: bool = True,
        preemptive: bool = True,
        metrics: Metrics | None = None,
        text_language: TextLanguage | None = None,
        reply_tokens: int = 0,
        cpu: CpuGate | None = None,
    ) -> None:
        self.llm = llm
        self.history = history
        self._hub = hub
        self._system_prompt = system_prompt
        self.history_messages = history_messages
        self._reply_tokens = reply_tokens  # room a reply needs in the model's context (llm.max_tokens)
        self._cpu = cpu  # each reply's first audio holds it: the local model pauses (core.cpu)
        self.delta_interval = delta_interval_ms / 1000  # seconds between two reply_delta frames, at least
        self.transcriber = transcriber
        self._tts = tts
        self._voice_default = voice_replies
        self._voice: dict[str, bool] = {}
        self._languages: dict[str, str] = {}  # a client's fixed language (its speech is not detected)
        self._locales: dict[str, str] = {}  # the language a client's page is shown in
        self._instructions: dict[str, str] = {}  # a client's own system prompt (a Realtime session's instructions)
        self.barge_in_enabled = barge_in
        self._preemptive = preemptive
        self.metrics = metrics
        self._text_language = text_language
        self._lanes = Lanes()
        self._running: dict[str, Turn] = {}  # the turn each client's lane is running, if any
        self._voices: dict[str, tuple[Speaker, TurnOutlet]] = {}  # each client's reply being spoken, if any
        self._spoke: dict[str, tuple[Speaker, float]] = {}  # each client's last spoken reply, and when it ended
        self.llm_healthy = True
        # Told of each user's message once it is stored, before it is shown: (client_id, its words), whatever becomes
        # of the reply — an untitled conversation takes its title from its first words.
        self.after_user_message: Callable[[str, str], Awaitable[None]] | None = None
        # Told of every reply stored whole: (client_id, the user's words, the reply) — the model may title better.
        self.after_reply: Callable[[str, str, str], None] | None = None

    @property
    def hub(self) -> Hub:
        return self._hub

    @property
    def text_language(self) -> TextLanguage | None:
        """What tells a text's language (the voice that reads it), among the server's languages."""
        return self._text_language

    @property
    def busy_clients(self) -> int:
        return len(self._lanes)

    # -- preferences ------------------------------------------------------------------------------------------

    def voice_replies(self, client_id: str) -> bool | Literal["auto"]:
        """Whether this client's replies are spoken: its own choice, else the configured default, where ``auto``
        means the replies to speech and not those to typing."""
        if self._tts is None:
            return False
        choice = self._voice.get(client_id)
        if choice is not None:
            return choice
        return "auto" if self._voice_default == "auto" else self._voice_default == "always"

    def speaks(self, client_id: str, source: Source) -> bool:
        """Whether the reply to a turn from ``source`` is spoken."""
        mode = self.voice_replies(client_id)
        return mode is True or (mode == "auto" and source != "text")

    def set_voice_replies(self, client_id: str, on: bool) -> None:
        self._voice[client_id] = on

    def language(self, client_id: str) -> str | None:
        """The language this client fixed, if any (otherwise each utterance's language is detected)."""
        return self._languages.get(client_id)

    def locale(self, client_id: str) -> str | None:
        """The language this client's page is shown in (the server answers commands in it), else its fixed
        speech language, else None (English)."""
        return self._locales.get(client_id) or self.language(client_id)

    def set_locale(self, client_id: str, locale: str | None) -> None:
        if locale:
            self._locales[client_id] = locale
        else:
            self._locales.pop(client_id, None)

    def set_language(self, client_id: str, language: str | None) -> None:
        if language:
            self._languages[client_id] = language
        else:
            self._languages.pop(client_id, None)

    def set_instructions(self, client_id: str, instructions: str | None) -> None:
        """The system prompt of this client's replies instead of the configured one (None: the configured one)."""
        if instructions:
            self._instructions[client_id] = instructions
        else:
            self._instructions.pop(client_id, None)

    def forget(self, client_id: str) -> None:
        """Drop every preference of a client that will not come back (a Realtime session that ended)."""
        self._voice.pop(client_id, None)
        for preferences in (self._languages, self._locales, self._instructions):
            preferences.pop(client_id, None)

    # -- entry points -----------------------------------------------------------------------------------------

    def new_turn(self, client_id: str, source: Source = "voice", turn_id: str | None = None) -> Turn:
        """A turn of this client, listening: a live utterance's turn is made when its speech starts."""
        return Turn(self, client_id, source, turn_id=turn_id)

    def submit(self, request: TurnRequest) -> asyncio.Future[TurnResult]:
        """Queue a turn behind the client's earlier ones; the future resolves when the reply is stored."""
        self.barge_in(request.client_id)
        turn = self.new_turn(request.client_id, request.source, request.turn_id).with_text(request)
        return self.submit_turn(turn)

    def submit_audio(
        self, client_id: str, data: bytes, source: Source, turn_id: str | None = None
    ) -> asyncio.Future[TurnResult]:
        """Queue an utterance in any container: transcribe it, show the transcription, then answer it.

        Failures before the turn (not audio, no speech, STT down) raise a BotError from the future.
        """
        self.barge_in(client_id)
        turn = self.new_turn(client_id, source, turn_id).with_audio(data, time.perf_counter())
        return self.submit_turn(turn)

    def submit_pcm(
        self, client_id: str, pcm: bytes, origin: float, turn: Turn | None = None
    ) -> asyncio.Future[TurnResult]:
        """Queue an utterance cut from a live 16 kHz PCM stream; ``origin`` is when the speech ended, ``turn`` the
        turn made when it started (with the work it began before the end of speech was certain)."""
        if turn is None:
            turn = self.new_turn(client_id)
        elif turn.client_id != client_id:
            raise ValueError(f"turn {turn.turn_id} is {turn.client_id}'s, not {client_id}'s")
        return self.submit_turn(turn.with_audio(AudioClip(pcm, 16000), origin))

    def submit_turn(self, turn: Turn) -> asyncio.Future[TurnResult]:
        """Run ``turn`` in its client's lane, after everything queued before it."""
        return self._lanes.run(turn.client_id, lambda: self._run(turn))

    async def prefetch(
        self, client_id: str, text: str, language: str | None = None, turn_id: str | None = None
    ) -> ReplyPrefetch | None:
        """The reply to ``text`` (heard in ``language``), to be run ahead of its turn, if the client has nothing
        else under way (its context could change first); the turn takes it only if its context is still the same.
        Its speech, if the reply is spoken, is held until the turn releases it."""
        text = text.strip()
        if not self._preemptive or not text or self._busy(client_id, turn_id):
            return None
        recent = await self.recent(client_id, self.history_messages)
        language = self.turn_language(client_id, text, language)
        logger.debug("reply to %s started before the end of speech", client_id)
        outlet = TurnOutlet(self._hub, client_id, turn_id or new_turn_id())
        speaker = self.new_speaker(outlet, "voice", time.perf_counter(), language, held=True)
        return ReplyPrefetch(self.llm, self.context(recent, text, language, client_id=client_id), speaker)

    async def read_words(self, client_id: str, text: str, language: str | None = None) -> float | None:
        """The LLM's probability that the user's turn ends with ``text`` (heard in ``language``), read in the reply's
        own context (``core.interfaces.TurnTextJudge``); None if the LLM cannot tell, or the history cannot be read
        (the turn reports that failure itself)."""
        text = text.strip()
        if not text or not isinstance(self.llm, TurnTextJudge):
            return None
        try:
            recent = await self.recent(client_id, self.history_messages)
        except BotError:
            return None
        language = self.turn_language(client_id, text, language)
        return await self.llm.end_of_turn(self.context(recent, text, language, client_id=client_id))

    def speaking(self, client_id: str) -> bool:
        """Whether a reply to this client is being spoken (its speech may come back through the microphone)."""
        return client_id in self._voices

    def may_hear_itself(self, client_id: str) -> bool:
        """Whether speech from this client's microphone may be the bot's own: a reply is being spoken, or one ended
        less than ``ECHO_TAIL_S`` ago."""
        return self.speaking(client_id) or bool(self.reply_text(client_id))

    def reply_text(self, client_id: str) -> str:
        """The text of the reply being spoken to this client as far as it was written, or of one that ended less
        than ``ECHO_TAIL_S`` ago; "" if none."""
        speaker = self._voice_or_tail(client_id)
        return speaker.text if speaker is not None else ""

    def reply_played(self, client_id: str, since: float, until: float) -> str:
        """The words of that reply this client's page played between ``since`` and ``until`` (perf_counter
        seconds, estimated: ``core.speaking.Playback``); "" if none."""
        speaker = self._voice_or_tail(client_id)
        return speaker.playback.words_between(since, until) if speaker is not None else ""

    def _voice_or_tail(self, client_id: str) -> Speaker | None:
        voice = self._voices.get(client_id)
        if voice is not None:
            return voice[0]
        speaker, ended = self._spoke.get(client_id, (None, 0.0))
        return speaker if time.monotonic() - ended < ECHO_TAIL_S else None

    async def pause_reply(self, client_id: str) -> bool:
        """Hold the reply being spoken (the user may be interrupting) and tell the tabs to play it quieter; whether
        there was one (and barge-in is on)."""
        voice = self._voices.get(client_id)
        if voice is None or not self.barge_in_enabled:
            return False
        voice[0].hold()
        await voice[1].send(ReplyPaused())
        return True

    async def resume_reply(self, client_id: str) -> None:
        """It was no interruption: the held reply plays on."""
        voice = self._voices.get(client_id)
        if voice is not None:
            voice[0].resume()
            await voice[1].send(ReplyResumed())

    def cancel_turn(self, client_id: str) -> bool:
        """Interrupt the turn this client's lane is running, barge-in or not (its conversation is being deleted)."""
        turn = self._running.get(client_id)
        return turn is not None and turn.interrupt()

    def barge_in(self, client_id: str) -> bool:
        """Interrupt the reply this client's lane is writing or speaking, if barge-in is on."""
        turn = self._running.get(client_id)
        return self.barge_in_enabled and turn is not None and turn.interrupt()

    def _busy(self, client_id: str, turn_id: str | None) -> bool:
        """Whether the client has work under way (its context could change) other than the turn ``turn_id`` itself,
        which may have ended, and be waiting for its early reply, before its words were heard."""
        if client_id not in self._lanes:
            return False
        running = self._running.get(client_id)
        return running is None or running.turn_id != turn_id or self._lanes.queued(client_id) > 0

    def in_lane(self, client_id: str, job: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``job`` in the client's lane, after everything queued before it."""
        return self._lanes.run(client_id, job)

    async def aclose(self, timeout_s: float | None = None, *, cut_s: float = 2.0) -> None:
        """Let the turns under way and queued finish, for at most ``timeout_s`` seconds (None: no limit); then cut.

        Cutting (a stop, ``server.shutdown_timeout_s``): the reply being written or spoken to each client is
        interrupted, so it is stored as far as it got (``interrupted``); the turns still queued then run one by one,
        each storing its user's message (and sending ``user_message``), and each is interrupted the moment its reply
        starts, so no message the server accepted is lost. Whatever is left after ``cut_s`` more seconds (an
        utterance still being transcribed, a write that does not return) is cancelled.
        """
        if await self._lanes.aclose(timeout_s):
            return
        # Turns have no shutdown mode of their own: a turn is cut as soon as it can be interrupted, which is once its
        # user's message is stored. Looking every 10 ms is cheap, and only ever happens while stopping.
        logger.warning("stopping: cutting the turns of %d client(s) short", len(self._lanes))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cut_s
        cut: set[Turn] = set()  # each turn is cancelled once: its cleanup (the cut reply's write) must not be cut
        while loop.time() < deadline:
            for turn in list(self._running.values()):
                if turn not in cut and turn.interrupt():
                    cut.add(turn)
            if await self._lanes.aclose(0.01):
                return
        cancelled = self._lanes.cancel()
        logger.warning("stopping: %d job(s) still under way or queued were cancelled", cancelled)
        await self._lanes.aclose(1.0)

    # -- what turns share -------------------------------------------------------------------------------------

    async def _run(self, turn: Turn) -> TurnResult:
        self._running[turn.client_id] = turn
        try:
            result = await turn.run()
            if self.after_reply is not None and result.message_id is not None and result.status == "ok":
                self.after_reply(turn.client_id, result.user_text, result.reply)
            return result
        finally:
            if self._running.get(turn.client_id) is turn:
                del self._running[turn.client_id]

    def add_voice(self, speaker: Speaker, outlet: TurnOutlet) -> None:
        """This reply is being spoken to its client (speech from the microphone may be its echo)."""
        self._voices[outlet.client_id] = (speaker, outlet)

    def remove_voice(self, speaker: Speaker) -> None:
        """The reply is no longer spoken; its text is kept for its echo's tail."""
        for client_id, (voice, _) in list(self._voices.items()):
            if voice is speaker:
                del self._voices[client_id]
                self._spoken_tail(client_id, speaker)

    def _spoken_tail(self, client_id: str, speaker: Speaker) -> None:
        """Remember a reply that just played out, for its echo; forget the ones past their tail."""
        now = time.monotonic()
        for other in [c for c, (_, ended) in self._spoke.items() if now - ended >= ECHO_TAIL_S]:
            del self._spoke[other]
        self._spoke[client_id] = (speaker, now)

    def turn_language(self, client_id: str, text: str, heard: str | None) -> str | None:
        """The turn's language: what speech-to-text heard, else the client's fixed language, else the text's."""
        if heard is not None:
            return heard
        language = self.language(client_id)
        if language is None and self._text_language is not None:
            language = self._text_language.detect(text)
        return language

    async def recent(self, client_id: str, limit: int) -> list[StoredMessage]:
        """The client's last messages that are context for the next reply (ok or interrupted)."""
        return await self.history.recent(client_id, limit, statuses=CONTEXT_STATUSES)

    def new_speaker(
        self, outlet: TurnOutlet, source: Source, origin: float, language: str | None, *, held: bool = False
    ) -> Speaker | None:
        """Who reads this client's reply aloud (in ``language``'s voice unless a sentence is plainly in another),
        if the reply to ``source`` is spoken."""
        if self._tts is None or not self.speaks(outlet.client_id, source):
            return None
        return Speaker(
            self._tts, outlet, origin=origin, held=held, language=language, detect=self._text_language, cpu=self._cpu
        )

    def context(
        self, earlier: list[StoredMessage], text: str, language: str | None = None, *, client_id: str | None = None
    ) -> list[ChatMessage]:
        """What the LLM is sent: the system prompt (``client_id``'s own if it set one; told which language to answer
        in, when the turn's is known), the client's last messages but any reply that only echoed the user, and the new
        one."""
        kept = without_echoes(earlier[-self.history_messages :]) if self.history_messages else []
        name = language_name(language)
        system = self._instructions.get(client_id, self._system_prompt) if client_id else self._system_prompt
        prompt = f"{system} {ANSWER_IN.format(language=name)}" if name else system
        return self._fitted([
            ChatMessage("system", prompt),
            *(ChatMessage(m.role, m.content) for m in kept),
            ChatMessage("user", text),
        ])

    def prepare_next(self, client_id: str, history: list[StoredMessage], language: str | None) -> None:
        """Have the LLM evaluate the start of this client's next prompt while the reply is spoken (``PromptCache``):
        the system prompt and ``history`` (the messages so far, the reply stored last) as the next turn will send
        them, its language assumed to be this one's. The next turn's prompt starts otherwise if the reply is then cut
        (a barge-in stores what was heard), its language changes, or its message makes ``_fitted`` drop one more
        earlier message; it then evaluates more of its prompt, as it would have anyway."""
        if not isinstance(self.llm, PromptCache):
            return
        try:
            self.llm.prepare(self.context(history, "", language, client_id=client_id)[:-1])
        except Exception:  # an optimisation: the turn it follows has succeeded whatever happens here
            logger.exception("preparing the next prompt of %s failed", client_id)

    def _fitted(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` without their oldest earlier ones while the prompt and a reply of ``reply_tokens`` would
        overflow the model's context (known for the local model only). The system prompt and the new message
        always stay; if they alone overflow, the engine answers ``context-too-long``."""
        if not isinstance(self.llm, TokenCounter) or (context := self.llm.context_tokens) is None:
            return messages
        room = context - self._reply_tokens
        while len(messages) > 2 and (tokens := self.llm.count_prompt(messages)) is not None and tokens > room:
            del messages[1]
        return messages

    def count_error(self, code: str) -> None:
        if self.metrics is not None:
            self.metrics.error(code)
