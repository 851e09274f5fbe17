"""End of speech → first reply audio, on the offline defaults, streaming ~3 s utterances in real time.

Each utterance is a Piper sentence trimmed of its leading and trailing near-silence (2.5–3.5 s of speech, no pause
inside longer than 250 ms). For each turn the client streams it in 20 ms PCM chunks at a microphone's pace, notes
when the last voiced chunk left, streams 1 s of silence, and waits for the first binary audio frame of this
turn's reply (announced by an ``audio`` event after this utterance's ``transcription``). It reports p50/p95 over
the turns, the server's stage breakdown and the VAD wait (``speech_stopped`` as the client sees it), once with
the default embedded model, with SmolLM2-135M beside it,
and with an instant loopback LLM (what the server and the speech engines cost alone).
Baseline: the same utterance through faster-whisper and Piper called directly in this process, with no server,
no VAD wait and no LLM. BENCH_QUICK=1: two turns per configuration.

Push-to-talk, on the default model: the button held over the utterance and ``RELEASE_LAG_S`` after it, the PCM
streamed while held (``mode`` ``push_to_talk``), then ``audio_stop``; release → first reply audio, beside the same
utterance sent whole as a WAV at release (what the voice button did before it streamed) in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from bench.common import QUICK_MARK, line, percentile, sized, start_fake_openai, start_web_bot
from core.llm.presets import DEFAULT_PRESET
from core.pipeline import ECHO_TAIL_S
from tests.speech import resample, silence, speak, wav

TURNS = sized(20, 2)
PRESSES = sized(10, 2)
RELEASE_LAG_S = 0.2  # a hand lets go of the button a little after the last word
RATE = 16000
CHUNK = 640  # 20 ms of 16 kHz PCM16
WINDOW = 160  # 10 ms: a window is voiced when a sample in it reaches 1% of full scale
VOICED = 328
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please remind me to buy milk tomorrow morning before work.",
    "What is the weather like in Paris today and tomorrow evening?",
    "Send a message to my sister saying I will be late tonight.",
    "Set an alarm for seven in the morning and another one at eight.",
]

Inbox = asyncio.Queue[tuple[float, str | bytes]]


def voiced_speech(text: str) -> bytes:
    """Piper's 16 kHz rendering of ``text`` from its first voiced 10 ms window to its last."""
    pcm, rate = speak(text)
    samples = np.frombuffer(resample(pcm, rate, RATE), dtype=np.int16)
    peaks = np.abs(samples[: len(samples) // WINDOW * WINDOW].astype(np.int32)).reshape(-1, WINDOW).max(axis=1)
    voiced = np.flatnonzero(peaks >= VOICED)
    longest_pause = int((np.diff(voiced) - 1).max()) * 10
    speech = samples[voiced[0] * WINDOW : (voiced[-1] + 1) * WINDOW].tobytes()
    seconds = len(speech) / (2 * RATE)
    if not 2.5 <= seconds <= 3.5 or longest_pause > 250:
        raise ValueError(f"{text!r}: {seconds:.2f} s of speech, a {longest_pause} ms pause inside")
    return speech


def utterances() -> list[bytes]:
    return [voiced_speech(text) for text in TEXTS]


async def send_paced(ws: Any, pcm: bytes) -> None:
    """Stream ``pcm`` as a microphone would: each 20 ms chunk leaves once its last sample has been recorded."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for offset in range(0, len(pcm), CHUNK):
        chunk = pcm[offset : offset + CHUNK]
        await asyncio.sleep(max(0, start + (offset + len(chunk)) / (2 * RATE) - loop.time()))
        await ws.send(chunk)


async def read(ws: Any, inbox: Inbox) -> None:
    """Every frame, stamped when it arrived (also while the client is still sending)."""
    async for frame in ws:
        inbox.put_nowait((time.perf_counter(), frame))


async def turn(ws: Any, inbox: Inbox, speech: bytes, tail: bytes) -> tuple[float, float, dict[str, float]]:
    """(end of speech → first reply audio, VAD wait, the reply's server timings) of one utterance."""
    await send_paced(ws, speech)
    speech_end = time.perf_counter()
    sender = asyncio.create_task(send_paced(ws, tail))
    first_audio, stopped, timings = await reply_to(inbox, speech_end, hands_free=True)
    await sender
    # Speech just after the reply's playback may be the reply heard back (core.pipeline.ECHO_TAIL_S): a quiet gap.
    await send_paced(ws, bytes(2 * round((ECHO_TAIL_S + 0.1) * RATE)))
    assert stopped is not None
    return first_audio, stopped, timings


@contextlib.asynccontextmanager
async def live_stream(port: int, client_id: str, *, hands_free: bool = True) -> AsyncIterator[tuple[Any, Inbox]]:
    """A socket (with a hands-free stream open, unless told not to), and the inbox its frames arrive in (stamped)."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/{client_id}", max_size=None) as ws:
        await ws.recv()
        if hands_free:
            await ws.send(json.dumps({"type": "audio_start", "format": "pcm16", "sample_rate": RATE}))
        inbox: Inbox = asyncio.Queue()
        reader = asyncio.create_task(read(ws, inbox))
        try:
            yield ws, inbox
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def run(port: int, clips: list[bytes], turns: int) -> tuple[list[float], list[float], list[dict[str, float]]]:
    latencies, vad_waits, stages = [], [], []
    async with live_stream(port, "bench-voice") as (ws, inbox):
        for i in range(turns + 1):
            # Silence past vad.max_silence_ms: a pause the end-of-turn model judged unfinished still ends.
            latency, vad_wait, timings = await turn(ws, inbox, clips[i % len(clips)], silence(2.5))
            if i:  # the first turn warms the engines up
                latencies.append(latency)
                vad_waits.append(vad_wait)
                stages.append(timings)
    return latencies, vad_waits, stages


async def reply_to(
    inbox: Inbox, start: float, *, hands_free: bool
) -> tuple[float, float | None, dict[str, float]]:
    """(seconds from ``start`` to this turn's first reply audio frame, to its ``speech_stopped`` or None, the
    reply's server timings with its speech's), reading on to the end of its reply. This turn's audio is an audio
    frame after an ``audio`` event after its ``transcription``; hands-free, that transcription follows this
    utterance's ``speech_stopped``, which must not come before ``start`` (the end of its speech)."""
    stopped: float | None = None
    first_audio: float | None = None
    heard = announced = False
    timings: dict[str, float] = {}
    while True:
        at, frame = await asyncio.wait_for(inbox.get(), 120)
        if isinstance(frame, bytes):
            if announced and first_audio is None:
                first_audio = at
            continue
        event = json.loads(frame)
        kind = event["type"]
        if kind in ("error", "interrupted"):
            raise RuntimeError(f"turn failed: {event}")
        if kind == "speech_stopped" and hands_free:
            if at < start:
                raise RuntimeError(f"the VAD ended the utterance {(start - at) * 1000:.0f} ms before its speech")
            stopped = stopped or at
        elif kind == "transcription" and (stopped is not None or not hands_free):
            heard = True
        elif kind == "audio" and heard:
            announced = True
        elif kind == "reply" and heard:
            timings = event["timings"]
        elif kind == "audio_done" and heard:
            timings = {**timings, **event.get("timings", {})}  # the speech's own timings come with audio_done
            break  # the whole reply has been sent: the next utterance starts on a quiet line
    if first_audio is None or (hands_free and stopped is None):
        raise RuntimeError(f"a reply without audio: {timings}")
    return first_audio - start, None if stopped is None else stopped - start, timings


async def presses(port: int, clips: list[bytes], turns: int) -> tuple[list[float], list[float]]:
    """Release → first audio of push-to-talk turns, and send → first audio of the same clips sent whole."""
    streamed, whole = [], []
    async with live_stream(port, "bench-press", hands_free=False) as (ws, inbox):
        for i in range(turns + 1):
            speech = clips[i % len(clips)]
            await ws.send(json.dumps(
                {"type": "audio_start", "format": "pcm16", "sample_rate": RATE, "mode": "push_to_talk"}
            ))
            await send_paced(ws, speech + silence(RELEASE_LAG_S))
            await ws.send(json.dumps({"type": "audio_stop"}))
            pressed, _, _ = await reply_to(inbox, time.perf_counter(), hands_free=False)
            await asyncio.sleep(ECHO_TAIL_S + 0.1)
            await asyncio.sleep(len(speech) / (2 * RATE))  # the whole clip is recorded before it is sent
            await ws.send(wav(speech + silence(RELEASE_LAG_S), RATE))
            sent, _, _ = await reply_to(inbox, time.perf_counter(), hands_free=False)
            await asyncio.sleep(ECHO_TAIL_S + 0.1)
            if i:  # the first turn warms the engines up
                streamed.append(pressed)
                whole.append(sent)
    return streamed, whole


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
    for i in range(sized(6, 3)):
        start = time.perf_counter()
        await stt.transcribe(AudioClip(clips[i % len(clips)], RATE), language="en")
        async for _ in tts.synthesize("Sure, here is a short answer."):
            break
        if i:
            costs.append(time.perf_counter() - start)
    await stt.aclose()
    await tts.aclose()
    return statistics.median(costs)


def report(
    name: str, latencies: list[float], vad_waits: list[float], stages: list[dict[str, float]], baseline: float
) -> None:
    p50 = statistics.median(latencies)
    line(f"{name}: end of speech → first audio p50", f"{p50 * 1000:.0f} ms",
         f"{baseline * 1000:.0f} ms STT+TTS called directly", p50 / baseline, "p50 ≤ 1000 ms")
    line(f"{name}: end of speech → first audio p95", f"{percentile(latencies, 95) * 1000:.0f} ms")
    keys = ("stt_ms", "llm_head_start_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_ms", "llm_total_ms")
    breakdown = ", ".join(f"{k} {statistics.median(s.get(k, 0) for s in stages):.0f}" for k in keys)
    started_early = sum("llm_head_start_ms" in s for s in stages)
    print(f"  stage medians (server timings, ms): {breakdown}; reply started in the silence window: "
          f"{started_early}/{len(stages)} turns", flush=True)
    print(f"  VAD wait (client: speech_stopped − end of speech): p50 {statistics.median(vad_waits) * 1000:.0f} ms, "
          f"p95 {percentile(vad_waits, 95) * 1000:.0f} ms", flush=True)


async def main() -> None:
    clips = utterances()
    baseline = await direct_baseline(clips)
    workdir = Path(tempfile.mkdtemp(prefix="bench-voice-"))
    lengths = [len(clip) / (2 * RATE) for clip in clips]
    print(f"# voice benchmark{QUICK_MARK} ({TURNS} turns of {min(lengths):.1f}–{max(lengths):.1f} s utterances "
          "streamed in real time, whisper base + piper, VAD silence window included)", flush=True)
    common = {"voice": {"replies": True}}
    # The default local model, and the smallest one beside it: what the better answers cost in time.
    for model in dict.fromkeys([DEFAULT_PRESET, "smollm2-135m"]):
        server, port = start_web_bot(
            {**common, "llm": {"engine": "local", "model": model},
             "database": {"db_path": str(workdir / f"{model}.db")}},
            workdir,
        )
        try:
            latencies, vad_waits, stages = await run(port, clips, TURNS)
            streamed, whole = await presses(port, clips, PRESSES) if model == DEFAULT_PRESET else ([], [])
        finally:
            server.stop()
        label = "offline defaults" if model == DEFAULT_PRESET else "offline defaults but"
        report(f"{label} ({model})", latencies, vad_waits, stages, baseline)
        if streamed:
            p50, whole_p50 = statistics.median(streamed), statistics.median(whole)
            line(f"push-to-talk ({model}): release → first audio p50", f"{p50 * 1000:.0f} ms",
                 f"{whole_p50 * 1000:.0f} ms the clip sent whole at release", p50 / whole_p50, "p50 ≤ 400 ms")
            line(f"push-to-talk ({model}): release → first audio p95", f"{percentile(streamed, 95) * 1000:.0f} ms",
                 f"{percentile(whole, 95) * 1000:.0f} ms sent whole")
    fake, fake_url = start_fake_openai()
    server, port = start_web_bot(
        {**common, "llm": {"engine": "openai", "base_url": f"{fake_url}/v1", "model_name": "fake", "max_tokens": 64},
         "database": {"db_path": str(workdir / "fake.db")}},
        workdir,
    )
    try:
        latencies, vad_waits, stages = await run(port, clips, TURNS)
        report("instant fake LLM", latencies, vad_waits, stages, baseline)
        rate, per_turn = await voice_throughput(port, clips, baseline)
        line("voice turns/s, 4 clients uploading speech at once (STT + reply + spoken reply, instant LLM)",
             f"{rate:.2f}", f"{1 / baseline:.2f}/s STT+TTS called directly one after another", rate * baseline)
        print(f"  median upload → response at that load: {per_turn * 1000:.0f} ms", flush=True)
    finally:
        server.stop()
        fake.stop()


async def voice_throughput(port: int, clips: list[bytes], baseline: float) -> tuple[float, float]:
    """Voice turns per second through /upload_audio with spoken replies, four clients at once (capacity)."""
    import httpx

    from tests.speech import wav

    per_client = sized(4, 1)
    durations: list[float] = []

    async def client(index: int, http: httpx.AsyncClient) -> None:
        for turn in range(per_client):
            # A socket per client, so spoken replies are really synthesised and sent, as for a person.
            data = wav(clips[(index + turn) % len(clips)], RATE)
            start = time.perf_counter()
            response = await http.post(
                "/upload_audio", files={"file": ("clip.wav", data)}, data={"client_id": f"load{index}"}
            )
            response.raise_for_status()
            durations.append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
        sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/ws/load{i}", max_size=None) for i in range(4)]
        drains = [asyncio.create_task(_drain(ws)) for ws in sockets]
        start = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(4)))
        elapsed = time.perf_counter() - start
        for task in drains:
            task.cancel()
        for ws in sockets:
            await ws.close()
    return 4 * per_client / elapsed, statistics.median(durations)


async def _drain(ws: Any) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for _ in ws:
            pass


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
