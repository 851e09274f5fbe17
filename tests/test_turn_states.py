"""Each turn scenario's exact events and states, on scripted engines and a history in memory, in milliseconds.

A turn goes listening → transcribing → replying → speaking → done | interrupted | failed (``core.turn``). These tests
drive turns the way the listener and the socket do — a live utterance's turn is made at its speech start and may
hear its words and start its reply early — and assert what the tabs get, in order, what is stored, the states the
turn went through, and that nothing it started outlives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core.errors import LLMError, STTError, TTSError
from core.hub import Hub
from core.models import AudioClip, Transcript
from core.pipeline import ChatPipeline, Turn, TurnRequest, TurnResult
from core.recordings import Recordings
from core.transcription import Transcriber
from core.turn import ENDED, TRANSITIONS, TurnState
from tests.fakes.engines import GatedTTS, MemoryHistory, RecordingSink, ScriptedLLM, ScriptedSTT

REPLY = ["First sentence here. ", "Second one follows."]
REPLY_TEXT = "".join(REPLY).strip()
WORDS = "book a table"
PCM = b"\x00\x01" * 16000  # one second of 16 kHz PCM16: the fakes hear what they are told, not this

L, T, R, S = TurnState.LISTENING, TurnState.TRANSCRIBING, TurnState.REPLYING, TurnState.SPEAKING
DONE, CUT, FAILED = TurnState.DONE, TurnState.INTERRUPTED, TurnState.FAILED


class Line:
    """One client's pipeline on scripted engines, the turns it made, and what its one tab was sent."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        llm: ScriptedLLM | None = None,
        stt: ScriptedSTT | None = None,
        tts: GatedTTS | None = None,
        replies: str = "auto",
    ) -> None:
        self.llm = llm or ScriptedLLM(REPLY)
        self.history = MemoryHistory()
        hub = Hub()
        self.sink = RecordingSink()
        hub.attach("c", self.sink)
        transcriber = Transcriber(
            stt=stt or ScriptedSTT(WORDS), recordings=Recordings(tmp_path / "audio", 0), max_duration_s=30,
            language=None,
        )
        self.bot = ChatPipeline(
            llm=self.llm, history=self.history, hub=hub, system_prompt="Test.", history_messages=10,  # type: ignore[arg-type]
            transcriber=transcriber, tts=tts, voice_replies=replies,  # type: ignore[arg-type]
        )

    def text(self, text: str = "hello") -> tuple[Turn, asyncio.Future[TurnResult]]:
        """A typed message, as the socket submits it."""
        request = TurnRequest("c", text, "text")
        self.bot.barge_in("c")
        turn = self.bot.new_turn("c", "text", request.turn_id).with_text(request)
        return turn, self.bot.submit_turn(turn)

    def kinds(self) -> list[str]:
        return [str(e["type"]) for e in self.sink.events]

    def event(self, kind: str) -> dict[str, object]:
        return next(e for e in self.sink.events if e["type"] == kind)

    async def until(self, check: Callable[[], object]) -> None:
        """Wait (a millisecond at a time, two seconds at most) until ``check()`` holds."""
        for _ in range(2000):
            if check():
                return
            await asyncio.sleep(0.001)
        raise AssertionError("timed out")


@pytest.fixture
async def no_leftovers() -> AsyncIterator[None]:
    """Nothing a turn started may outlive it: its model stream, its speech, its early work."""
    before = set(asyncio.all_tasks())
    yield
    for _ in range(3):
        await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert leftover == [], leftover


def early_turn(line: Line) -> Turn:
    """A live utterance's turn, made at its speech start, hearing its words 120 ms into a pause."""
    turn = line.bot.new_turn("c")
    turn.hear_early(AudioClip(PCM, 16000), voiced_until=1000)
    return turn


pytestmark = pytest.mark.usefixtures("no_leftovers")


# --- replies -------------------------------------------------------------------------------------------------------


async def test_a_typed_turn(tmp_path: Path) -> None:
    line = Line(tmp_path)
    turn, future = line.text()
    result = await future
    assert line.kinds() == ["user_message", "reply_delta", "reply_delta", "reply"]
    assert {e["turn_id"] for e in line.sink.events} == {turn.turn_id}
    assert turn.states == [L, R, DONE] and result.status == "ok"
    assert list(turn.durations_ms) == ["listening", "replying"]
    assert line.history.rows("c") == [("user", "hello", "ok"), ("assistant", "".join(REPLY).strip(), "ok")]
    assert set(line.event("reply")["timings"]) == {"llm_first_token_ms", "llm_total_ms", "total_ms"}  # type: ignore[arg-type]


