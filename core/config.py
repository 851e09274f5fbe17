"""Settings: code defaults, overlaid by ``data/config.json``, overlaid by the environment.

The environment overrides any key as ``WEB_BOT_<SECTION>__<KEY>``; ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``
fill ``llm.api_key`` and ``llm.base_url``. ``load_settings`` is the only reader of the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "data" / "config.json"
ENV_PREFIX = "WEB_BOT_"


def project_path(value: str) -> str:
    """Resolve a relative path against the project's root, never the current directory."""
    if not value:
        return value
    try:
        path = Path(value).expanduser()
    except RuntimeError as err:  # "~name/…" where no user is called name
        raise ValueError(f"{value!r}: {err}") from err
    return str(path if path.is_absolute() else ROOT / path)


ProjectPath = Annotated[str, AfterValidator(project_path)]


def word_list(value: object) -> object:
    """A list from the environment is text: ``a,b`` or ``a b`` (empty: no list)."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def json_text(value: str) -> Any:
    """JSON given as text (in the environment): a ValueError, reported against the key, if it is not JSON or is
    nested too deep for the parser (which raises RecursionError)."""
    try:
        return json.loads(value)
    except RecursionError as err:
        raise ValueError("the JSON is nested too deep") from err


def json_list(value: object) -> object:
    """A list from the environment is JSON text: ``[{"engine": "local"}]``."""
    if isinstance(value, str):
        return json_text(value) if value.strip() else []  # a JSONDecodeError is a ValueError: reported on the key
    return value


# Further engines of a stage, each a partial configuration of that stage laid over the stage's own (``core.fallback``).
Fallbacks = Annotated[list[dict[str, Any]], BeforeValidator(json_list)]
EngineSection = TypeVar("EngineSection", bound="Section")


def fallback_settings(section: EngineSection) -> list[EngineSection]:
    """Each entry of ``section.fallbacks`` laid over ``section`` (without its fallbacks), validated; a
    PydanticCustomError naming the entry and key if one is not a valid configuration of the stage."""
    kind = type(section)
    base = section.model_dump(exclude={"fallbacks"})
    merged: list[EngineSection] = []
    for index, entry in enumerate(getattr(section, "fallbacks", [])):
        unknown = sorted(key for key in entry if key not in kind.model_fields or key in ("fallbacks", "down_for_s"))
        if unknown:
            raise PydanticCustomError("fallback", "fallbacks[{i}].{key}: unknown key", {"i": index, "key": unknown[0]})
        if entry.get("engine") == "none":
            raise PydanticCustomError("fallback", "fallbacks[{i}].engine: none is no engine", {"i": index})
        try:
            merged.append(kind.model_validate({**base, **entry}))
        except ValidationError as err:
            problem = err.errors()[0]
            key = ".".join(str(part) for part in problem["loc"])
            raise PydanticCustomError(
                "fallback", "fallbacks[{i}].{key}: {msg}", {"i": index, "key": key, "msg": problem["msg"]}
            ) from err
    return merged


class ServerSettings(Section):
    """How the HTTP/WebSocket server listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_message_chars: int = Field(4000, ge=1)
    send_timeout_s: float = Field(10.0, gt=0)
    # Seconds a stop (SIGTERM, Ctrl-C) lets the turns under way finish; then each reply still being written or spoken
    # is cut and stored as interrupted, and each message still queued is stored with its reply cut at once. The whole
    # stop then ends within about 3 s more (``core.pipeline.ChatPipeline.aclose``).
    shutdown_timeout_s: float = Field(10.0, ge=0, le=600)
    delta_interval_ms: float = Field(30.0, ge=0)
    forwarded_allow_ips: str = "127.0.0.1"
    # Origins (scheme://host[:port]) besides the server's own that may open a socket or post with a cookie.
    allowed_origins: Annotated[list[str], BeforeValidator(word_list)] = []
    # Host names the server answers to besides loopback's (empty: any, except in mode none: loopback's only).
    allowed_hosts: Annotated[list[str], BeforeValidator(word_list)] = []


