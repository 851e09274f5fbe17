"""Hypothesis strategies for the fuzz targets: JSON, protocol frames, markdown-ish replies, configurations,
Realtime sessions and mutations of audio files.

Each mixes well-formed pieces (real keys, real message types, real markdown) with noise, so the inputs reach past
the first check of each parser instead of all failing at its door.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from core.config import Settings

# --- JSON and frames -----------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=max_leaves,
    )


def deep(depth: int, opener: str = "[") -> str:
    """JSON nested ``depth`` deep (``[[[1]]]`` or ``{"a":{"a":1}}``): Python's parser overflows past about a
    thousand levels."""
    if opener == "[":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


MESSAGE_TYPES = ["text", "ping", "config", "audio_start", "audio_stop", "audio_cancel"]
FIELDS = ["type", "text", "client_msg_id", "voice_replies", "language", "locale", "format", "sample_rate", "mode"]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object shaped like a client message: a real type (mostly), real field names with any values."""
    message: dict[str, Any] = {"type": draw(st.sampled_from(MESSAGE_TYPES) | json_values(3))}
    for key in draw(st.lists(st.sampled_from(FIELDS) | st.text(max_size=8), max_size=5)):
        message[key] = draw(json_values(4) | st.sampled_from(["en", "", "pcm16", "hands_free", 16000, True]))
    return message


@st.composite
def mangled(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few characters deleted, inserted or replaced."""
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=3)) + text[at + draw(st.integers(0, 2)) :]
    return text


def frames() -> st.SearchStrategy[str]:
    """Text frames: plain text, client messages as JSON (sometimes mangled), any JSON, and JSON nested deep."""
    as_json = messages().map(lambda m: json.dumps(m, ensure_ascii=False))
    return st.one_of(
        st.text(),
        as_json,
        as_json.flatmap(mangled),
        json_values().map(json.dumps),
        st.integers(1, 5000).map(lambda d: " " * (d % 3) + deep(d, "{")),
        st.integers(1, 5000).map(lambda d: '{"type":"text","text":' + deep(d)),
    )


# --- text for the voice --------------------------------------------------------------------------------------

MARKDOWN = [
    "**", "__", "*", "_", "~~", "`", "```", "~~~", "```python\n", "# ", "### ", "> ", "- ", "* ", "+ ", "1. ", "a) ",
    "- [ ] ", "[", "]", "(", ")", "](", "![", "[^1]", "[ref]: ", "<b>", "</b>", "<br>", "<!--", "-->", "&amp;",
    "&#96;", "&#42;", "&lt;", "|", "---", "|---|", "\\*", "http://", "https://www.", "www.", "example.com",
    "/path?q=1", ".", "!", "?", "...", "…", ",", ";", ":", " - ", " — ", "\n", "\n\n", " ", "\t", "\r\n",
    "Dr.", "e.g.", "No. 5", "U.S.", "3.14", "J. R.", "。", "！", "“", "”", '"', "'", "🎉", "👨‍👩‍👧", "1️⃣", "🇫🇷", "→",
    "2 * 3", "Hello", "world", "the", "Sure", "I", "Привет", "мир", "a", "b",
]


def markdown() -> st.SearchStrategy[str]:
    """Replies as a model might write them: markdown, URLs, abbreviations, emoji, CJK stops; or any text."""
    return st.lists(st.sampled_from(MARKDOWN) | st.text(max_size=4), max_size=60).map("".join) | st.text()


# No single letters or numbers under 1000 before ". ": cut from the middle of a line, "a. " or "5. " at a piece's
# start reads as a list marker and is dropped (a known limitation; see test_fuzz.py). Every mark has a space, so a
# long piece is cut between words, not inside one.
WORDS = ["Hello", "world", "it", "is", "Dr. Smith", "e.g", "No", "2024", "3.14", "I", "Yes", "ok", "Paris", "U.S."]
PROSE_MARKS = [" ", " ", " ", "\n", ". ", "! ", "? ", "... ", ", ", "; ", ": ", " - ", " — ", "' ", '" ', "… "]


def prose() -> st.SearchStrategy[str]:
    """Plain text without markdown, list markers or code: every word of it must be spoken, in order."""
    return st.lists(st.sampled_from(WORDS) | st.sampled_from(PROSE_MARKS), max_size=80).map("".join)


def splitter_options(min_chars: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "max_chars": st.integers(min_chars, 200),
            "first_min_chars": st.none() | st.integers(0, 60),
            "first_max_chars": st.none() | st.integers(0, 120),
        }
    )


chunk_sizes = st.lists(st.integers(1, 25), min_size=1, max_size=8)
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# Text with lone and paired surrogate halves and NULs, as a UTF-16-slicing proxy might send.
broken_text = st.lists(st.text(max_size=3) | surrogates | st.just("\x00") | st.just("\ud83d\ude00"), max_size=30).map(
    "".join
)

# --- configuration -------------------------------------------------------------------------------------------

SECTIONS = {name: list(field.annotation.model_fields) for name, field in Settings.model_fields.items()}  # type: ignore[union-attr]
CONFIG_VALUES = st.one_of(
    json_values(4),
    st.sampled_from(["", "~", "~nobody-here/x", "/tmp", "a\x00b", "1/minute", "5/fortnight", "en=piper", "{", "[]",
                     "auto", "none", "true", "0", "-1", "1e309", "nan", "inf", "ru=festival:x", "en=:"]),
)


@st.composite
def config_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A configuration object: real sections and keys (mostly) with any values."""
    document: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)) | st.text(max_size=6), max_size=4)):
        keys = SECTIONS.get(section, ["x"])
        document[section] = draw(
            st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), CONFIG_VALUES, max_size=4)
            | json_values(3)
        )
    return document


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    """Environment overrides: WEB_BOT_<SECTION>__<KEY> for real keys (mostly), malformed names, OPENAI_*."""
    names = st.one_of(
        st.sampled_from(sorted(SECTIONS)).flatmap(
            lambda s: st.sampled_from(SECTIONS[s]).map(lambda k: f"WEB_BOT_{s.upper()}__{k.upper()}")
        ),
        st.text(max_size=10).map(lambda t: f"WEB_BOT_{t}"),
        st.sampled_from(["OPENAI_API_KEY", "OPENAI_BASE_URL", "WEB_BOT_CONFIG", "WEB_BOT_X", "WEB_BOT___"]),
    )
    values = st.text(max_size=20) | CONFIG_VALUES.filter(lambda v: isinstance(v, str)) | st.just(deep(3000))
    return draw(st.dictionaries(names, values, max_size=5))


