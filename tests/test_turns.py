"""Turn logic with scripted engines and a real SQLite store: what each turn sends and stores, in milliseconds.

Covers when replies are spoken (``voice.replies``), that ``reply`` never waits for speech, that any failure stops
the speaker, that a barge-in while the reply is being stored stores it once, a tab that cannot take an event, and
recordings that live exactly as long as their messages."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import HistoryError
from core.history import SQLHistoryStore
from core.hub import TAB_FAILED, Hub
from core.models import NewMessage, StoredMessage
from core.pipeline import ChatPipeline, TurnRequest
from core.recordings import Recordings
from core.speaking import PLAYBACK_LEAD_S
from core.transcription import Transcriber
from tests.fakes.engines import GatedTTS, RecordingSink, ScriptedLLM, SlowReplyWrites, WordsSTT
from tests.speech import silence, wav

REPLY = ["First sentence here. ", "Second one follows."]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLHistoryStore]:
    store = SQLHistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    await store.start()
    yield store
    await store.aclose()


def pipeline(store: object, *, tts: GatedTTS | None = None, replies: str = "auto", **kwargs: object) -> ChatPipeline:
    return ChatPipeline(
        llm=kwargs.pop("llm", ScriptedLLM(REPLY)),  # type: ignore[arg-type]
        history=store,  # type: ignore[arg-type]
        hub=kwargs.pop("hub", Hub()),  # type: ignore[arg-type]
        system_prompt="You are a test.",
        history_messages=10,
        tts=tts,
        voice_replies=replies,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def tab(bot: ChatPipeline, client_id: str) -> RecordingSink:
    sink = RecordingSink()
    bot._hub.attach(client_id, sink)
    return sink


async def rows(store: SQLHistoryStore, client_id: str) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in await store.recent(client_id, 50)]


# --- when replies are spoken -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "choice", "source", "spoken"),
    [
        ("auto", None, "text", False),
        ("auto", None, "voice", True),
        ("auto", None, "upload", True),
        ("auto", True, "text", True),
        ("auto", False, "voice", False),
        ("always", None, "text", True),
        ("never", None, "voice", False),
        ("never", True, "text", True),
    ],
)
async def test_which_turns_are_spoken(store, mode: str, choice: bool | None, source: str, spoken: bool) -> None:
    tts = GatedTTS()
    bot = pipeline(store, tts=tts, replies=mode)
    if choice is not None:
        bot.set_voice_replies("c", choice)
    sink = tab(bot, "c")
    result = await bot.submit(TurnRequest("c", "hello", source))  # type: ignore[arg-type]
    assert result.status == "ok"
    assert ("audio" in sink.types()) is spoken
    assert bool(sink.binaries) is spoken and bool(tts.sentences) is spoken
    assert ("audio_done" in sink.types()) is spoken


async def test_a_client_without_a_voice_engine_is_never_spoken_to(store) -> None:
    bot = pipeline(store, tts=None, replies="always")
    assert bot.voice_replies("c") is False and not bot.speaks("c", "voice")


async def test_the_reply_is_sent_when_its_text_is_stored_never_waiting_for_speech(store) -> None:
    gate = asyncio.Event()
    bot = pipeline(store, tts=GatedTTS(gate), replies="always")
    sink = tab(bot, "c")
    turn = bot.submit(TurnRequest("c", "hello", "text"))
    for _ in range(200):
        if "reply" in sink.types():
            break
        await asyncio.sleep(0.005)
    assert "reply" in sink.types() and "audio" not in sink.types()
    assert not turn.done()  # the turn is still speaking
    gate.set()
    await turn
    kinds = sink.types()
    assert kinds[-1] == "audio_done" and kinds.count("audio") == 2
    done = sink.events[-1]
    assert done["frames"] == 2 and {"first_audio_ms", "tts_first_audio_ms"} <= set(done["timings"])  # type: ignore[arg-type]
    assert await rows(store, "c") == [("user", "hello", "ok"), ("assistant", "".join(REPLY), "ok")]


async def test_every_event_of_a_turn_carries_its_id(store) -> None:
    """Spoken turns, one interrupted by the next: each event (audio frames and the interruption included) names
    the turn it belongs to, so a page never mixes two turns' events up."""
    gate = asyncio.Event()
    bot = pipeline(store, tts=GatedTTS(gate), replies="always")
    sink = tab(bot, "c")
    gate.set()
    await bot.submit(TurnRequest("c", "hello", "text", turn_id="first", client_msg_id="m-1"))
    assert {e["turn_id"] for e in sink.events} == {"first"} and sink.types().count("audio") == 2
    assert sink.events[0]["client_msg_id"] == "m-1"
    gate.clear()
    speaking = bot.submit(TurnRequest("c", "again", "text", turn_id="second"))
    for _ in range(400):
        if ("reply", "second") in [(e["type"], e["turn_id"]) for e in sink.events]:
            break
        await asyncio.sleep(0.005)
    gate.set()
    await bot.submit(TurnRequest("c", "stop", "text", turn_id="third"))
    with pytest.raises(asyncio.CancelledError):
        await speaking
    by_turn = [(e["type"], e["turn_id"]) for e in sink.events if e["turn_id"] != "first"]
    assert ("interrupted", "second") in by_turn and ("reply", "third") in by_turn
    assert [turn for _, turn in by_turn] == sorted((turn for _, turn in by_turn), key=["second", "third"].index)


