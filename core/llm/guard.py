"""ReplyGuard: keeps a small model's streamed reply from looping or echoing the question.

A reply is cut into segments: lines and sentences. While the segment being written still reads like the start of
the question or of an earlier segment, it is held back; once complete, a copy of the question is dropped (the reply
goes on), and a copy of an earlier segment is dropped and ends the reply. A segment that goes its own way is sent at
once, so an ordinary reply streams with no delay. A phrase said three times in a row inside one segment ("and the
sea and the sea and the sea") ends the reply too. Stop sequences (a made-up next turn, blank lines) and the token
limit, which keep a reply from running on, are the engine's.
"""

from __future__ import annotations

import re
from typing import Protocol, TypeVar

# Shorter segments ("Yes.", "1.") may legitimately repeat.
MIN_SEGMENT = 12
# A phrase of this many characters, said three times in a row, is a loop.
MIN_PERIOD, MAX_PERIOD = 4, 80
_SEGMENT_END = re.compile(r"[.!?…;]+[\"'»)\]]*\s+|\n+")
_NON_WORD = re.compile(r"[\W_]+")


class _Message(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...


T = TypeVar("T", bound=_Message)


def normalized(text: str) -> str:
    """Letters and digits only, case-folded: what two segments must share to count as the same."""
    return _NON_WORD.sub("", text.casefold())


def segments(text: str) -> list[str]:
    """``text`` cut after each sentence end and line break; the pieces keep their punctuation and spaces."""
    parts, start = [], 0
    for match in _SEGMENT_END.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        parts.append(text[start:])
    return parts


def said_back(question: str, reply: str) -> bool:
    """Whether ``reply`` only repeats ``question`` (letters and digits compared, case-folded), and is long enough
    (``MIN_SEGMENT``) not to be a fair answer in its own right ("Thanks!" to "thanks", "Yes." to "yes")."""
    key = normalized(reply)
    return len(key) >= MIN_SEGMENT and key == normalized(question)


def without_echoes(messages: list[T]) -> list[T]:
    """``messages`` (anything with ``role`` and ``content``) without each reply that only said the user's words back.
    A small model that finds its own echo in the history learns to echo: measured with Qwen2.5-Coder-0.5B on
    bench_voice's sentences, one echoed statement made it echo each request that followed ("Set an alarm for 7…" →
    the same words), where each alone was answered (1/37 echoed). The user's words stay: what they said ("My name is
    Anna.", often echoed) is what the next turn may need."""
    kept: list[T] = []
    for message in messages:
        if (
            message.role == "assistant" and kept and kept[-1].role == "user"
            and said_back(kept[-1].content, message.content)
        ):
            continue
        kept.append(message)
    return kept


def repeated_segment(text: str) -> str | None:
    """The first line or sentence of ``text`` that repeats an earlier one, if any."""
    seen: set[str] = set()
    for part in segments(text):
        key = normalized(part)
        if len(key) >= MIN_SEGMENT:
            if key in seen:
                return part.strip()
            seen.add(key)
    return None


def looping_tail(text: str) -> bool:
    """Whether ``text`` ends with one phrase said three times in a row."""
    for period in range(MIN_PERIOD, min(MAX_PERIOD, len(text) // 3) + 1):
        tail = text[-period:]
        if any(c.isalpha() for c in tail) and text[-3 * period : -period] == tail * 2:
            return True
    return False


class ReplyGuard:
    """Feed it the model's fragments in order; it returns what to send now, and ``stopped`` says when to stop."""

    def __init__(self, question: str = "") -> None:
        self.stopped = False
        self.dropped = ""  # what was held back and never sent (for logs and tests)
        self._sent: list[str] = []
        self._open = ""  # the segment being written
        self._open_sent = False  # whether it is streaming (sent as it comes) rather than held back
        self._question = {key for part in segments(question) if len(key := normalized(part)) >= MIN_SEGMENT}
        if len(whole := normalized(question)) >= MIN_SEGMENT:
            self._question.add(whole)
        self._earlier: set[str] = set()
        self._echo = ""  # the question said back, dropped unless it turns out to be the whole reply

    @property
    def sent(self) -> str:
        return "".join(self._sent)

    def feed(self, fragment: str) -> str:
        """What to send now for ``fragment``: maybe nothing, maybe more than it (text held back before)."""
        if self.stopped or not fragment:
            return ""
        out: list[str] = []
        text = self._open + fragment
        already = len(self._open) if self._open_sent else 0
        parts = segments(text)
        self._open, self._open_sent = "", False
        for i, part in enumerate(parts):
            complete = i < len(parts) - 1 or _SEGMENT_END.search(part) is not None
            if complete:
                self._complete(part, already, out)
            else:
                self._partial(part, already, out)
            already = 0
            if self.stopped:
                break
        return "".join(out)

    def finish(self) -> str:
        """What is left to send once the model is done: a held-back segment, unless it was part of a repeat; the
        question said back if that was all the model said (better than no reply at all)."""
        part, self._open = self._open, ""
        if part and not self.stopped and not self._open_sent:
            key = normalized(part)
            if len(key) >= MIN_SEGMENT and key in self._question:
                self._echo += part
            elif not any(e.startswith(key) for e in self._earlier | self._question):
                self._sent.append(part)
                return part
            self.dropped += part
        if not self._sent and self._echo:
            self._sent.append(self._echo)
            return self._echo
        return ""

    def _complete(self, part: str, already: int, out: list[str]) -> None:
        key = normalized(part)
        if not already and len(key) >= MIN_SEGMENT:
            if key in self._earlier:
                self.dropped += part
                self.stopped = True
                return
            if key in self._question:
                self.dropped += part
                self._echo += part
                return
        self._send(part[already:], out)
        if len(key) >= MIN_SEGMENT:
            self._earlier.add(key)

    def _partial(self, part: str, already: int, out: list[str]) -> None:
        key = normalized(part)
        if not key and not already:  # spaces or punctuation before the segment's first word: sent, not counted
            self._send(part, out)
            return
        self._open = part
        if not already and key and any(e.startswith(key) for e in self._earlier | self._question):
            return  # held back: it may turn out to be a repeat
        self._open_sent = True
        self._send(part[already:], out)

    def _send(self, text: str, out: list[str]) -> None:
        if not text:
            return
        out.append(text)
        self._sent.append(text)
        if looping_tail(self.sent[-3 * MAX_PERIOD :]):
            self.stopped = True
