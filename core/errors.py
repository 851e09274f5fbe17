"""The errors web-bot reports to users, each with a stable kebab-case code.

BotError                      bot-error | internal-error
├── ConfigError               config-invalid
├── ProtocolError             bad-json | bad-message | unknown-type | empty-message | message-too-long
│                             bad-request | bad-client-id | empty-audio
├── CommandError              unknown-command | bad-command
├── LLMError                  llm-timeout | llm-rate-limited | llm-auth | llm-unavailable | llm-failed
├── STTError                  no-speech | stt-unavailable | stt-auth | stt-rate-limited | stt-failed
├── TTSError                  tts-failed | tts-unavailable
├── AudioError                audio-too-large | audio-too-long | unsupported-audio | corrupt-audio | empty-audio
└── HistoryError              history-unavailable | history-failed

Vendor exceptions are caught once, at the engine boundary, and re-raised as one of these with ``from err``.
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error a user can see; ``code`` is stable, ``message`` is for people."""

    default_code = "bot-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ConfigError(BotError):
    """The configuration is invalid; start-up stops with a message naming the key."""

    default_code = "config-invalid"


class ProtocolError(BotError):
    """A client sent a frame the protocol does not allow."""

    default_code = "bad-message"


class CommandError(BotError):
    """A slash command is unknown or was used wrongly."""

    default_code = "unknown-command"


class LLMError(BotError):
    """The language model could not produce a reply."""

    default_code = "llm-failed"


class STTError(BotError):
    """Speech could not be turned into text."""

    default_code = "stt-failed"


class TTSError(BotError):
    """Text could not be turned into speech."""

    default_code = "tts-failed"


class AudioError(BotError):
    """Audio could not be accepted or decoded."""

    default_code = "corrupt-audio"


class HistoryError(BotError):
    """The conversation store failed."""

    default_code = "history-failed"
