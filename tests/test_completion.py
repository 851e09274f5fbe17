"""``core.openai_api.chat.Completion`` on scripted models: stop sequences and lengths, whatever the fragments."""

from __future__ import annotations

import pytest

from core.models import ChatMessage
from core.openai_api.chat import Completion
from tests.fakes.engines import ScriptedLLM

REPLY = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def complete(chunks: list[str], **options: object) -> tuple[str, list[str], str]:
    completion = Completion(ScriptedLLM(chunks), [ChatMessage("user", "count")], timeout_s=None, **options)  # type: ignore[arg-type]
    sent = [delta async for delta in completion.deltas()]
    return completion.text, sent, completion.finish_reason


@pytest.mark.parametrize("size", [1, 2, 3, 5, 40])
@pytest.mark.parametrize(("stop", "expected"), [
    (["3, 4"], "1, 2, "),  # longer than a fragment: it was sent anyway, and the reply ran on
    ([", 6,"], "1, 2, 3, 4, 5"),
    (["10"], "1, 2, 3, 4, 5, 6, 7, 8, 9, "),
    (["x", "7, 8"], "1, 2, 3, 4, 5, 6, "),  # the earliest of several
    (["nowhere"], REPLY),
])
async def test_a_stop_sequence_ends_the_reply_before_it_however_it_is_split(
    size: int, stop: list[str], expected: str
) -> None:
    text, sent, finish = await complete(pieces(REPLY, size), stop=stop)
    assert text == expected and "".join(sent) == expected and finish == "stop"
    assert all(sent), "no empty deltas"


@pytest.mark.parametrize("size", [1, 4, 40])
async def test_max_tokens_cuts_the_reply_with_length(size: int) -> None:
    # ScriptedLLM has no tokenizer: one token per 4 bytes of UTF-8 (the estimate), so 3 tokens are 12 bytes.
    text, sent, finish = await complete(pieces(REPLY, size), max_tokens=3)
    assert text == REPLY[:12] and "".join(sent) == text and finish == "length"
