"""Whether speech heard while the bot talks is the user interrupting, or the bot's own voice coming back.

With loudspeakers the microphone hears the reply; the browser's echo cancellation removes most of it, not all. So
speech while a reply is being spoken pauses the reply, and only words decide: none (a cough, a door) or the reply's
own words heard back mean the reply plays on; anything else is an interruption. The reply's own words are the ones
its page played while the speech could hear them (``core.speaking.Playback``): an echo comes back within
``ECHO_LAG_S`` of its audio, so neither a word from the start of a long reply nor one still to be played is an echo
of it — a user who repeats the first or goes on with their sentence as the reply starts is heard.
"""

from __future__ import annotations

import difflib
import re

_WORD = re.compile(r"\w+", re.UNICODE)
# Share of the words heard that must be the reply's own for the speech to count as its echo. Whisper mishears an
# echo's words now and then ("lights" → "light", "Seine" → "sain"), so more than half of them is enough; the
# user's own words are rarely the reply's (an interruption is "stop", or a new question).
ECHO_SHARE = 0.5
# A heard word is one of the reply's when it is this similar (difflib's ratio: "sain" and "Seine" 0.67, "that" and
# "today" 0.44), or the start of one: an echo often ends mid-word ("France" heard as "Fran").
SIMILAR = 0.65
MIN_PREFIX = 3
# The longest from a reply's audio being sent to its echo coming back: the page's playback buffer, loudspeaker to
# microphone, capture, and the network both ways (together well under 0.5 s on a LAN; the rest is margin).
ECHO_LAG_S = 1.0
# How far a word's estimated playing time may be from its real one (``Playback`` places words by their share of
# the sentence's characters).
PLACE_ERROR_S = 0.3
# Each look at speech over a reply hears the audio since the last look, and this much before it (a word the last
# look's end cut in two is heard whole): Whisper hears the user's words in a few seconds of echo, where in the
# whole utterance (up to the reply's length) it hears the reply it was prompted with and leaves the user's out.
LOOK_OVERLAP_S = 1.0
# Words of the echo Whisper may leave out of a later transcript of the same speech, one after another.
ECHO_SKIP = 2
_BETWEEN = " \t\n.,;:!?…—–-'\"«»“”„()"


def words(text: str) -> list[str]:
    """The words of ``text`` that can tell an echo: two letters or more ("it's" is "it"; a lone "a" or "s" is in
    anything, or was half a word)."""
    return [word for word in _WORD.findall(text.casefold()) if len(word) > 1]


def is_echo(heard: str, reply: str) -> bool:
    """Whether ``heard`` (what speech-to-text made of the speech) is mostly words of ``reply`` (the text being
    spoken): more than ``ECHO_SHARE`` of the words heard occur in it. No words at all is not an echo."""
    said = set(words(reply))
    heard_words = words(heard)
    if not heard_words or not said:
        return False
    return sum(_said(word, said) for word in heard_words) > ECHO_SHARE * len(heard_words)


def continued(before: list[str], heard: list[str]) -> list[str]:
    """``heard`` (the words of a look that began ``LOOK_OVERLAP_S`` before the last one ended) without its opening
    words that end ``before`` (the last look's): the longest such overlap, matched exactly."""
    for overlap in range(min(len(before), len(heard)), 0, -1):
        if before[-overlap:] == heard[:overlap]:
            return heard[overlap:]
    return heard


def without_echo(text: str, echo: list[str]) -> str:
    """``text`` (the transcript of an utterance that interrupted a reply) without its opening words that are the
    reply's echo: ``echo`` (``words``, in the order they were heard) matched in order from the start, a word like
    one of the next ``ECHO_SKIP`` + 1 (``SIMILAR``, or the start of one) matching it, up to the first that is not.
    A speech that began as the reply heard back and went on as the user's words keeps only theirs: "Paris is the
    capital of France. What is the capital of Spain?" with the first sentence as ``echo`` is "What is the capital of
    Spain?". ``text`` unchanged when nothing, or everything, is the echo's."""
    at = cut = 0
    for match in _WORD.finditer(text):
        word = match.group().casefold()
        if len(word) < 2:
            continue  # a lone letter tells nothing: it goes with whatever side it is on
        ahead = echo[at : at + ECHO_SKIP + 1]
        same = word if word in ahead else _like(word, ahead)
        if same is None:
            rest = text[cut:].lstrip(_BETWEEN)
            return rest if rest else text
        at += ahead.index(same) + 1
        cut = match.end()
    return text


def _like(word: str, others: list[str]) -> str | None:
    for other in others:
        shorter, longer = sorted((word, other), key=len)
        if len(shorter) >= MIN_PREFIX and longer.startswith(shorter):
            return other
    close = difflib.get_close_matches(word, others, n=1, cutoff=SIMILAR)
    return close[0] if close else None


def _said(word: str, said: set[str]) -> bool:
    if word in said:
        return True
    if len(word) >= MIN_PREFIX and any(other.startswith(word) for other in said):
        return True
    return bool(difflib.get_close_matches(word, said, n=1, cutoff=SIMILAR))