class AuthSettings(Section):
    """Who may use the server (``core.auth``).

    ``mode`` ``none``: no accounts, every conversation open to whoever knows its id; allowed only while the server
    listens on loopback, unless ``allow_anonymous``. ``password``: accounts with argon2id password hashes, signed-in
    sessions in an HttpOnly cookie, personal API tokens. ``proxy``: a reverse proxy at an address of
    ``server.forwarded_allow_ips`` names the user in ``proxy_header`` (oauth2-proxy's ``X-Forwarded-User``); the
    header from anywhere else is ignored. ``legacy_owner``: the user who is given, at start-up, every conversation
    made before accounts existed (empty: those stay readable only in mode ``none``).
    """

    mode: Literal["none", "password", "proxy"] = "none"
    allow_anonymous: bool = False
    proxy_header: str = Field("X-Forwarded-User", min_length=1)
    legacy_owner: str = ""
    cookie_name: str = Field("web_bot_session", pattern=r"^[A-Za-z0-9_-]+$")
    # auto: Secure when the request came over TLS (as the proxy's X-Forwarded-Proto says).
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    session_idle_h: float = Field(7 * 24, gt=0)
    session_max_h: float = Field(30 * 24, gt=0)
    min_password_chars: int = Field(8, ge=1, le=128)


def rate_limit(value: str) -> str:
    """A ``limits`` rate string, like ``20/minute;300/hour`` (empty: no limit)."""
    if value:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as err:
            raise ValueError(f"{value!r} is not a rate like 20/minute;300/hour") from err
    return value


RateLimit = Annotated[str, AfterValidator(rate_limit)]


class LimitsSettings(Section):
    """Abuse limits, per user and per client address (``core.auth.limits``), shared through Redis when
    ``redis.url`` is set. Rates are ``limits`` strings (``N/second|minute|hour|day``, several with ``;``); empty
    turns one off. ``sign_in`` counts sign-in attempts per username (a success clears them), ``sign_in_per_address``
    per client address; after ``sign_in_slow_after`` attempts at one name each answer waits a little longer, and past
    the rate they are refused. ``audio_seconds`` is seconds of speech sent (uploads and the
    microphone). ``sockets_per_user`` and ``sockets_per_address`` cap open sockets (0: no cap)."""

    enabled: bool = True
    sign_in: RateLimit = "5/minute;30/hour"
    sign_in_per_address: RateLimit = "20/minute;100/hour"
    sign_in_slow_after: int = Field(2, ge=0)
    messages: RateLimit = "20/minute;300/hour"
    messages_per_address: RateLimit = "60/minute"
    audio_seconds: RateLimit = "600/hour"
    sockets_per_user: int = Field(20, ge=0)
    sockets_per_address: int = Field(100, ge=0)


class MetricsSettings(Section):
    """Who may read ``/metrics``: these addresses or networks, or an admin's API token. The admin page's history:
    a sample every ``history_interval_s``, kept ``history_keep_h`` (at most 100 000 samples)."""

    allow_ips: Annotated[list[str], BeforeValidator(word_list)] = ["127.0.0.1", "::1"]
    history_interval_s: float = Field(10.0, ge=0.05, le=3600)
    history_keep_h: float = Field(24.0, gt=0, le=24 * 366)

    @model_validator(mode="after")
    def _history_bounded(self) -> MetricsSettings:
        if self.history_keep_h * 3600 / self.history_interval_s > 100_000:
            raise ValueError("metrics.history_keep_h / metrics.history_interval_s: at most 100000 samples are kept")
        return self


class LLMSettings(Section):
    """Which language model answers, and how.

    The ``local`` engine runs ``model``, a preset of ``core.llm.presets`` (which GGUF, how to prompt it, how to
    sample for speech), or the GGUF file ``model_path`` prompted as ``prompt_format`` says (``auto``: the preset's
    format, or for a file of one's own its chat template if it has one, else few-shot). ``temperature``,
    ``max_tokens`` and ``repeat_penalty`` left empty are the engine's own: the preset's for ``local``, 0.7 and 256
    for ``openai``.
    """

    engine: Literal["auto", "openai", "local"] = "auto"
    api_key: SecretStr | None = None
    base_url: str = ""
    model_name: str = "gpt-4o-mini"
    model: str = "qwen2.5-coder-0.5b"
    model_path: ProjectPath = ""
    prompt_format: Literal["auto", "chat", "few-shot"] = "auto"
    system_prompt: str = "You are a helpful, concise assistant. Answer in a few sentences."
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    repeat_penalty: float | None = Field(None, ge=1, le=2)
    history_messages: int = Field(10, ge=0)
    # The longest a user waits for the first words, retries and fallbacks included, and for each next fragment.
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)  # before a fallback, none: the fallback is the retry
    n_ctx: int = Field(2048, ge=256)
    n_threads: int = Field(0, ge=0)
    max_concurrent: int = Field(16, ge=1)
    # Engines tried in order when the one before fails (``core.fallback``), e.g. [{"engine": "local"}]; an engine
    # that was down is skipped for down_for_s, then tried again.
    fallbacks: Fallbacks = []
    down_for_s: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _fallbacks_valid(self) -> LLMSettings:
        fallback_settings(self)
        return self


