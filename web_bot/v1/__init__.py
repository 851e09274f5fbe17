"""The OpenAI-compatible API under ``/v1``: models, chat completions, transcriptions, speech and Realtime."""
