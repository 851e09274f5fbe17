"""Errors as OpenAI's API writes them: ``{"error": {"message", "type", "param", "code"}}``.

``code`` is ours (a ``core.errors.ErrorCode``, stable and documented); ``type`` is OpenAI's for the status, which
is what OpenAI's SDKs and clients act on.
"""

from __future__ import annotations

from core.errors import BotError, ProtocolError

# Statuses for codes the rest of the server never answers over HTTP (app.py's table has the others).
STATUS_FOR_CODE = {"tts-unavailable": 503, "tts-no-voice": 400, "tts-failed": 502}
# The parameter at fault for errors the engines raise, which know nothing of the request's parameters.
PARAM_FOR_CODE = {
    "context-too-long": "messages",
    **dict.fromkeys(("empty-audio", "corrupt-audio", "unsupported-audio", "audio-too-large", "audio-too-long"), "file"),
}


class InvalidRequest(ProtocolError):
    """A request the API refuses; ``param`` names the parameter at fault, as OpenAI's ``param`` does."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code or "bad-request")
        self.param = param


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(code: str, message: str, status: int, param: str | None = None) -> dict[str, object]:
    """The body OpenAI's clients read an error from."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def bot_error_body(err: BotError, status: int) -> dict[str, object]:
    return error_body(err.code, err.message, status, getattr(err, "param", None) or PARAM_FOR_CODE.get(err.code))
