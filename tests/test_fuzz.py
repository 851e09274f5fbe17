"""Fuzzing: every parser of untrusted input, fed generated and mutated input, only ever fails with its own error
and a stable code, within a bound; the text functions keep their properties whatever they are fed.

Short in ``make test`` (the ``web-bot-short`` profile: derandomized, tens of examples per target); ``make fuzz``
runs the same tests with thousands (``FUZZ=long``) and then the atheris harnesses. Targets run in a worker process
(``tests.fuzz.bounded``), so a hang or a crash of native code fails the test instead of stopping the suite.
Inputs that crashed something are kept as plain regression tests in ``tests/fuzz/test_found.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st

from core.config import Settings
from core.errors import AudioError, ConfigError, ErrorCode, ProtocolError
from core.realtime.protocol import RealtimeError
from core.unicode import valid_text
from tests import speech
from tests.conftest import Served
from tests.fuzz import examples
from tests.fuzz import strategies as fs
from tests.fuzz.bounded import Bounded
from web_bot.protocol import KNOWN_TYPES

ROOT = Path(__file__).resolve().parent.parent

FRAME_CODES = {"bad-json", "bad-message", "unknown-type"}
AUDIO_CODES = {"corrupt-audio", "unsupported-audio", "audio-too-long"}
# Every container the server accepts, as tests.speech encodes them.
CONTAINERS = ["wav", "wav-float32", "aiff", "mp3", "mp3-stereo-44k", "flac", "ogg-opus", "ogg-vorbis", "webm-opus",
              "webm-mediarecorder", "m4a", "aac-adts"]
# What must not be left for the voice to read: code, emphasis, links, headings, tags.
MARKUP = re.compile(r"`|\*\*|__|~~|\[[^\]\n]*\]\([^)\n]*\)|(?:^|\n)[ \t]*#{1,6}(?:[ \t]|$)|</?[A-Za-z][A-Za-z0-9]*>")


@pytest.fixture(scope="module")
def bounded() -> Iterator[Bounded]:
    worker = Bounded(timeout_s=30)
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    """Half a second of noise in every accepted container, made with PyAV."""
    pcm = speech.noise(0.5, level=0.2)
    return {name: speech.encode(pcm, 16000, name) for name in CONTAINERS}


def alnum(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


# --- the WebSocket frame parser ------------------------------------------------------------------------------


@examples(80)
@given(frame=fs.frames())
def test_frames_parse_or_fail_with_a_protocol_code(bounded: Bounded, frame: str) -> None:
    outcome = bounded.call("parse_frame", frame)
    message = outcome.check(ProtocolError)
    if outcome.error:
        assert outcome.code in FRAME_CODES
    elif not frame.lstrip().startswith("{"):
        assert message == {"type": "text", "text": frame, "client_msg_id": None}
    else:
        assert message["type"] in KNOWN_TYPES


@examples(60)
@given(text=fs.broken_text | st.text(), max_chars=st.integers(1, 40))
def test_chat_text_is_valid_trimmed_and_bounded(bounded: Bounded, text: str, max_chars: int) -> None:
    outcome = bounded.call("chat_text", text, max_chars)
    checked = outcome.check(ProtocolError)
    if outcome.error:
        assert outcome.code in {"empty-message", "message-too-long"}
    else:
        checked.encode("utf-8")
        assert "\x00" not in checked and checked == checked.strip() and 0 < len(checked) <= max_chars


# --- text for the voice, and valid text ----------------------------------------------------------------------


@examples(100)
@given(text=fs.markdown())
def test_cleaned_text_has_no_markup(bounded: Bounded, text: str) -> None:
    spoken = bounded.call("clean", text).check()
    spoken.encode("utf-8")
    assert spoken == " ".join(spoken.split())
    assert not MARKUP.search(spoken), spoken
    assert not spoken or any(ch.isalnum() for ch in spoken)


@examples(100)
@given(text=fs.markdown(), sizes=fs.chunk_sizes, options=fs.splitter_options(), clean=st.booleans())
def test_any_chunking_gives_the_same_sentences(
    bounded: Bounded, text: str, sizes: list[int], options: dict[str, object], clean: bool
) -> None:
    whole, chunked = bounded.call("split", text, sizes, {**options, "clean": clean}).check()
    assert chunked == whole
    for sentence in whole:
        assert sentence and sentence == sentence.strip()
        if clean:
            assert not MARKUP.search(sentence), sentence


@examples(100)
@given(text=fs.prose(), sizes=fs.chunk_sizes, options=fs.splitter_options(min_chars=20))
def test_sentences_joined_are_the_text(
    bounded: Bounded, text: str, sizes: list[int], options: dict[str, object]
) -> None:
    """Plain prose, uncleaned: the sentences are the text's own pieces, in order, and together hold every word."""
    whole, chunked = bounded.call("split", text, sizes, {**options, "clean": False}).check()
    assert chunked == whole
    at = 0
    for sentence in whole:
        found = text.find(sentence, at)
        assert found >= 0, (sentence, text[at:])
        assert not alnum(text[at:found]), text[at:found]  # nothing speakable skipped
        at = found + len(sentence)
    assert not alnum(text[at:])
    assert alnum("".join(whole)) == alnum(text)