async def test_a_spoken_turn_sends_its_reply_before_its_speech(tmp_path: Path) -> None:
    gate = asyncio.Event()
    line = Line(tmp_path, tts=GatedTTS(gate), replies="always")
    turn, future = line.text()
    await line.until(lambda: "reply" in line.kinds())
    assert turn.state is S and line.bot.speaking("c")
    gate.set()
    await future
    assert line.kinds() == ["user_message", "reply_delta", "reply_delta", "reply", "audio", "audio", "audio_done"]
    assert turn.states == [L, R, S, DONE] and not line.bot.speaking("c")


async def test_a_voice_turn_without_early_work(tmp_path: Path) -> None:
    line = Line(tmp_path)
    turn = line.bot.new_turn("c")
    result = await line.bot.submit_pcm("c", PCM, 0.0, turn)
    assert line.kinds() == ["transcription", "user_message", "reply_delta", "reply_delta", "reply"]
    assert turn.states == [L, T, R, DONE] and result.user_text == WORDS
    assert "llm_head_start_ms" not in line.event("reply")["timings"]  # type: ignore[operator]


async def test_the_early_reply_is_kept_when_its_context_holds(tmp_path: Path) -> None:
    """Heard and answered before the end of speech: the model's text and the first sentence's speech are made but
    nothing is sent until the turn takes them; then one request serves the turn."""
    gate = asyncio.Event()
    tts = GatedTTS(gate)
    line = Line(tmp_path, tts=tts)
    turn = early_turn(line)
    await line.until(lambda: tts.sentences)
    assert line.sink.events == [] and turn.state is L and turn.early_until == 1000
    future = line.bot.submit_pcm("c", PCM, 0.0, turn)
    await line.until(lambda: "reply" in line.kinds())
    gate.set()
    result = await future
    assert line.kinds() == [
        "transcription", "user_message", "reply_delta", "reply_delta", "reply", "audio", "audio", "audio_done"
    ]
    assert turn.states == [L, T, R, S, DONE] and result.status == "ok"
    assert len(line.llm.contexts) == 1, "one request, made early and used"
    assert line.event("reply")["timings"]["llm_head_start_ms"] > 0  # type: ignore[index]
    assert line.history.rows("c") == [("user", WORDS, "ok"), ("assistant", "".join(REPLY).strip(), "ok")]


class SlowSTT(ScriptedSTT):
    """Hears its words only once ``gate`` opens."""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__(WORDS)
        self.gate = gate

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        await self.gate.wait()
        return await super().transcribe(audio, language=language, prompt=prompt)


async def test_a_turn_that_ends_before_its_early_words_are_heard_still_keeps_the_early_reply(tmp_path: Path) -> None:
    """The end of the turn is often judged (200 ms into the pause) before the words heard from 120 ms are in: the
    turn waits for them, and for the reply started from them, rather than asking the model afresh."""
    gate = asyncio.Event()
    line = Line(tmp_path, stt=SlowSTT(gate))
    turn = early_turn(line)
    future = line.bot.submit_pcm("c", PCM, 0.0, turn)
    await line.until(lambda: turn.state is T)
    gate.set()
    result = await future
    assert result.status == "ok" and len(line.llm.contexts) == 1, "one request, made early and used"
    assert "llm_head_start_ms" in line.event("reply")["timings"]  # type: ignore[operator]


async def test_the_early_reply_is_dropped_when_speech_resumes(tmp_path: Path) -> None:
    gate = asyncio.Event()
    tts = GatedTTS(gate)
    line = Line(tmp_path, stt=ScriptedSTT(WORDS, f"{WORDS} for four"), tts=tts)
    turn = early_turn(line)
    await line.until(lambda: line.llm.contexts and line.llm.running == 0 and tts.sentences)
    turn.drop_early()  # what the listener does when speech resumes
    assert turn.early_until is None
    future = line.bot.submit_pcm("c", PCM, 0.0, turn)
    await line.until(lambda: "reply" in line.kinds())
    gate.set()
    result = await future
    assert line.kinds() == [
        "transcription", "user_message", "reply_delta", "reply_delta", "reply", "audio", "audio", "audio_done"
    ]
    assert turn.states == [L, T, R, S, DONE] and result.user_text == f"{WORDS} for four"
    assert [c[-1].content for c in line.llm.contexts] == [WORDS, f"{WORDS} for four"]
    assert "llm_head_start_ms" not in line.event("reply")["timings"]  # type: ignore[operator]
    assert [e["seq"] for e in line.sink.events if e["type"] == "audio"] == [0, 1], "the dropped speech sent nothing"


