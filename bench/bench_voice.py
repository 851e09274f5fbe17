"""End of speech → first reply audio, on the offline defaults, streaming a 3 s utterance in real time.

For each turn the client streams 20 ms PCM chunks at real-time pace, notes when the last voiced sample left,
and waits for the first binary audio frame of the reply. It reports p50/p95 over the turns and the server's
stage breakdown, once with the embedded SmolLM2 and once with an instant loopback LLM (what the server and
the speech engines cost alone). Baseline: the same utterance through faster-whisper and Piper called
directly in this process, with no server, no VAD wait and no LLM.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from bench.common import line, percentile, start_fake_openai, start_web_bot
from tests.speech import SENTENCES, resample, silence, speak

TURNS = 20
CHUNK = 640
UTTERANCE_S = 3.0


def utterances() -> list[bytes]:
    clips = []
    for sentence in SENTENCES:
        pcm, rate = speak(sentence)
        pcm = resample(pcm, rate, 16000)[: int(UTTERANCE_S * 16000) * 2]
        clips.append(pcm + silence(max(0.0, UTTERANCE_S - len(pcm) / 32000)))
    return clips


async def turn(ws: Any, speech: bytes, tail: bytes) -> tuple[float, dict[str, float]]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    chunks = [speech[i : i + CHUNK] for i in range(0, len(speech), CHUNK)]
    for index, chunk in enumerate(chunks):
        await ws.send(chunk)
        await asyncio.sleep(max(0, start + (index + 1) * 0.02 - loop.time()))
    speech_end = time.perf_counter()

    async def trailing_silence() -> None:
        base = loop.time()
        for index, offset in enumerate(range(0, len(tail), CHUNK)):
            await ws.send(tail[offset : offset + CHUNK])
            await asyncio.sleep(max(0, base + (index + 1) * 0.02 - loop.time()))

    sender = asyncio.create_task(trailing_silence())
    first_audio = None
    timings: dict[str, float] = {}
    while True:
        frame = await asyncio.wait_for(ws.recv(), 120)
        if isinstance(frame, bytes):
            first_audio = first_audio or time.perf_counter()
            continue
        event = json.loads(frame)
        if event["type"] == "error":
            raise RuntimeError(event)
        if event["type"] == "reply":
            timings = event["timings"]
            if first_audio is not None:
                break
        if first_audio is not None and timings:
            break
    await sender
    # Let the rest of the reply be spoken before the next utterance, as a person would.
    while True:
        try:
            await asyncio.wait_for(ws.recv(), 1.5)
        except TimeoutError:
            break
    return first_audio - speech_end, timings


async def run(port: int, clips: list[bytes], turns: int) -> tuple[list[float], list[dict[str, float]]]:
    latencies, stages = [], []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/bench-voice", max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "audio_start", "format": "pcm16", "sample_rate": 16000}))
        for i in range(turns + 1):
            latency, timings = await turn(ws, clips[i % len(clips)], silence(1.0))
            if i:  # the first turn warms the engines up
                latencies.append(latency)
                stages.append(timings)
    return latencies, stages


async def direct_baseline(clips: list[bytes]) -> float:
    """faster-whisper on the utterance, then Piper on a short sentence: the engines' own cost."""
    from core.config import STTSettings, TTSSettings
    from core.models import AudioClip
    from core.stt import build_stt
    from core.tts import build_tts

    stt = await build_stt(STTSettings())
    tts = await build_tts(TTSSettings())
    assert stt is not None and tts is not None
    costs = []
    for i in range(6):
        start = time.perf_counter()
        await stt.transcribe(AudioClip(clips[i % len(clips)], 16000), language="en")
        async for _ in tts.synthesize("Sure, here is a short answer."):
            break
        if i:
            costs.append(time.perf_counter() - start)
    await stt.aclose()
    await tts.aclose()
    return statistics.median(costs)


def report(name: str, latencies: list[float], stages: list[dict[str, float]], baseline: float) -> None:
    p50 = statistics.median(latencies)
    line(f"{name}: end of speech → first audio p50", f"{p50 * 1000:.0f} ms",
         f"{baseline * 1000:.0f} ms STT+TTS called directly", p50 / baseline, "p50 ≤ 1000 ms")
    line(f"{name}: end of speech → first audio p95", f"{percentile(latencies, 95) * 1000:.0f} ms")
    keys = ("stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_ms", "llm_total_ms")
    breakdown = ", ".join(f"{k} {statistics.median(s.get(k, 0) for s in stages):.0f}" for k in keys)
    print(f"  stage medians (server timings, ms): {breakdown}", flush=True)


async def main() -> None:
    clips = utterances()
    baseline = await direct_baseline(clips)
    workdir = Path(tempfile.mkdtemp(prefix="bench-voice-"))
    print(f"# voice benchmark ({TURNS} turns of a {UTTERANCE_S:.0f} s utterance streamed in real time, "
          "whisper tiny.en + piper, VAD silence window included)", flush=True)
    common = {"voice": {"replies": True}, "llm": {"max_tokens": 64}}
    server, port = start_web_bot({**common, "llm": {"engine": "local", "max_tokens": 64}}, workdir)
    try:
        latencies, stages = await run(port, clips, TURNS)
    finally:
        server.stop()
    report("offline defaults (SmolLM2)", latencies, stages, baseline)
    fake, fake_url = start_fake_openai()
    server, port = start_web_bot(
        {**common, "llm": {"engine": "openai", "base_url": f"{fake_url}/v1", "model_name": "fake"},
         "database": {"db_path": str(workdir / "fake.db")}},
        workdir,
    )
    try:
        latencies, stages = await run(port, clips, TURNS)
    finally:
        server.stop()
        fake.stop()
    report("instant fake LLM", latencies, stages, baseline)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