@examples(100)
@given(text=fs.broken_text, sizes=fs.chunk_sizes)
def test_repaired_text_is_valid_in_any_chunking(bounded: Bounded, text: str, sizes: list[int]) -> None:
    whole, streamed = bounded.call("repair", text, sizes).check()
    whole.encode("utf-8")
    assert "\x00" not in whole and valid_text(whole) == whole
    assert streamed == whole
    if "\x00" not in text and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        assert whole == text


# --- configuration -------------------------------------------------------------------------------------------


@examples(60)
@given(document=fs.config_files(), environ=fs.environments())
def test_any_configuration_loads_or_fails_with_config_error(
    bounded: Bounded, document: bytes, environ: dict[str, str]
) -> None:
    environ.pop("WEB_BOT_CONFIG", None)  # the file given is the one read
    outcome = bounded.call("load_config", document, environ)
    outcome.check(ConfigError)
    assert outcome.error == () or outcome.code == "config-invalid"


@examples(40)
@given(environ=fs.environments())
def test_any_environment_loads_or_fails_with_config_error(bounded: Bounded, environ: dict[str, str]) -> None:
    outcome = bounded.call("load_environment", environ)
    outcome.check(ConfigError)
    assert outcome.error == () or outcome.code == "config-invalid"


# --- the Realtime API's session.update -----------------------------------------------------------------------


@examples(100)
@given(session=fs.realtime_sessions(), dialect=st.sampled_from(["beta", "ga"]))
def test_any_session_update_is_taken_or_refused_with_realtime_error(
    bounded: Bounded, session: object, dialect: str
) -> None:
    outcome = bounded.call("realtime_update", session, dialect)
    wire = outcome.check(RealtimeError)
    if not outcome.error:
        json.dumps(wire, allow_nan=False)


# --- the audio decoder ---------------------------------------------------------------------------------------


# A failing file is tens of kB: hypothesis warns that printing it is slow, and warnings are errors here.
@pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")
def test_mutated_audio_decodes_or_fails_with_audio_error(bounded: Bounded, seeds: dict[str, bytes]) -> None:
    damaged_files = st.sampled_from(CONTAINERS).flatmap(lambda name: fs.mutated(seeds[name]))

    @examples(120)
    @given(damaged=damaged_files, limit=st.sampled_from([0.2, 2.0, 60.0]))
    def decode(damaged: bytes, limit: float) -> None:
        outcome = bounded.call("decode", damaged, limit)
        decoded = outcome.check(AudioError)
        if outcome.error:
            assert outcome.code in AUDIO_CODES
        else:
            size, rate = decoded
            assert rate == 16000 and size % 2 == 0 and size / 2 / rate <= limit + 0.1

    decode()


# --- the HTTP API against its OpenAPI schema -----------------------------------------------------------------


def test_http_api_answers_every_request_with_success_or_a_json_error(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings]
) -> None:
    """schemathesis makes requests of every operation, fitting the schema and not; each gets a success or a JSON
    error with a known code, never a 500, and the server is still up afterwards."""
    served = serve(make_settings())
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    codes = {code.value for code in ErrorCode}
    seen: dict[str, set[int]] = {}

    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )

        @examples(3)
        @given(case=strategy)
        def request(case: schemathesis.Case) -> None:
            response = case.call(base_url=served.url, timeout=30)
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.content[:300]!r}"
            assert response.status_code != 500, where
            if response.status_code >= 400:
                body = response.json()
                if case.path.startswith("/v1/"):  # the OpenAI-compatible API answers in OpenAI's shape
                    assert isinstance(body["error"]["message"], str) and body["error"]["type"], where
                else:
                    assert body["code"] in codes and isinstance(body["detail"], str), where

        request()
    assert any(status < 300 for statuses in seen.values() for status in statuses), seen
    status = httpx.get(f"{served.url}/api/status", timeout=30)
    assert status.status_code == 200 and status.json()["status"] in ("ok", "degraded")


# --- atheris -------------------------------------------------------------------------------------------------


def test_atheris_harnesses_take_their_seeds() -> None:
    """Each harness runs its seeds clean (``make fuzz`` starts from them, so a harness that fails on them finds
    nothing)."""
    pytest.importorskip("atheris")
    from tests.fuzz.harnesses import HARNESSES, seeds

    for name, harness in HARNESSES.items():
        for seed in seeds(name):
            harness(seed)


def test_atheris_fuzzes_the_frame_parser(tmp_path: Path) -> None:
    """The coverage-guided fuzzer itself runs (instrumented, a few hundred inputs) and finds nothing."""
    pytest.importorskip("atheris")
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "frames", "-runs=300", "-timeout=60", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 300 runs" in result.stderr, result.stderr[-3000:]