async def test_the_early_reply_is_dropped_when_the_context_changed(tmp_path: Path) -> None:
    """A typed message answered meanwhile changes the history the early reply was started on: the turn asks
    afresh, and nothing of the early reply is sent or stored."""
    line = Line(tmp_path)
    turn = early_turn(line)
    await line.until(lambda: line.llm.contexts)
    _, typing = line.text("meanwhile")
    await typing
    line.sink.events.clear()
    result = await line.bot.submit_pcm("c", PCM, 0.0, turn)
    assert line.kinds() == ["transcription", "user_message", "reply_delta", "reply_delta", "reply"]
    assert turn.states == [L, T, R, DONE] and result.status == "ok"
    assert len(line.llm.contexts) == 3 and "llm_head_start_ms" not in line.event("reply")["timings"]  # type: ignore[operator]
    assert [m[0] for m in line.history.rows("c")] == ["user", "assistant", "user", "assistant"]


async def test_the_early_reply_is_dropped_when_the_voice_was_turned_off(tmp_path: Path) -> None:
    tts = GatedTTS(asyncio.Event())
    line = Line(tmp_path, tts=tts)
    turn = early_turn(line)
    await line.until(lambda: tts.sentences)
    line.bot.set_voice_replies("c", False)
    await line.bot.submit_pcm("c", PCM, 0.0, turn)
    assert line.kinds() == ["transcription", "user_message", "reply_delta", "reply_delta", "reply"]
    assert turn.states == [L, T, R, DONE] and len(line.llm.contexts) == 2


async def test_each_reply_prepares_exactly_the_next_prompt_as_the_window_slides(tmp_path: Path) -> None:
    """The LLM is handed the next turn's system prompt and history once a reply is stored (so the local model
    evaluates the start of the next prompt while the reply is spoken): the window's first slide included."""
    line = Line(tmp_path)
    line.bot.history_messages = 4
    for number in range(5):
        await line.text(f"message {number}")[1]
    assert len(line.llm.prepared) == 5
    for prepared, following in zip(line.llm.prepared, line.llm.contexts[1:], strict=False):
        assert prepared == following[:-1]
    assert [m.content for m in line.llm.contexts[3][1:-1]] == ["message 1", REPLY_TEXT, "message 2", REPLY_TEXT]


async def test_a_reply_the_model_only_echoed_is_left_out_of_the_next_prompt(tmp_path: Path) -> None:
    """A small model that finds its own echo in the history echoes every request after it; the user's words stay."""
    line = Line(tmp_path, llm=ScriptedLLM(["Set an alarm ", "for seven."]))
    await line.text("set an alarm for seven")[1]
    line.llm.chunks = REPLY
    await line.text("and what time is it")[1]
    await line.text("thanks")[1]
    said = "set an alarm for seven"
    assert [m.content for m in line.llm.contexts[1][1:]] == [said, "and what time is it"]
    assert [m.content for m in line.llm.contexts[2][1:]] == [said, "and what time is it", REPLY_TEXT, "thanks"]
    assert line.llm.prepared[0] == line.llm.contexts[1][:-1]
    assert line.history.rows("c")[1] == ("assistant", "Set an alarm for seven.", "ok")  # stored all the same


# --- barge-in ------------------------------------------------------------------------------------------------------


async def test_a_barge_in_while_replying_keeps_the_text_sent(tmp_path: Path) -> None:
    line = Line(tmp_path, llm=ScriptedLLM(REPLY, asyncio.Event(), gate_after=1))
    turn, future = line.text()
    await line.until(lambda: "reply_delta" in line.kinds())
    assert turn.state is R
    assert line.bot.barge_in("c")
    with pytest.raises(asyncio.CancelledError):
        await future
    assert line.kinds() == ["user_message", "reply_delta", "interrupted"]
    assert turn.states == [L, R, CUT] and line.llm.running == 0
    assert line.event("interrupted")["text"] == "First sentence here."
    assert line.history.rows("c") == [("user", "hello", "ok"), ("assistant", "First sentence here.", "interrupted")]
    assert line.history.writes[1:] == [("append", "First sentence here.", "interrupted")], "stored once"


