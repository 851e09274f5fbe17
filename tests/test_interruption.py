"""Echo or interruption: the words heard over a spoken reply, against the reply's text."""

from __future__ import annotations

import pytest

from core.speaking import Playback
from core.voice.interruption import continued, is_echo, without_echo, words

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


def test_a_look_adds_the_words_after_its_overlap_with_the_last() -> None:
    assert continued(["paris", "is", "the", "capital"], ["the", "capital", "of", "france"]) == ["of", "france"]
    assert continued(["the", "the"], ["the", "the", "city"]) == ["city"]
    assert continued([], ["paris"]) == ["paris"]
    assert continued(["paris", "is"], ["stop", "now"]) == ["stop", "now"]  # nothing shared: all of it is new


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


ECHO = words("Paris is the capital of France. It stands on the river Seine.")


@pytest.mark.parametrize(
    ("heard", "own"),
    [
        # the echo, then the user's words
        ("Paris is the capital of France. It stands on the river. What is the capital of Spain?",
         "What is the capital of Spain?"),
        # Whisper leaves an echo word out, spells one otherwise, or cuts one short
        ("Paris is capital of France, it stands on the river Sane. Stop, please.", "Stop, please."),
        ("Paris is the capital of Fran... No, tell me about Rome", "No, tell me about Rome"),
        # the user's words repeat the echo's: they are not its opening, so they stay
        ("Paris is the capital of France. The capital of France?", "The capital of France?"),
        # the user spoke first: nothing is the echo's opening
        ("Stop. Paris is the capital of France.", "Stop. Paris is the capital of France."),
        # all of it is the echo's (the words decided otherwise): nothing to keep but the transcript
        ("Paris is the capital of France.", "Paris is the capital of France."),
        ("", ""),
        # a Russian reply heard back, then the user
        ("Москва — столица России. Подожди, а какая погода?", "Подожди, а какая погода?"),
    ],
)
def test_the_echo_that_opened_an_interruption_is_left_out(heard: str, own: str) -> None:
    echo = ECHO if "Москва" not in heard else words("Москва — столица России. Она стоит на реке.")
    assert without_echo(heard, echo) == own


def test_without_echo_words_the_transcript_is_all_the_users() -> None:
    assert without_echo("Paris is the capital of France.", []) == "Paris is the capital of France."
