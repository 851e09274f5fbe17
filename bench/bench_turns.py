"""Turn-taking: how often each endpointer answers a user who has not finished, and what it costs in reply latency.

The test set is Piper speech (deterministic: no synthesis noise, a fixed seed): complete sentences, the same
sentences with a pause of 400–1200 ms inserted mid-sentence, and sentences with a filler ("um", "uh") followed by
such a pause. A pause goes in at a word boundary in the middle third of the sentence: the whole sentence is
synthesised (so the first half keeps its unfinished prosody), faster-whisper's word timestamps give the boundary,
the cut falls at the quietest 10 ms near the middle of the gap between the two words, and digital silence goes in.

Three endpointers, each on its own server on the offline defaults: Smart Turn (200 ms of silence, then the model
judges; ``vad.max_silence_ms`` = 2000 at most), and fixed silences of 300 and 500 ms (the baseline).

- False cut-offs: the client streams each utterance in real time, then 2.2 s of silence, and reads the events until
  every turn it caused has been answered. A cut-off is a ``speech_stopped`` that arrives before the last voiced
  chunk of the utterance has been sent. The rate is over the paused set; the complete set must have none. The
  servers judged by a model speak their replies (a judged end waits for the early reply's first audio); the fixed
  silences' answer unspoken from the instant loopback LLM. Each model's client runs alone, then the two baselines'
  side by side (``--sequential``: one at a time).
  For Smart Turn it also counts the complete utterances it held until ``max_silence`` (judged unfinished).
- Held: the complete utterances whose turn ended more than 1.2 s after the end of speech, or only at
  ``max_silence``: on each model's pass (one long conversation), and on the default endpointer with each complete
  utterance as the first turn of a new conversation, where the local LLM reads the words with no history.
- Latency: end of speech (the client's time when the last voiced chunk left) → first audio frame of the reply, over
  20 complete utterances, on the default local LLM with Piper, one server at a time (``bench.bench_voice.turn``).

Run: ``.venv/bin/python -m bench.bench_turns`` (BENCH_QUICK=1: a few utterances per set, two latency turns).
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.bench_voice import RATE, VOICED, WINDOW, Inbox, live_stream, send_paced, turn
from bench.common import QUICK_MARK, Process, line, percentile, sized, start_fake_openai, start_web_bot
from core.llm.presets import DEFAULT_PRESET
from core.pipeline import ECHO_TAIL_S
from tests.speech import resample, silence, speak, wav

# Everyday requests of 4–14 words, without commas (Piper pauses at a comma: a "complete" utterance has none).
TEXTS = [
    "What time is it in Tokyo right now?",
    "Set a timer for ten minutes.",
    "Please turn off the lights in the living room.",
    "Remind me to call the dentist tomorrow at nine.",
    "How many days are left until the end of the month?",
    "Play some relaxing music while I cook dinner.",
    "I need a recipe for a quick vegetable soup.",
    "What is the capital of Australia?",
    "Add eggs and bread to my shopping list.",
    "Can you tell me a short joke about cats?",
    "Book a table for four people at the Italian place tonight.",
    "How long does it take to drive from Boston to New York?",
    "Send an email to my manager saying I am working from home today.",
    "Translate good morning into Spanish.",
    "What is the weather forecast for this weekend?",
    "Wake me up at six thirty tomorrow morning.",
    "I am looking for a good coffee shop near the station.",
    "Tell me the latest news about the football match.",
    "How do I reset the password on my laptop?",
    "Turn the volume down a little bit.",
    "Please read me the first chapter of my audiobook.",
    "Which planet in our solar system has the most moons?",
    "Order a large pepperoni pizza for delivery at seven.",
    "My flight to London leaves on Friday afternoon.",
    "Convert one hundred dollars into euros.",
    "Call my mother and tell her I will be late.",
    "What should I cook for dinner with chicken and rice?",
    "Find me a hotel in Rome for next weekend.",
    "Explain how a rainbow forms in simple words.",
    "Start a workout playlist and track my run.",
    "Is the pharmacy on Main Street open on Sundays?",
    "Schedule a meeting with the design team on Thursday morning.",
][: sized(32, 2)]
# The pause goes in after the filler.
FILLER_TEXTS = [
    "I would like, um, a large coffee with oat milk.",
    "Can you, uh, turn on the lights in the kitchen?",
    "What is, um, the fastest way to the airport?",
    "Remind me to, uh, water the plants this evening.",
    "Book me a, um, window seat on the morning train.",
    "Could you, uh, find a cheap flight to Berlin?",
    "I think I need, um, a new pair of running shoes.",
    "Tell me how to, uh, make pancakes without eggs.",
][: sized(8, 1)]
FILLERS = ("um", "uh")
PAUSES_MS = (400, 600, 800, 1000, 1200)
SEED = 2024
LATENCY_TURNS = sized(20, 2)
VAD_WINDOW = 512  # samples Silero judges at once (core.voice.vad.WINDOW)
TAIL_S = 2.2  # silence after each utterance: more than vad.max_silence_ms, so every turn ends
# A turn that ends later than this after the end of speech was held (the confirming 700 ms, and the ~0.2 s the VAD
# takes to hear the silence, end before it).
LONG_WAIT_S = 1.2
# A complete utterance may hold no silence longer than this (else it is not a fluent, complete sentence).
MAX_INNER_PAUSE_MS = 250
# Whisper transcribes fillers when its prompt has some.
FILLER_PROMPT = "Umm, let me think, uh, like, hmm."

BASELINE = "silence 500 ms"
SMART_TURN = "smart-turn (200 ms + model)"
WORDS = "smart-turn + words (local LLM)"
MODELS = (SMART_TURN, WORDS)  # judged by models: each runs alone (see false_cut_offs)
# The default endpointer on the complete utterances, each the first turn of a new conversation (fresh_pass).
FRESH = f"{WORDS}, new conversations"
CONFIGS: dict[str, dict[str, Any]] = {
    WORDS: {"end_of_turn": "smart-turn", "silence_ms": 200, "max_silence_ms": 2000, "end_of_turn_text": True},
    SMART_TURN: {"end_of_turn": "smart-turn", "silence_ms": 200, "max_silence_ms": 2000, "end_of_turn_text": False},
    "silence 300 ms": {"end_of_turn": "silence", "silence_ms": 300},
    BASELINE: {"end_of_turn": "silence", "silence_ms": 500},
}

Kind = Literal["complete", "paused", "filler"]


@dataclass(frozen=True, slots=True)
class Utterance:
    """16 kHz PCM16 from the first voiced 10 ms window to the last; a pause of ``pause_ms`` at ``cut_s``."""

    text: str
    kind: Kind
    pcm: bytes
    pause_ms: int = 0
    cut_s: float = 0.0

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (2 * RATE)


@dataclass(slots=True)
class Outcome:
    """What one server made of one utterance: each turn end it announced, and the pauses it judged unfinished."""

    utterance: Utterance
    stops: list[tuple[float, str, float | None]] = field(default_factory=list)  # (s after end of speech, reason, p)
    paused: list[float] = field(default_factory=list)  # probabilities of pauses judged unfinished
    paused_words: list[float | None] = field(default_factory=list)  # and the words' readings
    # Every verdict sent, a pause judged unfinished or a turn it ended: (s after end of speech, audio, words).
    verdicts: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    settled: int = 0  # turns answered (reply, error or interruption)

    @property
    def cut_off(self) -> bool:
        return any(at < 0 for at, _, _ in self.stops)

    @property
    def held(self) -> bool:
        """The last turn ended only at max_silence."""
        return bool(self.stops) and self.stops[-1][1] == "max_silence"

    @property
    def waited(self) -> bool:
        """The last turn ended more than ``LONG_WAIT_S`` after the end of speech: held past the confirming silence,
        by the words (``vad.doubt_silence_ms``) or until max_silence."""
        return bool(self.stops) and self.stops[-1][0] > LONG_WAIT_S


# -- the test set ------------------------------------------------------------------------------------------------


def window_peaks(samples: np.ndarray[Any, np.dtype[np.int16]]) -> np.ndarray[Any, np.dtype[np.int32]]:
    """Peak level of each 10 ms window."""
    usable = samples[: len(samples) // WINDOW * WINDOW].astype(np.int32)
    peaks: np.ndarray[Any, np.dtype[np.int32]] = np.abs(usable).reshape(-1, WINDOW).max(axis=1)
    return peaks


def voiced_part(text: str) -> tuple[bytes, int]:
    """Piper's 16 kHz rendering of ``text`` from its first voiced window to its last, and its longest inner pause
    in ms."""
    pcm, rate = speak(text)
    samples = np.frombuffer(resample(pcm, rate, RATE), dtype=np.int16)
    voiced = np.flatnonzero(window_peaks(samples) >= VOICED)
    longest_pause = int((np.diff(voiced) - 1).max()) * 10
    return samples[voiced[0] * WINDOW : (voiced[-1] + 1) * WINDOW].tobytes(), longest_pause


def word_times(model: Any, pcm: bytes) -> list[tuple[str, float, float]]:
    """(word, start s, end s) of each word faster-whisper hears in ``pcm``."""
    audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    segments, _ = model.transcribe(
        audio, language="en", beam_size=1, word_timestamps=True, condition_on_previous_text=False,
        initial_prompt=FILLER_PROMPT,
    )
    return [(w.word.strip(" ,.?!").lower(), w.start, w.end) for segment in segments for w in segment.words]


def quietest(pcm: bytes, start_s: float, end_s: float) -> float:
    """The start (s) of the quietest 10 ms window between ``start_s`` and ``end_s``; of equals, the one nearest the
    middle."""
    peaks = window_peaks(np.frombuffer(pcm, dtype=np.int16))
    lo, hi = max(1, round(start_s * 100)), min(len(peaks) - 1, round(end_s * 100))
    if hi <= lo:
        return lo / 100
    middle = (lo + hi) / 2
    best = min(range(lo, hi + 1), key=lambda i: (int(peaks[i]), abs(i - middle)))
    return best / 100


def cut_point(pcm: bytes, words: list[tuple[str, float, float]], kind: Kind, rng: random.Random) -> float:
    """Where to insert the pause (s): after the filler, or at a word boundary in the middle third, chosen by ``rng``."""
    seconds = len(pcm) / (2 * RATE)
    gaps = [(words[i][2], words[i + 1][1]) for i in range(len(words) - 1)]
    if kind == "filler":
        chosen = [gap for gap, word in zip(gaps, words, strict=False) if word[0] in FILLERS]
        if not chosen:
            raise ValueError(f"whisper heard no filler in {[w[0] for w in words]}")
    else:
        chosen = [gap for gap in gaps if seconds / 3 <= (gap[0] + gap[1]) / 2 <= 2 * seconds / 3]
        if not chosen:
            raise ValueError(f"no word boundary in the middle third of {[w[0] for w in words]}")
    end, start = rng.choice(chosen) if kind != "filler" else chosen[0]
    middle = (end + start) / 2
    # Whisper's timestamps are good to a few tens of ms: cut where it is quietest near the middle of the gap.
    return quietest(pcm, min(end, middle - 0.05), max(start, middle + 0.05))


def cached(folder: Path, name: str, make: Callable[[], tuple[bytes, dict[str, Any]]]) -> tuple[bytes, dict[str, Any]]:
    """The 16 kHz PCM16 ``make()`` returns (with its metadata), kept in ``folder`` for the rest of the run."""
    path, meta_path = folder / f"{name}.wav", folder / f"{name}.json"
    if not path.exists():
        pcm, meta = make()
        path.write_bytes(wav(pcm, RATE))
        meta_path.write_text(json.dumps(meta))
    with wave.open(str(path)) as audio:
        return audio.readframes(audio.getnframes()), json.loads(meta_path.read_text())


def complete(text: str) -> tuple[bytes, dict[str, Any]]:
    """``text`` as a fluent complete utterance."""
    pcm, longest = voiced_part(text)
    if longest > MAX_INNER_PAUSE_MS:
        raise ValueError(f"{text!r} holds a {longest} ms pause: not a fluent complete utterance")
    return pcm, {"longest_pause_ms": longest}


def build_test_set(folder: Path) -> list[Utterance]:
    """The complete, paused and filler utterances, the same on every run."""
    from faster_whisper import WhisperModel

    from core.stt.whisper.model_files import resolve_model

    folder.mkdir(parents=True, exist_ok=True)
    utterances: list[Utterance] = []
    for i, text in enumerate(TEXTS):
        pcm, _ = cached(folder, f"complete-{i:02d}", functools.partial(complete, text))
        utterances.append(Utterance(text, "complete", pcm))
    interrupted: list[tuple[str, Kind]] = [(t, "paused") for t in TEXTS] + [(t, "filler") for t in FILLER_TEXTS]
    pauses = [PAUSES_MS[i % len(PAUSES_MS)] for i in range(len(interrupted))]
    random.Random(SEED).shuffle(pauses)
    models: list[Any] = []  # loaded when the cache misses

    def make(i: int) -> tuple[bytes, dict[str, Any]]:
        if not models:
            models.append(WhisperModel(resolve_model("base"), device="cpu", compute_type="int8"))
        text, kind = interrupted[i]
        speech, _ = voiced_part(text)
        at = cut_point(speech, word_times(models[0], speech), kind, random.Random(f"{SEED}-{i}"))
        cut = round(at * RATE) * 2
        return speech[:cut] + silence(pauses[i] / 1000) + speech[cut:], {"pause_ms": pauses[i], "cut_s": at}

    for i, (text, kind) in enumerate(interrupted):
        pcm, meta = cached(folder, f"{kind}-{i:02d}", functools.partial(make, i))
        utterances.append(Utterance(text, kind, pcm, meta["pause_ms"], meta["cut_s"]))
    return utterances


# -- false cut-offs ----------------------------------------------------------------------------------------------


async def hear_out(ws: Any, inbox: Inbox, utterance: Utterance, *, spoken: bool = False) -> Outcome:
    """Stream one utterance and silence, and read events until every turn it caused has been answered (``spoken``:
    and its reply played out, so the next utterance starts on a quiet line)."""
    outcome = Outcome(utterance)
    speech_end = 0.0
    tail_sent = asyncio.Event()
    done = asyncio.Event()

    async def microphone() -> None:
        nonlocal speech_end
        await send_paced(ws, utterance.pcm)
        speech_end = time.perf_counter()
        # Each utterance starts on a VAD window boundary, so the server hears it the same way on every run.
        samples = len(utterance.pcm) // 2 + round(TAIL_S * RATE)
        await send_paced(ws, bytes(2 * (round(TAIL_S * RATE) - samples % -VAD_WINDOW)))
        tail_sent.set()
        while not done.is_set():  # the microphone stays open while the last turn is answered
            await send_paced(ws, bytes(2 * 4 * VAD_WINDOW))

    ends: list[tuple[float, str, float | None]] = []  # (when it arrived, reason, probability)
    verdicts: list[tuple[float, float | None, float | None]] = []  # (when it arrived, audio, words)
    mic = asyncio.create_task(microphone())
    deadline = time.perf_counter() + utterance.seconds + 60
    try:
        while True:
            answered = bool(ends) and outcome.settled >= len(ends)
            # The last turn ends after the speech; unless what followed a cut was too short to be a turn.
            last_ended = answered and ends[-1][0] >= speech_end > 0
            if tail_sent.is_set() and (last_ended or (answered and time.perf_counter() > speech_end + TAIL_S + 1.5)):
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no end of turn for {utterance.text!r}: {ends}, {outcome}")
            if mic.done():
                mic.result()
            try:
                at, frame = await asyncio.wait_for(inbox.get(), 0.1)
            except TimeoutError:
                continue
            if isinstance(frame, bytes):
                continue
            event = json.loads(frame)
            kind = event["type"]
            if kind == "speech_stopped" and event["reason"] == "echo":
                continue  # speech over a spoken reply, heard as the reply's own words: no turn, nothing to answer
            if kind == "speech_stopped":
                ends.append((at, event["reason"], event.get("probability")))
                if event.get("probability") is not None or event.get("text_probability") is not None:
                    verdicts.append((at, event.get("probability"), event.get("text_probability")))
            elif kind == "speech_paused":
                outcome.paused.append(event["probability"])
                outcome.paused_words.append(event.get("text_probability"))
                verdicts.append((at, event["probability"], event.get("text_probability")))
            elif kind in ("audio_done" if spoken else "reply", "interrupted") or (
                kind == "error" and event.get("code") == "no-speech"
            ):
                outcome.settled += 1
            elif kind == "error":
                raise RuntimeError(f"turn failed: {event}")
        if spoken:  # speech just after the reply's playback may be the reply heard back: leave a quiet gap
            await asyncio.sleep(ECHO_TAIL_S + 0.1)
    finally:
        done.set()
        await mic
    outcome.stops = [(at - speech_end, reason, p) for at, reason, p in ends]
    outcome.verdicts = [(at - speech_end, audio, text) for at, audio, text in verdicts]
    return outcome


async def cut_off_pass(
    port: int, utterances: list[Utterance], warm_up: Utterance, *, spoken: bool = False
) -> list[Outcome]:
    """One socket's outcomes for ``utterances``, in order, after an uncounted ``warm_up``."""
    async with live_stream(port, "bench-turns") as (ws, inbox):
        await hear_out(ws, inbox, warm_up, spoken=spoken)  # the first turn loads the engines' lazy parts
        return [await hear_out(ws, inbox, utterance, spoken=spoken) for utterance in utterances]