async def test_a_barge_in_while_speaking_keeps_what_was_spoken(tmp_path: Path) -> None:
    """The reply was stored whole when its text was complete; the barge-in updates it to the sentence heard."""
    line = Line(tmp_path, tts=GatedTTS(duration_s=10.0), replies="always")
    turn, future = line.text()
    await line.until(lambda: "audio" in line.kinds() and "reply" in line.kinds())
    assert turn.state is S
    assert line.bot.barge_in("c")
    with pytest.raises(asyncio.CancelledError):
        await future
    # The first sentence is synthesised and sent while the reply is being stored.
    assert line.kinds() == ["user_message", "reply_delta", "reply_delta", "audio", "reply", "interrupted"]
    assert turn.states == [L, R, S, CUT] and not line.bot.speaking("c")
    reply_id = line.event("reply")["message_id"]
    assert line.event("interrupted") == {
        "type": "interrupted", "message_id": reply_id, "text": "First sentence here.", "turn_id": turn.turn_id
    }
    assert line.history.rows("c") == [("user", "hello", "ok"), ("assistant", "First sentence here.", "interrupted")]
    assert line.history.writes[1:] == [
        ("append", "".join(REPLY).strip(), "ok"), ("update", "First sentence here.", "interrupted")
    ], "stored once, then updated"


async def test_a_barge_in_cuts_a_kept_early_reply_and_its_speech(tmp_path: Path) -> None:
    """The model is still writing the early reply when the turn takes it; its first sentence is spoken, then the
    user barges in: the model's stream and the speech stop, and the sentence heard is kept."""
    gate = asyncio.Event()
    llm = ScriptedLLM([*REPLY, " And a third."], gate, gate_after=2)
    tts = GatedTTS(duration_s=10.0)
    line = Line(tmp_path, llm=llm, tts=tts)
    turn = early_turn(line)
    await line.until(lambda: tts.sentences)
    assert line.sink.events == []
    future = line.bot.submit_pcm("c", PCM, 0.0, turn)
    await line.until(lambda: "audio" in line.kinds())
    assert turn.state is R and llm.running == 1
    assert line.bot.barge_in("c")
    with pytest.raises(asyncio.CancelledError):
        await future
    assert line.kinds() == ["transcription", "user_message", "reply_delta", "reply_delta", "audio", "interrupted"]
    assert turn.states == [L, T, R, CUT] and llm.running == 0 and len(llm.contexts) == 1
    assert line.history.rows("c")[1:] == [("assistant", "First sentence here.", "interrupted")]


async def test_no_barge_in_before_the_users_message_is_stored(tmp_path: Path) -> None:
    line = Line(tmp_path)
    turn = line.bot.new_turn("c")
    assert not turn.interrupt() and not line.bot.barge_in("c")
    await line.bot.submit_pcm("c", PCM, 0.0, turn)
    assert not turn.interrupt(), "nor after the end"


# --- failures ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heard", "code"),
    [(STTError("the service is down", code="stt-unavailable"), "stt-unavailable"), ("", "no-speech")],
)
async def test_a_transcription_failure_raises_and_sends_nothing(tmp_path: Path, heard: object, code: str) -> None:
    line = Line(tmp_path, stt=ScriptedSTT(heard))  # type: ignore[arg-type]
    turn = line.bot.new_turn("c")
    with pytest.raises(STTError) as err:
        await line.bot.submit_pcm("c", PCM, 0.0, turn)
    assert err.value.code == code
    assert line.sink.events == [] and turn.states == [L, T, FAILED]
    assert line.history.rows("c") == [] and line.llm.contexts == []


async def test_an_early_transcription_failure_is_the_turns(tmp_path: Path) -> None:
    line = Line(tmp_path, stt=ScriptedSTT(STTError("nothing heard", code="no-speech")))
    turn = early_turn(line)
    with pytest.raises(STTError) as err:
        await line.bot.submit_pcm("c", PCM, 0.0, turn)
    assert err.value.code == "no-speech" and turn.states == [L, T, FAILED] and line.sink.events == []