class DatabaseSettings(Section):
    """Where conversations are kept."""

    url: str = ""
    db_path: ProjectPath = "data/web_bot.db"
    batch_max: int = Field(500, ge=1)


class HistorySettings(Section):
    """How long conversations are kept, and how they are titled. Messages older than ``keep_days`` are deleted
    hourly, with their recordings and search entries (0: kept until their user deletes them). ``titles``: a new
    conversation is titled from its first words at once, then by the model (``model``; ``auto``: when the model is a
    remote, quick one, not the local model on the CPU) or not (``first-words``)."""

    keep_days: float = Field(0.0, ge=0)
    titles: Literal["auto", "model", "first-words"] = "auto"


class AudioSettings(Section):
    """Limits and storage for audio users send."""

    dir: ProjectPath = "audio"
    max_upload_mb: float = Field(16.0, gt=0)
    max_duration_s: float = Field(300.0, gt=0)
    keep_days: float = Field(30.0, ge=0)


class LoggingSettings(Section):
    """Where and how much the server logs."""

    file: ProjectPath = "web_bot.log"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_bytes: int = Field(5_000_000, ge=1024)
    backup_count: int = Field(3, ge=0)


def language_code(value: str) -> str:
    """A Whisper language code, as ``stt.languages`` holds them."""
    if not (2 <= len(value) <= 3 and value.isascii() and value.isalpha() and value.islower()):
        raise ValueError(f"{value!r} is not a language code of 2-3 lowercase letters, like en or ru")
    return value


LanguageCode = Annotated[str, AfterValidator(language_code)]


class STTSettings(Section):
    """Speech-to-text.

    ``model`` empty is the engine's own default: for Whisper, ``base`` (multilingual Whisper base from pip
    packages); ``tiny.en`` is the bundled English-only tiny; or a CTranslate2 model directory. ``language`` empty,
    Whisper detects each clip's language, but only among ``languages`` (empty: any of its 99): a short clip can
    sound like several languages to Whisper, and the list keeps, say, an English clip from being scored as Latin.
    A language given (``stt.language``, or a client's own) is used as is; an English-only model always hears
    English.
    """

    engine: Literal["whisper", "sphinx", "google", "openai", "none"] = "whisper"
    model: str = ""
    language: str = ""
    languages: Annotated[list[LanguageCode], BeforeValidator(word_list)] = ["en", "ru"]
    max_concurrent: int = Field(1, ge=1)
    base_url: str = ""
    api_key: SecretStr | None = None
    timeout_s: float = Field(30.0, gt=0)
    # Whisper: the shortest window a short clip is encoded in; 30 is Whisper's full window (three times slower
    # on a 3 s clip, and in our measures one word in 30 sentences more accurate).
    window_s: float = Field(10.0, ge=1, le=30)
    fallbacks: Fallbacks = []  # as llm.fallbacks, e.g. [{"engine": "whisper"}]
    down_for_s: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _fallbacks_valid(self) -> STTSettings:
        fallback_settings(self)
        return self


def voice_map(value: object) -> object:
    """``tts.voices`` from the environment is text: a JSON object, or ``en=piper ru=festival`` (spaces or commas)."""
    if not isinstance(value, str):
        return value
    if value.strip().startswith("{"):
        return json_text(value)  # a JSONDecodeError is a ValueError: reported against the key
    voices: dict[str, str] = {}
    for item in value.replace(",", " ").split():
        language, equals, spec = item.partition("=")
        if not equals:
            raise ValueError(f"{item!r} is not language=voice, like ru=festival")
        voices[language] = spec
    return voices


def voice_spec(value: str) -> str:
    """``engine`` or ``engine:voice`` (``piper:/voices/de.onnx``, ``festival:voice_msu_ru_nsh_clunits``)."""
    engine = value.partition(":")[0]
    if not (engine and engine.isascii() and engine.replace("_", "").replace("-", "").isalnum()):
        raise ValueError(f"{value!r} is not engine or engine:voice, like piper or festival:voice_msu_ru_nsh_clunits")
    return value


