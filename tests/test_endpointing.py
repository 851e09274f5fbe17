"""Endpointing with a scripted end-of-turn model, the real Silero VAD and Piper speech: which events each pause
gives, in the order the page gets them, in milliseconds (no server; the turn runs on scripted engines).

The model's judgements are awaited after each 20 ms chunk, so the stream is judged exactly as a real-time one whose
model answers within a chunk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from core.history import SQLHistoryStore
from core.hub import Hub
from core.models import AudioClip, ChatMessage, Transcript
from core.pipeline import ChatPipeline, TurnRequest, TurnResult
from core.recordings import Recordings
from core.transcription import Transcriber
from core.voice.endpointing import Endpointer
from core.voice.interruption import ECHO_LAG_S, PLACE_ERROR_S
from core.voice.listener import LiveListener
from core.voice.vad import SileroModel, VoiceActivityDetector
from tests.fakes.engines import GatedTTS, RecordingSink, ScriptedLLM, ScriptedSTT, WordsSTT
from tests.speech import SENTENCES, resample, silence, speak

CHUNK = 640  # 20 ms of 16 kHz PCM16
REPLY = ["For how many people? ", "The weather in Paris is sunny today."]


class ScriptedTurnModel:
    """Answers each judgement with the next probability (the last one repeats), or, given ``finished_after_s``,
    0.9 for an utterance longer than that and 0.1 for a shorter one; a probability of None raises."""

    name = "scripted"

    def __init__(self, *answers: float | None, finished_after_s: float | None = None) -> None:
        self.answers = list(answers)
        self.finished_after_s = finished_after_s
        self.heard: list[float] = []  # seconds of audio each judgement was given

    def predict(self, pcm: bytes, sample_rate: int = 16000) -> float:
        seconds = len(pcm) / 2 / sample_rate
        self.heard.append(seconds)
        if self.finished_after_s is not None:
            return 0.9 if seconds > self.finished_after_s else 0.1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is None:
            raise RuntimeError("the model failed")
        return answer


@pytest.fixture(scope="module")
def silero() -> SileroModel:
    return SileroModel()


@pytest.fixture(scope="module")
def sentence() -> bytes:
    pcm, rate = speak(SENTENCES[1])
    return resample(pcm, rate, 16000)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLHistoryStore]:
    store = SQLHistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    await store.start()
    yield store
    await store.aclose()


class Line:
    """A listener on scripted engines, and what its tab was sent."""

    def __init__(
        self, store: SQLHistoryStore, tmp_path: Path, silero: SileroModel, endpointer: Endpointer,
        *, push_to_talk: bool = False, heard: str | ScriptedSTT = "book a table", tts: GatedTTS | None = None,
        interrupt_min_ms: int = 300, llm: ScriptedLLM | None = None,
    ) -> None:
        hub = Hub()
        self.sink = RecordingSink()
        hub.attach("talker", self.sink)
        self.tts = tts
        transcriber = Transcriber(
            stt=WordsSTT(heard) if isinstance(heard, str) else heard,
            recordings=Recordings(str(tmp_path / "audio"), 0), max_duration_s=30,
            language=None,
        )
        self.pipeline = ChatPipeline(
            llm=llm or ScriptedLLM(REPLY), history=store, hub=hub, system_prompt="Test.", history_messages=10,
            transcriber=transcriber, tts=tts, voice_replies="always",
        )
        vad = VoiceActivityDetector(silero, silence_ms=30_000 if push_to_talk else endpointer.max_silence_ms)
        self.turns: list[asyncio.Future[TurnResult]] = []
        self.listener = LiveListener(
            self.pipeline, hub, "talker", vad, 16000, endpointer=endpointer,
            on_turn=lambda turn, turn_id: self.turns.append(turn), push_to_talk=push_to_talk,
            interrupt_min_ms=interrupt_min_ms,
        )

    async def stream(self, audio: bytes, *, realtime: bool = False) -> None:
        """Feed ``audio`` as fast as the listener takes it, or at a microphone's pace."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for offset in range(0, len(audio), CHUNK):
            if realtime:
                await asyncio.sleep(max(0.0, start + offset / 32000 - loop.time()))
            await self.listener.feed(audio[offset : offset + CHUNK])
            await self.listener.idle()

    def events(self, *kinds: str) -> list[dict[str, object]]:
        """The events of these kinds, without their turn ids (each turn's events share one)."""
        return [{k: v for k, v in e.items() if k != "turn_id"} for e in self.sink.events if e["type"] in kinds]


def stop_event(reason: str, probability: float | None = None) -> dict[str, object]:
    """A ``speech_stopped`` event (the words are not read here: no ``text_probability``)."""
    return {"type": "speech_stopped", "reason": reason, "probability": probability, "text_probability": None}


def endpointer(model: ScriptedTurnModel | None, silence_ms: int = 200, max_silence_ms: int = 2000) -> Endpointer:
    return Endpointer(model, silence_ms=silence_ms, max_silence_ms=max_silence_ms, threshold=0.5)


