"""The errors web-bot reports to users, each with a stable kebab-case code.

BotError                      bot-error | internal-error
├── ConfigError               config-invalid
├── ProtocolError             bad-json | bad-message | unknown-type | empty-message | message-too-long
│                             bad-request | bad-client-id | empty-audio
├── CommandError              unknown-command | bad-command
├── LLMError                  llm-timeout | llm-rate-limited | llm-auth | llm-unavailable | llm-failed
│                             context-too-long
├── STTError                  no-speech | stt-unavailable | stt-auth | stt-rate-limited | stt-failed
├── TTSError                  tts-failed | tts-unavailable | tts-no-voice
├── AudioError                audio-too-large | audio-too-long | unsupported-audio | corrupt-audio | empty-audio
├── HistoryError              history-unavailable | history-failed
├── AuthError                 auth-required | bad-credentials | account-disabled | not-allowed | bad-origin
│                             not-found | username-taken | weak-password | bad-username | setup-closed | last-admin
└── RateLimited               rate-limited

Vendor exceptions are caught once, at the engine boundary, and re-raised as one of these with ``from err``.
``ErrorCode`` lists every code above; raise sites still pass plain strings, and tests/test_error_codes.py checks
them, the page's table (web_bot/static/errors.js) and the README's against it.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Every code the server sends, in an ``error`` event or an HTTP ``{code, detail}`` body."""

    # BotError
    BOT_ERROR = "bot-error"  # a BotError raised without a code: a fallback nothing raises today
    INTERNAL_ERROR = "internal-error"  # an unexpected exception during a turn; the log has its traceback
    # ConfigError
    CONFIG_INVALID = "config-invalid"  # the configuration is invalid: start-up stops, so no client sees it
    # ProtocolError
    BAD_JSON = "bad-json"  # a text frame starting with "{" is not valid JSON
    BAD_MESSAGE = "bad-message"  # a JSON frame that is no object or fails validation; audio_stop with no stream
    UNKNOWN_TYPE = "unknown-type"  # a JSON frame whose type the server does not know
    EMPTY_MESSAGE = "empty-message"  # a chat message that is empty once trimmed
    MESSAGE_TOO_LONG = "message-too-long"  # a chat message longer than server.max_message_chars
    BAD_REQUEST = "bad-request"  # an HTTP request of the wrong shape (no multipart `file`, bad query parameters)
    BAD_CLIENT_ID = "bad-client-id"  # an HTTP client_id that is not 1-64 of A-Z a-z 0-9 _ -
    # CommandError
    UNKNOWN_COMMAND = "unknown-command"  # a slash command the server does not know
    BAD_COMMAND = "bad-command"  # a known command used wrongly (/voice maybe; /voice on without TTS)
    # LLMError
    LLM_TIMEOUT = "llm-timeout"  # the model's service did not answer in time
    LLM_RATE_LIMITED = "llm-rate-limited"  # the model's service is rate-limiting us
    LLM_AUTH = "llm-auth"  # the model's service refused our credentials
    LLM_UNAVAILABLE = "llm-unavailable"  # the service cannot be reached or failed (5xx); a local model not loaded
    LLM_FAILED = "llm-failed"  # the model failed to answer for any other reason
    CONTEXT_TOO_LONG = "context-too-long"  # the conversation is longer than the model's context window (HTTP 400)
    # STTError
    NO_SPEECH = "no-speech"  # the audio holds no speech the recogniser could hear
    STT_UNAVAILABLE = "stt-unavailable"  # speech-to-text is off, not loaded, or its service cannot be reached
    STT_AUTH = "stt-auth"  # the speech-to-text service refused our credentials
    STT_RATE_LIMITED = "stt-rate-limited"  # the speech-to-text service is rate-limiting us
    STT_FAILED = "stt-failed"  # speech-to-text failed for any other reason
    # TTSError (the text reply still arrives)
    TTS_UNAVAILABLE = "tts-unavailable"  # the voice is not installed or loaded, or the speech service is unreachable
    TTS_FAILED = "tts-failed"  # synthesis failed for any other reason
    TTS_NO_VOICE = "tts-no-voice"  # the reply's language has no voice (none configured, or it failed to start)
    # AudioError (empty-audio is also a ProtocolError, for an empty binary frame)
    AUDIO_TOO_LARGE = "audio-too-large"  # an upload or binary frame larger than audio.max_upload_mb
    AUDIO_TOO_LONG = "audio-too-long"  # audio longer than audio.max_duration_s
    UNSUPPORTED_AUDIO = "unsupported-audio"  # not a format we accept, no audio track, an unknown codec or rate
    CORRUPT_AUDIO = "corrupt-audio"  # truncated or damaged audio; PCM16 with an odd number of bytes
    EMPTY_AUDIO = "empty-audio"  # an empty upload or binary frame
    # HistoryError
    HISTORY_UNAVAILABLE = "history-unavailable"  # the history database cannot be opened or read
    HISTORY_FAILED = "history-failed"  # a message could not be stored
    # AuthError
    AUTH_REQUIRED = "auth-required"  # no signed-in user, API token or proxy user where one is needed (HTTP 401)
    BAD_CREDENTIALS = "bad-credentials"  # a wrong username or password, or an API token not valid (HTTP 401)
    ACCOUNT_DISABLED = "account-disabled"  # the right password for a disabled account (HTTP 403)
    NOT_ALLOWED = "not-allowed"  # an admin's route asked by a user who is not one (HTTP 403)
    BAD_ORIGIN = "bad-origin"  # a cookie-authenticated request from another site's page (HTTP 403)
    NOT_FOUND = "not-found"  # no such conversation, token or user, or not yours: which is not said (HTTP 404)
    USERNAME_TAKEN = "username-taken"  # an account of that name exists (HTTP 409)
    WEAK_PASSWORD = "weak-password"  # a password shorter than auth.min_password_chars (HTTP 422)
    BAD_USERNAME = "bad-username"  # a username that is not 1-64 of letters, digits and _ . - @ (HTTP 422)
    SETUP_CLOSED = "setup-closed"  # the first-admin form after an account exists, or not from loopback (HTTP 403)
    LAST_ADMIN = "last-admin"  # disabling or demoting the only admin left (HTTP 409)
    # RateLimited
    RATE_LIMITED = "rate-limited"  # too many sign-ins, messages, audio seconds or sockets; retry_after_ms says when


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


class AuthError(BotError):
    """Who is asking could not be established, or may not do what they asked."""

    default_code = "auth-required"


class RateLimited(BotError):
    """A limit of ``core.auth.limits`` is reached; ``retry_after_s`` is when the next attempt can succeed."""

    default_code = "rate-limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, code="rate-limited")
        self.retry_after_s = max(retry_after_s, 0.0)

    @property
    def retry_after_ms(self) -> int:
        return max(1, round(self.retry_after_s * 1000))