async def test_speech_is_sent_at_the_pace_it_is_played_and_ends_when_played(store) -> None:
    """Three sentences of 0.6 s each: the first two go at once (within the playback lead), the third once the
    first has nearly played out, and the reply counts as spoken (audio_done, barge-in possible) until all have been
    played. Lower bounds only: a busy machine can make it slower, never faster."""
    bot = pipeline(store, tts=GatedTTS(duration_s=0.6), replies="always", llm=ScriptedLLM(["One. ", "Two. ", "Three."]))
    sink = tab(bot, "c")
    sent: list[float] = []
    send = sink.send

    async def stamped(event: dict[str, object], binary: bytes | None = None) -> None:
        if event["type"] == "audio":
            sent.append(time.perf_counter())
        await send(event, binary)

    sink.send = stamped  # type: ignore[method-assign]
    turn = bot.submit(TurnRequest("c", "count", "text"))
    for _ in range(200):
        if len(sent) == 2:
            break
        await asyncio.sleep(0.005)
    assert bot.speaking("c")
    await turn
    assert len(sent) == 3 and sink.types()[-1] == "audio_done"
    assert sent[2] - sent[0] >= 1.2 - PLAYBACK_LEAD_S - 0.01  # 1.2 s sent ahead of it, at most the lead unplayed
    assert time.perf_counter() - sent[0] >= 1.8 - 0.01  # done once all three have played
    assert not bot.speaking("c")


# --- failures and barge-in -------------------------------------------------------------------------------------


async def test_any_failure_stops_the_speaker(store) -> None:
    """Not only an LLM error: a reply the store refuses must not leave the speaker's task waiting forever."""
    history = SlowReplyWrites(store, refuse=HistoryError("refused", code="history-failed"))
    bot = pipeline(history, tts=GatedTTS(), replies="always")
    sink = tab(bot, "c")
    before = set(asyncio.all_tasks())
    result = await bot.submit(TurnRequest("c", "hello", "text", turn_id="t1"))
    assert result.status == "error" and result.error is not None and result.error.code == "history-failed"
    assert sink.events[-1] == {"type": "error", "code": "history-failed", "message": "refused", "turn_id": "t1"}
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert leftover == [], leftover


async def test_a_barge_in_while_the_reply_is_being_stored_stores_it_once(store) -> None:
    history = SlowReplyWrites(store)
    bot = pipeline(history)
    sink = tab(bot, "c")
    turn = bot.submit(TurnRequest("c", "hello", "text"))
    await asyncio.wait_for(history.writing.wait(), 5)
    assert bot.barge_in("c")
    history.release.set()
    with pytest.raises(asyncio.CancelledError):
        await turn
    for _ in range(100):
        if "interrupted" in sink.types():
            break
        await asyncio.sleep(0.01)
    assert await rows(store, "c") == [("user", "hello", "ok"), ("assistant", "".join(REPLY), "interrupted")]
    interrupted = next(e for e in sink.events if e["type"] == "interrupted")
    stored = await store.recent("c", 1)
    assert interrupted["message_id"] == stored[0].id


# --- tabs that cannot take an event ----------------------------------------------------------------------------


