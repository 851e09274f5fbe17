"""The bodies ``/v1`` takes, as OpenAI documents them. Options OpenAI has and this server does not act on (sampling,
``user``, ``seed``, ``instructions``…) are accepted and ignored; what it cannot do (tools, several choices, images,
structured output) is refused with a 400 naming the parameter, rather than answered as if it had been done."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.language import LANGUAGE_TAG
from core.models import ChatMessage, Role
from core.openai_api.errors import InvalidRequest
from core.openai_api.speech import MAX_INPUT_CHARS
from core.openai_api.transcripts import ResponseFormat
from core.tts.stream import MAX_SPEED, MIN_SPEED
from core.unicode import valid_text

ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
NO_TOOLS = "this server's models do not call tools or functions"
# Text a chat request may hold in all: past any model's context (about 250 000 tokens), so nothing a model could read
# is refused, while a 30 MB message no longer holds the model for minutes tokenizing what it could never take.
MAX_CHAT_CHARS = 1_000_000


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class InMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatBody(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[InMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None

    @property
    def max_reply_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def refuse_unsupported(self) -> None:
        """A 400 for what the request asks that this server cannot do."""
        if self.tools or self.functions:
            raise InvalidRequest(NO_TOOLS, param="tools" if self.tools else "functions")
        for name in ("tool_choice", "function_call"):
            if getattr(self, name) not in (None, "none", "auto"):
                raise InvalidRequest(NO_TOOLS, param=name)
        if self.n is not None and self.n > 1:
            raise InvalidRequest("only one choice is written per request (n = 1)", param="n")
        if self.response_format is not None and self.response_format.get("type", "text") != "text":
            raise InvalidRequest("only text replies are written (response_format type text)", param="response_format")
        if self.audio is not None or "audio" in (self.modalities or []):
            raise InvalidRequest("chat replies are text; use /v1/audio/speech for speech", param="modalities")

    def chat_messages(self) -> list[ChatMessage]:
        """The messages as the model reads them: text only, ``developer`` as ``system``."""
        if not self.messages:
            raise InvalidRequest("messages must hold at least one message", param="messages")
        messages = [_message(n, message) for n, message in enumerate(self.messages)]
        if sum(len(m.content) for m in messages) > MAX_CHAT_CHARS:
            raise InvalidRequest(
                f"the messages hold more than {MAX_CHAT_CHARS} characters", param="messages", code="message-too-long"
            )
        return messages


def _message(n: int, message: InMessage) -> ChatMessage:
    where = f"messages[{n}]"
    role = ROLES.get(message.role)
    if message.role in ("tool", "function"):
        raise InvalidRequest(f"{where}: {message.role} messages are not supported: {NO_TOOLS}", param=f"{where}.role")
    if role is None:
        raise InvalidRequest(
            f"{where}: unknown role {message.role!r}; use system, developer, user or assistant", param=f"{where}.role"
        )
    if message.tool_calls or message.function_call:
        raise InvalidRequest(f"{where}: {NO_TOOLS}", param=f"{where}.tool_calls")
    content = message.content
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            if part.type != "text" or part.text is None:
                raise InvalidRequest(
                    f"{where}: only text content parts are read, not {part.type!r}", param=f"{where}.content[{k}]"
                )
            texts.append(part.text)
        content = "\n".join(texts)
    return ChatMessage(role, valid_text(content or ""))


class SpeechBody(BaseModel):
    """``POST /v1/audio/speech``."""

    model_config = ConfigDict(extra="allow")

    model: str
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    voice: str = "alloy"
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: Literal["audio", "sse"] = "audio"

    def text(self) -> str:
        text = valid_text(self.input)
        if not text.strip():
            raise InvalidRequest("input holds nothing to say", param="input")
        if self.stream_format == "sse":
            raise InvalidRequest("speech is streamed as audio only (stream_format audio)", param="stream_format")
        return text


class TranscriptionForm(BaseModel):
    """The fields of ``POST /v1/audio/transcriptions`` beside the file."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str
    language: str | None = Field(None, pattern=rf"^{LANGUAGE_TAG}$")
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float | None = Field(None, ge=0, le=1)
    timestamp_granularities: list[Literal["segment", "word"]] = Field([], alias="timestamp_granularities[]")
    stream: bool = False

    @field_validator("language", "prompt", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """Clients send empty form fields for what they leave unset (``language=``): that is no language."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def timestamps(self) -> Literal["segment", "word"] | None:
        """What the response needs: words (verbose_json that asks for them), segments (subtitles, verbose_json)."""
        if self.response_format == "verbose_json" and "word" in self.timestamp_granularities:
            return "word"
        return "segment" if self.response_format in ("verbose_json", "srt", "vtt") else None

    @property
    def segments_wanted(self) -> bool:
        return not self.timestamp_granularities or "segment" in self.timestamp_granularities