async def fresh_pass(
    port: int, utterances: list[Utterance], warm_up: Utterance, *, spoken: bool = False
) -> list[Outcome]:
    """Each of ``utterances`` as the first turn of a new conversation (a client of its own), after an uncounted
    ``warm_up``: the words are read with no history, as at the start of every conversation."""
    async with live_stream(port, "bench-turns-warm-up") as (ws, inbox):
        await hear_out(ws, inbox, warm_up, spoken=spoken)
    outcomes = []
    for i, utterance in enumerate(utterances):
        async with live_stream(port, f"bench-turns-fresh-{i}") as (ws, inbox):
            outcomes.append(await hear_out(ws, inbox, utterance, spoken=spoken))
    return outcomes


async def start_servers(configs: dict[str, dict[str, Any]], workdir: Path) -> dict[str, tuple[Process, int]]:
    """One server per configuration, started side by side; all of them stopped if one fails."""
    names = list(configs)
    for name in names:
        (workdir / slug(name)).mkdir(parents=True, exist_ok=True)
    results = await asyncio.gather(
        *(asyncio.to_thread(start_web_bot, configs[name], workdir / slug(name)) for name in names),
        return_exceptions=True,
    )
    servers: dict[str, tuple[Process, int]] = {}
    failures: list[BaseException] = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            failures.append(result)
        else:
            servers[name] = result
    if failures:
        for server, _ in servers.values():
            server.stop()
        raise failures[0]
    return servers


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


