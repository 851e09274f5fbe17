"""Untrusted text made valid at every boundary: lone UTF-16 surrogates from an LLM stream (split across chunks or
not), from a client's JSON, from an STT engine and in commands' output; shown, spoken and stored, and never able to
fail another client's turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.llm.checked import CheckedLLM
from core.models import AudioClip, ChatMessage
from core.recordings import Recordings
from core.transcription import Transcriber
from core.unicode import TextRepair, repaired, valid_text
from tests.conftest import Served
from tests.fakes.engines import ScriptedLLM, WordsSTT
from tests.fakes.openai_server import FakeOpenAI

SMILE = "\U0001f600"
HIGH, LOW = "\ud83d", "\ude00"  # SMILE as UTF-16 code units


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain ascii", "plain ascii"),
        ("Привет, мир! 你好 " + SMILE, "Привет, мир! 你好 " + SMILE),
        (f"a {HIGH}{LOW} b", f"a {SMILE} b"),  # a pair within one string is joined
        (f"a {HIGH} b", "a \ufffd b"),  # a lone high half
        (f"a {LOW} b", "a \ufffd b"),  # a lone low half
        (f"{LOW}{HIGH}", "\ufffd\ufffd"),  # halves in the wrong order are no pair
        (f"x{HIGH}", "x\ufffd"),
        ("nul\x00byte", "nulbyte"),
        (f"nul\x00 and {HIGH}", "nul and \ufffd"),
        ("", ""),
    ],
)
def test_valid_text(raw: str, expected: str) -> None:
    assert valid_text(raw) == expected
    valid_text(raw).encode("utf-8")  # always encodable: raises otherwise


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["Here is a smile ", HIGH, LOW, " for you."], f"Here is a smile {SMILE} for you."),
        (["smile " + HIGH, LOW + " done"], f"smile {SMILE} done"),
        ([HIGH], "\ufffd"),  # the stream ends on a half
        ([HIGH, "next"], "\ufffdnext"),  # a half whose partner never comes
        ([LOW, "after"], "\ufffdafter"),
        (["a", "", "b"], "ab"),
        ([HIGH, LOW, HIGH, LOW], SMILE * 2),
        (["😀 ", "ok"], "😀 ok"),
    ],
)
def test_text_repair_across_chunks(chunks: list[str], expected: str) -> None:
    repair = TextRepair()
    pieces = [repair.feed(chunk) for chunk in chunks] + [repair.flush()]
    assert "".join(pieces) == expected
    for piece in pieces:
        piece.encode("utf-8")


async def test_repaired_stream_drops_empty_chunks_and_closes_its_source() -> None:
    closed = []

    async def source() -> AsyncIterator[str]:
        try:
            for chunk in ["one ", HIGH, LOW, " two"]:
                yield chunk
        finally:
            closed.append(True)

    assert [c async for c in repaired(source())] == ["one ", SMILE, " two"]
    stream = repaired(source())
    assert await anext(stream) == "one "
    await stream.aclose()
    assert closed == [True, True]


async def collect(llm: CheckedLLM) -> str:
    return "".join([piece async for piece in llm.stream_reply([ChatMessage("user", "hi")])])


async def test_checked_llm_repairs_every_engines_text() -> None:
    llm = CheckedLLM(ScriptedLLM(["smile ", HIGH, LOW, " and ", LOW]), max_concurrent=4)
    assert await collect(llm) == f"smile {SMILE} and \ufffd"


async def test_checked_llm_bounds_concurrent_replies_and_queues_the_rest() -> None:
    gate = asyncio.Event()
    engine = ScriptedLLM(["ok"], gate)
    llm = CheckedLLM(engine, max_concurrent=2)
    turns = [asyncio.create_task(collect(llm)) for _ in range(5)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert engine.running == 2 and llm.waiting == 3
    gate.set()
    assert await asyncio.gather(*turns) == ["ok"] * 5
    assert engine.most == 2


@pytest.mark.parametrize(
    ("heard", "text"), [(f"hello {HIGH}", "hello \ufffd"), (f" {HIGH}{LOW} ", SMILE), ("a\x00b", "ab")]
)
async def test_transcripts_are_made_valid(heard: str, text: str, tmp_path) -> None:
    transcriber = Transcriber(
        stt=WordsSTT(heard), recordings=Recordings(tmp_path, 0), max_duration_s=10, language="en"
    )
    assert (await transcriber.transcribe(AudioClip(bytes(3200), 16000))).text == text


async def test_split_emoji_reply_is_shown_and_stored_and_bystanders_lose_nothing(
    server: Served, connect, fake_openai: FakeOpenAI, monkeypatch
) -> None:
    monkeypatch.setitem(fake_openai.scripted_chunks, "send a smile", ["Here is a smile ", HIGH, LOW, " for you."])
    tab = await connect(server, "smiley")
    others = [await connect(server, f"bystander-{i}") for i in range(30)]
    await tab.send("send a smile")
    for i, other in enumerate(others):
        await other.send(f"hello number {i}")
    events = await tab.until_any(("reply", "error"))
    expected = f"Here is a smile {SMILE} for you."
    assert events[-1]["type"] == "reply" and events[-1]["text"] == expected
    assert "".join(e["text"] for e in events if e["type"] == "reply_delta") == expected
    for i, other in enumerate(others):
        answer = (await other.until_any(("reply", "error")))[-1]
        assert answer["type"] == "reply" and f"hello number {i}" in answer["text"], answer
    assert server.stored("smiley") == [("user", "send a smile", "ok"), ("assistant", expected, "ok")]
    # The tab is still fully alive: another turn works.
    assert (await tab.chat("and again"))[-1]["type"] == "reply"


@pytest.mark.parametrize("text", [f"half {HIGH} emoji", f"{LOW} first", f"nul\x00 inside {HIGH}{LOW}"])
async def test_a_clients_lone_surrogates_are_repaired_before_the_turn(server: Served, connect, text: str) -> None:
    tab = await connect(server, "client-halves")
    raw = '{"type":"text","text":' + _json_escaped(text) + "}"
    await tab.send(raw)
    events = await tab.until_any(("reply", "error"))
    mine = next(e for e in events if e["type"] == "user_message")
    assert mine["text"] == valid_text(text).strip()
    assert events[-1]["type"] == "reply"
    assert server.stored("client-halves")[0][1] == valid_text(text).strip()


def _json_escaped(text: str) -> str:
    """``text`` as a JSON string with every non-ASCII code unit escaped (lone surrogates included)."""
    out: list[Any] = []
    for char in text:
        out.append(char if 32 <= ord(char) < 127 and char not in '"\\' else f"\\u{ord(char):04x}")
    return '"' + "".join(out) + '"'


@pytest.mark.slow
async def test_split_emoji_reply_is_spoken_by_piper(serve, make_settings, connect, fake_openai: FakeOpenAI,
                                                    monkeypatch) -> None:
    monkeypatch.setitem(
        fake_openai.scripted_chunks, "smile aloud", ["Here is a smile ", HIGH, LOW, " for you. Have a nice day."]
    )
    served = serve(make_settings({"tts": {"engine": "piper"}, "voice": {"replies": "always"}}))
    tab = await connect(served, "spoken-smile")
    await tab.send("smile aloud")
    frames: list[Any] = []
    while not (frames and isinstance(frames[-1], str) and '"audio_done"' in frames[-1]):
        frames.append(await asyncio.wait_for(tab.ws.recv(), 60))
    assert not any(isinstance(f, str) and '"error"' in f for f in frames), frames
    assert sum(isinstance(f, bytes) for f in frames) == 2  # two sentences, each spoken
    expected = f"Here is a smile {SMILE} for you. Have a nice day."
    assert served.stored("spoken-smile")[-1] == ("assistant", expected, "ok")