async def test_a_finished_turn_ends_at_the_first_judgement(store, tmp_path, silero, sentence) -> None:
    model = ScriptedTurnModel(0.9)
    line = Line(store, tmp_path, silero, endpointer(model))
    await line.stream(silence(0.3) + sentence + silence(1.0))
    assert [e["type"] for e in line.events("speech_started", "speech_paused", "speech_stopped")] == [
        "speech_started", "speech_stopped"
    ]
    assert line.events("speech_stopped")[0] == stop_event("end_of_turn", 0.9)
    assert len(model.heard) == 1 and abs(model.heard[0] - len(sentence) / 32000) < 0.7  # the utterance so far
    result = await line.turns[0]
    assert result.status == "ok" and result.user_text == "book a table"
    turn_ids = {e["turn_id"] for e in line.sink.events}  # speech_started through the reply: one turn
    assert len(turn_ids) == 1 and line.sink.types()[-1] == "reply"


@pytest.mark.parametrize("answer", [0.1, None], ids=["unfinished", "model-fails"])
async def test_an_unfinished_pause_is_judged_once_and_max_silence_ends_it(
    store, tmp_path, silero, sentence, answer
) -> None:
    model = ScriptedTurnModel(answer, 0.9)  # a second judgement of the same pause would end the turn
    line = Line(store, tmp_path, silero, endpointer(model, max_silence_ms=1000))
    await line.stream(silence(0.3) + sentence + silence(1.6))
    kinds = [e["type"] for e in line.events("speech_started", "speech_paused", "speech_stopped")]
    assert kinds == ["speech_started", *(["speech_paused"] if answer is not None else []), "speech_stopped"]
    if answer is not None:
        paused = line.events("speech_paused")[0]
        assert paused["probability"] == 0.1 and 200 <= paused["silence_ms"] < 300  # type: ignore[operator]
    assert line.events("speech_stopped") == [stop_event("max_silence")]
    assert len(model.heard) == 1
    assert len(line.turns) == 1 and (await line.turns[0]).status == "ok"


async def test_speech_resuming_after_a_pause_is_one_turn(store, tmp_path, silero, sentence) -> None:
    model = ScriptedTurnModel(finished_after_s=len(sentence) / 32000 + 0.5)  # finished once both halves are in
    line = Line(store, tmp_path, silero, endpointer(model))
    await line.stream(silence(0.3) + sentence + silence(0.5) + sentence + silence(1.0))
    kinds = [e["type"] for e in line.events("speech_started", "speech_paused", "speech_stopped")]
    assert kinds[0] == "speech_started" and kinds[-1] == "speech_stopped" and kinds.count("speech_stopped") == 1
    assert "speech_paused" in kinds
    assert len(line.turns) == 1
    assert model.heard[-1] > 2 * len(sentence) / 32000 - 0.2  # the last judgement heard both halves


async def test_without_a_model_the_silence_ends_the_turn(store, tmp_path, silero, sentence) -> None:
    line = Line(store, tmp_path, silero, endpointer(None, silence_ms=300))
    await line.stream(silence(0.3) + sentence + silence(0.3) + sentence + silence(0.6))
    stopped = line.events("speech_stopped")
    assert stopped == [stop_event("end_of_turn")] * 2
    assert not line.events("speech_paused") and len(line.turns) == 2


async def test_push_to_talk_ends_the_turn_at_release(store, tmp_path, silero, sentence) -> None:
    model = ScriptedTurnModel(0.1)
    line = Line(store, tmp_path, silero, endpointer(model))
    await line.stream(silence(0.3) + sentence)
    await line.listener.stop()
    assert line.events("speech_stopped") == [stop_event("push_to_talk")]
    assert (await line.turns[0]).status == "ok"


async def test_pushing_to_talk_only_the_release_ends_the_turn(store, tmp_path, silero, sentence) -> None:
    """While the button is held no pause is judged or ends the turn, but the words are heard early, so the release
    finds them transcribed."""
    model = ScriptedTurnModel(0.99)
    line = Line(store, tmp_path, silero, endpointer(model, max_silence_ms=1000), push_to_talk=True)
    await line.stream(silence(0.3) + sentence + silence(0.6) + sentence + silence(1.5))
    assert model.heard == [] and not line.events("speech_paused", "speech_stopped") and not line.turns
    assert await line.listener.stop()
    assert line.events("speech_stopped") == [stop_event("push_to_talk")]
    assert (await line.turns[0]).status == "ok"


async def test_pushing_to_talk_a_short_word_is_a_turn_and_nothing_is_none(store, tmp_path, silero, sentence) -> None:
    line = Line(store, tmp_path, silero, endpointer(None), push_to_talk=True)
    await line.stream(silence(0.3) + sentence[: 32 * 180])  # 180 ms of speech: short of vad.min_speech_ms
    assert await line.listener.stop() and len(line.turns) == 1
    await line.stream(silence(0.5))
    assert not await line.listener.stop() and len(line.turns) == 1


# --- speech while the bot speaks -------------------------------------------------------------------------------