async def false_cut_offs(
    utterances: list[Utterance], workdir: Path, *, sequential: bool
) -> dict[str, list[Outcome]]:
    """Each configuration's outcomes. The replies of servers judged by a model are spoken: a pause judged to end the
    turn ends it no sooner than the early reply's first audio is ready (``vad.reply_ready_wait_ms``), so the voice
    matters. The fixed silences' servers answer unspoken, from the instant LLM.

    Smart Turn's client runs alone: while other servers transcribe, its judgement (due 200 ms into a pause) can come
    back after speech has resumed and be dropped (seen in 2 of 18 utterances when all three ran at once). Fixed
    silences decide on the audio's own clock, so the two baselines run side by side (their outcomes matched a
    sequential run's exactly).
    """
    fake, fake_url = start_fake_openai()
    fake_llm = {"engine": "openai", "base_url": f"{fake_url}/v1", "model_name": "fake", "max_tokens": 16}
    # Reading the words takes the local model; the others answer from the fake, which costs no CPU.
    local_llm = {"engine": "local", "model": DEFAULT_PRESET, "max_tokens": 16}
    configs = {
        name: {
            "vad": vad, "llm": local_llm if vad.get("end_of_turn_text") else fake_llm,
            "voice": {"replies": "always" if name in MODELS else "never"},
        }
        for name, vad in CONFIGS.items()
    }
    order = utterances[:]
    random.Random(SEED).shuffle(order)  # paused and complete mixed, the same order for every configuration
    warm_up = next(u for u in utterances if u.kind == "complete")
    baselines = [name for name in configs if name not in MODELS]
    groups = [[name] for name in configs] if sequential else [*([name] for name in MODELS), baselines]
    results: dict[str, list[Outcome]] = {}
    try:
        servers = await start_servers(configs, workdir / "cut-offs")
        try:
            for group in groups:
                runs = [cut_off_pass(servers[name][1], order, warm_up, spoken=name in MODELS) for name in group]
                results.update(zip(group, await asyncio.gather(*runs), strict=True))
            complete = [u for u in order if u.kind == "complete"]
            results[FRESH] = await fresh_pass(servers[WORDS][1], complete, warm_up, spoken=True)
        finally:
            for server, _ in servers.values():
                server.stop()
    finally:
        fake.stop()
    return {name: results[name] for name in [*configs, FRESH]}