VoiceSpec = Annotated[str, AfterValidator(voice_spec)]


class TTSSettings(Section):
    """Text-to-speech.

    ``engine`` ``piper`` speaks with the offline voices of ``voices``, a language to ``engine`` or
    ``engine:voice``; the first language's voice speaks a text whose language is not known. ``openai`` is one
    OpenAI-compatible speech service for every language (its voices are multilingual), with ``voice`` and
    ``model``. ``voice`` is also the Piper voice a plain ``piper`` means (empty: the bundled English joe).
    """

    engine: Literal["piper", "openai", "none"] = "piper"
    voices: Annotated[dict[LanguageCode, VoiceSpec], BeforeValidator(voice_map), Field(min_length=1)] = {
        "en": "piper",
        "ru": "festival",
    }
    voice: str = ""
    model: str = ""
    base_url: str = ""
    api_key: SecretStr | None = None
    timeout_s: float = Field(30.0, gt=0)
    max_concurrent: int = Field(1, ge=1)
    format: Literal["mp3", "ogg-opus", "wav"] = "mp3"
    fallbacks: Fallbacks = []  # as llm.fallbacks, e.g. [{"engine": "piper"}]: each language's voice of it
    down_for_s: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _fallbacks_valid(self) -> TTSSettings:
        fallback_settings(self)
        return self


def voice_replies_mode(value: object) -> object:
    """``true``/``false`` (as JSON or environment text) are the older spelling of ``always``/``never``."""
    if isinstance(value, bool):
        return "always" if value else "never"
    if isinstance(value, str) and value.strip().lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.strip().lower()]
    return value


_BOOLEAN_WORDS = {"true": "always", "1": "always", "on": "always", "false": "never", "0": "never", "off": "never"}
VoiceReplies = Literal["auto", "always", "never"]


class VoiceSettings(Section):
    """Spoken conversation: replies read aloud and interruptions.

    ``replies`` is what a client that has not chosen gets: ``auto`` speaks the replies to speech (an upload, the
    voice button, hands-free) and not to typing; ``always`` and ``never`` do as they say. A client's own choice
    (the page's switch, ``/voice on|off``) overrides it.
    """

    replies: Annotated[VoiceReplies, BeforeValidator(voice_replies_mode)] = "auto"
    barge_in: bool = True
    # Start the reply during the end-of-speech silence; when speech resumes, that request is wasted.
    preemptive: bool = True


class VADSettings(Section):
    """Server-side voice activity detection and endpointing for streamed microphone audio.

    ``end_of_turn`` = ``smart-turn``: after ``silence_ms`` of silence an audio end-of-turn model (Smart Turn v3.2,
    ``core.voice.smart_turn``) judges whether the user has finished; if not, the turn goes on until they speak again
    or ``max_silence_ms`` of silence ends it (``core.voice.endpointing``). With ``end_of_turn_text``, the local LLM
    reads the words too: below ``text_unfinished_below`` they hold the turn whatever the audio says, and at or
    above ``text_finished_above`` they end it whatever the audio says. A pause judged finished ends the turn at once
    only when the audio model gave it ``end_of_turn_sure`` or more and the words (when read) ended it too; otherwise
    it ends once the silence has lasted ``confirm_silence_ms`` (0: always at once; never longer than
    ``max_silence_ms``). A pause the audio model judged finished but the words held, reading at least
    ``text_unlikely_below``, ends the turn once the silence has lasted ``doubt_silence_ms`` (never shorter than
    ``confirm_silence_ms``; 0, or at or over ``max_silence_ms``: at ``max_silence_ms``). ``silence``: ``silence_ms`` of
    silence ends the turn (OpenAI's ``server_vad``; 500 ms suits it). Transcription and the reply start
    ``early_transcription_ms`` into a silence, and are kept only if the turn ends with the same words; a pause judged
    to end the turn ends it no sooner than that early reply is ready to be heard, unless the silence reaches
    ``reply_ready_wait_ms`` first (0: as soon as judged; never longer than ``max_silence_ms``).
    """

    threshold: float = Field(0.5, gt=0, lt=1)
    end_of_turn: Literal["smart-turn", "silence"] = "smart-turn"
    silence_ms: int = Field(200, ge=100, le=5000)
    max_silence_ms: int = Field(2000, ge=100, le=10000)
    end_of_turn_threshold: float = Field(0.5, gt=0, lt=1)
    end_of_turn_text: bool = True
    text_unfinished_below: float = Field(0.01, ge=0, lt=1)
    text_finished_above: float = Field(0.5, gt=0, le=1)
    end_of_turn_sure: float = Field(0.9, gt=0, le=1)
    confirm_silence_ms: int = Field(700, ge=0, le=10000)
    text_unlikely_below: float = Field(1e-5, ge=0, lt=1)
    doubt_silence_ms: int = Field(1500, ge=0, le=10000)
    reply_ready_wait_ms: int = Field(1500, ge=0, le=10000)
    early_transcription_ms: int = Field(120, ge=0, le=5000)
    # Speech while a reply is spoken pauses it; this much voiced speech (or its end) and its words decide.
    interrupt_min_ms: int = Field(700, ge=0, le=5000)
    prefix_padding_ms: int = Field(300, ge=0, le=2000)
    min_speech_ms: int = Field(250, ge=0, le=5000)
    max_utterance_s: float = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _silences_in_order(self) -> VADSettings:
        if self.max_silence_ms < self.silence_ms:
            raise ValueError("vad.max_silence_ms must be at least vad.silence_ms")
        return self


