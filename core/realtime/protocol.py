"""The Realtime API's wire: its session object, its errors, and the two dialects its clients speak.

OpenAI's Realtime API exists in two versions with the same flow and different names. The beta (clients send the
header ``OpenAI-Beta: realtime=v1``; the openai SDK's ``client.beta.realtime``) names output events
``response.audio.delta``, ``response.audio_transcript.delta``, ``response.text.delta`` and announces items with
``conversation.item.created``; its session is flat (``modalities``, ``input_audio_format``, ``turn_detection``). The
generally available version (``client.realtime``) names them ``response.output_audio.delta``,
``response.output_audio_transcript.delta``, ``response.output_text.delta`` and ``conversation.item.added``/``done``,
and nests the session's audio settings under ``audio.input`` / ``audio.output``. Events are built here in the beta's
names and renamed on the way out for GA clients. Sources: platform.openai.com/docs/api-reference/realtime (both
versions), and the openai Python SDK's ``types/beta/realtime`` and ``types/realtime`` models.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from core.errors import ProtocolError

Dialect = Literal["beta", "ga"]

# OpenAI's Realtime API takes and gives 24 kHz mono PCM16 ("pcm16" in the beta, {"type": "audio/pcm", "rate": 24000}
# in GA). G.711 is not accepted: say so rather than mishear it.
PCM_RATE = 24000
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
# Turn detection's defaults, as OpenAI documents them.
SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
    "create_response": True, "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True,
}
# semantic_vad's eagerness → the end-of-turn model's threshold: "high" ends turns sooner (a lower bar), "low" lets
# the user take their time. "auto" and "medium" keep the server's own threshold.
EAGERNESS_THRESHOLD = {"low": 0.8, "high": 0.3}

_GA_NAMES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}
_GA_PARTS = {"audio": "output_audio", "text": "output_text"}


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: ``prefix`` and 20 random characters (``event_…``, ``item_…``, ``resp_…``)."""
    return f"{prefix}_{secrets.token_urlsafe(15)}"


class RealtimeError(ProtocolError):
    """A client event the session cannot take; sent as an ``error`` event, and the socket stays open.

    Its ``code`` is ours (``bad-message``, as for any frame the protocol does not allow); ``wire_code`` is what the
    Realtime client is told, in OpenAI's own words for the case (``invalid_value``, ``input_audio_buffer_commit_empty``,
    ``response_cancel_not_active``…), and ``param`` the field at fault.
    """

    def __init__(self, message: str, *, wire_code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message, code="bad-message")
        self.wire_code = wire_code
        self.param = param


def error_event(code: str, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
                event_id: str | None = None) -> dict[str, Any]:
    """Realtime's ``error`` event; ``event_id`` is the client event it answers, if known."""
    return {
        "type": "error",
        "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id},
    }


