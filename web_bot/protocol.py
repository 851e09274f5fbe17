"""The wire protocol's client side: parsing text frames into typed messages."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from core.errors import ProtocolError
from core.language import LANGUAGE_TAG
from core.unicode import valid_text

CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def valid_client_id(client_id: str) -> bool:
    return CLIENT_ID.fullmatch(client_id) is not None


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TextIn(_In):
    type: Literal["text"]
    text: str
    # The page's own id for the message, echoed in its user_message (letters, digits, "-" and "_").
    client_msg_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None


class PingIn(_In):
    type: Literal["ping"]


class ConfigIn(_In):
    type: Literal["config"]
    voice_replies: bool | None = None
    # The language the client speaks (ru, RU, ru-RU: taken as ru); "" goes back to detecting it per utterance. The
    # session refuses one speech-to-text does not know, as /v1's transcriptions do.
    language: Annotated[str, Field(pattern=rf"^(?:{LANGUAGE_TAG})?$")] | None = None
    # The language the page is shown in; commands answer in it.
    locale: Annotated[str, Field(pattern=r"^([a-z]{2,3})?$")] | None = None


class AudioStartIn(_In):
    type: Literal["audio_start"]
    format: Literal["pcm16"] = "pcm16"
    sample_rate: int = Field(16000, ge=8000, le=96000)
    # hands_free: the server ends each turn (the endpointer); push_to_talk: only audio_stop ends it.
    mode: Literal["hands_free", "push_to_talk"] = "hands_free"


class AudioStopIn(_In):
    type: Literal["audio_stop"]


class AudioCancelIn(_In):
    """End the stream and forget the utterance in progress (a push-to-talk press cancelled): no turn."""

    type: Literal["audio_cancel"]


Incoming = TextIn | PingIn | ConfigIn | AudioStartIn | AudioStopIn | AudioCancelIn
ClientMessage = Annotated[Incoming, Field(discriminator="type")]
_adapter: TypeAdapter[Incoming] = TypeAdapter(ClientMessage)
KNOWN_TYPES = ("text", "ping", "config", "audio_start", "audio_stop", "audio_cancel")


def parse_text_frame(frame: str) -> Incoming:
    """A text frame is plain text, or a JSON object with a ``type``."""
    if not frame.lstrip().startswith("{"):
        return TextIn(type="text", text=frame)
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError) as err:  # RecursionError: arrays or objects nested thousands deep
        raise ProtocolError("the frame is not valid JSON (or is nested too deep)", code="bad-json") from err
    if not isinstance(data, dict):
        raise ProtocolError("a JSON frame must be an object", code="bad-message")
    kind = data.get("type")
    if kind not in KNOWN_TYPES:
        raise ProtocolError(
            f"unknown message type {kind!r}; expected one of {', '.join(KNOWN_TYPES)}", code="unknown-type"
        )
    try:
        return _adapter.validate_python(data)
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"][1:]) or "message"
        raise ProtocolError(f"{where}: {problem['msg']}", code="bad-message") from err


def check_chat_text(text: str, max_chars: int) -> str:
    """Make a chat message valid text (``core.unicode``), trim it and enforce the limits."""
    text = valid_text(text).strip()
    if not text:
        raise ProtocolError("the message is empty", code="empty-message")
    if len(text) > max_chars:
        raise ProtocolError(f"the message is longer than {max_chars} characters", code="message-too-long")
    return text


def dumps(event: dict[str, object]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))
