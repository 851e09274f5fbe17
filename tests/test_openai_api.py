"""The OpenAI-compatible API under /v1, driven by OpenAI's own Python SDK against real uvicorn: the chat model is the
loopback fake, speech-to-text the real Whisper base, speech the real Piper (and Festival for Russian)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from core.config import Settings, load_settings
from core.models import Segment
from core.openai_api.transcripts import srt, vtt
from tests.accounts import People
from tests.conftest import Served, merge
from tests.fakes.openai_server import FakeOpenAI
from tests.speech import (
    RUSSIAN_SENTENCES,
    RUSSIAN_VOICE_DIR,
    SENTENCE_WER,
    SENTENCES,
    encode,
    silence,
    speak,
    wav,
    wer,
    wer_russian,
)

pytestmark = pytest.mark.slow

REPLY = "You said: hello there. (context 1 messages)"
LONG_TEXT = " ".join(SENTENCES)


def module_settings(folder: Path, fake: FakeOpenAI, extra: dict[str, Any] | None = None) -> Settings:
    """As conftest's make_settings, for a server shared by a module: the fake LLM, Whisper and Piper."""
    config = {
        "llm": {
            "engine": "openai", "base_url": f"{fake.url}/v1", "model_name": "fake-model",  # type: ignore[attr-defined]
            "timeout_s": 2, "max_retries": 0,
        },
        "database": {"db_path": str(folder / "history.db")},
        "audio": {"dir": str(folder / "audio"), "max_upload_mb": 1},
        "logging": {"file": str(folder / "web_bot.log"), "level": "INFO"},
        "stt": {"engine": "whisper"},
        "tts": {"engine": "piper"},
        "limits": {"enabled": False},
        "history": {"titles": "first-words"},
        "vad": {"end_of_turn": "silence"},
    }
    path = folder / "config.json"
    path.write_text(json.dumps(merge(config, extra or {})))
    return load_settings(path, environ={})


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI) -> Iterator[Served]:
    served = Served(module_settings(tmp_path_factory.mktemp("api"), fake_openai))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(api: Served) -> OpenAI:
    return OpenAI(base_url=f"{api.url}/v1", api_key="anything", max_retries=0, timeout=120)


def transcribe(client: OpenAI, audio: bytes, name: str = "speech.wav", **options: Any) -> Any:
    return client.audio.transcriptions.create(model="whisper-1", file=(name, audio), **options)


def decoded(data: bytes, fmt: str) -> tuple[bytes, int, str]:
    """The 16-bit mono samples, rate and container of a speech response; ``pcm`` is raw 24 kHz s16le already."""
    if fmt == "pcm":
        return data, 24000, "pcm"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=stream.sample_rate)
        pieces = [piece for frame in [*container.decode(stream), None] for piece in resampler.resample(frame)]
        pcm = b"".join(bytes(piece.planes[0])[: piece.samples * 2] for piece in pieces)
        return pcm, stream.sample_rate, container.format.name


# -- models --------------------------------------------------------------------------------------------------------


def test_models_lists_the_configured_engines_and_takes_openai_names(client: OpenAI) -> None:
    models = {model.id: model for model in client.models.list()}
    assert set(models) == {"fake-model", "base", "piper"}
    assert models["base"].owned_by == "whisper" and models["base"].object == "model" and models["base"].created > 0
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    assert client.models.retrieve("fake-model").owned_by == "openai"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-5")
    assert missing.value.code == "not-found" and missing.value.type == "invalid_request_error"


# -- chat ----------------------------------------------------------------------------------------------------------


def test_chat_completion_is_the_models_reply_to_the_messages_sent(client: OpenAI, fake_openai: FakeOpenAI) -> None:
    answer = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
    )
    assert answer.object == "chat.completion" and answer.model == "fake-model"
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content == "You said: hello there. (context 2 messages)"
    # Stateless: the model got exactly these messages, no server system prompt, no history.
    assert fake_openai.requests[-1]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}
    ]
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 6 and usage.completion_tokens >= 10
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_text_parts_are_joined(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "there"}]}],
    )
    assert answer.choices[0].message.content == "You said: hello\nthere. (context 1 messages)"


