"""The prompt for a base model (one with no chat template): the conversation as a transcript after worked examples.

```
<system prompt>

User: What is the capital of Italy?
Assistant: The capital of Italy is Rome.
…
User: <the new message>
Assistant:
```

The examples are in the language of the new message (Cyrillic letters: Russian, otherwise English), since a small
base model answers in the language its examples use more readily than in the one an instruction names. A blank line
ends each turn, so the engine stops generating at one (``FEW_SHOT_STOP``); blank lines inside earlier messages are
closed up to keep the transcript's shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

USER, ASSISTANT = "User", "Assistant"

EXAMPLES = {
    "en": (
        ("What is the capital of Italy?", "The capital of Italy is Rome."),
        ("What is 6 times 7?", "6 times 7 is 42."),
        ("Why do leaves fall in autumn?", "Trees drop their leaves to save water and energy through the winter."),
    ),
    "ru": (
        ("Какая столица Италии?", "Столица Италии — Рим."),
        ("Сколько будет 6 умножить на 7?", "6 умножить на 7 будет 42."),
        ("Почему осенью опадают листья?", "Деревья сбрасывают листья, чтобы сберечь воду и силы на зиму."),
    ),
}
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n\s*\n+")


def language_of(text: str) -> str:
    """``ru`` when ``text`` has Cyrillic letters, else ``en``: which examples to show."""
    return "ru" if _CYRILLIC.search(text) else "en"


def _line(text: str) -> str:
    return _BLANK_LINES.sub("\n", text.strip())


def render(messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt text for ``messages`` (a system message first, if any), ending where the reply begins."""
    system = [m["content"].strip() for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    last_user = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
    blocks = ["\n".join(system)] if system and any(system) else []
    for question, answer in EXAMPLES[language_of(last_user)]:
        blocks.append(f"{USER}: {question}\n{ASSISTANT}: {answer}")
    lines: list[str] = []
    for message in turns:
        speaker = USER if message["role"] == "user" else ASSISTANT
        lines.append(f"{speaker}: {_line(message['content'])}")
        if message["role"] == "assistant":
            blocks.append("\n".join(lines))
            lines = []
    lines.append(f"{ASSISTANT}:")
    blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
