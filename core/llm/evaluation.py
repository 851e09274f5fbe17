"""How well a language model answers short spoken questions, in English and Russian: the questions and the scoring.

Each question has accepted answers (patterns), and every reply must also be in the question's language (mostly
Cyrillic letters for Russian, Latin for English), repeat no line or sentence, stay under a length fit for speech, and
not say the question back. ``bench/bench_llm.py`` asks the questions and prints the table; the slow tests ask a few.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.interfaces import LLMEngine
from core.llm.guard import normalized, repeated_segment
from core.models import ChatMessage

LANGUAGE_LINES = {"en": "Always answer in English.", "ru": "Always answer in Russian."}
"""What the pipeline appends to the system prompt when it knows the turn's language (``core.pipeline.ANSWER_IN``)."""
NATIVE_LANGUAGE_LINES = {"en": "Always answer in English.", "ru": "Всегда отвечай по-русски."}
"""The same, said in the language itself."""

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_LOOSE = re.IGNORECASE | re.UNICODE


@dataclass(frozen=True, slots=True)
class Question:
    """One question, the earlier turns it needs (the model answers those first), and what counts as right."""

    id: str
    language: str
    kind: str  # fact, arithmetic, follow-up, explanation, no-loop
    text: str
    accept: tuple[str, ...] = ()  # regular expressions; any one matching is right
    reject: tuple[str, ...] = ()  # ... unless one of these matches too (a wrong answer beside the right one)
    at_least: int = 1  # how many different patterns must match (a list of three fruits: two will do)
    result: int | None = None  # arithmetic: the number, and no number but it and the operands
    before: tuple[str, ...] = ()  # earlier user messages
    max_chars: int = 240


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a reply is right, and why not."""

    correct: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply as the engine streamed it, with its timing."""

    question: Question
    reply: str
    first_token_s: float | None
    total_s: float
    fragments: int
    verdict: Verdict = field(default=Verdict(False))

    @property
    def tokens_per_s(self) -> float | None:
        """Fragments (one token each from llama.cpp) after the first, per second of writing them."""
        if self.first_token_s is None or self.fragments < 2 or self.total_s <= self.first_token_s:
            return None
        return (self.fragments - 1) / (self.total_s - self.first_token_s)


def _q(
    language: str,
    kind: str,
    ident: str,
    text: str,
    *accept: str,
    at_least: int = 1,
    result: int | None = None,
    before: tuple[str, ...] = (),
    max_chars: int = 240,
    reject: tuple[str, ...] = (),
) -> Question:
    ident = f"{language}-{ident}"
    return Question(ident, language, kind, text, accept, reject, at_least, result, before, max_chars)


FRUITS_EN = ("apple", "banana", "orange", "mango", "grape", "pear", "strawberr", "cherr", "peach", "pineapple",
             "lemon", "kiwi", "watermelon", "plum", "apricot", "melon", "lime", "blueberr")
FRUITS_RU = ("яблок", "банан", "апельсин", "манго", "виноград", "груш", "клубник", "вишн", "персик", "ананас",
             "лимон", "киви", "арбуз", "слив", "абрикос", "мандарин", "дын", "черешн")

QUESTIONS: tuple[Question, ...] = (
    _q("en", "fact", "france", "What is the capital of France?", r"\bParis\b"),
    _q("en", "fact", "japan", "What is the capital of Japan?", r"\bTokyo\b"),
    _q("en", "fact", "boil", "At what temperature does water boil, in degrees Celsius?", r"\b100\b", r"hundred"),
    _q("en", "fact", "tolstoy", "Who wrote War and Peace?", r"Tolstoy"),
    _q("en", "fact", "planet", "What is the largest planet in the solar system?", r"\bJupiter\b",
       reject=(r"Saturn", r"Earth")),
    _q("en", "fact", "week", "How many days are in a week?", r"\b7\b", r"\bseven\b"),
    _q("en", "arithmetic", "mul", "What is 17 times 23?", result=391),
    _q("en", "arithmetic", "div", "What is 144 divided by 12?", result=12),
    _q("en", "arithmetic", "add", "What is 15 plus 27?", result=42),
    _q("en", "follow-up", "name", "What is my name?", r"\bAnna\b", before=("My name is Anna.",)),
    _q("en", "explanation", "sky", "Why is the sky blue?", r"scatter", r"Rayleigh", max_chars=400),
    _q("en", "no-loop", "haiku", "Write a haiku about the sea.", r"\bsea", r"ocean", r"wave", r"shore", r"tide"),
    _q("en", "no-loop", "fruits", "Name three fruits.", *FRUITS_EN, at_least=2),
    _q("ru", "fact", "france", "Какая столица Франции?", r"Париж"),
    _q("ru", "fact", "japan", "Какая столица Японии?", r"Токио"),
    _q("ru", "fact", "boil", "При какой температуре кипит вода, в градусах Цельсия?", r"\b100\b", r"\bсто\b"),
    _q("ru", "fact", "tolstoy", "Кто написал роман «Война и мир»?", r"Толст"),
    _q("ru", "fact", "planet", "Какая самая большая планета Солнечной системы?", r"Юпитер",
       reject=(r"Сатурн", r"Земл")),
    _q("ru", "fact", "week", "Сколько дней в неделе?", r"\b7\b", r"\bсемь\b"),
    _q("ru", "arithmetic", "mul", "Сколько будет 17 умножить на 23?", result=391),
    _q("ru", "arithmetic", "div", "Сколько будет 144 разделить на 12?", result=12),
    _q("ru", "arithmetic", "add", "Сколько будет 15 плюс 27?", result=42),
    _q("ru", "follow-up", "name", "Как меня зовут?", r"\bАнн", before=("Меня зовут Анна.",)),
    _q("ru", "explanation", "sky", "Почему небо голубое?", r"рассе", r"Рэле", max_chars=400),
    _q("ru", "no-loop", "haiku", "Напиши хайку о море.", r"мор", r"волн", r"океан", r"берег", r"прибо"),
    _q("ru", "no-loop", "fruits", "Назови три фрукта.", *FRUITS_RU, at_least=2),
)
# BENCH_QUICK: one fact, one sum and the follow-up in each language.
QUICK_IDS = ("en-france", "en-add", "en-name", "ru-france", "ru-add", "ru-name")