async def test_a_tab_that_cannot_take_an_event_is_closed_and_the_others_carry_on(store) -> None:
    hub = Hub()
    bot = pipeline(store, hub=hub)
    good, bad = RecordingSink(), RecordingSink(fail=True)
    hub.attach("c", good)
    hub.attach("c", bad)
    result = await bot.submit(TurnRequest("c", "hello", "text"))
    assert result.status == "ok" and good.types()[-1] == "reply"
    await asyncio.sleep(0.01)
    assert bad.closed is not None and bad.closed[0] == TAB_FAILED == 1011
    assert hub.tabs("c") == 1 and hub.connection_count == 1
    await hub.aclose()


# --- recordings live as long as their messages -----------------------------------------------------------------


def transcriber(tmp_path: Path, heard: str) -> Transcriber:
    return Transcriber(stt=WordsSTT(heard), recordings=Recordings(tmp_path / "audio", 30), max_duration_s=60,
                       language="en")


def files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "audio").rglob("*") if p.is_file())


@pytest.mark.parametrize("heard", ["", "   ", "\x00"])
async def test_an_utterance_with_no_speech_keeps_no_recording(store, tmp_path: Path, heard: str) -> None:
    bot = pipeline(store, transcriber=transcriber(tmp_path, heard))
    with pytest.raises(Exception) as err:
        await bot.submit_audio("c", wav(silence(1.0), 16000), "upload")
    assert getattr(err.value, "code", None) == "no-speech"
    await asyncio.sleep(0.2)  # the write that raced the transcription is deleted once it lands
    assert files(tmp_path) == [] and await rows(store, "c") == []


async def test_a_message_the_store_refuses_keeps_no_recording(store, tmp_path: Path) -> None:
    class RefuseUsers(SlowReplyWrites):
        async def append(self, message: NewMessage):  # type: ignore[no-untyped-def]
            if message.role == "user":
                raise HistoryError("refused", code="history-failed")
            return await super().append(message)

    bot = pipeline(RefuseUsers(store), transcriber=transcriber(tmp_path, "hello there"))
    result = await bot.submit_audio("c", wav(silence(1.0), 16000), "upload")
    assert result.status == "error" and result.error is not None and result.error.code == "history-failed"
    assert files(tmp_path) == []


async def test_recordings_go_with_their_messages_and_orphans_are_swept(store, tmp_path: Path) -> None:
    heard = transcriber(tmp_path, "hello there")
    bot = pipeline(store, transcriber=heard)
    for client in ("mine", "mine", "theirs"):
        assert (await bot.submit_audio(client, wav(silence(1.0), 16000), "upload")).status == "ok"
    kept = files(tmp_path)
    assert len(kept) == 3 and {str(p) for p in kept} == await store.audio_paths()
    deletion = await store.clear("mine")
    assert await heard.forget(list(deletion.audio_paths)) == 2
    assert [str(p) for p in files(tmp_path)] == list(await store.audio_paths())
    # A file no message refers to (a server killed between writing it and storing its message) is swept once it
    # is older than the grace period; a fresh one may still be about to be stored, so it stays.
    orphan = Path(heard.recordings.save(b"RIFF....", "wav") or "")
    fresh = Path(heard.recordings.save(b"RIFF....", "wav") or "")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    assert heard.recordings.sweep(await store.audio_paths()) == 1
    assert not orphan.exists() and fresh.exists() and len(files(tmp_path)) == 2
    # Paths outside the audio folder are never deleted, whatever a row says.
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"x")
    assert heard.recordings.delete([str(outside)]) == 0 and outside.exists()


# --- the turn's language ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def en_ru() -> object:
    from core.language import TextLanguage

    detector = TextLanguage(["en", "ru"])
    detector.warm()
    return detector


async def test_a_typed_russian_turn_is_answered_and_spoken_in_russian(store, en_ru) -> None:
    llm = ScriptedLLM(["Столица Франции — Париж. ", "It is also called Paris in English."])
    tts = GatedTTS()
    bot = pipeline(store, llm=llm, tts=tts, replies="always", text_language=en_ru)
    sink = tab(bot, "ru")
    assert (await bot.submit(TurnRequest("ru", "Какая столица у Франции?", "text"))).status == "ok"
    system = llm.contexts[0][0]
    assert system.role == "system" and system.content.endswith("Always answer in Russian.")
    stored = await store.recent("ru", 5)
    assert [m.language for m in stored] == ["ru", "ru"] and stored[0].language_probability is None
    # Each sentence is read by the voice of its own language: a small model may switch mid-reply.
    assert tts.languages == ["ru", "en"]
    assert "audio_done" in sink.types()


