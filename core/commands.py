"""Slash commands: a small registry of name → handler, each answering with a CommandResult event."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import CommandError
from core.events import Cleared, CommandResult
from core.i18n import plural, translate
from core.unicode import valid_text

if TYPE_CHECKING:
    from core.services import Bot

logger = logging.getLogger(__name__)

# (bot, client_id, arguments, privileged): privileged callers (admins; the local user in mode none) see everything
Handler = Callable[["Bot", str, str, bool], Awaitable[CommandResult]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str
    handler: Handler


async def _help(bot: Bot, client_id: str, args: str, privileged: bool) -> CommandResult:
    locale = bot.pipeline.locale(client_id)
    commands = bot.commands.described(locale)
    lines = [f"/{c['name']} — {c['summary']}" for c in commands]
    return CommandResult("help", translate(locale, "help.title") + "\n" + "\n".join(lines), {"commands": commands})


async def _status(bot: Bot, client_id: str, args: str, privileged: bool) -> CommandResult:
    status = await bot.status()
    locale = bot.pipeline.locale(client_id)
    if not privileged:  # what /api/status tells anyone: health, version, access mode
        brief = {key: status[key] for key in ("status", "version", "auth")}
        text = translate(locale, "status.brief", status=translate(locale, f"status.{status['status']}"),
                         version=status["version"])
        return CommandResult("status", text, brief)
    text = translate(
        locale,
        "status.text",
        status=translate(locale, f"status.{status['status']}"),
        version=status["version"],
        uptime=f"{status['uptime_s']:.0f}",
        connections=status["active_connections"],
        llm=status["llm"]["engine"],
        llm_state=translate(locale, "status.available" if status["llm_available"] else "status.unavailable"),
        db_state=translate(locale, "status.connected" if status["db_connected"] else "status.unreachable"),
    )
    return CommandResult("status", text, status)


async def _clear(bot: Bot, client_id: str, args: str, privileged: bool) -> CommandResult:
    # In the client's lane, so a reply being written is stored before the history goes.
    deletion = await bot.pipeline.in_lane(client_id, lambda: bot.history.clear(client_id))
    deleted = deletion.messages
    # The recordings go with their messages; one that cannot be deleted now is swept at the next start-up.
    removed = await bot.transcriber.forget(list(deletion.audio_paths))
    logger.info("cleared %d message(s) and %d recording(s) of %s", deleted, removed, client_id)
    await bot.hub.publish(client_id, Cleared(deleted).to_dict())
    text = plural(bot.pipeline.locale(client_id), "clear", deleted)
    return CommandResult("clear", text, {"deleted": deleted})


async def _info(bot: Bot, client_id: str, args: str, privileged: bool) -> CommandResult:
    summary = await bot.history.summary(client_id)
    engines = bot.engines()
    if not privileged:  # which engines and models answer, not where they run
        engines = {stage: {k: v for k, v in info.items() if k in ("engine", "model", "ready")}
                   for stage, info in engines.items()}
    data: dict[str, object] = {
        "client_id": client_id,
        "message_count": summary.message_count,
        "first_activity": summary.first_activity.isoformat() if summary.first_activity else None,
        "last_activity": summary.last_activity.isoformat() if summary.last_activity else None,
        "open_tabs": bot.hub.tabs(client_id),
        "engines": engines,
    }
    text = translate(
        bot.pipeline.locale(client_id),
        "info.text",
        client=client_id,
        count=summary.message_count,
        first=data["first_activity"] or "—",
        last=data["last_activity"] or "—",
        tabs=data["open_tabs"],
        llm=engines["llm"]["engine"],
        model=engines["llm"]["model"],
        stt=engines["stt"]["engine"],
        tts=engines["tts"]["engine"],
    )
    return CommandResult("info", text, data)


async def _voice(bot: Bot, client_id: str, args: str, privileged: bool) -> CommandResult:
    locale = bot.pipeline.locale(client_id)
    choice = args.lower()
    if choice not in ("on", "off", ""):
        raise CommandError(translate(locale, "voice.usage"), code="bad-command")
    if bot.tts is None and choice == "on":
        raise CommandError(translate(locale, "voice.unavailable"), code="bad-command")
    if choice:
        bot.pipeline.set_voice_replies(client_id, choice == "on")
    mode = bot.pipeline.voice_replies(client_id)
    state = "auto" if mode == "auto" else "on" if mode else "off"
    return CommandResult("voice", translate(locale, f"voice.{state}"), bot.client_settings(client_id))


class Commands:
    """The commands a client can type, looked up by name."""

    def __init__(self, bot: Bot) -> None:
        self._bot = bot
        self._commands: dict[str, Command] = {}
        for name, handler in (("help", _help), ("status", _status), ("clear", _clear), ("info", _info)):
            self.register(name, translate("en", f"command.{name}"), handler)
        self.register("voice", translate("en", "command.voice"), _voice)

    def register(self, name: str, summary: str, handler: Handler) -> None:
        self._commands[name] = Command(name, summary, handler)

    def all(self) -> list[Command]:
        return list(self._commands.values())

    def described(self, locale: str | None) -> list[dict[str, str]]:
        """Every command's name and summary, in ``locale`` where the catalogue has it."""
        out = []
        for c in self._commands.values():
            try:
                summary = translate(locale, f"command.{c.name}")
            except KeyError:
                summary = c.summary
            out.append({"name": c.name, "summary": summary})
        return out

    async def run(self, client_id: str, line: str, *, privileged: bool = True) -> CommandResult:
        """Run a line starting with ``/``; raise CommandError for an unknown command. Unprivileged callers (users
        who are not admins) get what ``/api/status`` would show them."""
        name, _, args = line[1:].strip().partition(" ")
        command = self._commands.get(name.lower())
        if command is None:
            known = " ".join(f"/{c}" for c in self._commands)
            locale = self._bot.pipeline.locale(client_id)
            raise CommandError(translate(locale, "command.unknown", name=name, known=known), code="unknown-command")
        logger.info("command /%s from %s", command.name, client_id)
        result = await command.handler(self._bot, client_id, args.strip(), privileged)
        # A command's words can quote stored text and engine names: as untrusted as any engine's output.
        return dataclasses.replace(result, text=valid_text(result.text))