@dataclass(slots=True)
class RealtimeConfig:
    """A session's settings as the client set them (``session.update``), in one shape for both dialects.

    ``turn_detection`` is None when the client commits its audio itself; else a dict in OpenAI's shape (type
    ``server_vad`` — a fixed silence ends the turn — or ``semantic_vad`` — the end-of-turn model judges each pause).
    """

    model: str
    instructions: str | None = None
    voice: str = "alloy"
    modalities: tuple[str, ...] = ("text", "audio")
    turn_detection: dict[str, Any] | None = field(default_factory=lambda: dict(SEMANTIC_VAD_DEFAULTS))
    transcription: dict[str, Any] | None = None
    speed: float = 1.0
    temperature: float = 0.8
    session_id: str = field(default_factory=lambda: new_id("sess"))

    @property
    def speaks(self) -> bool:
        return "audio" in self.modalities

    def update(self, session: object, dialect: Dialect) -> RealtimeConfig:
        """This config with ``session`` (a ``session.update``'s object) applied; raises RealtimeError naming the
        field that cannot be taken."""
        if not isinstance(session, dict):
            raise RealtimeError("session must be an object", param="session")
        flat = _flatten_ga(session) if dialect == "ga" else dict(session)
        changes: dict[str, Any] = {}
        if "instructions" in flat:
            changes["instructions"] = _text(flat["instructions"], "session.instructions", 32_768) or None
        if "voice" in flat:
            changes["voice"] = _text(flat["voice"], "session.voice", 64) or "alloy"
        if "modalities" in flat:
            changes["modalities"] = _modalities(flat["modalities"])
        for key in ("input_audio_format", "output_audio_format"):
            if key in flat:
                _check_format(flat[key], f"session.{key}")
        if "turn_detection" in flat:
            changes["turn_detection"] = _turn_detection(flat["turn_detection"])
        if "input_audio_transcription" in flat:
            changes["transcription"] = _transcription(flat["input_audio_transcription"])
        if "speed" in flat:
            changes["speed"] = _number(flat["speed"], "session.speed", 0.25, 1.5)
        if "temperature" in flat:
            changes["temperature"] = _number(flat["temperature"], "session.temperature", 0.0, 2.0)
        if flat.get("tools"):
            raise RealtimeError("tools (function calling) are not supported by this server", param="session.tools",
                                wire_code="unsupported")
        return dataclasses.replace(self, **changes)

    def to_wire(self, dialect: Dialect) -> dict[str, Any]:
        """The session object ``session.created`` and ``session.updated`` carry."""
        if dialect == "beta":
            return {
                "id": self.session_id, "object": "realtime.session", "model": self.model,
                "modalities": list(self.modalities), "instructions": self.instructions or "", "voice": self.voice,
                "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                "input_audio_transcription": self.transcription, "turn_detection": self.turn_detection,
                "tools": [], "tool_choice": "auto", "temperature": self.temperature,
                "max_response_output_tokens": "inf", "speed": self.speed,
            }
        pcm = {"type": "audio/pcm", "rate": PCM_RATE}
        return {
            "type": "realtime", "object": "realtime.session", "id": self.session_id, "model": self.model,
            "output_modalities": ["audio"] if self.speaks else ["text"], "instructions": self.instructions or "",
            "audio": {
                "input": {"format": pcm, "transcription": self.transcription, "noise_reduction": None,
                          "turn_detection": self.turn_detection},
                "output": {"format": pcm, "voice": self.voice, "speed": self.speed},
            },
            "tools": [], "tool_choice": "auto", "max_output_tokens": "inf",
        }


def for_dialect(event: dict[str, Any], dialect: Dialect) -> dict[str, Any]:
    """``event`` (built in the beta's names) as a client of ``dialect`` expects it."""
    if dialect == "beta":
        return event
    renamed = {**event, "type": _GA_NAMES.get(event["type"], event["type"])}
    part = event.get("part")
    if isinstance(part, dict) and part.get("type") in _GA_PARTS:
        renamed["part"] = {**part, "type": _GA_PARTS[part["type"]]}
    item = event.get("item")
    if isinstance(item, dict):
        renamed["item"] = _ga_item(item)
    response = event.get("response")
    if isinstance(response, dict):
        ga = {k: v for k, v in response.items() if k != "modalities"}
        if "modalities" in response:
            ga["output_modalities"] = ["audio"] if "audio" in (response["modalities"] or []) else ["text"]
        ga["output"] = [_ga_item(i) for i in response.get("output") or []]
        renamed["response"] = ga
    return renamed


def _ga_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item with GA's content types (an assistant's ``audio``/``text`` are ``output_audio``/``output_text``)."""
    if item.get("role") != "assistant":
        return item
    content = [{**c, "type": _GA_PARTS.get(c.get("type"), c.get("type"))} for c in item.get("content", [])]
    return {**item, "content": content}


def input_modalities(value: object) -> tuple[str, ...]:
    """A ``response.create``'s ``modalities`` (beta) or ``output_modalities`` (GA)."""
    return _modalities(value)