# -- latency -----------------------------------------------------------------------------------------------------


async def latency_pass(port: int, clips: list[bytes]) -> list[tuple[float, float]]:
    """(end of speech → first reply audio, → speech_stopped) in seconds, of each turn but the first
    (``bench.bench_voice.turn``)."""
    latencies = []
    async with live_stream(port, "bench-turns") as (ws, inbox):
        for i, clip in enumerate(clips):
            # The tail outlasts max_silence_ms: a complete utterance judged unfinished still ends.
            latency, vad_wait, _ = await turn(ws, inbox, clip, silence(TAIL_S))
            if i:  # the first turn warms the engines up
                latencies.append((latency, vad_wait))
    return latencies


async def latencies(utterances: list[Utterance], workdir: Path) -> dict[str, list[tuple[float, float]]]:
    """Each configuration's reply latencies on the offline defaults, one server at a time."""
    complete = [u.pcm for u in utterances if u.kind == "complete"]
    # The warm-up turn is the last complete utterance; the turns measured are the first ones.
    clips = [complete[-1], *(complete[i % (len(complete) - 1)] for i in range(LATENCY_TURNS))]
    results = {}
    for name, vad in CONFIGS.items():
        config = {"vad": vad, "llm": {"engine": "local", "model": DEFAULT_PRESET}, "voice": {"replies": True}}
        folder = workdir / "latency" / slug(name)
        folder.mkdir(parents=True)
        server, port = start_web_bot(config, folder)
        try:
            results[name] = await latency_pass(port, clips)
        finally:
            server.stop()
    return results


