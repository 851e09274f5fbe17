"""A Realtime API session's end of speech → first audio delta, beside the page's own figure on the same server.

One server (whisper base, Piper, the default end-of-turn detection, and an instant loopback LLM so that the figure is
the server's and the speech engines' own cost) is driven by two clients in turn, with the same ~3 s utterances
streamed at a microphone's pace: the page's socket (``/ws/{id}``, 16 kHz PCM16 binary frames, first binary audio
frame of the reply) and a Realtime client (``/v1/realtime``, 24 kHz PCM16 in base64 ``input_audio_buffer.append``
events, first ``response.audio.delta`` of the response). The ratio says what the Realtime translation costs.
BENCH_QUICK=1: two turns each.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from bench.bench_voice import TURNS, read, utterances
from bench.bench_voice import run as run_page
from bench.common import QUICK_MARK, line, percentile, start_fake_openai, start_web_bot
from tests.speech import resample, silence

RATE = 24000
CHUNK_S = 0.02


async def send_paced(ws: Any, pcm: bytes) -> None:
    """Append ``pcm`` as a microphone would: each 20 ms chunk leaves once its last sample has been recorded."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    step = int(RATE * CHUNK_S) * 2
    for offset in range(0, len(pcm), step):
        chunk = pcm[offset : offset + step]
        await asyncio.sleep(max(0, start + (offset + len(chunk)) / (2 * RATE) - loop.time()))
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}))


async def realtime_turn(ws: Any, inbox: asyncio.Queue[tuple[float, Any]], speech: bytes) -> float:
    """End of speech → the first audio delta of this utterance's response."""
    await send_paced(ws, speech)
    speech_end = time.perf_counter()
    sender = asyncio.create_task(send_paced(ws, resample(silence(2.5), 16000, RATE)))
    first: float | None = None
    while True:
        at, frame = await asyncio.wait_for(inbox.get(), 120)
        event = json.loads(frame)
        kind = event["type"]
        if kind == "error" or (kind == "response.done" and event["response"]["status"] != "completed"):
            raise RuntimeError(f"turn failed: {event}")
        if kind == "response.audio.delta" and first is None:
            first = at
        elif kind == "response.done":
            break
    await sender
    if first is None:
        raise RuntimeError("a response without audio")
    return first - speech_end


async def run_realtime(port: int, clips: list[bytes], turns: int) -> list[float]:
    latencies = []
    headers = {"Authorization": "Bearer bench", "OpenAI-Beta": "realtime=v1"}
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime", additional_headers=headers,
                                  max_size=None) as ws:
        await ws.recv()
        inbox: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        reader = asyncio.create_task(read(ws, inbox))
        try:
            for i in range(turns + 1):
                latency = await realtime_turn(ws, inbox, resample(clips[i % len(clips)], 16000, RATE))
                if i:  # the first turn warms the engines up
                    latencies.append(latency)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return latencies


async def main() -> None:
    clips = utterances()
    workdir = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    print(f"# realtime benchmark{QUICK_MARK} ({TURNS} turns each, whisper base + piper, instant fake LLM)", flush=True)
    fake, fake_url = start_fake_openai()
    server, port = start_web_bot(
        {"voice": {"replies": True},
         "llm": {"engine": "openai", "base_url": f"{fake_url}/v1", "model_name": "fake", "max_tokens": 64}},
        workdir,
    )
    try:
        page, _, _ = await run_page(port, clips, TURNS)
        realtime = await run_realtime(port, clips, TURNS)
    finally:
        server.stop()
        fake.stop()
    page_p50, realtime_p50 = statistics.median(page), statistics.median(realtime)
    line("Realtime API: end of speech → first audio delta p50", f"{realtime_p50 * 1000:.0f} ms",
         f"{page_p50 * 1000:.0f} ms the page's socket (first audio frame), same server", realtime_p50 / page_p50)
    line("Realtime API: end of speech → first audio delta p95", f"{percentile(realtime, 95) * 1000:.0f} ms",
         f"{percentile(page, 95) * 1000:.0f} ms the page's socket")