def _flatten_ga(session: dict[str, Any]) -> dict[str, Any]:
    """A GA session object in the beta's flat field names."""
    flat = {k: v for k, v in session.items() if k not in ("audio", "output_modalities", "type")}
    if "output_modalities" in session:
        modalities = session["output_modalities"]
        # GA's "audio" output carries its transcript as text as well.
        flat["modalities"] = ["text", "audio"] if modalities == ["audio"] else modalities
    audio = session.get("audio") or {}
    if not isinstance(audio, dict):
        raise RealtimeError("session.audio must be an object", param="session.audio")
    given_in, given_out = audio.get("input") or {}, audio.get("output") or {}
    for part, given in (("input", given_in), ("output", given_out)):
        if not isinstance(given, dict):
            raise RealtimeError(f"session.audio.{part} must be an object", param=f"session.audio.{part}")
    if "format" in given_in:
        flat["input_audio_format"] = given_in["format"]
    for key, name in (("transcription", "input_audio_transcription"), ("turn_detection", "turn_detection")):
        if key in given_in:
            flat[name] = given_in[key]
    if "format" in given_out:
        flat["output_audio_format"] = given_out["format"]
    for key in ("voice", "speed"):
        if key in given_out:
            flat[key] = given_out[key]
    return flat


def _check_format(value: object, param: str) -> None:
    if value == "pcm16" or (isinstance(value, dict) and value.get("type") == "audio/pcm"
                            and value.get("rate", PCM_RATE) == PCM_RATE):
        return
    raise RealtimeError(f"{param}: only 24 kHz PCM16 ('pcm16', or audio/pcm at 24000 Hz) is supported",
                        param=param, wire_code="unsupported")


def _modalities(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or any(m not in ("text", "audio") for m in value):
        raise RealtimeError("modalities must be a list of 'text' and 'audio'", param="session.modalities")
    return tuple(dict.fromkeys(["text", *value])) if "audio" in value else ("text",)


def _turn_detection(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RealtimeError("turn_detection must be an object or null", param="session.turn_detection")
    kind = value.get("type", "server_vad")
    if kind == "server_vad":
        merged = {**SERVER_VAD_DEFAULTS, **value}
        _number(merged["threshold"], "turn_detection.threshold", 0.0, 1.0)
        _number(merged["prefix_padding_ms"], "turn_detection.prefix_padding_ms", 0, 5000)
        _number(merged["silence_duration_ms"], "turn_detection.silence_duration_ms", 100, 10_000)
    elif kind == "semantic_vad":
        merged = {**SEMANTIC_VAD_DEFAULTS, **value}
        if merged["eagerness"] not in ("low", "medium", "high", "auto"):
            raise RealtimeError("turn_detection.eagerness must be low, medium, high or auto",
                                param="session.turn_detection.eagerness")
    else:
        raise RealtimeError("turn_detection.type must be server_vad or semantic_vad",
                            param="session.turn_detection.type")
    if merged.get("create_response") is False:
        # The pipeline answers each turn it hears; holding a heard turn for a later response.create is not built.
        raise RealtimeError("create_response false is not supported: set turn_detection to null and commit instead",
                            param="session.turn_detection.create_response", wire_code="unsupported")
    known = {*SERVER_VAD_DEFAULTS, *SEMANTIC_VAD_DEFAULTS, "idle_timeout_ms"}
    return {k: v for k, v in merged.items() if k in known}


def _transcription(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RealtimeError("input_audio_transcription must be an object or null",
                            param="session.input_audio_transcription")
    kept = {"model": value.get("model") or "whisper-1"}
    for key in ("language", "prompt"):
        if value.get(key) is not None:
            kept[key] = _text(value[key], f"input_audio_transcription.{key}", 1024)
    return kept


def _text(value: object, param: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise RealtimeError(f"{param} must be a string of at most {limit} characters", param=param)
    return value


def _number(value: object, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RealtimeError(f"{param} must be a number from {low:g} to {high:g}", param=param)
    return float(value)
