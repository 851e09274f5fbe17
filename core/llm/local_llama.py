"""LlamaCppLLM: an embedded GGUF model through llama-cpp-python, run in its own worker thread.

Which model, how it is prompted and how it samples come from a preset (``core.llm.presets``); its replies go through
a ``ReplyGuard`` (``core.llm.guard``), so a small model's loop or echo of the question never reaches the user.

Prompt cache across turns: llama-cpp-python reuses its KV cache only for the prompt's common token prefix with the
previous one. Once the history window slides, the oldest messages drop out right after the system prompt, so that
prefix ends there and every turn would re-evaluate the whole context (seconds on a small CPU). Shifting the cached
tokens left ("context shift", llama.cpp's ``--cache-reuse``) is not an option: their keys and values were computed
while attending to the dropped messages, so the model would answer differently than from the same messages cold.
Instead, once a reply is stored, the pipeline hands the engine the next turn's system prompt and history (``prepare``:
the window moved on by this exchange, exactly as the next turn will read it), and the worker thread evaluates their
prompt prefix while the bot speaks and the user answers, in small chunks that give way to any new request. The next
turn then evaluates only its new message, from the first slide on, and every cached token was evaluated in the very
context it has in the prompt, as on a cold start. A history changed meanwhile (the reply cut by a barge-in) only
costs that idle work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.cpu import CpuGate
from core.errors import LLMError
from core.llm import few_shot
from core.llm.guard import ReplyGuard
from core.llm.presets import CHAT_STOP, FEW_SHOT_STOP, PromptFormat
from core.llm.presets import bundled_gguf as bundled_gguf
from core.models import ChatMessage, EngineInfo

logger = logging.getLogger(__name__)

_END = object()
# What Whisper ends a transcript with, fragment or not: the words are judged without it.
_FINAL_PUNCTUATION = re.compile(r"[\s.,;:!?…。？！]+$")
# A sentence end the model gives less than this after the words is not read on (a fifth of the lowest threshold a
# reading is compared with, vad.text_unfinished_below's 0.01).
_UNLIKELY_MARK = 0.002
# Tokens evaluated per step while preparing the next turn; a request arriving meanwhile waits at most one step.
_PREPARE_CHUNK = 64
# While a reply's first audio holds the CPU, preparing looks this often whether a request has arrived meanwhile.
_PREPARE_PAUSE_S = 0.02

Message = dict[str, str]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class _ChatPrompt:
    """Renders messages into the exact prompt tokens ``create_chat_completion`` builds from the GGUF's template."""

    def __init__(self, llama: Any, formatter: Any) -> None:
        self._llama = llama
        self._formatter = formatter

    @classmethod
    def of(cls, llama: Any) -> _ChatPrompt | None:
        """None when llama-cpp-python answers through another chat handler (then turns are not prepared)."""
        if llama.chat_handler is not None or llama.chat_format != "chat_template.default":
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text(token: int) -> str:
            return str(llama._model.token_get_text(token)) if token != -1 else ""

        # The same formatter Llama.__init__ builds for its "chat_template.default" handler.
        formatter = Jinja2ChatFormatter(
            template=llama.metadata["tokenizer.chat_template"],
            eos_token=text(llama.token_eos()),
            bos_token=text(llama.token_bos()),
        )
        return cls(llama, formatter)

    def tokens(self, messages: Sequence[Message]) -> list[int]:
        prompt = self._formatter(messages=list(messages)).prompt
        # As the chat handler tokenizes: the template writes the special tokens itself.
        return [int(t) for t in self._llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)]

    def stable_prefix(self, messages: Sequence[Message]) -> list[int]:
        """The leading tokens of every prompt that continues ``messages`` with a user message, whatever it says."""
        one = self.tokens([*messages, {"role": "user", "content": "a"}])
        two = self.tokens([*messages, {"role": "user", "content": "b"}])
        return one[: common_prefix(one, two)]

    def up_to_turn_end(self, messages: Sequence[Message]) -> tuple[list[int], int] | None:
        """The prompt's tokens up to the end of the last (user) message's text, and the token the template puts
        next: the one that ends a turn (``<|im_end|>`` for Qwen). None if the text is not a token boundary there."""
        prompt = self._formatter(messages=list(messages)).prompt
        text = messages[-1]["content"]
        end = prompt.rfind(text) + len(text)
        if not text or end < len(text):
            return None
        whole = self.tokens(messages)
        head = [int(t) for t in self._llama.tokenize(prompt[:end].encode("utf-8"), add_bos=False, special=True)]
        if len(head) >= len(whole) or whole[: len(head)] != head:
            return None
        return head, whole[len(head)]


