"""How well, and how fast, the configured language model answers short questions in English and Russian.

``make bench`` (``python -m bench bench_llm``) asks the question set of ``core.llm.evaluation`` of two models, each
in a process of its own (so each peak RSS is its own):

1. baseline: the local default before presets: SmolLM2-135M through its chat template, temperature 0.7, 256 tokens,
   no stop sequences, no reply guard, no language line;
2. configured: the server's effective ``llm`` settings (``data/config.json`` and the environment), with the line
   the pipeline appends to the system prompt when it knows the turn's language.

It prints, for each, correct/asked per language, time to first token p50, tokens/s and peak RSS beside the
baseline's. ``python -m bench.bench_llm --candidates`` compares every installed preset under several prompting
strategies; ``--gguf NAME=PATH[:chat|few-shot]`` adds a GGUF file that no installed package provides. Every answer
goes to ``bench/results/llm-<label>.json``.

BENCH_QUICK=1: six questions (a capital, a sum and the follow-up, in each language).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import statistics
import subprocess
import sys
from typing import Any

from bench.common import QUICK, QUICK_MARK, ROOT, line
from core.config import LLMSettings, load_settings
from core.errors import LLMError
from core.llm import build_llm, local_engine, resolve_engine
from core.llm.evaluation import (
    LANGUAGE_LINES,
    NATIVE_LANGUAGE_LINES,
    QUESTIONS,
    QUICK_IDS,
    ask,
    system_prompt_for,
)
from core.llm.local_llama import LlamaCppLLM, bundled_gguf
from core.llm.presets import PRESETS

RESULTS = ROOT / "bench" / "results"
LANGS = ("en", "ru")
LINES = {"none": None, "english": LANGUAGE_LINES, "native": NATIVE_LANGUAGE_LINES}
BASELINE = {"label": "baseline: SmolLM2 chat, t 0.7, 256 tokens, no guard", "baseline": True, "lines": "none"}
CONFIGURED = {"label": "configured", "configured": True, "lines": "english"}


def questions() -> list[Any]:
    return [q for q in QUESTIONS if q.id in QUICK_IDS] if QUICK else list(QUESTIONS)


# -- one row, in its own process ---------------------------------------------------------------------------------


async def run_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Ask every question of the engine ``spec`` describes; the answers, and how fast they came."""
    settings = LLMSettings(**spec.get("settings", {}))
    if spec.get("configured"):
        settings = load_settings().llm
    if spec.get("baseline"):
        engine: Any = LlamaCppLLM(
            model_path=bundled_gguf(), prompt="chat", temperature=0.7, max_tokens=256, stop=[], guard=False,
            n_ctx=settings.n_ctx, n_threads=settings.n_threads, name="smollm2-135m",
        )
        await engine.start()
        model = "smollm2-135m"
    elif spec.get("configured") and resolve_engine(settings) == "openai":
        engine = await build_llm(settings)
        model = f"openai:{settings.model_name}"
    else:
        engine = local_engine(settings, guard=spec.get("guard", True))
        await engine.start()
        model = engine.info().model
    lines = LINES[spec.get("lines", "none")]
    answers = []
    try:
        for question in questions():
            system = system_prompt_for(settings.system_prompt, question.language, lines)
            answers.append(await ask(engine, question, system))
    finally:
        await engine.aclose()
    firsts = [a.first_token_s for a in answers if a.first_token_s is not None]
    rates = [r for a in answers if (r := a.tokens_per_s) is not None]
    result = {
        "label": spec["label"],
        "model": model,
        "correct": {lang: sum(a.verdict.correct for a in answers if a.question.language == lang) for lang in LANGS},
        "asked": {lang: sum(a.question.language == lang for a in answers) for lang in LANGS},
        "ttft_p50_ms": statistics.median(firsts) * 1000 if firsts else None,
        "tokens_per_s": statistics.median(rates) if rates else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "answers": [
            {"id": a.question.id, "reply": a.reply, "correct": a.verdict.correct, "problems": a.verdict.problems,
             "first_token_ms": a.first_token_s and round(a.first_token_s * 1000)}
            for a in answers
        ],
    }
    return result