class RedisSettings(Section):
    """What several instances share through Redis: each client's events and each instance's connections."""

    url: str = ""  # empty: this instance works alone
    instance_id: str = Field("", max_length=64)  # empty: <hostname>-<pid>-<random>
    prefix: str = Field("web-bot", min_length=1, max_length=64)  # keys and channels; pub/sub ignores db numbers
    heartbeat_s: float = Field(5.0, gt=0, le=300)
    timeout_s: float = Field(1.0, gt=0, le=30)


class Settings(Section):
    """Everything web-bot can be told; built once in ``create_app`` and passed down."""

    server: ServerSettings = ServerSettings()
    llm: LLMSettings = LLMSettings()
    database: DatabaseSettings = DatabaseSettings()
    audio: AudioSettings = AudioSettings()
    history: HistorySettings = HistorySettings()
    logging: LoggingSettings = LoggingSettings()
    stt: STTSettings = STTSettings()
    tts: TTSSettings = TTSSettings()
    voice: VoiceSettings = VoiceSettings()
    vad: VADSettings = VADSettings()
    redis: RedisSettings = RedisSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitsSettings = LimitsSettings()
    metrics: MetricsSettings = MetricsSettings()

    _config_file: str | None = PrivateAttr(default=None)

    @property
    def config_file(self) -> str | None:
        """The configuration file that was read, if any."""
        return self._config_file

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.database.db_path}"


def load_settings(config_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from defaults, the configuration file and the environment; raise ConfigError if invalid."""
    env = os.environ if environ is None else environ
    explicit = config_file or env.get("WEB_BOT_CONFIG")
    try:
        path = Path(project_path(str(explicit))) if explicit else DEFAULT_CONFIG
        found = path.is_file()
    except (ValueError, OSError) as err:  # "~nobody/…", a name too long for the file system
        raise ConfigError(f"cannot read the configuration file: {err}") from err
    data: dict[str, Any] = {}
    read_file: str | None = None
    if found:
        data = _read_json(path)
        read_file = str(path)
    elif explicit:
        raise ConfigError(f"configuration file {path} does not exist")
    _overlay_environment(data, env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from err
    settings._config_file = read_file
    return settings


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: JSON nested thousands deep
        raise ConfigError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object of sections")
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: must be an object of keys")
    return data


def _overlay_environment(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "WEB_BOT_CONFIG":
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"{name}: environment overrides are named WEB_BOT_<SECTION>__<KEY>")
        section, key = parts
        data.setdefault(section, {})[key] = value
    llm = data.setdefault("llm", {})
    if "WEB_BOT_LLM__API_KEY" not in env and env.get("OPENAI_API_KEY"):
        llm["api_key"] = env["OPENAI_API_KEY"]
    # The OpenAI speech engines use the same key unless they are given their own.
    for stage in ("stt", "tts"):
        if f"WEB_BOT_{stage.upper()}__API_KEY" not in env and env.get("OPENAI_API_KEY"):
            data.setdefault(stage, {}).setdefault("api_key", env["OPENAI_API_KEY"])
    if "WEB_BOT_LLM__BASE_URL" not in env and env.get("OPENAI_BASE_URL"):
        llm["base_url"] = env["OPENAI_BASE_URL"]


def _describe(err: ValidationError) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"])
        reason = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        problems.append(f"{key}: {reason}")
    return "invalid configuration: " + "; ".join(problems)
