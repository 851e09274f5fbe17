"""Slash commands: a small registry of name → handler, each answering with a CommandResult event."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import CommandError
from core.events import Cleared, CommandResult
from core.unicode import valid_text

if TYPE_CHECKING:
    from core.services import Bot

logger = logging.getLogger(__name__)

Handler = Callable[["Bot", str, str], Awaitable[CommandResult]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str
    handler: Handler


async def _help(bot: Bot, client_id: str, args: str) -> CommandResult:
    lines = [f"/{c.name} — {c.summary}" for c in bot.commands.all()]
    data = {"commands": [{"name": c.name, "summary": c.summary} for c in bot.commands.all()]}
    return CommandResult("help", "Commands:\n" + "\n".join(lines), data)


async def _status(bot: Bot, client_id: str, args: str) -> CommandResult:
    status = await bot.status()
    text = (
        f"Status: {status['status']} · version {status['version']} · up {status['uptime_s']:.0f} s · "
        f"{status['active_connections']} connection(s) · LLM {status['llm']['engine']} "
        f"({'available' if status['llm_available'] else 'unavailable'}) · "
        f"database {'connected' if status['db_connected'] else 'unreachable'}"
    )
    return CommandResult("status", text, status)


async def _clear(bot: Bot, client_id: str, args: str) -> CommandResult:
    # In the client's lane, so a reply being written is stored before the history goes.
    deletion = await bot.pipeline.in_lane(client_id, lambda: bot.history.clear(client_id))
    deleted = deletion.messages
    # The recordings go with their messages; one that cannot be deleted now is swept at the next start-up.
    removed = await bot.transcriber.forget(list(deletion.audio_paths))
    logger.info("cleared %d message(s) and %d recording(s) of %s", deleted, removed, client_id)
    await bot.hub.publish(client_id, Cleared(deleted).to_dict())
    noun = "message" if deleted == 1 else "messages"
    return CommandResult("clear", f"Cleared {deleted} {noun}. The conversation starts afresh.", {"deleted": deleted})


async def _info(bot: Bot, client_id: str, args: str) -> CommandResult:
    summary = await bot.history.summary(client_id)
    engines = bot.engines()
    data: dict[str, object] = {
        "client_id": client_id,
        "message_count": summary.message_count,
        "first_activity": summary.first_activity.isoformat() if summary.first_activity else None,
        "last_activity": summary.last_activity.isoformat() if summary.last_activity else None,
        "open_tabs": bot.hub.tabs(client_id),
        "engines": engines,
    }
    text = (
        f"Client {client_id} · {summary.message_count} message(s) · "
        f"first {data['first_activity'] or '—'} · last {data['last_activity'] or '—'} · "
        f"{data['open_tabs']} open tab(s) · LLM {engines['llm']['engine']} ({engines['llm']['model']}), "
        f"STT {engines['stt']['engine']}, TTS {engines['tts']['engine']}"
    )
    return CommandResult("info", text, data)


async def _voice(bot: Bot, client_id: str, args: str) -> CommandResult:
    choice = args.lower()
    if choice not in ("on", "off", ""):
        raise CommandError("use /voice on or /voice off", code="bad-command")
    if bot.tts is None and choice == "on":
        raise CommandError("spoken replies are not available: tts.engine is none", code="bad-command")
    if choice:
        bot.pipeline.set_voice_replies(client_id, choice == "on")
    mode = bot.pipeline.voice_replies(client_id)
    state = "on for speech, off for typing" if mode == "auto" else "on" if mode else "off"
    return CommandResult("voice", f"Spoken replies are {state}.", bot.client_settings(client_id))


class Commands:
    """The commands a client can type, looked up by name."""

    def __init__(self, bot: Bot) -> None:
        self._bot = bot
        self._commands: dict[str, Command] = {}
        self.register("help", "list the commands", _help)
        self.register("status", "server health, engines and connections", _status)
        self.register("clear", "delete this conversation's stored history", _clear)
        self.register("info", "this conversation: messages, activity, tabs, engines", _info)
        self.register("voice", "turn spoken replies on or off (/voice on, /voice off)", _voice)

    def register(self, name: str, summary: str, handler: Handler) -> None:
        self._commands[name] = Command(name, summary, handler)

    def all(self) -> list[Command]:
        return list(self._commands.values())

    async def run(self, client_id: str, line: str) -> CommandResult:
        """Run a line starting with ``/``; raise CommandError for an unknown command."""
        name, _, args = line[1:].strip().partition(" ")
        command = self._commands.get(name.lower())
        if command is None:
            known = " ".join(f"/{c}" for c in self._commands)
            raise CommandError(f"unknown command /{name}; try /help (commands: {known})", code="unknown-command")
        logger.info("command /%s from %s", command.name, client_id)
        result = await command.handler(self._bot, client_id, args.strip())
        # A command's words can quote stored text and engine names: as untrusted as any engine's output.
        return dataclasses.replace(result, text=valid_text(result.text))