def run_in_child(spec: dict[str, Any]) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "bench.bench_llm", "--row", json.dumps(spec)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )
    if run.returncode != 0:
        raise RuntimeError(f"{spec['label']}: exit {run.returncode}\n{run.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    RESULTS.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in result["label"]).strip("-")[:80]
    (RESULTS / f"llm-{slug}.json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
    return result


# -- printing ----------------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def print_versus(row: dict[str, Any], base: dict[str, Any]) -> None:
    name = f"llm {row['model']}"
    for lang, title in (("en", "English"), ("ru", "Russian")):
        line(
            f"{name}: {title} correct",
            f"{row['correct'][lang]}/{row['asked'][lang]}",
            f"{base['correct'][lang]}/{base['asked'][lang]}",
            _ratio(row["correct"][lang], base["correct"][lang]),
        )
    line(f"{name}: time to first token p50", _ms(row["ttft_p50_ms"]), _ms(base["ttft_p50_ms"]),
         _ratio(row["ttft_p50_ms"], base["ttft_p50_ms"]), "≤ 500 ms")
    line(f"{name}: tokens/s", _rate(row["tokens_per_s"]), _rate(base["tokens_per_s"]),
         _ratio(row["tokens_per_s"], base["tokens_per_s"]))
    line(f"{name}: peak RSS", f"{row['peak_rss_mb']:.0f} MB", f"{base['peak_rss_mb']:.0f} MB",
         _ratio(row["peak_rss_mb"], base["peak_rss_mb"]))


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| model × strategy | English | Russian | TTFT p50 | tok/s | peak RSS |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        en, ru = (f"{row['correct'][k]}/{row['asked'][k]}" for k in ("en", "ru"))
        print(f"| {row['label']} | {en} | {ru} | {_ms(row['ttft_p50_ms'])} | {_rate(row['tokens_per_s'])} "
              f"| {row['peak_rss_mb']:.0f} MB |", flush=True)


# -- entry points ------------------------------------------------------------------------------------------------


def main() -> None:
    """``make bench``: the configured model beside the baseline."""
    base = run_in_child(BASELINE)
    configured = run_in_child(CONFIGURED)
    asked = len(questions())
    print(f"# LLM evaluation{QUICK_MARK} ({asked} questions in English and Russian, 2 cores; "
          f"configured: {configured['model']}, with the pipeline's language line)")
    print_versus(configured, base)
    print_table([base, {**configured, "label": f"configured: {configured['model']}"}])


def strategies(name: str, settings: dict[str, Any], prompt: str) -> list[dict[str, Any]]:
    """The prompting strategies compared for one model."""
    shape = "few-shot" if prompt == "few-shot" else "chat template"
    greedy = {**settings, "temperature": 0, "repeat_penalty": 1.0}
    tuned = {**settings, "temperature": 0.2, "repeat_penalty": 1.2}
    return [
        {"label": f"{name}: {shape}, greedy", "settings": greedy, "lines": "none"},
        {"label": f"{name}: {shape} + “Always answer in <language>.”, greedy", "settings": greedy, "lines": "english"},
        {"label": f"{name}: {shape} + line in the language itself, greedy", "settings": greedy, "lines": "native"},
        {"label": f"{name}: {shape} + “Always answer in <language>.”, t 0.2, repeat penalty 1.2", "settings": tuned,
         "lines": "english"},
        {"label": f"{name}: {shape} + “Always answer in <language>.”, greedy, no guard", "settings": greedy,
         "lines": "english", "guard": False},
    ]


def candidates(extra: list[str], threads: int, only: list[str], names: list[str]) -> None:
    rows = [run_in_child({**BASELINE, "settings": {"n_threads": threads}})]
    print_table(rows)
    models: list[tuple[str, dict[str, Any], str]] = []
    for preset in PRESETS.values():
        try:
            preset.locate()
        except LLMError as err:
            print(f"# {preset.name}: skipped ({err})", flush=True)
            continue
        models.append((preset.name, {"engine": "local", "model": preset.name, "n_threads": threads}, preset.prompt))
    for item in extra:
        name, _, rest = item.partition("=")
        path, _, prompt = rest.partition(":")
        settings = {"engine": "local", "model_path": path, "prompt_format": prompt or "auto", "n_threads": threads}
        models.append((name, settings, prompt or "chat"))
    for name, settings, prompt in models:
        if names and name not in names:
            continue
        for i, spec in enumerate(strategies(name, settings, prompt)):
            if only and str(i) not in only:
                continue
            rows.append(run_in_child(spec))
            print_table(rows[-1:])
    print("\n# all rows")
    print_table(rows)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_llm", description=__doc__.splitlines()[0])
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", action="store_true", help="every installed preset × strategy")
    parser.add_argument("--gguf", action="append", default=[], metavar="NAME=PATH[:chat|few-shot]")
    parser.add_argument("--threads", type=int, default=2, help="llm.n_threads of the candidates (default 2)")
    parser.add_argument("--strategy", action="append", default=[], help="only these strategies (0-based)")
    parser.add_argument("--model", action="append", default=[], help="only these models (preset or --gguf names)")
    args = parser.parse_args(argv)
    if args.row:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        print(json.dumps(asyncio.run(run_row(json.loads(args.row))), ensure_ascii=False, default=str))
    elif args.candidates or args.gguf:
        candidates(args.gguf, args.threads, args.strategy, args.model)
    else:
        main()
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
