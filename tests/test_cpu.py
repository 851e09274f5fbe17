"""A reply's first audio has the CPU to itself (``core.cpu``): the Speaker holds the gate while it synthesises its
first piece, and the local model pauses between tokens while the gate is held."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

from core.cpu import CpuGate
from core.hub import Hub
from core.interfaces import EngineInfo
from core.llm.local_llama import LlamaCppLLM, bundled_gguf
from core.models import AudioChunk, ChatMessage
from core.outlet import TurnOutlet
from core.speaking import Speaker
from tests.fakes.engines import RecordingSink


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
    speaker = Speaker(tts, TurnOutlet(hub, "c", "t"), origin=time.perf_counter(), cpu=gate)  # type: ignore[arg-type]
    speech = asyncio.create_task(speaker.run())
    speaker.feed("First sentence here. Second one follows. ")
    speaker.feed("And a third.")
    speaker.finish()
    await speech
    assert tts.held == [("First sentence here.", True), ("Second one follows.", False), ("And a third.", False)]
    assert not gate.held


async def test_the_local_model_writes_nothing_while_the_gate_is_held() -> None:
    gate = CpuGate(max_pause_s=30)
    llm = LlamaCppLLM(model_path=bundled_gguf(), temperature=0, max_tokens=8, n_ctx=512, n_threads=0, cpu=gate)
    await llm.start()
    try:
        stream = llm.stream_reply([ChatMessage("user", "Say hello.")])
        with gate.priority():
            first = asyncio.ensure_future(anext(stream))
            done, _ = await asyncio.wait([first], timeout=1.0)
            assert not done  # the model stopped at its first token, however fast the machine is
        assert await asyncio.wait_for(first, 30)
        async for _ in stream:
            pass
    finally:
        await llm.aclose()