# -- report ------------------------------------------------------------------------------------------------------


def rate(count: int, total: int) -> str:
    return f"{count}/{total} ({100 * count / total:.0f} %)" if total else "0/0"


def report(outcomes: dict[str, list[Outcome]], delays: dict[str, list[tuple[float, float]]]) -> None:
    outcomes = dict(outcomes)
    fresh = outcomes.pop(FRESH, [])
    base = [o for o in outcomes[BASELINE] if o.utterance.kind != "complete"]
    base_cuts = sum(o.cut_off for o in base)
    for name, results in outcomes.items():
        paused = [o for o in results if o.utterance.kind != "complete"]
        cuts = sum(o.cut_off for o in paused)
        baseline = "" if name == BASELINE else f"{rate(base_cuts, len(base))} {BASELINE}"
        ratio = (cuts / base_cuts) if base_cuts and name != BASELINE else None
        line(f"{name}: false cut-offs (paused utterances)", rate(cuts, len(paused)), baseline, ratio)
    baseline_audio = [audio for audio, _ in delays[BASELINE]]
    base50, base95 = statistics.median(baseline_audio), percentile(baseline_audio, 95)
    for name, pairs in delays.items():
        audio, waits = [a for a, _ in pairs], [w for _, w in pairs]
        p50, p95 = statistics.median(audio), percentile(audio, 95)
        other = name != BASELINE
        line(f"{name}: end of speech → first audio p50", f"{p50 * 1000:.0f} ms",
             f"{base50 * 1000:.0f} ms {BASELINE}" if other else "", p50 / base50 if other else None)
        line(f"{name}: end of speech → first audio p95", f"{p95 * 1000:.0f} ms",
             f"{base95 * 1000:.0f} ms {BASELINE}" if other else "", p95 / base95 if other else None)
        print(f"  of which the wait for speech_stopped: p50 {statistics.median(waits) * 1000:.0f} ms, "
              f"p95 {percentile(waits, 95) * 1000:.0f} ms ({len(pairs)} turns)", flush=True)
    early = ", ".join(
        f"{name} {sum(o.cut_off for o in results if o.utterance.kind == 'complete')}/"
        f"{sum(o.utterance.kind == 'complete' for o in results)}"
        for name, results in outcomes.items()
    )
    line("complete utterances answered before they ended", early, target="none")
    for name in MODELS:
        complete = [o for o in outcomes[name] if o.utterance.kind == "complete"]
        line(f"{name}: complete utterances held until max_silence", rate(sum(o.held for o in complete), len(complete)))
        line(f"{name}: complete utterances held over {LONG_WAIT_S:g} s", rate(sum(o.waited for o in complete),
                                                                               len(complete)))
    if fresh:
        held(FRESH, fresh)
    table(outcomes)
    if fresh:
        details(FRESH, fresh)


