"""The local model's prompt cache across turns: a sliding history window costs only the new message, exactly, from
its first slide on (the pipeline hands the engine each next turn's history, ``PromptCache.prepare``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.config import LLMSettings
from core.llm import build_llm
from core.llm.local_llama import LlamaCppLLM, bundled_gguf
from core.models import ChatMessage

SYSTEM = ChatMessage("system", "You are a helpful, concise assistant. Answer in a few sentences.")
QUESTIONS = [
    "Hi, my name is Ana.",
    "What is the capital of France?",
    "Tell me a fun fact about cats.",
    "How do I boil an egg?",
    "What is 12 times 7?",
    "Recommend a book.",
    "What is photosynthesis?",
    "Name three colors.",
    "What is the weather like on Mars?",
    "Give me a short poem about rain.",
    "What is Python?",
    "Say goodbye.",
]
WINDOW = 4  # llm.history_messages: the window first slides on turn 3
FIRST_SLIDE = 3
RUSHED = 8  # the next message arrives at once, while turn 9 is being prepared
COMPARED = (FIRST_SLIDE, 4, 9, 11)  # turns compared with a cold cache, the first slide and the rushed one among them


def engine() -> LlamaCppLLM:
    # No stop sequences and no reply guard: full 32-token replies, so the window holds a long context to slide.
    return LlamaCppLLM(
        model_path=bundled_gguf(), temperature=0, max_tokens=32, n_ctx=2048, n_threads=0, stop=[], guard=False
    )


async def answer(llm: LlamaCppLLM, context: list[ChatMessage]) -> str:
    # As the pipeline stores it.
    return "".join([part async for part in llm.stream_reply(context)]).strip()


@pytest.mark.slow
async def test_a_sliding_window_evaluates_only_the_new_message_and_answers_as_cold() -> None:
    warm = engine()
    await warm.start()
    history: list[ChatMessage] = []
    contexts: list[list[ChatMessage]] = []
    replies: list[str] = []
    sizes: list[tuple[int, int]] = []  # (prompt tokens, evaluated tokens) per turn
    for turn, question in enumerate(QUESTIONS):
        context = [SYSTEM, *history[-WINDOW:], ChatMessage("user", question)]
        reply = await answer(warm, context)
        assert warm.last_prompt_tokens is not None and warm.last_prompt_tokens_evaluated is not None
        sizes.append((warm.last_prompt_tokens, warm.last_prompt_tokens_evaluated))
        contexts.append(context)
        replies.append(reply)
        history += [ChatMessage("user", question), ChatMessage("assistant", reply)]
        warm.prepare([SYSTEM, *history[-WINDOW:]])  # as the pipeline does once the reply is stored
        if turn != RUSHED:
            await warm.wait_idle()  # the bot speaks and the user answers meanwhile
    await warm.aclose()

    # Each turn evaluates only its own message, though the context slides from turn 3 on: the first slide too.
    for turn in range(1, len(QUESTIONS)):
        total, evaluated = sizes[turn]
        if turn != RUSHED + 1:
            # Its own message and the chat template's few tokens around it, not the window it slid over (how long
            # that window is depends on how long the model's replies were).
            assert evaluated <= 32 and evaluated * 2 < total, (turn, sizes)

    # And the replies are what the model says from the same messages with a cold cache.
    for turn in COMPARED:
        cold = engine()
        await cold.start()
        assert await answer(cold, contexts[turn]) == replies[turn], turn
        total, evaluated = sizes[turn]
        assert cold.last_prompt_tokens == cold.last_prompt_tokens_evaluated == total
        await cold.aclose()


# -- the end-of-turn judgement on the words (core.voice.endpointing) -------------------------------------------------

RUSSIAN = ChatMessage("system", f"{SYSTEM.content} Always answer in Russian.")
# (system prompt, words before a pause, whether they are a finished turn): Whisper's words where the pause set's
# audio model said "finished" at 0.9 and more (punctuation and all), and finished requests of the same kinds.
WORDS = [
    (SYSTEM, "Remind me to call the", False),
    (SYSTEM, "How long does it take to drive from?", False),
    (SYSTEM, "Book a table for four people at...", False),
    (SYSTEM, "Turn the volume", False),
    (SYSTEM, "Convert 100", False),
    (SYSTEM, "Call my mother and tell her", False),
    (SYSTEM, "What is the capital of Australia?", True),
    (SYSTEM, "Can you tell me a short joke about cats?", True),
    (SYSTEM, "Translate good morning into Spanish.", True),
    (RUSSIAN, "Напомни мне позвонить", False),
    (RUSSIAN, "Я хотел бы заказать столик на", False),
    (RUSSIAN, "Какая столица Австралии?", True),
    (RUSSIAN, "Расскажи мне анекдот про котов.", True),
    (RUSSIAN, "Сколько будет два плюс два?", True),
    (RUSSIAN, "Поставь таймер на", False),
]


async def test_the_local_model_reads_whether_the_words_end_the_turn() -> None:
    llm = await build_llm(LLMSettings(engine="local", max_tokens=16, temperature=0))
    try:
        judged = [(text, await llm.end_of_turn([system, ChatMessage("user", text)])) for system, text, _ in WORDS]
    finally:
        await llm.aclose()
    for (_, text, finished), (_, probability) in zip(WORDS, judged, strict=True):
        assert probability is not None, text
        if finished:  # vad.text_unfinished_below (0.01) lets these end at once
            assert probability >= 0.02, (text, probability)
        else:  # and holds these
            assert probability < 0.01, (text, probability)


async def test_the_reply_after_the_judgement_finds_its_prompt_cached() -> None:
    llm = await build_llm(LLMSettings(engine="local", max_tokens=8, temperature=0))
    engine = llm.engine
    assert isinstance(engine, LlamaCppLLM)
    context = [SYSTEM, ChatMessage("user", "What is the capital of Australia?")]
    try:
        assert await llm.end_of_turn(context) is not None
        reply = "".join([part async for part in llm.stream_reply(context)])
    finally:
        await llm.aclose()
    assert reply.strip()
    assert engine.last_prompt_tokens is not None and engine.last_prompt_tokens > 20
    # Only the template's tokens after the words (<|im_end|>, newline, <|im_start|>assistant, newline) are new.
    assert engine.last_prompt_tokens_evaluated is not None and engine.last_prompt_tokens_evaluated <= 6


async def test_a_prompt_without_a_chat_template_cannot_be_read() -> None:
    llm = await build_llm(LLMSettings(engine="local", max_tokens=8, prompt_format="few-shot", model="smollm2-135m"))
    try:
        assert await llm.end_of_turn([SYSTEM, ChatMessage("user", "What is the capital of Australia?")]) is None
    finally:
        await llm.aclose()


async def test_a_reading_cancelled_while_queued_gives_its_place_back() -> None:
    """A reading dropped while the model is busy (speech resumed) must not leave the engine thinking a request
    waits: preparing the next turn gives way to waiting requests, and would stay off for good."""
    llm = await build_llm(LLMSettings(engine="local", max_tokens=8, temperature=0))
    engine = llm.engine
    assert isinstance(engine, LlamaCppLLM)
    try:
        busy = asyncio.get_running_loop().run_in_executor(engine._executor, time.sleep, 0.3)
        reading = asyncio.create_task(llm.end_of_turn([SYSTEM, ChatMessage("user", "Remind me to call the")]))
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await busy
        await engine.wait_idle()
        assert engine._waiting == 0
    finally:
        await llm.aclose()
