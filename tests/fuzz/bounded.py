"""A worker process that runs fuzz targets under a time bound, so a hang or a crash in native code is a test failure.

``Bounded.call(name, *args)`` runs ``tests.fuzz.targets.<name>(*args)`` in the worker and returns an ``Outcome``:
what it returned, or the exception it raised (class, ``code`` if it has one, traceback text). A call that has not
finished after ``timeout_s`` raises ``Hung`` (the worker is killed and a new one started); a worker that dies
(a segfault in FFmpeg, say) raises ``Died``. Both are AssertionErrors, so hypothesis shrinks the input that caused
them. The bound is seconds, for hangs: on a busy machine a call may be slow, never that slow.
"""

from __future__ import annotations

import multiprocessing
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What one call did: ``value`` if it returned, else the raised exception's class name, code and traceback."""

    value: Any = None
    error: tuple[str, ...] = ()  # the exception's class and its bases, qualified: ("core.errors.AudioError", …)
    code: str | None = None
    text: str = ""  # the traceback

    def raised(self, *allowed: type[BaseException]) -> bool:
        """Whether the call raised one of ``allowed`` (subclasses included)."""
        return any(qualified(cls) in self.error for cls in allowed)

    def check(self, *allowed: type[BaseException]) -> Any:
        """The value returned; fails the test with the worker's traceback if anything but ``allowed`` was raised."""
        assert not self.error or self.raised(*allowed), f"unexpected {self.error[0]}:\n{self.text}"
        return self.value


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Hung(AssertionError):
    """A call outlasted the bound."""


class Died(AssertionError):
    """The worker process died during a call."""


def _serve(conn: Connection) -> None:
    from tests.fuzz import targets

    while True:
        try:
            name, args = conn.recv()
        except EOFError:
            return
        try:
            conn.send(Outcome(value=getattr(targets, name)(*args)))
        except Exception as err:  # everything is reported; the parent decides what was allowed
            classes = tuple(qualified(cls) for cls in type(err).__mro__)
            conn.send(Outcome(error=classes, code=getattr(err, "code", None), text=traceback.format_exc()))


class Bounded:
    """One worker process (spawned, so FFmpeg and threads start clean) and the bound on each call."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child,), daemon=True, name="fuzz-worker")
        process.start()
        child.close()
        self._process, self._conn = process, parent
        return parent

    def call(self, name: str, *args: Any) -> Outcome:
        conn = self._conn or self._start()
        conn.send((name, args))
        if not conn.poll(self.timeout_s):
            self.close()
            raise Hung(f"{name} did not finish within {self.timeout_s:g} s")
        try:
            outcome: Outcome = conn.recv()
        except EOFError:
            if self._process is not None:
                self._process.join(5)
            code = self._process.exitcode if self._process else None
            self.close()
            raise Died(f"the worker died running {name} (exit code {code})") from None
        return outcome

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(10)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