def config_files() -> st.SearchStrategy[bytes]:
    """A configuration file's bytes: JSON of a configuration object (sometimes mangled), any JSON, any bytes."""
    as_json = config_documents().map(lambda d: json.dumps(d, ensure_ascii=False))
    return st.one_of(
        as_json.map(str.encode),
        as_json.flatmap(mangled).map(lambda t: t.encode("utf-8", "surrogatepass")),
        json_values().map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
        st.integers(1, 5000).map(lambda d: deep(d, "{").encode()),
    )


# --- Realtime sessions ---------------------------------------------------------------------------------------

REALTIME_KEYS = [
    "instructions", "voice", "modalities", "output_modalities", "input_audio_format", "output_audio_format",
    "turn_detection", "input_audio_transcription", "speed", "temperature", "tools", "audio", "type", "model",
]
REALTIME_VALUES = st.one_of(
    json_values(6),
    st.sampled_from([["text"], ["audio"], ["text", "audio"], "pcm16", {"type": "audio/pcm", "rate": 24000},
                     {"type": "server_vad"}, {"type": "semantic_vad", "eagerness": "high"}, 1e308, -0.0, 2**64]),
)
# Not objects, yet answering ``"format" in …``: a list or a string holding a key's name.
AUDIO_KEYS = st.sampled_from(["format", ["format"], "voice", ["voice", "speed"], "turn_detection"])
AUDIO_PARTS = st.dictionaries(
    st.sampled_from(["format", "transcription", "turn_detection", "voice", "speed", "noise_reduction"]),
    REALTIME_VALUES,
    max_size=3,
)


def realtime_sessions() -> st.SearchStrategy[Any]:
    """A ``session.update``'s session: real keys with any values, GA's nested audio object, or any JSON."""
    audio = st.one_of(
        st.fixed_dictionaries({}, optional={"input": AUDIO_PARTS | json_values(3) | AUDIO_KEYS,
                                            "output": AUDIO_PARTS | json_values(3) | AUDIO_KEYS}),
        json_values(3),
    )
    session = st.dictionaries(st.sampled_from(REALTIME_KEYS) | st.text(max_size=6), REALTIME_VALUES, max_size=5)
    return st.one_of(
        st.tuples(session, audio).map(lambda pair: {**pair[0], "audio": pair[1]}),
        session,
        json_values(),
    )


# --- audio ---------------------------------------------------------------------------------------------------

SPECIAL_SIZES = [0, 1, 2, 7, 8, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFF000, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with up to four mutations, mostly in its first 256 bytes (the headers): a byte changed, a 16- or
    32-bit field set to a size a header might hold, bytes inserted, deleted or duplicated, the file cut."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        near_head = draw(st.booleans())
        at = draw(st.integers(0, min(len(out), 256) - 1 if near_head else len(out) - 1))
        kind = draw(st.sampled_from(["byte", "field", "insert", "delete", "repeat", "cut"]))
        if kind == "byte":
            out[at] = draw(st.integers(0, 255))
        elif kind == "field":
            size = draw(st.sampled_from([2, 4]))
            value = draw(st.sampled_from(SPECIAL_SIZES) | st.integers(0, 2**32 - 1)) % (1 << (8 * size))
            out[at : at + size] = value.to_bytes(size, draw(st.sampled_from(["big", "little"])))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        elif kind == "repeat":
            out[at:at] = out[at : at + draw(st.integers(1, 64))]
        else:
            del out[at:]
    return bytes(out)
