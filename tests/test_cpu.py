"""A reply's first audio has the CPU to itself (``core.cpu``): the Speaker holds the gate while it synthesises its
first piece, and the local model pauses between tokens while the gate is held."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

from core.cpu import CpuGate
from core.errors import TTSError
from core.hub import Hub
from core.llm.local_llama import LlamaCppLLM, bundled_gguf
from core.models import AudioChunk, ChatMessage, EngineInfo
from core.outlet import TurnOutlet
from core.speaking import Speaker
from tests.fakes.engines import GatedTTS, RecordingSink


def test_the_gate_lets_background_work_through_when_nothing_holds_it() -> None:
    gate = CpuGate()
    assert not gate.held
    assert gate.pause_point() is True


def test_background_work_waits_while_the_gate_is_held_and_goes_on_once_released() -> None:
    gate = CpuGate(max_pause_s=30)
    passed = threading.Event()

    def background() -> None:
        gate.pause_point()
        passed.set()

    with gate.priority():
        with gate.priority():  # two holders: the gate opens when both are done
            worker = threading.Thread(target=background)
            worker.start()
            assert not passed.wait(0.2)
        assert gate.held and not passed.is_set()
    assert passed.wait(5)
    worker.join()
    assert not gate.held


def test_background_work_never_waits_longer_than_the_bound() -> None:
    gate = CpuGate(max_pause_s=0.05)
    with gate.priority():
        assert gate.pause_point() is False


class WatchingTTS:
    """Records, for each sentence, whether the gate was held while it was synthesised."""

    def __init__(self, gate: CpuGate) -> None:
        self.gate = gate
        self.held: list[tuple[str, bool]] = []

    def info(self) -> EngineInfo:
        return EngineInfo("watching", "fake", True)

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        await asyncio.sleep(0)
        self.held.append((text, self.gate.held))
        yield AudioChunk(text.encode(), "pcm", 16000, None)

    async def aclose(self) -> None:
        pass


async def test_the_speaker_holds_the_gate_for_its_first_piece_only() -> None:
    gate = CpuGate()
    tts = WatchingTTS(gate)
    hub = Hub()
    hub.attach("c", RecordingSink())
    speaker = Speaker(tts, TurnOutlet(hub, "c", "t"), origin=time.perf_counter(), cpu=gate)
    speech = asyncio.create_task(speaker.run())
    speaker.feed("First sentence here. Second one follows. ")
    speaker.feed("And a third.")
    speaker.finish()
    await speech
    assert tts.held == [("First sentence here.", True), ("Second one follows.", False), ("And a third.", False)]
    assert not gate.held


async def test_the_local_model_writes_no_further_token_while_the_gate_is_held() -> None:
    gate = CpuGate(max_pause_s=30)
    llm = LlamaCppLLM(
        model_path=bundled_gguf(), temperature=0, max_tokens=8, n_ctx=512, n_threads=0, cpu=gate, guard=False, stop=[]
    )
    await llm.start()
    try:
        stream = llm.stream_reply([ChatMessage("user", "Count from one to ten.")])
        with gate.priority():
            assert await asyncio.wait_for(anext(stream), 30)  # a token written is sent at once
            second = asyncio.ensure_future(anext(stream))
            done, _ = await asyncio.wait([second], timeout=1.0)
            assert not done  # the model stopped before its next token, however fast the machine is
        assert await asyncio.wait_for(second, 30)
        async for _ in stream:
            pass
    finally:
        await llm.aclose()


async def test_preparing_the_next_prompt_never_keeps_a_request_waiting_on_the_gate() -> None:
    gate = CpuGate(max_pause_s=30)
    llm = LlamaCppLLM(model_path=bundled_gguf(), temperature=0, max_tokens=4, n_ctx=2048, n_threads=0, cpu=gate)
    await llm.start()
    try:
        history = [ChatMessage("system", "Be brief.")]
        for number in range(12):
            history += [ChatMessage("user", f"Question {number} on the weather?"), ChatMessage("assistant", "Sunny.")]
        with gate.priority():
            llm.prepare(history)  # idle work, paused at the gate
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            reply = asyncio.ensure_future(anext(llm.stream_reply([ChatMessage("user", "Hi.")])))
            # It gives way within a pause slice: the reply's first token is not held for the gate's 30 s bound.
            assert await asyncio.wait_for(reply, 20)
            assert time.perf_counter() - started < 20
    finally:
        await llm.aclose()


async def test_a_speaker_cancelled_or_failing_on_its_first_piece_lets_the_gate_go() -> None:
    gate = CpuGate()
    hub = Hub()
    hub.attach("c", RecordingSink())
    stalled = asyncio.Event()
    speaker = Speaker(GatedTTS(stalled), TurnOutlet(hub, "c", "t"), origin=time.perf_counter(), cpu=gate)
    speech = asyncio.create_task(speaker.run())
    speaker.feed("A first sentence here. ")
    speaker.finish()
    for _ in range(5000):  # the first piece is being synthesised (and stalls there)
        if gate.held:
            break
        await asyncio.sleep(0.001)
    assert gate.held
    speech.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await speech
    assert not gate.held
    failing = Speaker(
        GatedTTS(error=TTSError("down", code="tts-failed")), TurnOutlet(hub, "c", "u"), origin=time.perf_counter(),
        cpu=gate,
    )
    speech = asyncio.create_task(failing.run())
    failing.feed("A first sentence here. ")
    failing.finish()
    await speech
    assert failing.failed is not None and not gate.held

