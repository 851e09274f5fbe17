"""Coverage-guided fuzzing with atheris (libFuzzer for Python).

    python -m tests.fuzz TARGET [libFuzzer options]   one target until stopped (or -runs=N, -max_total_time=S)
    python -m tests.fuzz all SECONDS                  every target for SECONDS each, one process each

Targets: frames, text, unicode, config, realtime, audio (``tests.fuzz.harnesses``). Each keeps its corpus in
``test-artifacts/fuzz/TARGET/corpus`` (seeded on the first run), and a crashing input in
``test-artifacts/fuzz/TARGET/crash-…``; replay one with ``python -m tests.fuzz TARGET PATH``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "fuzz"
TARGETS = ("frames", "text", "unicode", "config", "realtime", "audio")


def run_one(name: str, options: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["core", "web_bot"]):
        from tests.fuzz.harnesses import HARNESSES, seeds
    folder = ARTIFACTS / name
    corpus = folder / "corpus"
    if not corpus.is_dir():
        corpus.mkdir(parents=True)
        for i, seed in enumerate(seeds(name)):
            (corpus / f"seed-{i}").write_bytes(seed)
    replay = any(not o.startswith("-") for o in options)  # a file or folder named: run it, do not fuzz the corpus
    argv = [sys.argv[0], f"-artifact_prefix={folder}/", *options, *([] if replay else [str(corpus)])]
    atheris.Setup(argv, HARNESSES[name])
    atheris.Fuzz()


def run_all(seconds: int) -> int:
    failed = []
    for name in TARGETS:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "tests.fuzz", name, f"-max_total_time={seconds}", "-timeout=30",
             "-print_final_stats=1"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )
        stats = [line for line in result.stderr.splitlines() if line.startswith(("stat::number_of_executed_units",
                                                                                   "stat::new_units_added"))]
        print(f"{name}: exit {result.returncode} after {time.monotonic() - started:.0f} s; {'; '.join(stats)}")
        if result.returncode != 0:
            failed.append(name)
            print(result.stderr[-4000:], file=sys.stderr)
    print("atheris:", "crashes in " + ", ".join(failed) if failed else "no crash")
    return 1 if failed else 0


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in (*TARGETS, "all"):
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "all":
        return run_all(int(sys.argv[2]) if len(sys.argv) > 2 else 60)
    run_one(sys.argv[1], sys.argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
