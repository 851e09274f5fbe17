"""Valid text from untrusted sources: what any engine or client sends is repaired before it is used.

A proxy or model that slices text by UTF-16 code units can split one emoji into two lone surrogate halves
(``"\\ud83d"``, ``"\\ude00"``), possibly in two stream chunks. Such a string cannot be encoded as UTF-8, so a
socket, a database driver or a TTS engine raises on it. Repair, as WHATWG's "USVString" conversion does:
a high half followed by a low half becomes the character they encode (also across chunk boundaries), any other
half becomes U+FFFD. NUL is dropped: PostgreSQL's ``text`` cannot hold it and no reader wants it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

REPLACEMENT = "\ufffd"
_HIGH = range(0xD800, 0xDC00)


def valid_text(text: str) -> str:
    """``text`` with surrogate pairs joined, lone surrogates → U+FFFD and NUL removed; unchanged if valid."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # UTF-16 round trip: 'surrogatepass' writes each half as its code unit, and decoding pairs them up
            # again; a half without its partner is an invalid code unit, which 'replace' turns into U+FFFD.
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    # NUL goes after pairing, so halves it separates stay apart, as they do when it ends a stream's chunk.
    return text.replace("\x00", "") if "\x00" in text else text


class TextRepair:
    """``valid_text`` for a stream: a high surrogate at the end of one chunk waits for the next chunk's start."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        """The valid text of ``chunk`` (with what was held before it); may be empty while a half is held."""
        if self._held:
            chunk, self._held = self._held + chunk, ""
        if chunk and ord(chunk[-1]) in _HIGH:
            chunk, self._held = chunk[:-1], chunk[-1]
        return valid_text(chunk)

    def flush(self) -> str:
        """What is still held at the end of the stream (a lone half becomes U+FFFD)."""
        held, self._held = self._held, ""
        return valid_text(held)


async def repaired(stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """The stream's chunks made valid, with empty chunks left out; closes ``stream`` when it is closed."""
    repair = TextRepair()
    try:
        async for chunk in stream:
            if text := repair.feed(chunk):
                yield text
        if tail := repair.flush():
            yield tail
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
