"""Whisper speech-to-text: the engine (``engine``) and the models it can load (``model_files``)."""

from __future__ import annotations

from core.stt.whisper.engine import WhisperSTT
from core.stt.whisper.model_files import BASE, TINY_EN, base_sources, bundled_tiny_en, joined_base, resolve_model

__all__ = ["BASE", "TINY_EN", "WhisperSTT", "base_sources", "bundled_tiny_en", "joined_base", "resolve_model"]