def letters_in(language: str, text: str) -> float:
    """The share of ``text``'s letters that are in ``language``'s script (1.0 when it has no letters)."""
    latin, cyrillic = len(_LATIN.findall(text)), len(_CYRILLIC.findall(text))
    if latin + cyrillic == 0:
        return 1.0
    return (cyrillic if language == "ru" else latin) / (latin + cyrillic)


def _numbers(text: str) -> list[float]:
    return [float(n.replace(",", ".")) for n in _NUMBER.findall(text.replace("\u00a0", ""))]


def score(question: Question, reply: str) -> Verdict:
    """Right answer, right language, no repetition, short enough, not the question said back."""
    text = reply.strip()
    problems: list[str] = []
    if not text:
        return Verdict(False, ("empty",))
    if question.result is not None:
        operands = set(_numbers(question.text))
        found = _numbers(text)
        if question.result not in found:
            problems.append("wrong")
        elif any(n not in operands and n != question.result for n in found):
            problems.append("wrong: other numbers")
    else:
        matched = sum(1 for pattern in question.accept if re.search(pattern, text, _LOOSE))
        if matched < question.at_least or any(re.search(p, text, _LOOSE) for p in question.reject):
            problems.append("wrong")
    if letters_in(question.language, text) < (0.6 if question.language == "ru" else 0.8):
        problems.append("language")
    if repeated_segment(text) is not None:
        problems.append("repeats")
    if len(text) > question.max_chars:
        problems.append("too long")
    asked = normalized(question.text)
    if asked and asked in normalized(text):
        problems.append("echo")
    return Verdict(not problems, tuple(problems))


def conversation(system_prompt: str, before: Sequence[str], earlier_replies: Sequence[str]) -> list[ChatMessage]:
    """The context of a question: the system prompt, then the earlier turns and the model's replies to them."""
    messages = [ChatMessage("system", system_prompt)] if system_prompt else []
    for text, reply in zip(before, earlier_replies, strict=True):
        messages += [ChatMessage("user", text), ChatMessage("assistant", reply)]
    return messages


def system_prompt_for(base: str, language: str, lines: dict[str, str] | None) -> str:
    """``base`` with the sentence naming ``language`` appended, as the pipeline does (``lines`` None: none)."""
    if lines is None:
        return base
    return f"{base} {lines[language]}".strip()


async def reply_to(engine: LLMEngine, messages: Sequence[ChatMessage]) -> tuple[str, float | None, float, int]:
    """The engine's whole reply to ``messages``, seconds to its first fragment and to its end, and fragments."""
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    async for fragment in engine.stream_reply(messages):
        if first is None:
            first = time.perf_counter() - start
        parts.append(fragment)
    return "".join(parts), first, time.perf_counter() - start, len(parts)


async def ask(engine: LLMEngine, question: Question, system_prompt: str) -> Answer:
    """Ask ``question`` (after its earlier turns, each answered by the engine) and score the reply."""
    replies: list[str] = []
    for i, text in enumerate(question.before):
        context = conversation(system_prompt, question.before[:i], replies)
        reply, *_ = await reply_to(engine, [*context, ChatMessage("user", text)])
        replies.append(reply.strip())
    context = conversation(system_prompt, question.before, replies)
    reply, first, total, fragments = await reply_to(engine, [*context, ChatMessage("user", question.text)])
    return Answer(question, reply, first, total, fragments, score(question, reply))