async def speaking_its_first_sentence(line: Line) -> asyncio.Future[TurnResult]:
    """A reply of REPLY's two sentences, spoken to the talker: the first sent, the second synthesised only when
    the TTS's gate opens."""
    assert line.tts is not None
    speaking = line.pipeline.submit(TurnRequest("talker", "what is the weather", "text"))
    for _ in range(400):
        if line.pipeline.speaking("talker") and "audio" in line.sink.types() and len(line.tts.sentences) == 2:
            return speaking
        await asyncio.sleep(0.005)
    raise AssertionError(f"the reply's first sentence was never sent: {line.sink.types()}")


@pytest.mark.parametrize(
    ("heard", "interrupts"),
    [
        ("For how many people?", False),  # the reply's own voice, heard back
        ("", False),  # no words: a cough, a door
        ("stop, that is enough", True),
        ("how many people live in London", True),  # some of the reply's words, but the user's sentence
        ("the weather in Paris is sunny", True),  # the reply's words, but still to be played: the user's own
    ],
)
async def test_speech_over_a_spoken_reply_pauses_it_and_words_decide(
    store, tmp_path, silero, sentence, heard, interrupts
) -> None:
    gate = asyncio.Event()
    line = Line(store, tmp_path, silero, endpointer(ScriptedTurnModel(0.9)), heard=heard, tts=GatedTTS(gate, free=1))
    speaking = await speaking_its_first_sentence(line)
    await line.stream(silence(0.3) + sentence[: len(sentence) // 2])  # voiced past vad.interrupt_min_ms: decided
    gate.set()  # the reply's second sentence is synthesised now: held, or cancelled; none of it went before
    await line.stream(sentence[len(sentence) // 2 :] + silence(1.0))
    kinds = line.sink.types()
    paused = kinds.index("reply_paused")
    assert kinds[paused - 1] == "speech_started" and kinds[:paused].count("audio") == 1
    if interrupts:
        with pytest.raises(asyncio.CancelledError):
            await speaking
        kinds = line.sink.types()
        assert "interrupted" in kinds and "reply_resumed" not in kinds and kinds.count("audio") == 1
        assert len(line.turns) == 1 and (await line.turns[0]).user_text == heard
    else:
        assert (await speaking).status == "ok"
        kinds = line.sink.types()
        assert "interrupted" not in kinds and "audio" not in kinds[paused : kinds.index("reply_resumed")]
        assert kinds.count("audio") == 2 and not line.turns  # played on; the speech was no turn
        assert [m.role for m in await store.recent("talker", 10)] == ["user", "assistant"]


async def test_the_reply_played_long_before_the_speech_is_not_its_echo(store, tmp_path, silero, sentence) -> None:
    """The user says the words the reply began with, seconds after they were played: no echo comes back that late."""
    gate = asyncio.Event()
    line = Line(store, tmp_path, silero, endpointer(ScriptedTurnModel(0.9)), heard="For how many people?",
                tts=GatedTTS(gate, free=1))
    speaking = await speaking_its_first_sentence(line)
    await asyncio.sleep(ECHO_LAG_S + PLACE_ERROR_S + 0.5)
    await line.stream(silence(0.3) + sentence + silence(1.0), realtime=True)  # a microphone's audio is dated by it
    gate.set()  # the user's turn is answered, and spoken
    with pytest.raises(asyncio.CancelledError):
        await speaking
    assert "interrupted" in line.sink.types() and (await line.turns[0]).user_text == "For how many people?"


async def test_a_reply_cut_by_a_barge_in_is_kept_as_far_as_it_was_played(store, tmp_path, silero) -> None:
    """Audio goes up to ``PLAYBACK_LEAD_S`` ahead of the page's playback: a sentence sent but not yet begun was not
    heard, and is not kept."""
    llm = ScriptedLLM(["One two three. ", "Four five six. ", "Seven eight nine. ", "Ten."])
    tts = GatedTTS(duration_s=2.0)  # each sentence plays 2 s: the third is sent 1 s before the second ends
    line = Line(store, tmp_path, silero, endpointer(None), tts=tts, llm=llm)
    speaking = line.pipeline.submit(TurnRequest("talker", "count", "text"))
    for _ in range(1000):
        if line.sink.types().count("audio") == 3:
            break
        await asyncio.sleep(0.005)
    assert line.pipeline.barge_in("talker")
    with pytest.raises(asyncio.CancelledError):
        await speaking
    reply = (await store.recent("talker", 10))[-1]
    assert (reply.content, reply.status) == ("One two three. Four five six.", "interrupted")


async def test_an_echo_held_up_on_the_way_is_dated_when_it_was_recorded(store, tmp_path, silero, sentence) -> None:
    """The microphone's audio stalls and then comes in a burst, seconds late: its echo of the sentence played when it
    was recorded is still the reply's own (the stream's clock, not the arrival, dates it)."""
    gate = asyncio.Event()
    line = Line(store, tmp_path, silero, endpointer(ScriptedTurnModel(0.9)), heard="For how many people?",
                tts=GatedTTS(gate, free=1))
    await line.stream(silence(0.3))  # the stream is on time so far
    speaking = await speaking_its_first_sentence(line)
    await asyncio.sleep(ECHO_LAG_S + PLACE_ERROR_S + 1.0)  # the echo recorded now arrives this much later
    await line.stream(sentence + silence(1.0))
    gate.set()
    assert (await speaking).status == "ok" and not line.turns
    assert "reply_resumed" in line.sink.types() and "interrupted" not in line.sink.types()


async def test_each_look_at_speech_over_the_reply_hears_what_came_since_the_last(
    store, tmp_path, silero, sentence
) -> None:
    """Over seconds of echo Whisper hears the reply it is prompted with and leaves the user's words out: each look
    hears the audio since the last one (and ``LOOK_OVERLAP_S`` before it), prompted with what was played meanwhile."""
    gate = asyncio.Event()
    stt = ScriptedSTT("For how many people")
    line = Line(store, tmp_path, silero, endpointer(ScriptedTurnModel(0.9)), heard=stt, tts=GatedTTS(gate, free=1))
    speaking = await speaking_its_first_sentence(line)
    await line.stream(silence(0.3))
    for _ in range(3):
        await line.stream(sentence)
        await asyncio.sleep(0.1)  # a look's turn
    await line.stream(silence(1.0))
    gate.set()
    assert (await speaking).status == "ok" and not line.turns  # all of it the reply's echo
    whole = 3 * len(sentence) / 32000
    looks = [(s, p) for s, p in zip(stt.durations, stt.prompts, strict=True) if p is not None]  # not the turn's
    assert len(looks) >= 3 and max(s for s, _ in looks) < whole - 1.0, (whole, looks)
    assert all("people" in prompt for _, prompt in looks), looks


async def test_the_reply_heard_back_before_the_users_words_is_not_what_they_said(
    store, tmp_path, silero, sentence
) -> None:
    """The user's speech began as the reply heard back: the words found to be the reply's are left out of the
    turn's words (its transcript, what is stored and answered)."""

    class Looks(ScriptedSTT):
        """The first look hears the echo, later ones the user; the turn (no prompt) hears all of it."""

        async def transcribe(
            self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
        ) -> Transcript:
            heard = await super().transcribe(audio, language=language, prompt=prompt)
            looks = sum(p is not None for p in self.prompts)
            text = "For how many people? Stop, please stop." if prompt is None else (
                "For how many people" if looks == 1 else "Stop, please stop"
            )
            return dataclasses.replace(heard, text=text)

    gate = asyncio.Event()
    line = Line(
        store, tmp_path, silero, endpointer(ScriptedTurnModel(0.9)), heard=Looks(""), tts=GatedTTS(gate, free=1)
    )
    speaking = await speaking_its_first_sentence(line)
    await line.stream(silence(0.3) + sentence + silence(1.0))
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await speaking
    assert (await line.turns[0]).user_text == "Stop, please stop."
    assert line.events("transcription")[0]["text"] == "Stop, please stop."


@pytest.mark.parametrize(("heard", "interrupts"), [("for how many people", False), ("stop please", True)])
async def test_speech_that_ends_before_it_is_checked_is_judged_whole(
    store, tmp_path, silero, sentence, heard, interrupts
) -> None:
    gate = asyncio.Event()
    line = Line(store, tmp_path, silero, endpointer(ScriptedTurnModel(0.9)), heard=heard, tts=GatedTTS(gate, free=1),
                interrupt_min_ms=60_000)
    speaking = await speaking_its_first_sentence(line)
    await line.stream(silence(0.3) + sentence + silence(1.0))
    gate.set()
    if interrupts:
        with pytest.raises(asyncio.CancelledError):
            await speaking
        assert (await line.turns[0]).user_text == heard
    else:
        assert (await speaking).status == "ok" and not line.turns
    kinds = line.sink.types()
    assert ("interrupted" if interrupts else "reply_resumed") in kinds
    assert line.events("speech_stopped")[0]["reason"] == ("end_of_turn" if interrupts else "echo")


async def test_a_cancelled_press_is_forgotten(store, tmp_path, silero, sentence) -> None:
    line = Line(store, tmp_path, silero, endpointer(None), push_to_talk=True)
    await line.stream(silence(0.3) + sentence)
    await line.listener.cancel()
    assert not line.turns and not line.events("speech_stopped")
    assert await store.recent("talker", 10) == []


@pytest.mark.parametrize(
    ("audio", "text", "finished"),
    [
        (0.95, None, True),  # no words read: the audio model alone
        (0.95, 0.3, True),
        (0.95, 0.001, False),  # "Remind me to call the": the words hold the turn whatever the audio says
        (0.2, 0.6, True),  # words the LLM is sure of, though the audio model hesitates
        (0.2, 0.4, False),
        (None, 0.6, True),  # the audio model failed: words it is sure of still end the turn
        (None, 0.4, None),  # no judgement: max_silence ends the turn
        (None, None, None),
    ],
)
def test_the_words_confirm_or_overrule_the_audio_model(audio, text, finished) -> None:
    judge = Endpointer(ScriptedTurnModel(0.5), silence_ms=200, max_silence_ms=2000, reads_text=True,
                       text_unfinished_below=0.01, text_finished_above=0.5)
    assert judge.finished(audio, text) is finished


class ReadingLLM(ScriptedLLM):
    """Reads the words of each judged pause as told (``core.interfaces.TurnTextJudge``), and records them."""

    reads_turns = True

    def __init__(self, reading: float | None) -> None:
        super().__init__(REPLY)
        self.reading = reading
        self.read: list[str] = []

    async def end_of_turn(self, messages: Sequence[ChatMessage]) -> float | None:
        self.read.append(messages[-1].content)
        return self.reading


@pytest.mark.parametrize(
    ("audio", "words", "reads", "ended"),
    [
        (0.9, 0.001, True, False),  # the words hold the turn: max_silence ends it
        (0.2, 0.6, True, True),  # the words end it, though the audio model hesitated
        (0.9, 0.3, True, True),
        (0.9, 0.001, False, True),  # vad.end_of_turn_text off: the words are not read
    ],
)
async def test_the_words_of_a_pause_hold_or_end_the_turn(
    store, tmp_path, silero, sentence, audio, words, reads, ended
) -> None:
    llm = ReadingLLM(words)
    judge = Endpointer(ScriptedTurnModel(audio), silence_ms=200, max_silence_ms=1000, reads_text=reads,
                       text_unfinished_below=0.01, text_finished_above=0.5)
    line = Line(store, tmp_path, silero, judge, llm=llm)
    await line.stream(silence(0.3) + sentence + silence(1.6))
    assert llm.read == (["book a table"] if reads else [])  # the early transcript, read once
    reading = words if reads else None
    kinds = [e["type"] for e in line.events("speech_started", "speech_paused", "speech_stopped")]
    if ended:
        assert kinds == ["speech_started", "speech_stopped"]
        assert line.events("speech_stopped") == [{**stop_event("end_of_turn", audio), "text_probability": reading}]
    else:
        assert kinds == ["speech_started", "speech_paused", "speech_stopped"]
        paused = line.events("speech_paused")[0]
        assert paused["probability"] == audio and paused["text_probability"] == reading
        assert line.events("speech_stopped") == [stop_event("max_silence")]
    result = await line.turns[0]
    assert result.status == "ok" and result.user_text == "book a table"


async def test_pushing_to_talk_no_words_are_read(store, tmp_path, silero, sentence) -> None:
    llm = ReadingLLM(0.001)
    judge = Endpointer(ScriptedTurnModel(0.9), silence_ms=200, max_silence_ms=1000, reads_text=True)
    line = Line(store, tmp_path, silero, judge, llm=llm, push_to_talk=True)
    await line.stream(silence(0.3) + sentence + silence(0.5))  # a pause while the button is held: transcribed early
    assert await line.listener.stop()
    assert (await line.turns[0]).status == "ok" and llm.read == []


def confirming(model: ScriptedTurnModel, *, reads_text: bool = False) -> Endpointer:
    """The default policy: a finished judgement ends the turn at once only when sure, else after 700 ms of silence."""
    return Endpointer(model, silence_ms=200, max_silence_ms=2000, threshold=0.5, reads_text=reads_text,
                      text_unfinished_below=0.01, text_finished_above=0.5, confirm_silence_ms=700, sure_above=0.9)


@pytest.mark.parametrize(
    ("audio", "text", "reads", "sure"),
    [
        (0.95, None, False, True),  # the words are not read: the audio model alone is sure
        (0.7, None, False, False),
        (0.95, 0.6, True, True),
        (0.95, 0.3, True, False),  # "Set a timer": finished words, but they could go on
        (0.2, 0.9, True, False),  # the words end it, the audio model hesitates
        (0.95, None, True, False),  # the reading did not come
        (None, 0.9, True, False),
    ],
)
def test_a_finished_judgement_is_sure_only_when_both_judges_are(audio, text, reads, sure) -> None:
    assert confirming(ScriptedTurnModel(0.5), reads_text=reads).sure(audio, text) is sure
    # Without a confirming silence every finished judgement ends the turn at once, as before.
    assert endpointer(ScriptedTurnModel(0.5)).sure(audio, text) is True


async def test_a_sure_judgement_ends_the_turn_at_once(store, tmp_path, silero, sentence) -> None:
    line = Line(store, tmp_path, silero, confirming(ScriptedTurnModel(0.95)))
    await line.stream(silence(0.3) + sentence + silence(0.4))  # 200 ms judged, well before the confirming 700
    assert line.events("speech_stopped") == [stop_event("end_of_turn", 0.95)]
    assert (await line.turns[0]).status == "ok"


async def test_an_unsure_judgement_ends_the_turn_after_the_confirming_silence(
    store, tmp_path, silero, sentence
) -> None:
    model = ScriptedTurnModel(0.7)
    line = Line(store, tmp_path, silero, confirming(model))
    await line.stream(silence(0.3) + sentence + silence(0.55))
    assert line.events("speech_stopped") == [] and len(model.heard) == 1  # judged finished, but not surely
    await line.stream(silence(0.6))
    assert line.events("speech_stopped") == [stop_event("end_of_turn", 0.7)]
    assert len(model.heard) == 1  # judged once: the confirming silence needs no second judgement
    assert [e["type"] for e in line.events("speech_started", "speech_paused", "speech_stopped")] == [
        "speech_started", "speech_stopped"
    ]
    assert len(line.turns) == 1 and (await line.turns[0]).user_text == "book a table"


# The sentence's own quiet ends add ~0.2 s to each pause, as the VAD hears it.
@pytest.mark.parametrize("pause_s", [0.2, 0.35])
async def test_speech_resuming_within_the_confirming_silence_is_the_same_turn(
    store, tmp_path, silero, sentence, pause_s
) -> None:
    # "Set a timer … for ten minutes": the first pause sounds finished (0.7), the second surely is (0.95).
    model = ScriptedTurnModel(0.7, 0.95)
    line = Line(store, tmp_path, silero, confirming(model))
    await line.stream(silence(0.3) + sentence + silence(pause_s) + sentence + silence(0.5))
    assert [e["type"] for e in line.events("speech_started", "speech_paused", "speech_stopped")] == [
        "speech_started", "speech_stopped"
    ]
    assert line.events("speech_stopped") == [stop_event("end_of_turn", 0.95)]
    assert len(model.heard) == 2 and model.heard[-1] > 2 * len(sentence) / 32000 - 0.2  # the turn heard both halves
    assert len(line.turns) == 1 and (await line.turns[0]).status == "ok"


async def test_a_pause_longer_than_the_confirming_silence_still_ends_an_unsure_turn(
    store, tmp_path, silero, sentence
) -> None:
    model = ScriptedTurnModel(0.7)
    line = Line(store, tmp_path, silero, confirming(model))
    await line.stream(silence(0.3) + sentence + silence(1.0) + sentence + silence(1.0))
    assert [e["type"] for e in line.events("speech_stopped")] == ["speech_stopped", "speech_stopped"]
    assert len(line.turns) == 2
    assert [(await turn).status for turn in line.turns] == ["ok", "ok"]


async def test_when_max_silence_comes_first_an_unsure_verdict_still_ends_the_turn(
    store, tmp_path, silero, sentence
) -> None:
    judge = Endpointer(ScriptedTurnModel(0.7), silence_ms=200, max_silence_ms=500, confirm_silence_ms=700)
    line = Line(store, tmp_path, silero, judge)
    await line.stream(silence(0.3) + sentence + silence(1.0))
    # The VAD's own 500 ms cut ends it, but the turn was judged over: not a max_silence with no verdict.
    assert line.events("speech_stopped") == [stop_event("end_of_turn", 0.7)]
    assert (await line.turns[0]).status == "ok"


def test_an_eager_realtime_policy_never_confirms() -> None:
    judge = confirming(ScriptedTurnModel(0.5))
    assert not judge.sure(0.7) and not judge.with_threshold(0.8).sure(0.7)
    eager = judge.with_threshold(0.3, confirm=False)
    assert eager.sure(0.7) and eager.threshold == 0.3
    assert judge.confirm_silence_ms == 700 and judge.threshold == 0.5  # the server's own policy is untouched
    waiting = ready_waiting(ScriptedTurnModel(0.5))
    assert waiting.with_threshold(0.3, confirm=False).reply_ready_wait_ms == 0  # not even for the reply to be ready
    assert waiting.with_threshold(0.8).reply_ready_wait_ms == waiting.reply_ready_wait_ms == 1500


def doubting(model: ScriptedTurnModel, *, doubt_silence_ms: int = 1500, max_silence_ms: int = 2000) -> Endpointer:
    """The default policy: words read below 0.01 hold a pause the audio model judged finished, until 1500 ms of
    silence when they read at least 1e-5, else until max_silence."""
    return Endpointer(model, silence_ms=200, max_silence_ms=max_silence_ms, threshold=0.5, reads_text=True,
                      text_unfinished_below=0.01, text_finished_above=0.5, confirm_silence_ms=700, sure_above=0.9,
                      text_unlikely_below=1e-5, doubt_silence_ms=doubt_silence_ms)


@pytest.mark.parametrize(
    ("audio", "text", "wait_ms"),
    [
        (0.95, 0.6, 0),  # both judges sure: at once
        (0.95, 0.3, 700),  # "What is the capital of France", early in a conversation: confirmed
        (0.2, 0.9, 700),
        (0.95, None, 700),  # the reading did not come
        (0.95, 0.0018, 1500),  # "Yes", "Set a timer for 10 minutes": held by the words alone, not for good
        (0.95, 1e-5, 1500),
        (0.95, 1e-7, None),  # "Remind me to call the": only max_silence ends it
        (0.3, 0.0018, None),  # the audio model hears an unfinished sentence too
        (0.3, 0.3, None),
        (None, 0.0018, None),  # no verdict from the audio model
        (None, None, None),
    ],
)
def test_the_less_a_pause_sounds_finished_the_longer_the_silence_that_ends_it(audio, text, wait_ms) -> None:
    assert doubting(ScriptedTurnModel(0.5)).wait_ms(audio, text) == wait_ms


def test_a_doubt_silence_at_or_over_max_silence_is_max_silence() -> None:
    for doubt in (0, 2000, 3000):
        judge = doubting(ScriptedTurnModel(0.5), doubt_silence_ms=doubt)
        assert judge.doubt_silence_ms == 0 and judge.wait_ms(0.95, 0.0018) is None
    assert doubting(ScriptedTurnModel(0.5)).describe()["doubt_silence_ms"] == 1500
    # Never sooner than a probable end (700 ms), however it is set; an empty band of readings: never at all.
    for doubt in (100, 300):
        assert doubting(ScriptedTurnModel(0.5), doubt_silence_ms=doubt).wait_ms(0.95, 0.0018) == 700
    empty = Endpointer(ScriptedTurnModel(0.5), silence_ms=200, max_silence_ms=2000, reads_text=True,
                       text_unfinished_below=0.01, text_unlikely_below=0.05, doubt_silence_ms=1500)
    assert empty.wait_ms(0.95, 0.0018) is None and empty.wait_ms(0.95, 0.02) == 0  # held; not held at all


async def test_a_reading_far_below_the_event_precision_is_reported_as_read(store, tmp_path, silero, sentence) -> None:
    """3.8e-6 ("Спасибо" with no history) waits for max_silence; 4e-5 ends at the doubt silence: the events tell
    them apart (three significant digits, not four decimals)."""
    line = Line(store, tmp_path, silero, doubting(ScriptedTurnModel(0.95)), llm=ReadingLLM(3.8e-6))
    await line.stream(silence(0.3) + sentence + silence(2.4))
    assert line.events("speech_paused")[0]["text_probability"] == 3.8e-6
    assert line.events("speech_stopped") == [stop_event("max_silence")]


async def test_a_pause_held_by_its_words_alone_ends_after_the_doubt_silence(store, tmp_path, silero, sentence) -> None:
    llm = ReadingLLM(0.0018)  # "Yes", as the untuned model reads it in a fresh conversation
    line = Line(store, tmp_path, silero, doubting(ScriptedTurnModel(0.95)), llm=llm)
    await line.stream(silence(0.3) + sentence + silence(1.2))
    assert line.events("speech_stopped") == []  # held: not at 200 ms, nor at the confirming 700 ms
    paused = line.events("speech_paused")
    assert len(paused) == 1 and paused[0]["probability"] == 0.95 and paused[0]["text_probability"] == 0.0018
    await line.stream(silence(0.6))  # past 1500 ms, short of max_silence's 2000
    assert line.events("speech_stopped") == [{**stop_event("end_of_turn", 0.95), "text_probability": 0.0018}]
    assert llm.read == ["book a table"] and len(line.turns) == 1
    assert (await line.turns[0]).user_text == "book a table"


async def test_words_that_surely_go_on_hold_the_turn_until_max_silence(store, tmp_path, silero, sentence) -> None:
    line = Line(store, tmp_path, silero, doubting(ScriptedTurnModel(0.95)), llm=ReadingLLM(1e-7))
    await line.stream(silence(0.3) + sentence + silence(1.8))
    assert line.events("speech_stopped") == []  # past the doubt silence: still held
    await line.stream(silence(0.6))
    assert line.events("speech_stopped") == [stop_event("max_silence")]
    assert (await line.turns[0]).status == "ok"


async def test_speech_resuming_within_the_doubt_silence_is_the_same_turn(store, tmp_path, silero, sentence) -> None:
    # "Set a timer … (1 s) … for ten minutes": held by the words after the first half, surely over after the second.
    model = ScriptedTurnModel(0.95, 0.95)
    llm = ReadingLLM(0.0018)
    line = Line(store, tmp_path, silero, doubting(model), llm=llm)
    await line.stream(silence(0.3) + sentence + silence(0.8))
    llm.reading = 0.6
    await line.stream(sentence + silence(0.5))
    stopped = line.events("speech_stopped")
    assert stopped == [{**stop_event("end_of_turn", 0.95), "text_probability": 0.6}]
    assert len(model.heard) == 2 and len(line.turns) == 1 and (await line.turns[0]).status == "ok"


def ready_waiting(model: ScriptedTurnModel, reply_ready_wait_ms: int = 1500) -> Endpointer:
    """The default policy, whose judged ends wait for the early reply to be ready (up to ``reply_ready_wait_ms``)."""
    return Endpointer(model, silence_ms=200, max_silence_ms=2000, threshold=0.5, confirm_silence_ms=700,
                      sure_above=0.9, reply_ready_wait_ms=reply_ready_wait_ms)


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (without feeding audio) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def gated_line(store, tmp_path, silero, endpointer: Endpointer, spoken: bool) -> tuple[Line, asyncio.Event]:
    """A line whose early reply is not ready until the gate opens: its first audio (``spoken``) or its first text."""
    gate = asyncio.Event()
    if spoken:
        return Line(store, tmp_path, silero, endpointer, tts=GatedTTS(gate)), gate
    return Line(store, tmp_path, silero, endpointer, llm=ScriptedLLM(REPLY, gate)), gate


@pytest.mark.parametrize("spoken", [True, False])
async def test_a_judged_end_waits_for_the_early_reply_to_be_ready(store, tmp_path, silero, sentence, spoken) -> None:
    line, gate = gated_line(store, tmp_path, silero, ready_waiting(ScriptedTurnModel(0.95)), spoken)
    await line.stream(silence(0.3) + sentence + silence(1.0))
    # Surely over 200 ms into the pause, but answering then would answer no sooner: the turn stays open.
    assert line.events("speech_stopped") == [] and line.turns == []
    gate.set()  # the first audio (or text) is ready: the turn ends now, with no more audio heard
    await eventually(lambda: bool(line.events("speech_stopped")))
    assert line.events("speech_stopped") == [stop_event("end_of_turn", 0.95)]
    result = await line.turns[0]
    assert result.status == "ok" and result.reply == "".join(REPLY)
    types = [e["type"] for e in line.events("speech_stopped", "transcription", "audio", "reply")]
    assert types[:2] == ["speech_stopped", "transcription"] and ("audio" in types) is spoken


async def test_speech_resuming_before_the_reply_is_ready_is_the_same_turn(store, tmp_path, silero, sentence) -> None:
    # "What should I cook for dinner? … (1 s) … with chicken and rice": both judges are sure at the first pause.
    model = ScriptedTurnModel(0.95, 0.95)
    line, gate = gated_line(store, tmp_path, silero, ready_waiting(model), spoken=True)
    await line.stream(silence(0.3) + sentence + silence(1.0) + sentence + silence(0.4))
    assert line.events("speech_stopped") == [] and len(model.heard) == 2
    gate.set()
    await eventually(lambda: bool(line.turns))
    result = await line.turns[0]
    assert result.status == "ok" and len(line.turns) == 1
    assert line.events("speech_stopped") == [stop_event("end_of_turn", 0.95)]
    assert model.heard[-1] > 2 * len(sentence) / 32000 - 0.2  # the turn heard both halves
    assert line.events("interrupted") == []


async def test_a_reply_never_ready_ends_the_turn_at_reply_ready_wait_ms(store, tmp_path, silero, sentence) -> None:
    line, gate = gated_line(store, tmp_path, silero, ready_waiting(ScriptedTurnModel(0.7), 1200), spoken=True)
    await line.stream(silence(0.3) + sentence + silence(1.0))
    assert line.events("speech_stopped") == []  # past the confirming 700 ms, the reply not ready
    await line.stream(silence(0.4))  # the sentence's quiet end counts too: past 1200 ms of silence
    assert line.events("speech_stopped") == [stop_event("end_of_turn", 0.7)]
    gate.set()
    assert (await line.turns[0]).status == "ok"


async def test_without_reply_ready_wait_a_judged_end_is_answered_at_once(store, tmp_path, silero, sentence) -> None:
    line, gate = gated_line(store, tmp_path, silero, ready_waiting(ScriptedTurnModel(0.95), 0), spoken=True)
    await line.stream(silence(0.3) + sentence + silence(0.4))
    assert line.events("speech_stopped") == [stop_event("end_of_turn", 0.95)]
    gate.set()
    assert (await line.turns[0]).status == "ok"


def test_reply_ready_wait_is_never_longer_than_max_silence() -> None:
    assert ready_waiting(ScriptedTurnModel(0.5), 5000).reply_ready_wait_ms == 2000
    assert Endpointer(None, silence_ms=500, max_silence_ms=2000, reply_ready_wait_ms=1500).reply_ready_wait_ms == 0
    assert ready_waiting(ScriptedTurnModel(0.5)).describe()["reply_ready_wait_ms"] == 1500


async def test_a_reply_with_no_voice_is_ready_with_its_notice(store, tmp_path, silero, sentence) -> None:
    from core.errors import TTSError

    tts = GatedTTS(error=TTSError("no voice for this language", code="tts-no-voice"))
    line = Line(store, tmp_path, silero, ready_waiting(ScriptedTurnModel(0.95)), tts=tts)
    await line.stream(silence(0.3) + sentence + silence(0.5))
    await eventually(lambda: bool(line.events("speech_stopped")), timeout_s=2)  # not at reply_ready_wait_ms
    assert (await line.turns[0]).status == "ok"
    assert [e["code"] for e in line.events("error")] == ["tts-no-voice"]


async def test_a_one_sentence_reply_is_ready_before_the_turn_claims_it(store, tmp_path, silero, sentence) -> None:
    # No sentence end for the splitter to find: the early reply's speaker synthesises it when the model finishes.
    tts = GatedTTS()
    line = Line(store, tmp_path, silero, ready_waiting(ScriptedTurnModel(0.95)), tts=tts, llm=ScriptedLLM(["Sure"]))
    await line.stream(silence(0.3) + sentence + silence(0.5))
    await eventually(lambda: bool(line.events("speech_stopped")), timeout_s=2)
    assert (await line.turns[0]).reply == "Sure"
    assert tts.sentences == ["Sure"] and [e["text"] for e in line.events("audio")] == ["Sure"]  # once, not twice


async def test_a_cancelled_stream_forgets_a_turn_waiting_for_its_reply(store, tmp_path, silero, sentence) -> None:
    line, gate = gated_line(store, tmp_path, silero, ready_waiting(ScriptedTurnModel(0.95)), spoken=True)
    await line.stream(silence(0.3) + sentence + silence(0.5))
    await line.listener.cancel()
    gate.set()
    await asyncio.sleep(0.2)
    assert line.events("speech_stopped") == [] and line.turns == []
