"""Echo or interruption: the words heard over a spoken reply, against the reply's text."""

from __future__ import annotations

import pytest

from core.speaking import Playback
from core.voice.interruption import is_echo, new_words

REPLY = "Paris is the capital of France. It stands on the river Seine. Many people visit it every year."


@pytest.mark.parametrize(
    ("heard", "echo"),
    [
        ("Paris is the capital of France.", True),
        ("This is the", True),  # one word misheard of three
        ("Fran.", True),  # playback stopped mid-word
        ("It's a capital.", True),  # a contraction and an article Whisper made up
        ("the river sane", True),  # "Seine" misheard
        ("river Sain.", True),  # half the words are enough: an echo's last word is often cut or misheard
        ("Many people visit", True),
        ("", False),  # no words: not an echo (and no interruption either: the caller decides)
        ("Stop!", False),
        ("Tell me about Berlin instead", False),
        ("stop, that is enough", False),  # "that" is not "today"
        ("What about the river in London?", False),  # a few of the reply's words, in the user's own sentence
        ("Париж", False),
    ],
)
def test_the_reply_heard_back_is_its_echo_and_the_users_words_are_not(heard: str, echo: bool) -> None:
    assert is_echo(heard, REPLY) is echo


def test_nothing_is_an_echo_of_no_reply() -> None:
    assert not is_echo("Paris is the capital", "")


def test_only_the_words_since_the_last_look_are_new() -> None:
    assert new_words(["paris", "is", "the", "capital", "stop"], ["paris", "is", "the"]) == ["capital", "stop"]
    assert new_words(["the", "the"], ["the"]) == ["the"]
    # Heard again, an earlier word may come out otherwise: still not new.
    assert new_words(["okay", "paris", "stop"], ["ok"]) == ["paris", "stop"]
    assert new_words(["of", "france", "it", "stands"], ["of", "fran"]) == ["it", "stands"]
    assert new_words(["capital", "berlin"], ["capital"]) == ["berlin"]


def test_playback_places_each_word_by_its_share_of_the_sentence() -> None:
    playback = Playback()
    playback.add(10.0, 12.0, "Paris is the capital of France.")  # 31 characters in 2 s
    playback.add(12.5, 14.5, "It stands on the river Seine.")
    assert playback.words_between(9.0, 10.1) == "Paris"
    assert playback.words_between(11.0, 11.5) == "capital of"
    assert playback.words_between(11.9, 12.6) == "France It"
    assert playback.words_between(14.6, 20.0) == ""  # all of it played before
    assert playback.words_between(0.0, 9.9) == ""  # none of it played yet
    assert playback.words_between(0.0, 100.0) == "Paris is the capital of France It stands on the river Seine"


def test_a_sentence_of_unknown_length_plays_at_once() -> None:
    playback = Playback()
    playback.add(3.0, 3.0, "For how many people?")
    assert playback.words_between(2.0, 3.0) == "For how many people"
    assert playback.words_between(3.1, 4.0) == ""
