"""The README's `make bench`, run for real in its quick form (BENCH_QUICK=1), so the benchmarks keep working."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from core.config import ROOT
from core.llm.presets import DEFAULT_PRESET

KEY_LINES = [
    "turns/s through /ws",  # bench_chat
    "turn latency p50 at 1 client, minus baseline call p50",
    "whisper real-time factor",  # bench_stt
    "whisper latency, 3 s clip (median)",
    "end of upload → transcription, 3 s clip (median)",
    f"offline defaults ({DEFAULT_PRESET}): end of speech → first audio p50",  # bench_voice: the default model
    "offline defaults but (smollm2-135m): end of speech → first audio p50",
    "instant fake LLM: end of speech → first audio p50",
    f"push-to-talk ({DEFAULT_PRESET}): release → first audio p50",  # beside the clip sent whole at release
    "voice turns/s, 4 clients uploading speech at once",
    "Realtime API: end of speech → first audio delta p50",  # bench_realtime, beside the page's socket
    "SIGTERM with",  # bench_crash: the stop beside waiting for every reply (its kills print no ratio: all or none)
    ": time to first token p50",  # bench_llm: "llm <configured model>: …", beside the baseline
    ": peak RSS",
    "sqlite: search p50 (",  # bench_search, beside a LIKE '%word%' scan
    "sqlite: search p99 (",
]



def quick_env(**extra: str) -> dict[str, str]:
    """This environment for a quick benchmark run (BENCH_QUICK=1), without the server settings a developer set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_BOT_", "OPENAI_"))}
    return {**env, "BENCH_QUICK": "1", **extra}

@pytest.mark.slow
def test_make_bench_quick() -> None:
    env = quick_env(HF_HUB_OFFLINE="1")
    # Eight benchmarks in their quick forms, the crash scenario's kills and restarts among them: past 20 minutes on
    # a busy 2-core machine.
    run = subprocess.run(
        ["make", "--no-print-directory", "bench"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = output.splitlines()
    for key in KEY_LINES:
        assert any(key in line and "ratio" in line for line in lines), f"no {key!r} line with a ratio:\n{output}"
    assert any(line.startswith("whisper wer: ") for line in lines), output
    assert any(line.startswith("llm ") and ": English correct: " in line for line in lines), output
    assert any(line.startswith("llm ") and ": Russian correct: " in line for line in lines), output
    from bench.__main__ import BENCHMARKS

    assert sum("(quick)" in line for line in lines) == len(BENCHMARKS), output  # each one's heading


TURNS_LINES = [
    "smart-turn (200 ms + model): false cut-offs (paused utterances)",  # beside the 500 ms baseline
    "silence 300 ms: false cut-offs (paused utterances)",
    "smart-turn (200 ms + model): end of speech → first audio p50",
    "smart-turn (200 ms + model): end of speech → first audio p95",
    "silence 300 ms: end of speech → first audio p50",
]


@pytest.mark.slow
def test_bench_turns_quick() -> None:
    """The turn-taking benchmark on its own, quick: every endpointer measured, none cutting a complete sentence."""
    env = quick_env(HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-m", "bench", "bench_turns"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = output.splitlines()
    assert any(line.startswith("# turn-taking benchmark (quick)") for line in lines), output
    for key in TURNS_LINES:
        assert any(line.startswith(key) and "baseline" in line for line in lines), f"no {key!r} line:\n{output}"
    assert any(line.startswith("silence 500 ms: false cut-offs (paused utterances): ") for line in lines), output
    for model in ("smart-turn (200 ms + model)", "smart-turn + words (local LLM)",
                  "smart-turn + words (local LLM), new conversations"):
        for held in ("until max_silence", "over 1.2 s"):
            assert any(line.startswith(f"{model}: complete utterances held {held}: ") for line in lines), output
    early = next(line for line in lines if line.startswith("complete utterances answered before they ended: "))
    assert re.findall(r" (\d+)/\d+", early) == ["0", "0", "0", "0"], output


SEARCH_LINES = ["search p50 (", "search p99 (", "search p50 over the", "latest 50 messages of a conversation p50"]


@pytest.mark.postgres
def test_bench_search_quick() -> None:
    """The search benchmark on its own, quick: SQLite and PostgreSQL, each beside its LIKE scan."""
    env = quick_env()
    run = subprocess.run(
        [sys.executable, "-m", "bench", "bench_search"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = output.splitlines()
    assert any(line.startswith("# search benchmark (quick)") for line in lines), output
    for database in ("sqlite", "postgresql"):
        for key in SEARCH_LINES:
            assert any(line.startswith(f"{database}: {key}") for line in lines), f"no {database} {key!r}:\n{output}"
        assert any(line.startswith(f"{database}: search p50 (") and "ratio" in line for line in lines), output


@pytest.mark.slow
def test_bench_judge_quick() -> None:
    """The endpointing replay records verdicts from a real server and replays each policy on them."""
    env = quick_env(HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-m", "bench", "bench_judge"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    saved = re.search(r"BENCH_JUDGE_DATA=(\S+) replays them", output)
    assert saved is not None, output
    rows = [line.split()[0] for line in output.splitlines() if line.startswith("  ") and "/" in line]
    assert "default" in rows and "audio" in rows, output
    # The saved verdicts replay without a server, to the same table.
    again = subprocess.run(
        [sys.executable, "-m", "bench", "bench_judge"], cwd=ROOT, env={**env, "BENCH_JUDGE_DATA": saved[1]},
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    table = [line for line in output.splitlines() if line.startswith("  default ")]
    assert table and table == [line for line in again.stdout.splitlines() if line.startswith("  default ")]
