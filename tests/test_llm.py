"""The LLM engines: OpenAI-compatible against the loopback fake, and the real bundled local model; the local
engine's presets, prompts and reply guard; the evaluation's scoring."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from core.config import LLMSettings
from core.errors import LLMError
from core.llm import OPENAI_MAX_TOKENS, OPENAI_TEMPERATURE, build_llm, local_engine, resolve_engine
from core.llm.evaluation import LANGUAGE_LINES, QUESTIONS, Question, ask, score, system_prompt_for
from core.llm.few_shot import render
from core.llm.guard import ReplyGuard, looping_tail, repeated_segment, without_echoes
from core.llm.local_llama import LlamaCppLLM, bundled_gguf
from core.llm.openai_chat import OpenAIChatLLM
from core.llm.presets import DEFAULT_PRESET, PRESETS, preset
from core.models import ChatMessage
from tests.fakes.openai_server import FakeOpenAI


def engine(fake: FakeOpenAI, **kw) -> OpenAIChatLLM:
    options = dict(
        model="fake-model",
        api_key="sk-test",
        base_url=f"{fake.url}/v1",
        temperature=0.2,
        max_tokens=50,
        timeout_s=2,
        max_retries=0,
    )
    options.update(kw)
    return OpenAIChatLLM(**options)


async def collect(llm, text: str) -> list[str]:
    return [part async for part in llm.stream_reply([ChatMessage("system", "be brief"), ChatMessage("user", text)])]


async def test_streams_fragments_and_sends_the_request(fake_openai: FakeOpenAI) -> None:
    llm = engine(fake_openai)
    parts = await collect(llm, "ping pong")
    assert len(parts) > 1 and "".join(parts) == "You said: ping pong. (context 2 messages)"
    request = fake_openai.requests[-1]
    assert request["stream"] is True and request["model"] == "fake-model"
    assert request["max_tokens"] == 50 and request["temperature"] == 0.2
    assert fake_openai.auth_headers[-1] == "Bearer sk-test"
    await llm.aclose()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[status:429]", "llm-rate-limited"),
        ("[status:503]", "llm-unavailable"),
        ("[status:403]", "llm-auth"),
        ("[status:422]", "llm-failed"),
        ("[context]", "context-too-long"),
        ("[hang]", "llm-timeout"),
    ],
)
async def test_failures_map_to_stable_codes(fake_openai: FakeOpenAI, text: str, code: str) -> None:
    llm = engine(fake_openai, timeout_s=0.5)
    with pytest.raises(LLMError) as err:
        await collect(llm, text)
    assert err.value.code == code
    assert isinstance(err.value.__cause__, openai.OpenAIError)
    await llm.aclose()


async def test_the_openai_engine_sends_the_callers_length_or_leaves_it_to_the_server(fake_openai: FakeOpenAI) -> None:
    llm = engine(fake_openai)
    for asked, sent in [(None, 50), (7, 7), (0, None)]:  # None: the engine's own (50 here)
        assert [part async for part in llm.stream_reply([ChatMessage("user", "hi")], max_tokens=asked)]
        assert fake_openai.requests[-1].get("max_tokens") == sent
    await llm.aclose()


async def test_stall_mid_stream_is_a_timeout(fake_openai: FakeOpenAI) -> None:
    llm = engine(fake_openai, timeout_s=0.3)
    with pytest.raises(LLMError) as err:
        await collect(llm, "one two three four five six seven [slow:1]")
    assert err.value.code == "llm-timeout"
    await llm.aclose()


async def test_fake_answers_without_streaming_too(fake_openai: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(api_key="x", base_url=f"{fake_openai.url}/v1", max_retries=0)
    reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "You said: hi. (context 1 messages)"
    await client.close()


def test_auto_picks_openai_only_when_configured() -> None:
    assert resolve_engine(LLMSettings()) == "local"
    assert resolve_engine(LLMSettings(api_key="sk-x")) == "openai"
    assert resolve_engine(LLMSettings(base_url="http://127.0.0.1:11434/v1")) == "openai"
    assert resolve_engine(LLMSettings(engine="local", api_key="sk-x")) == "local"


@pytest.mark.slow
async def test_local_model_answers_offline() -> None:
    assert bundled_gguf().endswith(".gguf")
    llm = await build_llm(LLMSettings(engine="local", max_tokens=24, temperature=0))
    assert isinstance(llm.engine, LlamaCppLLM) and llm.info().ready
    assert llm.info().model == DEFAULT_PRESET
    parts = await collect(llm, "What is the capital of France?")
    assert parts and "".join(parts).strip()
    # An interrupted generation frees the model for the next one.
    stream = llm.stream_reply([ChatMessage("user", "Count from one to fifty.")])
    await anext(stream)
    await stream.aclose()
    assert "".join(await collect(llm, "Say hello.")).strip()
    await llm.aclose()


@pytest.mark.slow
async def test_the_local_model_writes_as_long_as_asked_and_refuses_what_overflows_its_context() -> None:
    """The API's callers set their own length, past the spoken turn's llm.max_tokens; a prompt over the context
    was a bare ValueError from llama.cpp, reported as the model failing (llm-failed, 502)."""
    llm = await build_llm(LLMSettings(engine="local", max_tokens=8, temperature=0, n_ctx=512))
    ask = [ChatMessage("user", "Write a long story about a cat who learns to sail.")]
    spoken = "".join([part async for part in llm.stream_reply(ask)])
    asked = "".join([part async for part in llm.stream_reply(ask, max_tokens=48)])
    assert llm.count_tokens(spoken) <= 9 < 40 <= llm.count_tokens(asked) <= 49
    assert llm.context_tokens == 512
    prompt = llm.count_prompt(ask)
    assert prompt is not None and llm.count_tokens(ask[0].content) < prompt < 100  # the chat template's tokens too
    with pytest.raises(LLMError) as refused:
        async for _ in llm.stream_reply([ChatMessage("user", "word " * 600)]):
            pass
    assert refused.value.code == "context-too-long" and "512" in refused.value.message
    assert "".join(await collect(llm, "Say hello.")).strip()  # and the model goes on answering
    await llm.aclose()


async def test_missing_local_model_is_unavailable(tmp_path) -> None:
    with pytest.raises(LLMError) as err:
        await build_llm(LLMSettings(engine="local", model_path=str(tmp_path / "none.gguf")))
    assert err.value.code == "llm-unavailable"


# -- presets and settings -----------------------------------------------------------------------------------------


def test_the_openai_engine_keeps_its_own_sampling_unless_told() -> None:
    assert (OPENAI_TEMPERATURE, OPENAI_MAX_TOKENS) == (0.7, 256)
    assert LLMSettings().temperature is None and LLMSettings().max_tokens is None


def test_a_preset_gives_the_local_engine_its_file_prompt_and_sampling() -> None:
    chosen = preset("")
    assert chosen.name == DEFAULT_PRESET and set(PRESETS) >= {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"}
    engine = local_engine(LLMSettings(engine="local"))
    assert engine.info().model == DEFAULT_PRESET and engine.prompt_format == chosen.prompt
    assert (engine._temperature, engine._max_tokens, engine._repeat_penalty) == (
        chosen.temperature, chosen.max_tokens, chosen.repeat_penalty,
    )
    told = local_engine(LLMSettings(engine="local", temperature=0.5, max_tokens=40, repeat_penalty=1.3))
    assert (told._temperature, told._max_tokens, told._repeat_penalty) == (0.5, 40, 1.3)


def test_a_gguf_of_ones_own_is_prompted_as_its_template_says(tmp_path) -> None:
    engine = local_engine(LLMSettings(engine="local", model_path=str(tmp_path / "own.gguf")))
    assert engine.info().model == "own.gguf" and engine.prompt_format == "auto"
    base = local_engine(LLMSettings(engine="local", model_path=str(tmp_path / "b.gguf"), prompt_format="few-shot"))
    assert base.prompt_format == "few-shot"


def test_an_unknown_preset_is_unavailable_and_names_the_known_ones() -> None:
    with pytest.raises(LLMError) as err:
        local_engine(LLMSettings(engine="local", model="gpt-5-local"))
    assert err.value.code == "llm-unavailable" and "smollm2-135m" in str(err.value)


# -- the few-shot prompt of a base model --------------------------------------------------------------------------


def test_few_shot_prompt_shows_examples_in_the_language_of_the_new_message() -> None:
    system = {"role": "system", "content": "Be brief.\nAnswer in English."}
    english = render([system, {"role": "user", "content": "Hi"}])
    assert english.startswith("Be brief.\nAnswer in English.\n\nUser: What is the capital of Italy?\n")
    assert english.endswith("\n\nUser: Hi\nAssistant:")
    russian = render(
        [
            {"role": "user", "content": "Меня зовут Анна."},
            {"role": "assistant", "content": "Привет, Анна!\n\nРада знакомству."},
            {"role": "user", "content": "Как меня зовут?"},
        ]
    )
    assert "User: Какая столица Италии?\nAssistant: Столица Италии — Рим." in russian
    # Blank lines inside a message are closed up: a blank line ends a turn.
    assert russian.endswith("User: Меня зовут Анна.\nAssistant: Привет, Анна!\nРада знакомству.\n\n"
                            "User: Как меня зовут?\nAssistant:")


# -- the reply guard, on synthetic text ---------------------------------------------------------------------------


def guarded(text: str, question: str = "", size: int = 3) -> tuple[str, bool, list[str]]:
    """What the guard sends for ``text`` fed ``size`` characters at a time: the reply, whether it stopped the model,
    and the fragments as sent."""
    guard = ReplyGuard(question)
    sent = []
    for i in range(0, len(text), size):
        sent.append(guard.feed(text[i : i + size]))
        if guard.stopped:
            break
    sent.append(guard.finish())
    return "".join(sent), guard.stopped, sent


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_an_ordinary_reply_streams_through_unchanged(size: int) -> None:
    text = "The capital of France is Paris. It is on the Seine.\nParis is lovely in spring!"
    reply, stopped, sent = guarded(text, "What is the capital of France?", size)
    assert reply == text and not stopped
    if size == 1:  # nothing that cannot be a repeat waits: every letter of the first sentence goes out at once
        assert all(sent[i] == text[i] for i in range(20))


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_a_repeated_line_is_dropped_and_ends_the_reply(size: int) -> None:
    verse = "Waves fold into foam,\nThe gulls cry over the tide,\nSalt wind on my face.\n"
    reply, stopped, _ = guarded(verse * 5, "Write a haiku about the sea.", size)
    assert reply == verse and stopped


def test_a_repeat_is_caught_whatever_the_fragments_look_like() -> None:
    guard = ReplyGuard()
    fragments = [" ", "I like tea very much.", " ", "I", " like tea very much.", " More."]
    assert "".join(guard.feed(f) for f in fragments) + guard.finish() == " I like tea very much. "
    assert guard.stopped


def test_a_repeated_sentence_later_in_the_reply_ends_it() -> None:
    text = "I like tea very much. It is warm and calming. I like tea very much. It is warm and calming."
    reply, stopped, _ = guarded(text)
    assert reply == "I like tea very much. It is warm and calming. " and stopped


def test_the_question_said_back_is_dropped_and_the_answer_kept() -> None:
    reply, stopped, _ = guarded("Какая столица Японии? Столица Японии — Токио.", "Какая столица Японии?")
    assert reply == "Столица Японии — Токио." and not stopped
    # The question said back and nothing else is still a reply: better than none.
    assert guarded("What is 17 times 23?", "What is 17 times 23?")[0] == "What is 17 times 23?"
    assert guarded("Paris. What is the capital of France?", "What is the capital of France?")[0] == "Paris. "


def test_a_reply_that_only_echoed_is_left_out_of_the_context_but_the_users_words_and_short_answers_stay() -> None:
    echoed = [ChatMessage("user", "Set an alarm for seven."), ChatMessage("assistant", "set an alarm for SEVEN")]
    russian = [ChatMessage("user", "Меня зовут Анна."), ChatMessage("assistant", "Меня зовут Анна")]
    short = [ChatMessage("user", "thanks"), ChatMessage("assistant", "Thanks!"), ChatMessage("user", "yes"),
             ChatMessage("assistant", "Yes.")]
    answered = [ChatMessage("user", "Set an alarm for seven."), ChatMessage("assistant", "I cannot set alarms.")]
    assert without_echoes([*echoed, *short, *russian, *answered]) == [echoed[0], *short, russian[0], *answered]
    # A reply with no user message before it (the history window cut it off) stays.
    assert without_echoes(echoed[1:]) == echoed[1:]


def test_a_phrase_said_over_and_over_inside_a_sentence_ends_the_reply() -> None:
    reply, stopped, _ = guarded("The sea is " + "blue and deep and " * 20 + "wide.")
    assert stopped and reply.count("blue and deep and ") == 3
    assert len(reply) < 80


def test_short_repeats_and_numbers_are_not_loops() -> None:
    text = "Yes. No. Yes. No. 1 000 000 000 000 is a trillion. Ha ha! Ha ha!"
    assert guarded(text) == (text, False, guarded(text)[2])
    assert not looping_tail("1 000 000 000 000 000")
    assert looping_tail("so so so and more and more and more ")


def test_repeated_segment_finds_the_first_repeat() -> None:
    assert repeated_segment("Roses are very red.\nViolets are blue.\nRoses are very red.\n") == "Roses are very red."
    assert repeated_segment("Roses are very red. Violets are blue.") is None
    assert repeated_segment("Roses are red.\nRoses are red.") is None  # too short to tell from a refrain


class LoopingLlama:
    """A fake llama.cpp model whose chat completion loops a line, recording what it was asked."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[dict[str, Any]] = []
        self.closed = False

    def create_chat_completion(self, **options: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(options)
        try:
            for word in self.text.split(" "):
                yield {"choices": [{"delta": {"content": word + " "}}]}
        finally:
            self.closed = True


async def test_the_local_engine_cuts_a_looping_reply_and_passes_its_sampling() -> None:
    llm = LlamaCppLLM(
        model_path="unused.gguf", prompt="chat", temperature=0.1, max_tokens=64, repeat_penalty=1.2,
        stop=["\nUser:"], n_ctx=512, n_threads=1,
    )
    fake = LoopingLlama("Paris is the capital of France. " * 30)
    llm._llama = fake
    reply = "".join(await collect(llm, "What is the capital of France?"))
    assert reply.strip() == "Paris is the capital of France."
    assert fake.closed  # the model stopped writing as soon as the loop showed
    call = fake.calls[0]
    assert (call["temperature"], call["max_tokens"], call["repeat_penalty"], call["stop"]) == (
        0.1, 64, 1.2, ["\nUser:"],
    )
    await llm.aclose()


# -- the evaluation's scoring --------------------------------------------------------------------------------------


def question(ident: str) -> Question:
    return next(q for q in QUESTIONS if q.id == ident)


@pytest.mark.parametrize(
    ("ident", "reply", "problems"),
    [
        ("en-france", "The capital of France is Paris.", ()),
        ("en-france", "Est-Lavoir (Lavoir) - France's capital.", ("wrong",)),
        ("en-mul", "17 times 23 is 391.", ()),
        ("en-mul", "17 x 23 = 4067", ("wrong",)),
        ("en-div", "144 divided by 12 is 14, or 12 if you round.", ("wrong: other numbers",)),
        ("en-div", "It is 12.", ()),
        ("ru-japan", "Столица Японии — Токио.", ()),
        ("ru-japan", "The capital of Japan is Tokyo.", ("wrong", "language")),
        ("ru-japan", "Какая столица Японии? Токио.", ("echo",)),
        ("en-haiku", "Waves on the shore\nWaves on the shore\nWaves on the shore", ("repeats",)),
        ("en-sky", "Sunlight is scattered by the air, blue most of all. " * 8, ("repeats", "too long")),
        ("ru-fruits", "Яблоко, банан и груша.", ()),
        ("ru-fruits", "Яблоко.", ("wrong",)),
        ("ru-name", "Вас зовут Анна.", ()),
        ("en-name", "", ("empty",)),
    ],
)
def test_scoring(ident: str, reply: str, problems: tuple[str, ...]) -> None:
    verdict = score(question(ident), reply)
    assert verdict.problems == problems and verdict.correct is (not problems)


def test_the_question_set_covers_both_languages_and_every_kind() -> None:
    for language in ("en", "ru"):
        asked = [q for q in QUESTIONS if q.language == language]
        assert len(asked) >= 12
        assert {q.kind for q in asked} == {"fact", "arithmetic", "follow-up", "explanation", "no-loop"}


# -- the chosen default model, for real -----------------------------------------------------------------------------

# Questions the default model answers right at temperature 0, every time (see the README's "Model evaluation").
RELIABLE = ("en-france", "en-japan", "en-tolstoy", "ru-week", "ru-add", "ru-name")


@pytest.mark.slow
async def test_the_default_model_answers_in_english_and_russian() -> None:
    llm = await build_llm(LLMSettings(engine="local", temperature=0))
    system = LLMSettings().system_prompt
    try:
        for ident in RELIABLE:
            q = question(ident)
            answer = await ask(llm, q, system_prompt_for(system, q.language, LANGUAGE_LINES))
            assert answer.verdict.correct, (ident, answer.reply, answer.verdict.problems)
    finally:
        await llm.aclose()


@pytest.mark.slow
async def test_a_fact_the_reply_only_echoed_is_still_known_at_the_next_turn(tmp_path) -> None:
    """The model said "Меня зовут Анна." back; the echo leaves the prompt, the user's words stay (a tester's "Как
    меня зовут?" got "Я зову Мария." when both left)."""
    from datetime import UTC, datetime

    from core.history import SQLHistoryStore
    from core.hub import Hub
    from core.models import StoredMessage
    from core.pipeline import ChatPipeline

    llm = await build_llm(LLMSettings(engine="local", temperature=0))
    pipeline = ChatPipeline(
        llm=llm, history=SQLHistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"), hub=Hub(),
        system_prompt=LLMSettings().system_prompt, history_messages=10,
    )
    now = datetime.now(UTC)
    earlier = [
        StoredMessage(1, "anna", "user", "Меня зовут Анна.", "text", "ok", now),
        StoredMessage(2, "anna", "assistant", "Меня зовут Анна.", "text", "ok", now),
    ]
    try:
        context = pipeline.context(earlier, "Как меня зовут?", "ru")
        assert [m.role for m in context] == ["system", "user", "user"]
        reply = "".join([part async for part in llm.stream_reply(context)])
        assert "Анн" in reply, reply
    finally:
        await llm.aclose()


def test_the_evaluation_names_the_language_as_the_pipeline_does() -> None:
    from core.pipeline import ANSWER_IN

    said = {"en": ANSWER_IN.format(language="English"), "ru": ANSWER_IN.format(language="Russian")}
    assert said == LANGUAGE_LINES
    assert system_prompt_for("Be brief.", "ru", LANGUAGE_LINES) == "Be brief. Always answer in Russian."