async def test_a_model_failing_before_its_first_word(tmp_path: Path) -> None:
    line = Line(tmp_path, llm=ScriptedLLM([], error=LLMError("the model went away", code="llm-unavailable")))
    turn, future = line.text()
    result = await future
    assert line.kinds() == ["user_message", "error"]
    assert line.event("error")["code"] == "llm-unavailable" and result.status == "error"
    assert turn.states == [L, R, FAILED] and not line.bot.llm_healthy
    assert line.history.rows("c") == [("user", "hello", "ok")]


async def test_a_model_failing_mid_reply_keeps_what_was_shown(tmp_path: Path) -> None:
    """Spoken, too: the speech of a failed reply stops (no audio at all), and the text shown is kept as failed."""
    tts = GatedTTS(asyncio.Event())
    line = Line(tmp_path, llm=ScriptedLLM(["Par"], error=LLMError("cut off", code="llm-failed")), tts=tts,
                replies="always")
    turn, future = line.text()
    result = await future
    assert line.kinds() == ["user_message", "reply_delta", "error"]
    assert turn.states == [L, R, FAILED] and result.reply == "Par" and line.bot.llm_healthy
    assert line.history.rows("c") == [("user", "hello", "ok"), ("assistant", "Par", "error")]
    assert not line.bot.speaking("c")


async def test_a_kept_early_reply_that_fails_fails_the_turn(tmp_path: Path) -> None:
    line = Line(tmp_path, llm=ScriptedLLM(["Par"], error=LLMError("cut off", code="llm-failed")), tts=GatedTTS())
    turn = early_turn(line)
    await line.until(lambda: line.llm.contexts and line.llm.running == 0)
    result = await line.bot.submit_pcm("c", PCM, 0.0, turn)
    assert line.kinds() == ["transcription", "user_message", "reply_delta", "error"]
    assert turn.states == [L, T, R, FAILED] and result.error is not None and result.error.code == "llm-failed"
    assert len(line.llm.contexts) == 1


async def test_a_speech_failure_still_delivers_the_text(tmp_path: Path) -> None:
    tts = GatedTTS(error=TTSError("the voice died", code="tts-failed"))
    line = Line(tmp_path, tts=tts, replies="always")
    turn, future = line.text()
    result = await future
    assert line.kinds() == ["user_message", "reply_delta", "reply_delta", "error", "reply", "audio_done"]
    assert line.event("error")["code"] == "tts-failed" and line.event("audio_done")["frames"] == 0
    assert turn.states == [L, R, S, DONE] and result.status == "ok"
    assert tts.sentences == ["First sentence here."], "no sentence is tried after the voice failed"
    assert line.history.rows("c")[1] == ("assistant", "".join(REPLY).strip(), "ok")


async def test_a_reply_the_store_refuses_fails_the_turn(tmp_path: Path) -> None:
    from core.errors import HistoryError

    line = Line(tmp_path, tts=GatedTTS(asyncio.Event()), replies="always")
    append = line.history.append

    async def refuse_replies(message):  # type: ignore[no-untyped-def]
        if message.role == "assistant":
            raise HistoryError("refused", code="history-failed")
        return await append(message)

    line.history.append = refuse_replies  # type: ignore[method-assign]
    turn, future = line.text()
    result = await future
    assert line.kinds() == ["user_message", "reply_delta", "reply_delta", "error"]
    assert turn.states == [L, R, FAILED] and result.error is not None and result.error.code == "history-failed"


# --- the state machine ---------------------------------------------------------------------------------------------


def test_every_state_has_its_moves_and_the_ends_have_none() -> None:
    assert set(TRANSITIONS) == set(TurnState)
    assert all(TRANSITIONS[state] == frozenset() for state in ENDED)
    assert all({CUT, FAILED} <= TRANSITIONS[state] for state in TurnState if state not in ENDED)


async def test_an_illegal_transition_is_a_bug(tmp_path: Path) -> None:
    turn = Line(tmp_path).bot.new_turn("c")
    with pytest.raises(RuntimeError, match="cannot go from listening to speaking"):
        turn.enter(S)
    turn.enter(R)
    with pytest.raises(RuntimeError):
        turn.enter(T)
    turn.enter(DONE)
    with pytest.raises(RuntimeError):
        turn.enter(FAILED)
    assert turn.states == [L, R, DONE]
