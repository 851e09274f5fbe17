"""web-bot's web adapter: FastAPI routes that parse, call core, and send events."""
