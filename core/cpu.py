"""CpuGate: a reply's first audio has the CPU to itself.

On a small CPU the local LLM (which uses every core) and the TTS engine compete. Measured on this project's 2-core
machine (2026-11-30, five runs each): Piper took 167–177 ms to synthesise a reply's first piece ("To remind you to buy
milk tomorrow,") alone, and 316–382 ms while Qwen2.5-Coder-0.5B went on writing. That first piece is what the user
waits for, and the model writes far ahead of speech (about 25 tokens/s, against some 4 spoken), so while a first piece
is synthesised the model pauses between tokens: first audio comes sooner, and the reply still ends before it is
heard.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

# Background work never waits longer than this at one pause point, whatever holds the gate.
MAX_PAUSE_S = 1.0


class CpuGate:
    """Work that must be fast holds ``priority()``; background work calls ``pause_point()`` between its steps (from
    any thread) and waits there, at most ``max_pause_s`` each time, while anything holds it."""

    def __init__(self, max_pause_s: float = MAX_PAUSE_S) -> None:
        self._max_pause_s = max_pause_s
        self._lock = threading.Lock()
        self._holders = 0
        self._open = threading.Event()
        self._open.set()

    @property
    def held(self) -> bool:
        return not self._open.is_set()

    @contextlib.contextmanager
    def priority(self) -> Iterator[None]:
        """Background work pauses at its next pause point until this (and every other holder) is done."""
        with self._lock:
            self._holders += 1
            self._open.clear()
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if not self._holders:
                    self._open.set()

    def pause_point(self, timeout_s: float | None = None) -> bool:
        """Blocking: wait while the gate is held (``timeout_s``, at most ``max_pause_s``); whether it was open by
        then."""
        wait = self._max_pause_s if timeout_s is None else min(timeout_s, self._max_pause_s)
        return self._open.wait(wait)
