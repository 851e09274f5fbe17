"""The one place that builds concrete engines from settings, and the Bot that holds them for the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import __version__
from core.auth import Auth, build_auth
from core.bus import build_bus
from core.commands import Commands
from core.config import Settings, VADSettings
from core.conversations import Conversations
from core.cpu import CpuGate
from core.errors import BotError
from core.fallback import ChainMetrics, chains_of
from core.history import SQLHistoryStore
from core.hub import Hub
from core.interfaces import HistoryStore, LLMEngine, STTEngine, TTSEngine, TurnTextJudge
from core.language import TextLanguage
from core.llm import build_llm, reply_tokens
from core.metrics import Metrics
from core.metrics_history import MetricsHistory, instance_connections
from core.models import EngineInfo
from core.pipeline import ChatPipeline
from core.recordings import Recordings
from core.stt import build_stt
from core.transcription import Transcriber
from core.tts import build_tts
from core.voice.endpointing import Endpointer
from core.voice.vad import SileroModel, VoiceActivityDetector

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
WELCOME_HISTORY = 50  # messages a new socket is sent in its welcome


@dataclass(slots=True)
class Bot:
    """Everything a running server needs: settings, engines, history, the hub of connections, the pipeline."""

    settings: Settings
    history: HistoryStore
    llm: LLMEngine
    stt: STTEngine | None
    tts: TTSEngine | None
    hub: Hub
    pipeline: ChatPipeline
    transcriber: Transcriber
    metrics: Metrics
    vad_model: SileroModel | None = None
    endpointer: Endpointer | None = None
    auth: Auth | None = None
    conversations: Conversations | None = None
    metrics_history: MetricsHistory | None = None  # the admin page's plots
    commands: Commands = field(init=False)
    started_at: float = field(default_factory=time.monotonic)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.commands = Commands(self)

    def client_settings(self, client_id: str) -> dict[str, object]:
        """What a client's tabs need to know about its voice options."""
        return {
            "voice_replies": self.pipeline.voice_replies(client_id),
            "language": self.pipeline.language(client_id),  # fixed by the client; None: detected per utterance
            "voice_available": self.tts is not None,
            "speech_input": self.stt is not None,
            "barge_in": self.pipeline.barge_in_enabled,
            "max_upload_mb": self.settings.audio.max_upload_mb,
            "max_message_chars": self.settings.server.max_message_chars,
            "welcome_history": WELCOME_HISTORY,
            "commands": self.commands.described(self.pipeline.locale(client_id)),
        }

    def new_vad(self, *, push_to_talk: bool = False) -> VoiceActivityDetector:
        """A detector for one live audio stream, sharing the loaded Silero model. Pushing to talk, no silence ends
        the utterance (the release does); hands-free, shorter silences than the endpointer's limit are its to judge."""
        assert self.vad_model is not None and self.endpointer is not None
        vad = self.settings.vad
        silence_ms = int(vad.max_utterance_s * 1000) if push_to_talk else self.endpointer.max_silence_ms
        return VoiceActivityDetector(
            self.vad_model,
            threshold=vad.threshold,
            silence_ms=silence_ms,
            prefix_padding_ms=vad.prefix_padding_ms,
            min_speech_ms=vad.min_speech_ms,
            max_utterance_s=vad.max_utterance_s,
        )

    def engines(self) -> dict[str, dict[str, object]]:
        """What each stage runs, for `/api/status` and `/info`; never a secret."""
        return {
            "llm": self.llm.info().to_dict(),
            "stt": _info(self.stt, self.settings.stt.engine),
            "tts": _info(self.tts, self.settings.tts.engine),
        }

    async def status(self) -> dict[str, Any]:
        """The server's health, as `/api/status` and `/status` report it."""
        db_connected = await self.history.ping()
        engines = self.engines()
        llm_available = bool(engines["llm"]["ready"]) and self.pipeline.llm_healthy
        shared = await self.hub.status()  # connections on every instance, and Redis's health
        redis = shared["redis"]
        redis_ok = not (isinstance(redis, dict) and redis["configured"] and not redis["connected"])
        return {
            "status": "ok" if db_connected and llm_available and redis_ok else "degraded",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "active_connections": shared["active_connections"],
            "active_clients": self.hub.client_count,
            "instance": shared["instance"],
            "instances": shared["instances"],
            "redis": redis,
            "llm_available": llm_available,
            "db_connected": db_connected,
            "config_loaded": self.settings.config_file is not None,
            **engines,
            "turn_detection": self.endpointer.describe() if self.endpointer is not None else None,
            "auth": self.auth.describe() if self.auth is not None else None,
        }

    def start_maintenance(self) -> None:
        """Background upkeep: recordings no message refers to are swept at start-up; recordings past their
        retention are deleted hourly."""
        task = asyncio.create_task(self._upkeep(), name="prune-audio")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sweep_recordings(self) -> int:
        """Delete recordings that no stored message refers to (left by a server that died mid-turn)."""
        recordings = self.transcriber.recordings
        if not recordings.dir.is_dir():
            return 0
        return await asyncio.to_thread(recordings.sweep, await self.history.audio_paths())

    async def _upkeep(self) -> None:
        try:
            await self.sweep_recordings()
        except (OSError, BotError) as err:
            logger.warning("sweeping unreferenced recordings failed: %s", err)
        while True:
            try:
                await asyncio.to_thread(self.transcriber.prune)
            except OSError as err:
                logger.warning("pruning stored audio failed: %s", err)
            if self.conversations is not None:
                try:
                    await self.conversations.prune(self.settings.history.keep_days)
                except BotError as err:
                    logger.warning("pruning old messages failed: %s", err.code)
            await asyncio.sleep(PRUNE_EVERY_S)

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Stop: turns get ``timeout_s`` seconds to finish (None: no limit), then are cut (``ChatPipeline.aclose``)."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pipeline.aclose(timeout_s)
        await self.hub.aclose()
        for engine in (self.tts, self.stt, self.llm):
            if engine is not None:
                await engine.aclose()
        if self.conversations is not None:
            await self.conversations.aclose()
        if self.auth is not None:
            await self.auth.aclose()
        await self.history.aclose()


