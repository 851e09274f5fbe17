"""web-bot's framework-free pipeline: configuration, engines, history, commands and events."""

__version__ = "0.1.0"
