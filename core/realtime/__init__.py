"""OpenAI's Realtime API (speech to speech over a WebSocket) on web-bot's own turn machinery."""

from core.realtime.protocol import Dialect, RealtimeConfig
from core.realtime.session import RealtimeSession, SessionLimits

__all__ = ["Dialect", "RealtimeConfig", "RealtimeSession", "SessionLimits"]
