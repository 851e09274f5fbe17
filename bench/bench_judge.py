"""Endpointing policies replayed on recorded verdicts: which pauses each rule would cut, and how long complete turns
would wait, in seconds where ``bench_turns`` takes most of an hour per change.

What the audio model and the LLM's reading of the words say of a pause does not depend on the policy that acts on
them (only on the history, which a cut-off changes a little). So one server on the offline defaults, with a policy
that never ends a turn before ``max_silence_ms`` (``end_of_turn_threshold`` 0.999999, ``text_finished_above`` 1,
``doubt_silence_ms`` 0), hears ``bench_turns``' utterances streamed in real time: the pause set in one long
conversation, and each complete utterance as the first turn of a new conversation. Every verdict comes back as a
``speech_paused`` with the audio model's probability, the words' reading and when it arrived. Each policy's
``Endpointer.wait_ms`` is then replayed on those verdicts:

- a turn ends when the verdict arrives (wait 0), once the silence has lasted the wait, or at ``max_silence_ms``
  (no wait), whichever is latest; the silence counts from the VAD's last voiced sample, whose lag behind the audio
  is read off the utterance's own end (there its turn ended at ``max_silence_ms`` of silence, on the same clock);
- a paused utterance is cut off when its inserted pause's turn would end before speech resumes; a verdict on one of
  the short pauses complete speech holds (up to 250 ms) cuts it only if it ends the turn at once. A verdict that
  came back after speech resumed was dropped by the server, so that pause is cut under no policy.

The replay does not know when each early reply became ready to be heard, so it replays every policy as if
``vad.reply_ready_wait_ms`` were 0 (the turn ends as soon as the verdict and the silence allow): its cut-offs are an
upper bound on the server's, which keeps a turn open until its reply is ready (``bench_turns`` measures that).

Run ``.venv/bin/python -m bench.bench_judge`` (BENCH_QUICK=1: a few utterances). It saves the verdicts and prints
where; ``BENCH_JUDGE_DATA=that.json`` replays them without a server. Compare the default policy's replay with
``bench_turns``' measured row before trusting another policy's.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.bench_turns import (
    CONFIGS,
    LONG_WAIT_S,
    PAUSES_MS,
    SEED,
    WORDS,
    Outcome,
    build_test_set,
    cut_off_pass,
    fresh_pass,
    rate,
)
from bench.common import QUICK_MARK, start_web_bot
from core.config import VADSettings
from core.llm.presets import DEFAULT_PRESET
from core.voice.endpointing import Endpointer

# A policy under which only max_silence ends a turn, so every pause is judged and reported (speech_paused).
NEVER_ENDS = {"end_of_turn_threshold": 0.999999, "text_finished_above": 1.0, "doubt_silence_ms": 0}


@dataclass(frozen=True, slots=True)
class Record:
    """One utterance as the recording server heard it; times in s after the end of speech (the last voiced chunk
    sent)."""

    text: str
    kind: str
    pause_ms: int
    cut_s: float
    seconds: float
    fresh: bool  # the first turn of a new conversation (else a turn of the long one)
    verdicts: list[tuple[float, float | None, float | None]]  # (arrival, audio, words)
    end_s: float | None  # the last turn's end
    end_reason: str | None

    @property
    def pause_start_s(self) -> float:
        return self.cut_s - self.seconds


@dataclass(frozen=True, slots=True)
class Replay:
    """What a policy would have made of the records."""

    cut: list[Record]
    complete_ends: list[float]  # s after the end of speech, each complete utterance of the long conversation
    fresh_ends: list[float]  # and as the first turn of a new one
    paused: int

    def held(self, ends: list[float]) -> int:
        return sum(end > LONG_WAIT_S for end in ends)


class _Judge:
    name = "recorded"

    def predict(self, pcm: bytes, sample_rate: int = 16000) -> float:  # pragma: no cover - never called
        raise NotImplementedError


def policy(**changes: Any) -> Endpointer:
    """The default endpointing policy (``VADSettings``), with ``changes``, reading the words."""
    return Endpointer.from_settings(_Judge(), VADSettings(**changes), reads_text=True)


def lag_of(records: list[Record], max_silence_s: float) -> dict[int, float]:
    """Each record's VAD lag (s): how much later than ``max_silence_ms`` after the end of speech its turn ended; the
    median of all, where a turn ended otherwise."""
    own = {id(r): r.end_s - max_silence_s for r in records if r.end_reason == "max_silence" and r.end_s is not None}
    typical = statistics.median(own.values()) if own else 0.1
    return {id(r): own.get(id(r), typical) for r in records}


def end_after(endpointer: Endpointer, verdict: tuple[float, float | None, float | None], silence_from: float,
              lag: float) -> float:
    """When (s) the turn this verdict judged would end under ``endpointer``; ``silence_from``: when the pause began."""
    at, audio, words = verdict
    wait = endpointer.wait_ms(audio, words)
    if wait is None:
        return silence_from + lag + endpointer.max_silence_ms / 1000
    return at if wait == 0 else max(at, silence_from + lag + wait / 1000)


def replay(endpointer: Endpointer, records: list[Record]) -> Replay:
    lags = lag_of(records, endpointer.max_silence_ms / 1000)
    cut: list[Record] = []
    complete_ends: list[float] = []
    fresh_ends: list[float] = []
    for record in records:
        lag = lags[id(record)]
        during = [v for v in record.verdicts if v[0] < 0]
        if record.kind != "complete" and not record.fresh:
            inserted_end = record.pause_start_s + record.pause_ms / 1000
            for verdict in during:
                inserted = record.pause_start_s <= verdict[0] <= inserted_end
                silence_from, resumed = (record.pause_start_s, inserted_end) if inserted else (verdict[0], verdict[0])
                if end_after(endpointer, verdict, silence_from, lag) < resumed or (
                    not inserted and endpointer.wait_ms(verdict[1], verdict[2]) == 0
                ):
                    cut.append(record)
                    break
            continue
        last = [v for v in record.verdicts if v[0] >= 0]
        if any(endpointer.wait_ms(v[1], v[2]) == 0 for v in during):
            cut.append(record)  # a complete utterance answered before it ended
        end = end_after(endpointer, last[0], 0.0, lag) if last else lag + endpointer.max_silence_ms / 1000
        (fresh_ends if record.fresh else complete_ends).append(end)
    paused = sum(r.kind != "complete" and not r.fresh for r in records)
    return Replay(cut, complete_ends, fresh_ends, paused)


def policies() -> dict[str, Endpointer]:
    """The default and the variants worth weighing against it."""
    return {
        "default": policy(),
        "confirm 1000 ms": policy(confirm_silence_ms=1000),
        "confirm 1300 ms": policy(confirm_silence_ms=1300),
        "sure at 0.95": policy(end_of_turn_sure=0.95),
        "words finished above 0.8": policy(text_finished_above=0.8),
        "no doubt silence": policy(doubt_silence_ms=0),
        "audio alone": Endpointer.from_settings(_Judge(), VADSettings(), reads_text=False),
    }


def percentile_ms(values: list[float], p: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000:.0f} ms"


def report(records: list[Record]) -> None:
    header = ["policy", "cut-offs", *(f"{ms} ms" for ms in PAUSES_MS), "held > 1.2 s", "turn end p50", "p95",
              "new conv. held", "p50", "p95"]
    rows = [header]
    replays = {name: replay(endpointer, records) for name, endpointer in policies().items()}
    for name, result in replays.items():
        by_pause = []
        for ms in PAUSES_MS:
            some = [r for r in records if r.kind != "complete" and not r.fresh and r.pause_ms == ms]
            by_pause.append(f"{sum(r in result.cut for r in some)}/{len(some)}")
        paused_cut = sum(r.kind != "complete" for r in result.cut)
        rows.append([
            name, rate(paused_cut, result.paused), *by_pause,
            f"{result.held(result.complete_ends)}/{len(result.complete_ends)}",
            percentile_ms(result.complete_ends, 50), percentile_ms(result.complete_ends, 95),
            f"{result.held(result.fresh_ends)}/{len(result.fresh_ends)}",
            percentile_ms(result.fresh_ends, 50), percentile_ms(result.fresh_ends, 95),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)), flush=True)
    print("  (replayed: cut-offs of the paused utterances by inserted pause; complete utterances whose turn would end"
          f" more than {LONG_WAIT_S:g} s after the end of speech, and when it would end; in the long conversation,"
          " then as the first turn of new ones)", flush=True)
    print("  verdicts on the pauses the default policy cuts:", flush=True)
    for record in replays["default"].cut:
        during = [(round(at - record.pause_start_s, 2), audio, words) for at, audio, words in record.verdicts
                  if at < 0]
        print(f"    {record.kind} {record.text!r}, {record.pause_ms} ms pause at {record.cut_s:.2f} s: "
              f"(s into the pause, audio, words) {during}", flush=True)


def records_of(outcomes: list[Outcome], *, fresh: bool) -> list[Record]:
    return [
        Record(
            o.utterance.text, o.utterance.kind, o.utterance.pause_ms, o.utterance.cut_s, o.utterance.seconds, fresh,
            o.verdicts, o.stops[-1][0] if o.stops else None, o.stops[-1][1] if o.stops else None,
        )
        for o in outcomes
    ]


async def record(workdir: Path) -> list[Record]:
    """The verdicts of one server that lets every turn run to max_silence, on the long conversation and on new ones."""
    utterances = build_test_set(workdir / "speech")
    order = utterances[:]
    random.Random(SEED).shuffle(order)  # as bench_turns orders them
    warm_up = next(u for u in utterances if u.kind == "complete")
    config = {
        "vad": {**CONFIGS[WORDS], **NEVER_ENDS},
        "llm": {"engine": "local", "model": DEFAULT_PRESET, "max_tokens": 16},
        "voice": {"replies": "never"},
    }
    server, port = start_web_bot(config, workdir)
    try:
        conversation = await cut_off_pass(port, order, warm_up)
        fresh = await fresh_pass(port, [u for u in order if u.kind == "complete"], warm_up)
    finally:
        server.stop()
    return records_of(conversation, fresh=False) + records_of(fresh, fresh=True)


def main() -> None:
    saved = os.environ.get("BENCH_JUDGE_DATA")
    if saved:
        records = [Record(**{**r, "verdicts": [tuple(v) for v in r["verdicts"]]})
                   for r in json.loads(Path(saved).read_text())]
        print(f"# endpointing policies replayed on {len(records)} recorded utterances from {saved}", flush=True)
    else:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-judge-") as folder:
            records = asyncio.run(record(Path(folder)))
        path = Path(tempfile.gettempdir()) / f"bench-judge-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps([asdict(r) for r in records]))
        print(f"# endpointing policies replayed{QUICK_MARK} on {len(records)} utterances recorded in "
              f"{time.perf_counter() - started:.0f} s (saved in {path}: BENCH_JUDGE_DATA={path} replays them)",
              flush=True)
    report(records)


if __name__ == "__main__":
    main()