def held(name: str, results: list[Outcome]) -> None:
    """How long complete utterances waited for their turn's end: held over ``LONG_WAIT_S``, until max_silence, and
    speech_stopped p50/p95 after the end of speech."""
    ends = [o.stops[-1][0] for o in results if o.stops]
    line(f"{name}: complete utterances held over {LONG_WAIT_S:g} s", rate(sum(o.waited for o in results), len(results)))
    line(f"{name}: complete utterances held until max_silence", rate(sum(o.held for o in results), len(results)))
    if ends:
        print(f"  speech_stopped after the end of speech: p50 {statistics.median(ends) * 1000:.0f} ms, "
              f"p95 {percentile(ends, 95) * 1000:.0f} ms", flush=True)


def table(outcomes: dict[str, list[Outcome]]) -> None:
    header = ["configuration", "cut-offs", *(f"{ms} ms" for ms in PAUSES_MS), "filler", "complete cut",
              "turn end p50"]
    rows = [header]
    for name, results in outcomes.items():
        paused = [o for o in results if o.utterance.kind != "complete"]
        complete = [o for o in results if o.utterance.kind == "complete"]
        by_pause = []
        for ms in PAUSES_MS:
            some = [o for o in paused if o.utterance.pause_ms == ms]
            by_pause.append(f"{sum(o.cut_off for o in some)}/{len(some)}")
        fillers = [o for o in paused if o.utterance.kind == "filler"]
        ends = [o.stops[-1][0] for o in complete if o.stops]
        rows.append([
            name, rate(sum(o.cut_off for o in paused), len(paused)), *by_pause,
            f"{sum(o.cut_off for o in fillers)}/{len(fillers)}", f"{sum(o.cut_off for o in complete)}/{len(complete)}",
            f"{statistics.median(ends) * 1000:.0f} ms" if ends else "-",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)), flush=True)
    print("  (cut-offs by inserted pause; \"turn end p50\": speech_stopped after the end of a complete utterance)")
    for name in MODELS:
        details(name, outcomes[name])