def _text_language(settings: Settings) -> TextLanguage:
    """Detection among the languages the server works in (``stt.languages``, else those it has voices for),
    warmed so that no user's turn pays for loading its models."""
    languages = list(settings.stt.languages) or [*settings.tts.voices, "en"]
    detector = TextLanguage(languages)
    detector.warm()
    return detector


def _info(engine: STTEngine | TTSEngine | None, name: str) -> dict[str, object]:
    if engine is None:
        return EngineInfo(name, "", False).to_dict()
    return engine.info().to_dict()


async def build_bot(settings: Settings) -> Bot:
    """Build and start every engine the settings name; close what was started if one fails."""
    started: list[Any] = []
    try:
        history = SQLHistoryStore(settings.database_url, batch_max=settings.database.batch_max)
        await history.start()
        started.append(history)
        # A reply's first audio goes before a local model's next tokens, when speech is made on this CPU too.
        cpu = CpuGate() if settings.tts.engine == "piper" else None
        llm = await build_llm(settings.llm, cpu=cpu)
        started.append(llm)
        stt = await build_stt(settings.stt)
        if stt is not None:
            started.append(stt)
        tts = await build_tts(settings.tts, fmt=settings.tts.format)
        if tts is not None:
            started.append(tts)
        vad_model = await asyncio.to_thread(SileroModel) if stt is not None else None
        reads_text = isinstance(llm, TurnTextJudge) and llm.reads_turns  # CheckedLLM asks its engine
        endpointer = await _endpointer(settings.vad, reads_text=reads_text) if stt is not None else None
        text_language = await asyncio.to_thread(_text_language, settings)
        auth = await build_auth(settings, history.engine)
    except BaseException:
        for engine in reversed(started):
            await engine.aclose()
        raise
    bus = build_bus(settings.redis)
    hub = Hub(bus)
    metrics = Metrics(lambda: hub.connection_count)
    metrics.registry.register(ChainMetrics(lambda: chains_of(llm, stt, tts)))  # engines used and failing over
    transcriber = Transcriber(
        stt=stt,
        recordings=Recordings(settings.audio.dir, settings.audio.keep_days),
        max_duration_s=settings.audio.max_duration_s,
        language=settings.stt.language,
    )
    pipeline = ChatPipeline(
        llm=llm,
        history=history,
        hub=hub,
        system_prompt=settings.llm.system_prompt,
        history_messages=settings.llm.history_messages,
        delta_interval_ms=settings.server.delta_interval_ms,
        transcriber=transcriber,
        tts=tts,
        voice_replies=settings.voice.replies,
        barge_in=settings.voice.barge_in,
        preemptive=settings.voice.preemptive,
        metrics=metrics,
        text_language=text_language,
        reply_tokens=reply_tokens(settings.llm),
        cpu=cpu,
    )
    bot = Bot(
        settings=settings, history=history, llm=llm, stt=stt, tts=tts, hub=hub, pipeline=pipeline,
        transcriber=transcriber, metrics=metrics, vad_model=vad_model,
        endpointer=endpointer, auth=auth,
    )
    bot.conversations = Conversations(
        history.engine,
        clear=lambda client_id: pipeline.in_lane(client_id, lambda: history.clear(client_id)),
        interrupt=pipeline.cancel_turn,
        forget=transcriber.forget,
        publish=hub.publish,
        recordings_dir=Path(settings.audio.dir),
        llm=llm,
        # A local model on the CPU is not quick (and would hold up the next turn): the first words do.
        llm_titles=settings.history.titles == "model"
        or (settings.history.titles == "auto" and llm.info().engine != "local"),
    )
    pipeline.after_user_message = bot.conversations.after_user_message
    pipeline.after_reply = bot.conversations.after_reply
    bot.start_maintenance()
    hub.start()
    # The admin page's plots: the metrics sampled in the background (cancelled with the other tasks in aclose).
    bot.metrics_history = MetricsHistory(
        metrics.registry, status=bot.status, instances=lambda: instance_connections(hub, bus),
        interval_s=settings.metrics.history_interval_s, keep_s=settings.metrics.history_keep_h * 3600,
    )
    sampler = asyncio.create_task(bot.metrics_history.run(), name="metrics-history")
    bot._tasks.add(sampler)
    sampler.add_done_callback(bot._tasks.discard)
    logger.info("engines: %s", {stage: info["engine"] for stage, info in bot.engines().items()})
    return bot


# Silence that ends a turn when the end-of-turn model cannot be loaded: OpenAI's server_vad default.
FALLBACK_SILENCE_MS = 500


async def _endpointer(vad: VADSettings, *, reads_text: bool) -> Endpointer:
    """What ends a live turn: the end-of-turn model judging each pause, or (``vad.end_of_turn`` = ``silence``, or no
    model file) a fixed silence; ``reads_text``: the LLM can read the words too (``TurnTextJudge``)."""
    if vad.end_of_turn == "silence":
        return Endpointer(None, silence_ms=vad.silence_ms, max_silence_ms=vad.max_silence_ms)
    from core.voice.smart_turn import SmartTurnModel

    try:
        model = await asyncio.to_thread(SmartTurnModel)
    except (RuntimeError, OSError) as err:
        silence = max(vad.silence_ms, FALLBACK_SILENCE_MS)
        logger.warning("the end-of-turn model is unavailable (%s): turns end after %d ms of silence", err, silence)
        return Endpointer(None, silence_ms=silence, max_silence_ms=vad.max_silence_ms)
    return Endpointer.from_settings(model, vad, reads_text=reads_text)