async def test_chat_streams_chunks_and_usage(api: Served) -> None:
    client = AsyncOpenAI(base_url=f"{api.url}/v1", api_key="anything", max_retries=0)
    stream = await client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hello there [chunks:1]"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    await client.close()
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello there [chunks:1]. (context 1 messages)"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 5, "one chunk per word"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 5
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_cuts_the_reply(client: OpenAI, stream: bool) -> None:
    messages = [{"role": "user", "content": "hello there"}]
    if stream:
        chunks = list(client.chat.completions.create(
            model="fake-model", messages=messages, max_completion_tokens=3, stream=True,
            stream_options={"include_usage": True},
        ))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        usage = chunks[-1].usage
    else:
        answer = client.chat.completions.create(model="fake-model", messages=messages, max_tokens=3)
        text, finish, usage = answer.choices[0].message.content or "", answer.choices[0].finish_reason, answer.usage
    assert finish == "length"
    assert text and "You said: hello there.".startswith(text) and len(text.encode()) <= 12  # ~4 bytes a token
    assert usage is not None and usage.completion_tokens == 3


def test_the_reply_is_as_long_as_the_caller_allows_not_the_spoken_turns_limit(
    client: OpenAI, fake_openai: FakeOpenAI
) -> None:
    """llm.max_tokens keeps spoken replies short; an API caller's reply was cut there too, as "stop"."""
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hello there"}])
    assert "max_tokens" not in fake_openai.requests[-1]
    client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hello there"}], max_tokens=500
    )
    assert fake_openai.requests[-1]["max_tokens"] > 500  # a little more: the cut, and "length", are ours


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_over_the_models_context_is_a_400_naming_messages(client: OpenAI, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "a very long story [context]"}], stream=stream
        )
    assert refused.value.status_code == 400 and refused.value.code == "context-too-long"
    assert refused.value.param == "messages" and refused.value.type == "invalid_request_error"


def test_the_local_model_through_the_api(serve: Callable[[Settings], Served], make_settings) -> None:
    """The embedded model: a reply as long as asked and cut there as "length" (it stopped at llm.max_tokens, as
    "stop"); usage counts the chat template's tokens; a prompt over its context is refused before it waits for the
    model (it was a 502 llm-failed)."""
    served = serve(make_settings({"llm": {"engine": "local", "n_ctx": 1024, "max_tokens": 16, "temperature": 0}}))
    local = OpenAI(base_url=f"{served.url}/v1", api_key="anything", max_retries=0, timeout=120)
    model = local.models.list().data[0].id
    ask = [{"role": "user", "content": "Write a long story about a cat who learns to sail."}]
    answer = local.chat.completions.create(model=model, messages=ask, max_tokens=60)
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 60
    assert answer.usage.prompt_tokens > len(ask[0]["content"].split())
    with pytest.raises(openai.BadRequestError) as refused:
        local.chat.completions.create(model=model, messages=[{"role": "user", "content": "word " * 1500}])
    assert refused.value.code == "context-too-long" and refused.value.param == "messages"
    assert "1024" in refused.value.message


def test_a_stop_sequence_ends_the_reply_before_it(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hello there"}], stop=["there"]
    )
    assert answer.choices[0].message.content == "You said: hello "
    assert answer.choices[0].finish_reason == "stop"
    # A stop sequence split over the model's chunks is held back until it is known, and never sent.
    chunks = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hello there [chunks:1]"}], stop=["hello there"],
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: "


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"n": 2}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
         "messages[0].content[0]"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_what_the_server_cannot_do_is_a_400_naming_the_parameter(
    client: OpenAI, request_: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], **request_}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**body)
    assert refused.value.status_code == 400
    assert refused.value.param == param and refused.value.type == "invalid_request_error"
    assert refused.value.code == "bad-request" and refused.value.message


def test_an_unknown_chat_model_is_a_404_naming_the_right_one(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="whisper-1", messages=[{"role": "user", "content": "hi"}])
    assert "fake-model" in missing.value.message and missing.value.param == "model"


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_model_is_an_openai_error(client: OpenAI, stream: bool) -> None:
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "[status:500]"}], stream=stream
        )
    assert failed.value.status_code == 503 and failed.value.code == "llm-unavailable"
    assert failed.value.type == "server_error"