async def test_a_heard_language_wins_and_a_fixed_one_wins_over_detection(store, en_ru) -> None:
    llm = ScriptedLLM(["Ok."])
    bot = pipeline(store, llm=llm, text_language=en_ru)
    await bot.submit(TurnRequest("c", "This text looks English enough", "voice", language="ru",
                                 language_probability=0.97))
    assert llm.contexts[-1][0].content.endswith("Always answer in Russian.")
    stored = (await store.recent("c", 2))[0]
    assert (stored.language, stored.language_probability) == ("ru", 0.97)
    bot.set_language("c", "en")
    await bot.submit(TurnRequest("c", "Это явно написано по-русски", "text"))
    assert llm.contexts[-1][0].content.endswith("Always answer in English.")
    bot.set_language("c", None)
    await bot.submit(TurnRequest("c", "ok", "text"))  # too short to judge: no instruction at all
    assert llm.contexts[-1][0].content == "You are a test."


async def test_a_sentence_without_a_voice_is_shown_not_spoken_and_the_rest_is_read(store) -> None:
    from core.errors import TTSError
    from core.language import TextLanguage

    class NoGerman(GatedTTS):
        async def synthesize(self, text: str, *, language: str | None = None):  # type: ignore[no-untyped-def]
            if language == "de":
                raise TTSError("there is no voice for German; the reply is shown as text", code="tts-no-voice")
            async for chunk in super().synthesize(text, language=language):
                yield chunk

    detector = TextLanguage(["en", "de"])
    llm = ScriptedLLM(["Das ist ein deutscher Satz hier. ", "Und noch ein deutscher Satz. ", "This one is English."])
    tts = NoGerman()
    bot = pipeline(store, llm=llm, tts=tts, replies="always", text_language=detector)
    sink = tab(bot, "de")
    assert (await bot.submit(TurnRequest("de", "Sag etwas auf Deutsch bitte", "text"))).status == "ok"
    errors = [e for e in sink.events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["tts-no-voice"]  # told once, not per sentence
    assert tts.sentences == ["This one is English."] and sink.binaries == [b"This one is English."]
    assert sink.types()[-1] == "audio_done"


class CountingLLM(ScriptedLLM):
    """A scripted LLM with a tokenizer of one token per character and a context of ``context`` tokens."""

    def __init__(self, context: int) -> None:
        super().__init__(REPLY)
        self._context = context

    def count_tokens(self, text: str) -> int:
        return len(text)

    def count_prompt(self, messages: object) -> int:
        return sum(len(m.content) + 2 for m in messages)  # type: ignore[attr-defined]

    @property
    def context_tokens(self) -> int:
        return self._context


def stored(number: int, role: str, text: str) -> StoredMessage:
    return StoredMessage(number, "c", role, text, "text", "complete", datetime.now(UTC))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("context", "kept"),
    [
        (10_000, ["a" * 300, "b" * 300, "c" * 300, "d" * 20]),  # everything fits
        (800, ["b" * 300, "c" * 300, "d" * 20]),  # the oldest go first, one by one, leaving the reply its room
        (500, ["c" * 300, "d" * 20]),
        (100, ["d" * 20]),  # the system prompt and the new message always stay: the engine refuses if they overflow
    ],
)
def test_the_oldest_history_is_left_out_when_the_prompt_would_overflow_the_context(
    context: int, kept: list[str]
) -> None:
    """A conversation with one long message once failed every turn after it until the window moved past it."""
    bot = pipeline(None, llm=CountingLLM(context), reply_tokens=100)
    earlier = [stored(1, "user", "a" * 300), stored(2, "assistant", "b" * 300), stored(3, "user", "c" * 300)]
    messages = bot.context(earlier, "d" * 20)
    assert messages[0].role == "system"
    assert [m.content for m in messages[1:]] == kept


def test_without_a_known_context_the_whole_window_is_sent() -> None:
    bot = pipeline(None, reply_tokens=100)
    earlier = [stored(1, "user", "a" * 3000), stored(2, "assistant", "b" * 3000)]
    assert len(bot.context(earlier, "hello")) == 4