class _FewShotPrompt(_ChatPrompt):
    """Renders messages as a transcript after worked examples (``core.llm.few_shot``), for a base model."""

    def __init__(self, llama: Any) -> None:
        super().__init__(llama, None)

    def tokens(self, messages: Sequence[Message]) -> list[int]:
        text = few_shot.render(messages)
        return [int(t) for t in self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)]

    def stable_prefix(self, messages: Sequence[Message]) -> list[int]:
        # The examples follow the next message's language; guess it is that of the last one.
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        one, two = ("а", "б") if few_shot.language_of(last) == "ru" else ("a", "b")
        first = self.tokens([*messages, {"role": "user", "content": one}])
        second = self.tokens([*messages, {"role": "user", "content": two}])
        return first[: common_prefix(first, second)]


class LlamaCppLLM:
    """Streams replies from a local GGUF model; one generation at a time, off the event loop."""

    last_prompt_tokens: int | None
    """Prompt length of the last reply, in tokens (None when the model uses another chat handler)."""
    last_prompt_tokens_evaluated: int | None
    """How many of those were not already in the KV cache and had to be evaluated before the first token."""

    def __init__(
        self,
        *,
        model_path: str,
        temperature: float,
        max_tokens: int,
        n_ctx: int,
        n_threads: int,
        prompt: PromptFormat | Literal["auto"] = "auto",
        repeat_penalty: float = 1.0,
        stop: Sequence[str] | None = None,
        guard: bool = True,
        cpu: CpuGate | None = None,
        name: str = "",
    ) -> None:
        self._model_path = model_path or bundled_gguf()
        self._format = prompt
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._repeat_penalty = repeat_penalty
        self._stop = None if stop is None else list(stop)  # None: the prompt format's own
        self._guard = guard
        self._cpu = cpu  # the model pauses between tokens while a reply's first audio is synthesised
        self._name = name or Path(self._model_path).name
        self._n_ctx = n_ctx
        self._n_threads = n_threads or max(1, (os.cpu_count() or 2))
        # llama.cpp contexts are not thread-safe: one thread owns the model and serialises generations.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llama: Any = None
        self._prompt: _ChatPrompt | None = None
        # Replies requested but not yet started: preparing the next turn gives way as soon as one is waiting.
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self.last_prompt_tokens = None
        self.last_prompt_tokens_evaluated = None

    def info(self) -> EngineInfo:
        return EngineInfo("local", self._name, self._llama is not None)

    def count_tokens(self, text: str) -> int | None:
        """``text``'s length in the model's tokens (``TokenCounter``): tokenizing reads only the vocabulary, so it
        needs no turn of the worker thread; None before the model is loaded."""
        if self._llama is None:
            return None
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_prompt(self, messages: Sequence[ChatMessage]) -> int | None:
        """The prompt's length in tokens as the model reads it, template included (``TokenCounter``); None before
        the model is loaded or when another chat handler renders it. Rendering and tokenizing read no model state,
        so this needs no turn of the worker thread."""
        if self._llama is None or self._prompt is None:
            return None
        return len(self._prompt.tokens([{"role": m.role, "content": m.content} for m in messages]))

    @property
    def prompt_format(self) -> str:
        """``chat`` or ``few-shot`` once loaded (``auto`` before: chat when the GGUF has a chat template)."""
        return self._format

    async def start(self) -> None:
        """Load the model in the worker thread."""
        loop = asyncio.get_running_loop()
        self._llama, self._prompt = await loop.run_in_executor(self._executor, self._load)
        logger.info("local LLM loaded: %s (%s prompt)", self._model_path, self._format)

    async def wait_idle(self) -> None:
        """Wait until the worker thread is idle, including preparing the next turn (for tests and benchmarks)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, lambda: None)

    def _load(self) -> tuple[Any, _ChatPrompt | None]:
        try:
            from llama_cpp import Llama
        except ImportError as err:
            raise LLMError("llama-cpp-python is not installed", code="llm-unavailable") from err
        if not Path(self._model_path).is_file():
            raise LLMError(f"no GGUF model at {self._model_path}", code="llm-unavailable")
        try:
            llama = Llama(
                model_path=self._model_path,
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                # The prompt too: llama-cpp-python would evaluate it on every core, whatever llm.n_threads says.
                n_threads_batch=self._n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as err:
            raise LLMError(f"cannot load {self._model_path}: {err}", code="llm-unavailable") from err
        if self._format == "auto":
            self._format = "chat" if "tokenizer.chat_template" in llama.metadata else "few-shot"
        if self._stop is None:
            self._stop = list(FEW_SHOT_STOP if self._format == "few-shot" else CHAT_STOP)
        if self._format == "few-shot":
            return llama, _FewShotPrompt(llama)
        return llama, _ChatPrompt.of(llama)

    def _fragments(self, payload: list[Message], prompt: list[int] | None, max_tokens: int) -> Iterator[str]:
        """The reply's text as the model writes it, at most ``max_tokens`` (0: until the context is full; worker
        thread)."""
        options: dict[str, Any] = dict(
            temperature=self._temperature,
            max_tokens=max_tokens,
            repeat_penalty=self._repeat_penalty,
            stop=self._stop or None,
            stream=True,
        )
        if self._format == "few-shot":
            assert prompt is not None
            for chunk in self._llama.create_completion(prompt=prompt, **options):
                yield chunk["choices"][0]["text"]
            return
        for chunk in self._llama.create_chat_completion(messages=payload, **options):
            yield chunk["choices"][0]["delta"].get("content") or ""

    async def stream_reply(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[str]:
        if self._llama is None:
            raise LLMError("the local model is not loaded", code="llm-unavailable")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        payload = [{"role": m.role, "content": m.content} for m in messages]
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")

        def put(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def generate() -> None:
            with self._waiting_lock:
                self._waiting -= 1
            parts: list[str] = []
            guard = ReplyGuard(question) if self._guard else None
            try:
                began = time.perf_counter()
                prompt = self._measure_prompt(payload)
                self._check_fits(prompt)
                length = self._max_tokens if max_tokens is None else max_tokens
                for text in self._fragments(payload, prompt, length):
                    if stop.is_set():  # the reply was interrupted: free the model for the next turn
                        break
                    if began and text:
                        logger.debug(
                            "local LLM: first fragment %r after %.0f ms (prompt %s tokens, %s evaluated)", text,
                            (time.perf_counter() - began) * 1000, self.last_prompt_tokens,
                            self.last_prompt_tokens_evaluated,
                        )
                        began = 0.0
                    if guard is not None:
                        text = guard.feed(text)
                    if text:
                        parts.append(text)
                        put(text)
                        if self._cpu is not None:
                            # Text is sent: the next token waits while a reply's first audio is being synthesised.
                            self._cpu.pause_point()
                            if stop.is_set():
                                break
                    if guard is not None and guard.stopped:
                        logger.info("local LLM: reply cut where it began to repeat itself: %r", guard.dropped[:80])
                        break
                else:
                    if guard is not None and (rest := guard.finish()):
                        parts.append(rest)
                        put(rest)
                self._check_prompt(prompt)
            except ValueError as err:
                # llama-cpp-python's own check, for prompts we do not render ourselves (another chat handler).
                put(LLMError(str(err), code="context-too-long") if "context window" in str(err) else err)
            except Exception as err:
                put(err)
            finally:
                put(_END)

        with self._waiting_lock:
            self._waiting += 1
        loop.run_in_executor(self._executor, generate)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, LLMError):
                    raise item
                if isinstance(item, BaseException):
                    logger.error("local LLM failed: %r", item)
                    raise LLMError("the local model failed to answer", code="llm-failed") from item
                assert isinstance(item, str)
                yield item
        finally:
            stop.set()

    async def end_of_turn(self, messages: Sequence[ChatMessage]) -> float | None:
        """The model's probability that the user's turn ends where the last message's words end: the chance that
        its chat template's end-of-turn token comes next (as LiveKit's turn detector reads it, from a Qwen2.5 0.5B
        fine-tune), directly or after a full stop, question or exclamation mark. None when the model is not
        prompted through a chat template, or on failure (logged).

        The words are read without their final punctuation: Whisper writes "?" or "." after a fragment as readily
        as after a sentence ("How long does it take to drive from?"), and the model believes it. The prompt is the
        reply's own up to the last word, so the reply that follows finds it in the KV cache.
        """
        if self._llama is None or not messages or messages[-1].role != "user":
            return None
        payload = [{"role": m.role, "content": m.content} for m in messages]
        payload[-1]["content"] = _FINAL_PUNCTUATION.sub("", payload[-1]["content"])
        if not payload[-1]["content"]:
            return None

        unwanted = threading.Event()

        def judge() -> float | None:
            with self._waiting_lock:
                self._waiting -= 1
            if unwanted.is_set():
                return None
            try:
                return self._end_of_turn(payload)
            except Exception:
                logger.exception("local LLM: the end-of-turn judgement failed")
                self._llama.n_tokens = 0  # forget the cache: the next request evaluates its whole prompt
                return None

        with self._waiting_lock:
            self._waiting += 1
        job = asyncio.get_running_loop().run_in_executor(self._executor, judge)
        try:
            # Shielded: a job cancelled while queued would never run, and never give back its place in _waiting.
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            unwanted.set()
            raise

    def _end_of_turn(self, payload: list[Message]) -> float | None:
        """Worker thread: evaluate the prompt up to the last word (after what the cache holds), read the end-of-turn
        token's probability, and add each sentence end's probability times that of the end-of-turn token after
        it (one token evaluated each, then dropped again)."""
        if self._prompt is None or self._format != "chat":
            return None
        found = self._prompt.up_to_turn_end(payload)
        if found is None:
            return None
        head, end_token = found
        llama = self._llama
        if len(head) + 1 >= llama.n_ctx():
            return None
        # The last token is always evaluated again: its logits are the ones wanted.
        start = min(common_prefix(llama.input_ids[: llama.n_tokens].tolist(), head), len(head) - 1)
        if not self._truncate(start):
            return None
        llama.eval(head[start:])
        after_words = self._next_token_probabilities()
        probability = float(after_words[end_token])
        for mark in ".?!":
            token = llama.tokenize(mark.encode("utf-8"), add_bos=False, special=False)
            if len(token) != 1 or after_words[token[0]] < _UNLIKELY_MARK:
                continue  # it could add less than this: not worth a token's evaluation (~40 ms on 2 cores)
            if not self._truncate(len(head)):
                return None
            llama.eval(token)
            probability += float(after_words[token[0]] * self._next_token_probabilities()[end_token])
        if not self._truncate(len(head)):
            return None
        llama._requires_eval = True  # the current logits are those of the last mark, not of the cached tokens
        return min(1.0, probability)

    def _truncate(self, length: int) -> bool:
        """Keep the first ``length`` tokens of the KV cache (worker thread); False if it cannot be cut there
        (recurrent models): then it is emptied, and the next request evaluates its whole prompt."""
        llama = self._llama
        if llama._ctx.kv_cache_seq_rm(-1, length, -1):
            llama.n_tokens = length
            return True
        llama._ctx.kv_cache_clear()
        llama.n_tokens = 0
        return False

    def _next_token_probabilities(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Softmax of the logits of the last token evaluated (worker thread)."""
        llama = self._llama
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)
        weights = np.exp(logits - logits.max())
        probabilities: np.ndarray[Any, np.dtype[np.float64]] = weights / weights.sum()
        return probabilities

    @property
    def reads_turns(self) -> bool:
        """Whether ``end_of_turn`` can read words: the model is loaded and prompted through its chat template."""
        return self._llama is not None and self._prompt is not None and self._format == "chat"

    def _measure_prompt(self, payload: list[Message]) -> list[int] | None:
        """The prompt's tokens; records how many of them the KV cache already holds (worker thread)."""
        if self._prompt is None:
            self.last_prompt_tokens = self.last_prompt_tokens_evaluated = None
            return None
        prompt = self._prompt.tokens(payload)
        cached = common_prefix(self._llama.input_ids[: self._llama.n_tokens].tolist(), prompt)
        self.last_prompt_tokens = len(prompt)
        self.last_prompt_tokens_evaluated = len(prompt) - min(cached, len(prompt) - 1)
        return prompt

    def _check_fits(self, prompt: list[int] | None) -> None:
        """LLMError ``context-too-long`` unless the prompt leaves room in the context for a reply (worker thread);
        llama.cpp would raise a bare ValueError, which reads as the model failing."""
        if prompt is not None and len(prompt) >= self._llama.n_ctx():
            raise LLMError(
                f"This model's maximum context length is {self._llama.n_ctx()} tokens; the messages are"
                f" {len(prompt)} tokens. Shorten them.",
                code="context-too-long",
            )

    @property
    def context_tokens(self) -> int | None:
        """The model's context window in tokens (``llm.n_ctx``), prompt and reply together (``TokenCounter``)."""
        return self._n_ctx

    def _check_prompt(self, prompt: list[int] | None) -> None:
        """Stop preparing turns if our tokens ever differ from the ones llama-cpp-python just evaluated."""
        llama = self._llama
        if prompt is None or llama.n_tokens < len(prompt):
            return
        if llama.input_ids[: len(prompt)].tolist() != prompt:
            logger.warning("local LLM: the chat template renders differently here; turns are no longer prepared")
            self._prompt = None
            self.last_prompt_tokens = self.last_prompt_tokens_evaluated = None

    def prepare(self, messages: Sequence[ChatMessage]) -> None:
        """Evaluate the start of the next turn's prompt now (``PromptCache``), while this turn's reply is spoken:
        ``messages`` are the next turn's system prompt and history as the pipeline will send them, so a history
        window that slides, which changes the prompt's start every turn, costs the next turn only its new message.
        The work queues behind the engine's other work and gives way to any request that arrives meanwhile."""
        if self._llama is None or self._prompt is None:
            return
        payload = [{"role": m.role, "content": m.content} for m in messages]
        with contextlib.suppress(RuntimeError):  # the engine is closing: nothing is worth preparing
            self._executor.submit(self._prepare, payload)

    def _prepare(self, payload: list[Message]) -> None:
        if self._llama is None or self._prompt is None:
            return
        try:
            self._prefill(self._prompt.stable_prefix(payload))
        except Exception:
            logger.exception("local LLM: preparing the next turn failed")
            self._llama.n_tokens = 0  # forget the cache: the next turn evaluates its whole prompt

    def _prefill(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` into the KV cache after the part it already holds, giving way to any new request."""
        llama = self._llama
        if len(tokens) >= llama.n_ctx():
            return
        start = common_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)
        if start == len(tokens) or self._waiting:
            return
        # Keep the common part, drop the rest; memory that cannot be cut there (recurrent models) is left alone.
        if not llama._ctx.kv_cache_seq_rm(-1, start, -1):
            return
        llama.n_tokens = start
        llama._requires_eval = True  # the current logits are not those of token start - 1
        for chunk in range(start, len(tokens), _PREPARE_CHUNK):
            # Idle work: it waits for a reply's first audio, but never keeps a request waiting.
            while self._cpu is not None and not self._waiting and not self._cpu.pause_point(_PREPARE_PAUSE_S):
                pass
            if self._waiting:
                break
            llama.eval(tokens[chunk : chunk + _PREPARE_CHUNK])

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._llama = None