def test_a_hung_model_times_out_at_llm_timeout(client: OpenAI) -> None:
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "[hang]"}])
    assert failed.value.status_code == 504 and failed.value.code == "llm-timeout"
    assert time.monotonic() - start < 6


def test_a_chat_past_any_models_context_is_refused_at_once(client: OpenAI) -> None:
    """30 MB in one message held the local model for minutes (everyone's turns with it) while it tokenized."""
    from web_bot.v1.schemas import MAX_CHAT_CHARS

    start = time.monotonic()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="fake-model", messages=[
            {"role": "system", "content": "x" * (MAX_CHAT_CHARS // 2)},
            {"role": "user", "content": "y" * (MAX_CHAT_CHARS // 2 + 1)},
        ])
    assert refused.value.code == "message-too-long" and refused.value.param == "messages"
    assert time.monotonic() - start < 10
    answered = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert answered.choices[0].message.content


async def test_requests_queued_behind_each_other_wait_their_turn(
    tmp_path: Path, fake_openai: FakeOpenAI, serve: Any
) -> None:
    """Waiting for the model's free slot is no timeout (as for the page's turns): with one slot (a local model's),
    three requests of about 3 s each all get their answers, though llm.timeout_s is 2 s. Counting the queue, the
    second and third got 504 llm-timeout."""
    settings = module_settings(tmp_path, fake_openai, {"llm": {"max_concurrent": 1}, "stt": {"engine": "none"},
                                                        "tts": {"engine": "none"}})
    served = serve(settings)
    client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="anything", max_retries=0, timeout=120)
    slow = "take your time [slow:0.3] [chunks:1]"  # each fragment within the timeout, the whole reply past it
    answers = await asyncio.gather(*(
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": slow}])
        for _ in range(3)
    ))
    assert all(a.choices[0].message.content for a in answers)
    await client.close()


@pytest.mark.parametrize(("stream", "said"), [
    (True, "think first [first:30]"),  # gone while the model reads the prompt: before the answer begins
    (False, "think first [first:30]"),
    (True, "go on [stall:1] [chunks:1]"),  # gone after the first words
])
async def test_a_caller_who_hangs_up_frees_the_model_at_once(
    tmp_path: Path, fake_openai: FakeOpenAI, serve: Any, stream: bool, said: str
) -> None:
    """A caller who went while the model was still reading the prompt (a local model: 10-25 s for a long one)
    kept its one slot, and everyone's turns behind it, until the first words. The next request must get the slot
    at once."""
    settings = module_settings(tmp_path, fake_openai, {
        "llm": {"max_concurrent": 1, "timeout_s": 60}, "stt": {"engine": "none"}, "tts": {"engine": "none"},
    })
    served = serve(settings)
    body = {"model": "fake-model", "stream": stream, "messages": [{"role": "user", "content": said}]}
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:

        async def call_and_hang_up() -> None:
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if '"content":"You' in line:
                        return  # the first words, then hang up

        with contextlib.suppress(TimeoutError):  # then hung up while the model was thinking
            await asyncio.wait_for(call_and_hang_up(), 3)
        start = time.monotonic()
        answer = await http.post("/v1/chat/completions", json={
            "model": "fake-model", "messages": [{"role": "user", "content": "hi"}],
        })
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        assert time.monotonic() - start < 15, "the model's one slot was still held for the caller who left"
    assert "the client went" in (tmp_path / "web_bot.log").read_text()  # before the answer began, or while sent


@pytest.mark.parametrize("said", ["😀🎉", "```python\nprint(1)\n```", "...!!!"])
def test_speech_with_nothing_to_say_is_refused(client: OpenAI, said: str) -> None:
    """It was a 200 with an empty MP3 (or a bare WAV header), which a player cannot play."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.speech.create(model="tts-1", voice="alloy", input=said)
    assert refused.value.code == "bad-request" and refused.value.param == "input"


def test_errors_are_in_openais_shape_everywhere_under_v1(api: Served) -> None:
    unknown = httpx.get(f"{api.url}/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"
    broken = httpx.post(
        f"{api.url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and set(broken.json()["error"]) == {"message", "type", "param", "code"}
    assert broken.json()["error"]["param"] is None  # it named "[1]", the character offset, as if a parameter
    granularity = httpx.post(f"{api.url}/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")}, data={
        "model": "whisper-1", "timestamp_granularities[]": "sentence"})
    assert granularity.status_code == 400 and granularity.json()["error"]["param"] == "timestamp_granularities[0]"
    # Outside /v1 the server's own shape stays.
    assert set(httpx.get(f"{api.url}/api/nothing").json()) == {"code", "detail"}


# -- access and limits -----------------------------------------------------------------------------------------------


async def test_password_mode_takes_a_personal_token_and_nothing_else(people: People) -> None:
    url = f"{people.served.url}/v1"
    stranger = AsyncOpenAI(base_url=url, api_key="anything", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        await stranger.models.list()
    await stranger.close()
    assert refused.value.status_code == 401 and refused.value.type == "authentication_error"
    assert refused.value.code == "bad-credentials"  # a token was sent, and it is not valid
    async with httpx.AsyncClient() as http:  # a signed-in browser's cookie is not enough either
        assert (await http.get(f"{url}/models", headers=people.cookie("alice"))).status_code == 401
    client = AsyncOpenAI(base_url=url, api_key=people.tokens["alice"], max_retries=0)
    assert [m.id for m in (await client.models.list()).data] == ["fake-model"]
    answer = await client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "You said: hi. (context 1 messages)"
    await client.close()


def test_each_call_counts_against_the_message_rate(serve: Callable[[Settings], Served], make_settings) -> None:
    served = serve(make_settings({"limits": {"enabled": True, "messages": "2/minute"}}))
    client = OpenAI(base_url=f"{served.url}/v1", api_key="anything", max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert int(limited.value.response.headers["retry-after"]) > 0 and limited.value.code == "rate-limited"
    # No speech engines here: the audio routes say so.
    with pytest.raises(openai.InternalServerError) as off:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(silence(1), 16000)))
    assert off.value.status_code == 503 and off.value.code == "stt-unavailable"


# -- transcriptions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("container", "name"), [("wav", "speech.wav"), ("mp3", "speech.mp3"),
                                                 ("webm-opus", "speech.webm")])
def test_transcribes_each_container(client: OpenAI, container: str, name: str) -> None:
    pcm, rate = speak(SENTENCES[1])
    text = transcribe(client, encode(pcm, rate, container), name).text
    assert wer(SENTENCES[1], text) <= SENTENCE_WER, text


def test_text_verbose_json_srt_and_vtt(client: OpenAI) -> None:
    first, rate = speak(SENTENCES[0])
    second, _ = speak(SENTENCES[4])
    pause = silence(1.5, rate)
    audio = wav(silence(0.5, rate) + first + pause + second, rate)
    duration = len(audio) / 2 / rate

    text = transcribe(client, audio, response_format="text")
    assert isinstance(text, str) and wer(f"{SENTENCES[0]} {SENTENCES[4]}", text) <= SENTENCE_WER, text

    verbose = transcribe(client, audio, response_format="verbose_json", timestamp_granularities=["segment", "word"])
    assert verbose.language == "english" and abs(verbose.duration - duration) < 0.1
    segments = verbose.segments
    assert segments and all(0 <= s.start < s.end <= duration + 0.2 for s in segments)
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert segments[0].start <= 0.6 < segments[0].end, "the speech starts after half a second of silence"
    # What Whisper measured of each segment, as OpenAI's API gives it (they were zeros and no tokens).
    assert all(s.tokens and s.avg_logprob < 0 and s.compression_ratio > 0 for s in segments)
    assert all(0 <= s.no_speech_prob < 0.5 for s in segments)
    words = verbose.words
    assert words and words[0].word.lower().startswith("the") and words[0].start <= 0.6 < words[0].end
    lights = next(w for w in words if w.word.lower().startswith("lights"))
    assert lights.start > len(first) / 2 / rate + 1.5, "the second sentence comes after the pause"

    srt = transcribe(client, audio, response_format="srt")
    assert re.match(r"1\n00:00:0\d,\d{3} --> 00:00:\d\d,\d{3}\n\S", srt), srt
    vtt = transcribe(client, audio, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n") and re.search(r"\n00:00:0\d\.\d{3} --> 00:00:\d\d\.\d{3}\n\S", vtt), vtt


def test_silence_is_an_empty_transcript_and_damage_is_a_422(client: OpenAI) -> None:
    assert transcribe(client, wav(silence(2), 16000)).text == ""
    pcm, rate = speak(SENTENCES[2])
    mp3 = encode(pcm, rate, "mp3")
    with pytest.raises(openai.UnprocessableEntityError) as damaged:
        transcribe(client, mp3[: len(mp3) // 2 + 7], "cut.mp3")
    assert damaged.value.code == "corrupt-audio" and damaged.value.param == "file"
    with pytest.raises(openai.APIStatusError) as unsupported:
        transcribe(client, b"just some text, not audio" * 10, "notes.txt")
    assert unsupported.value.status_code == 415


def test_a_language_the_model_does_not_know_is_a_400(client: OpenAI) -> None:
    """It was ignored: the language was detected instead, and the caller never knew."""
    pcm, rate = speak(SENTENCES[0])
    for language in ("xx", "klingon"):
        with pytest.raises(openai.BadRequestError) as refused:
            transcribe(client, wav(pcm, rate), language=language)
        assert refused.value.param == "language" and refused.value.code == "bad-request"
    # An empty field is what many clients send for one left unset: no language, detected.
    assert wer(SENTENCES[0], transcribe(client, wav(pcm, rate), language="").text) <= SENTENCE_WER
    assert wer(SENTENCES[0], transcribe(client, wav(pcm, rate), language="en-GB").text) <= SENTENCE_WER


async def test_a_caller_who_hangs_up_frees_speech_to_text_at_once(
    tmp_path: Path, fake_openai: FakeOpenAI, serve: Any
) -> None:
    """With one Whisper slot, a long clip whose caller hung up was transcribed to its end (minutes for a few minutes
    of speech), and every transcription behind it waited. Now it stops at its next 30 s window (tests/test_stt.py
    counts them; a window takes 3-30 s here, with load)."""
    served = serve(module_settings(tmp_path, fake_openai, {"audio": {"max_upload_mb": 16}, "tts": {"engine": "none"}}))
    pcm, rate = speak(LONG_TEXT)
    long_clip = wav((pcm + silence(0.3, rate)) * 12, rate)  # several minutes: many 30 s windows
    short_pcm, short_rate = speak(SENTENCES[0])
    form = {"model": "whisper-1", "response_format": "verbose_json"}
    async with httpx.AsyncClient(base_url=f"{served.url}/v1", timeout=300) as http:
        with contextlib.suppress(TimeoutError):  # hang up while Whisper is at work
            long_one = http.post("/audio/transcriptions", data=form, files={"file": ("long.wav", long_clip)})
            await asyncio.wait_for(long_one, 4)
        start = time.monotonic()
        answer = await http.post("/audio/transcriptions", data={"model": "whisper-1"},
                                 files={"file": ("short.wav", wav(short_pcm, short_rate))})
        took = time.monotonic() - start
    assert answer.status_code == 200 and wer(SENTENCES[0], answer.json()["text"]) <= SENTENCE_WER
    log = (tmp_path / "web_bot.log").read_text()
    assert "the client went" in log and "as verbose_json" not in log, "the abandoned clip was transcribed to its end"
    assert took < 60, f"the next transcription waited {took:.0f} s"


def test_upload_limit_and_model_names(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as large:
        transcribe(client, wav(silence(31.5), 16000))  # 1.008 MB, past the 1 MB limit
    assert large.value.status_code == 413 and large.value.code == "audio-too-large"
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="tts-1", file=("a.wav", wav(silence(1), 16000)))
    pcm, rate = speak(SENTENCES[3])
    for model in ("base", "gpt-4o-transcribe"):
        text = client.audio.transcriptions.create(model=model, file=("a.wav", wav(pcm, rate)), language="en").text
        assert wer(SENTENCES[3], text) <= SENTENCE_WER, (model, text)


def test_subtitle_times_are_written_as_each_format_wants() -> None:
    segments = (Segment(0.0, 1.25, "One."), Segment(3661.5, 3662.0049, "Two."))
    assert srt(segments) == "1\n00:00:00,000 --> 00:00:01,250\nOne.\n\n2\n01:01:01,500 --> 01:01:02,005\nTwo.\n\n"
    assert vtt(segments) == "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nOne.\n\n01:01:01.500 --> 01:01:02.005\nTwo.\n\n"


# -- speech --------------------------------------------------------------------------------------------------------

CONTAINERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "pcm"}


@pytest.mark.parametrize("fmt", list(CONTAINERS))
def test_speech_in_each_format_says_the_words(client: OpenAI, fmt: str) -> None:
    text = SENTENCES[0]
    data = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format=fmt).content
    pcm, rate, container = decoded(data, fmt)
    assert container == CONTAINERS[fmt]
    assert rate == (48000 if fmt == "opus" else 24000)
    assert 1.2 < len(pcm) / 2 / rate < 6
    if fmt == "wav":
        assert struct.unpack("<I", data[4:8])[0] == 0xFFFFFFFF and data[36:40] == b"data"
    heard = transcribe(client, wav(pcm, rate), language="en").text
    assert wer(text, heard) <= 0.25, heard


def test_speech_is_streamed_while_it_is_synthesised(api: Served) -> None:
    with httpx.stream(
        "POST", f"{api.url}/v1/audio/speech", timeout=60,
        json={"model": "gpt-4o-mini-tts", "voice": "nova", "input": LONG_TEXT, "response_format": "pcm"},
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/pcm"
        start = time.monotonic()
        arrivals = [(time.monotonic() - start, len(piece)) for piece in response.iter_raw()]
    first_at, end_at = arrivals[0][0], arrivals[-1][0]
    total = sum(size for _, size in arrivals)
    assert total / 2 / 24000 > 9, "five sentences of speech"
    assert len(arrivals) >= 5
    assert first_at < end_at / 3, f"first audio at {first_at:.2f} s of {end_at:.2f} s"


def test_speed_changes_the_tempo(client: OpenAI) -> None:
    def seconds(speed: float) -> float:
        data = client.audio.speech.create(
            model="tts-1", voice="alloy", input=SENTENCES[2], response_format="pcm", speed=speed
        ).content
        return len(data) / 2 / 24000

    normal, fast, slow = seconds(1.0), seconds(2.0), seconds(0.25)
    assert 0.4 < fast / normal < 0.6 and 3.5 < slow / normal < 4.5


def test_speech_refusals(client: OpenAI) -> None:
    for options, param in [
        ({"voice": "darth"}, "voice"), ({"input": "x" * 4097}, "input"), ({"speed": 5.0}, "speed"),
        ({"input": "   "}, "input"),
    ]:
        body: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **options}
        with pytest.raises(openai.BadRequestError) as refused:
            client.audio.speech.create(**body)
        assert refused.value.param == param, options
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="whisper-1", voice="alloy", input="Hello.")


@pytest.mark.skipif(
    shutil.which("festival") is None or not RUSSIAN_VOICE_DIR.is_dir(), reason="no Festival Russian voice"
)
@pytest.mark.parametrize("voice", ["alloy", "ru", "festival"])
def test_russian_text_is_read_in_the_russian_voice(client: OpenAI, voice: str) -> None:
    text = RUSSIAN_SENTENCES[2]
    data = client.audio.speech.create(model="tts-1", voice=voice, input=text, response_format="wav").content
    pcm, rate, _ = decoded(data, "wav")
    heard = transcribe(client, wav(pcm, rate), response_format="verbose_json")
    assert heard.language == "russian"
    assert wer_russian(text, heard.text) <= 0.35, heard.text