def details(name: str, results: list[Outcome]) -> None:
    """Each pause the model cut, each it did not judge, and each complete utterance it held."""
    for o in results:
        if o.cut_off:
            _, reason, p = o.stops[0]
            print(f"  {name} cut {o.utterance.kind} {o.utterance.text!r} at {o.utterance.cut_s:.2f} s, "
                  f"{o.utterance.pause_ms} ms pause ({reason}{f', p={p:.2f}' if p is not None else ''})", flush=True)
        elif o.utterance.kind != "complete" and not o.paused:
            print(f"  {name} sent no verdict on the pause in {o.utterance.text!r} (judged finished, and speech resumed "
                  "before the reply was ready or the silence long enough; or judged too late)", flush=True)
        if o.utterance.kind == "complete" and o.waited:
            until = "until max_silence" if o.held else f"{o.stops[-1][0]:.1f} s"
            print(f"  {name} held {o.utterance.text!r} {until} "
                  + (f"(judged unfinished, p={o.paused[0]:.2f}, words {o.paused_words[0]})" if o.paused
                     else "(no judgement)"), flush=True)


async def main(sequential: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as folder:
        workdir = Path(folder)
        started = time.perf_counter()
        utterances = build_test_set(workdir / "speech")
        complete = sum(u.kind == "complete" for u in utterances)
        fillers = sum(u.kind == "filler" for u in utterances)
        paused = len(utterances) - complete
        print(f"# turn-taking benchmark{QUICK_MARK} ({complete} complete utterances, {paused} with a "
              f"{min(PAUSES_MS)}–{max(PAUSES_MS)} ms pause mid-sentence ({fillers} after a filler), Piper speech "
              f"streamed in real time; test set made in {time.perf_counter() - started:.0f} s)", flush=True)
        outcomes = await false_cut_offs(utterances, workdir, sequential=sequential)
        delays = await latencies(utterances, workdir)
        report(outcomes, delays)


if __name__ == "__main__":
    asyncio.run(main(sequential="--sequential" in sys.argv[1:]))
    sys.exit(0)
