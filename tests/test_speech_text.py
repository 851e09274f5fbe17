"""Text for the voice: cleaning markdown, URLs, emoji and code for speech, and cutting streamed replies."""

from __future__ import annotations

import random

import pytest

from core.speech_text import SentenceSplitter, clean_for_speech, spoken_host

CLEAN_CASES = [
    ("**Bold**, *italic*, __under__, _it_, ~~gone~~ and ***both***.", "Bold, italic, under, it, gone and both."),
    ("snake_case_name stays, 2 * 3 = 6", "snake_case_name stays, 2 times 3 = 6"),
    ("# Title\nSome text", "Title. Some text"),
    ("### Sub heading ###", "Sub heading"),
    ("> quoted line\n> more", "quoted line. more"),
    ("- milk\n- eggs\n* bread\n+ jam", "milk. eggs. bread. jam"),
    ("1. Preheat the oven.\n2) Mix.", "Preheat the oven. Mix."),
    ("- [ ] task one\n- [x] task two", "task one. task two"),
    ('See [the docs](https://example.com/docs "Docs") now.', "See the docs now."),
    ("Read [this][ref].\n\n[ref]: https://example.com", "Read this."),
    ("![a cat](cat.png) Look at this.", "Look at this."),
    ("Run `pip install foo` first.", "Run pip install foo first."),
    ("Visit https://www.example.com/path?q=1, then www.python.org.", "Visit example dot com, then python dot org."),
    ("Details: <https://docs.python.org/3/>.", "Details: docs dot python dot org."),
    ("Great job 🎉🚀! 👍🏽 Flags 🇫🇷, family 👨‍👩‍👧, ✅ done ❤️", "Great job! Flags, family, done"),
    ("Keycap 1️⃣ first", "Keycap 1 first"),
    ("a. first\nb) second", "first. second"),
    ("p. 7 says so.", "p. 7 says so."),  # a page, not a list marker
    ("Dr. Smith, J. R. R. Tolkien and No. 5 stay.", "Dr. Smith, J. R. R. Tolkien and No. 5 stay."),
    ("Before\n```python\nprint('hi. there')\n```\nAfter", "Before. After"),
    ("~~~\ncode\n~~~", ""),
    ("```\nnever closed", ""),
    ("| Name | Age |\n|---|:---:|\n| Bob | 42 |", "Name, Age. Bob, 42"),
    ("<b>bold</b> text<br>more", "bold text more"),
    ("Footnote[^1] here.\n\n[^1]: https://x.com", "Footnote here."),
    ("It costs $5 &amp; 20°C is warm™.", "It costs $5 & 20°C is warm™."),
    ("It's 3.14, e.g. pi... or so!", "It's 3.14, e.g. pi... or so!"),
    ("Use the arrow → next.", "Use the arrow next."),
    ("Escaped \\*stars\\* go", "Escaped stars go"),
    ("  lots   of\t\tspace  ", "lots of space"),
    ("Line one\nLine two.", "Line one. Line two."),
    ("Ends with a colon:\n- item", "Ends with a colon: item"),
    ("---", ""),
    ("***", ""),
    ("|---|---|", ""),
    ("**", ""),
    ("🎉🎉", ""),
    ("[](https://example.com)", ""),
    ("  \n\n ", ""),
    ("", ""),
]


@pytest.mark.parametrize(("text", "spoken"), CLEAN_CASES)
def test_clean_for_speech(text: str, spoken: str) -> None:
    assert clean_for_speech(text) == spoken


@pytest.mark.parametrize(
    ("url", "spoken"),
    [
        ("https://www.example.com/a/b?c=d", "example dot com"),
        ("http://localhost:8000/x", "localhost"),
        ("www.python.org", "python dot org"),
        ("https://", "a link"),
    ],
)
def test_spoken_host(url: str, spoken: str) -> None:
    assert spoken_host(url) == spoken


def split(text: str, **options: object) -> list[str]:
    splitter = SentenceSplitter(**options)  # type: ignore[arg-type]
    return splitter.feed(text) + splitter.flush()


SPLIT_CASES = [
    ("One. Two! Three? Four… Five", ["One.", "Two!", "Three?", "Four…", "Five"]),
    (
        "Mr. Smith met Dr. Jones at 3.14 p.m. today, i.e. after lunch, e.g. at two. They left.",
        ["Mr. Smith met Dr. Jones at 3.14 p.m. today, i.e. after lunch, e.g. at two.", "They left."],
    ),
    (
        "The U.S. Army is big. Prices rose etc. and fell. Done.",
        ["The U.S. Army is big.", "Prices rose etc. and fell.", "Done."],
    ),
    ("I was thinking... maybe not. Well... No!", ["I was thinking... maybe not.", "Well...", "No!"]),
    (
        "Pi is 3.14159 and e is 2.718. See Fig. 2 and No. 5 for details.",
        ["Pi is 3.14159 and e is 2.718.", "See Fig. 2 and No. 5 for details."],
    ),
    ("Steps:\n1. Preheat the oven.\n2. Bake it.\n10. Eat.", ["Steps:", "Preheat the oven.", "Bake it.", "Eat."]),
    (
        "Go to https://example.com/a.b?x=1. Then www.python.org/3.12/ is next.",
        ["Go to example dot com.", "Then python dot org is next."],
    ),
    (
        'He said "Stop!" and left. She asked, "Why?" Nobody knew.',
        ['He said "Stop!" and left.', 'She asked, "Why?"', "Nobody knew."],
    ),
    ("(This is an aside.) **Bold ends here.** Next one.", ["(This is an aside.)", "Bold ends here.", "Next one."]),
    ("A title\n\nA paragraph without a stop\nLast line", ["A title", "A paragraph without a stop", "Last line"]),
    ("## Heading\n---\n| a | b |\n|---|---|\n| 1 | 2 |\n", ["Heading", "a, b", "1, 2"]),
    (
        "Here is code:\n```python\nx = 1. Y = 2\nprint(x)\n```\nThat is all. Bye.",
        ["Here is code:", "That is all.", "Bye."],
    ),
    ("Unfinished code:\n```\nwhile True:\n    pass", ["Unfinished code:"]),
    ("Great 🎉! 🚀🚀 Then more.", ["Great!", "Then more."]),
    ("J. R. R. Tolkien wrote books. Really.", ["J. R. R. Tolkien wrote books.", "Really."]),
    # Abbreviations, initials and numbers stay inside the sentence they belong to.
    ("Okay. Dr. Smith will see you at noon.", ["Okay.", "Dr. Smith will see you at noon."]),
    ("Okay. J. R. R. Tolkien wrote it.", ["Okay.", "J. R. R. Tolkien wrote it."]),
    ("Please use gate No. 5 today. Thanks.", ["Please use gate No. 5 today.", "Thanks."]),
    ("Mrs. Jones lives on Baker St. near the park. Yes.", ["Mrs. Jones lives on Baker St. near the park.", "Yes."]),
    (
        "Mr. T. lives in St. Louis. A. B. Smith met J.R.R. Tolkien.",
        ["Mr. T. lives in St. Louis.", "A. B. Smith met J.R.R. Tolkien."],
    ),
    (
        "Ms. Lee, Prof. Brown and Sgt. Miller vs. Capt. Hook. Cats, e.g. Tom, i.e. Mine, etc. Then dogs.",
        ["Ms. Lee, Prof. Brown and Sgt. Miller vs. Capt. Hook.", "Cats, e.g. Tom, i.e. Mine, etc.", "Then dogs."],
    ),
    (
        "It rose 3.5 percent to $4.25 on Jan. 5, see Fig. 2 on p. 7. Then 0.5 more.",
        ["It rose 3.5 percent to $4.25 on Jan. 5, see Fig. 2 on p. 7.", "Then 0.5 more."],
    ),
    ("No. I said no. 5 is fine.", ["No.", "I said no. 5 is fine."]),
    ("你好。再见！", ["你好。", "再见！"]),
]


@pytest.mark.parametrize(("text", "sentences"), SPLIT_CASES)
def test_sentences(text: str, sentences: list[str]) -> None:
    assert split(text, first_min_chars=None) == sentences


def test_first_sentence_is_cut_at_an_early_clause() -> None:
    text = "Well, the capital of France, which is Paris, is lovely in spring. And in summer, too."
    assert split(text, first_min_chars=24) == [
        "Well, the capital of France,",
        "which is Paris, is lovely in spring.",
        "And in summer, too.",
    ]
    assert split(text, first_min_chars=None) == [
        "Well, the capital of France, which is Paris, is lovely in spring.",
        "And in summer, too.",
    ]


def test_first_clause_cut_waits_for_enough_text() -> None:
    assert split("Sure, I can help. Yes, indeed, fine.", first_min_chars=24) == [
        "Sure, I can help.",
        "Yes, indeed, fine.",
    ]


def test_a_long_run_is_cut_at_a_clause_boundary() -> None:
    clause = "and the model keeps on talking about nothing in particular"
    text = ", ".join([clause] * 8) + " without ever stopping"
    pieces = split(text, max_chars=150, first_min_chars=None)
    assert len(pieces) >= 3
    assert all(len(piece) <= 300 for piece in pieces)
    assert all(piece.endswith(",") for piece in pieces[:-1])
    assert " ".join(pieces) == text


def test_a_run_without_any_punctuation_is_cut_at_a_space() -> None:
    text = " ".join(["word"] * 200)
    pieces = split(text, max_chars=100, first_min_chars=None)
    assert all(len(piece) <= 200 for piece in pieces)
    assert " ".join(pieces) == text


def test_pieces_are_never_empty_or_markup() -> None:
    text = "**\n---\n\n* \n```\ncode\n```\n| |\n🎉\n[](x)\n> \nReal text."
    assert split(text) == ["Real text."]


def test_a_sentence_waits_until_its_end_is_certain() -> None:
    splitter = SentenceSplitter(first_min_chars=None)
    assert splitter.feed("It costs 3.") == []  # could be 3.50
    assert splitter.feed("50 today.") == []  # the next word may start in lower case
    assert splitter.feed(" Then") == ["It costs 3.50 today."]
    assert splitter.flush() == ["Then"]


def test_code_blocks_are_held_until_closed_then_dropped() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Run this:\n``") == ["Run this:"]
    assert splitter.feed("`bash\necho one. Two three.\n") == []
    assert splitter.feed("ls -la. Done?\n``") == []
    assert splitter.feed("`\nIt lists files. ") == []
    assert splitter.feed("Next") == ["It lists files."]
    assert splitter.flush() == ["Next"]


def test_raw_pieces_when_not_cleaning() -> None:
    assert split("**Hi** there. See [x](http://a.b).", clean=False, first_min_chars=None) == [
        "**Hi** there.",
        "See [x](http://a.b).",
    ]


def test_reset_and_flush_start_a_new_reply() -> None:
    splitter = SentenceSplitter(first_min_chars=10)
    assert splitter.feed("Half a sentence, in") == ["Half a sentence,"]
    splitter.reset()
    assert splitter.feed("```\ncode") == []
    assert splitter.flush() == []
    assert splitter.feed("Fresh start, again. ") == ["Fresh start,"]  # the first clause of the new reply
    assert splitter.feed("X") == ["again."]


REPLIES = [
    "Sure! Mr. Smith met Dr. Jones at 3.14 p.m. yesterday, i.e. after lunch. They talked about the U.S. economy... "
    "it was fine. Then they left.",
    "## Recipe\nHere is how:\n1. Preheat the oven to 200°C.\n2. Mix **flour**, _sugar_ and eggs.\n\n```python\n"
    "print('not spoken. Really.')\n```\nEnjoy! 🎉 See https://example.com/recipes?id=3. Bye.",
    "| Name | Age |\n|---|---|\n| Bob | 42 |\n\nThat's the table. " + ", ".join(["it goes on and on"] * 20) + ".",
    'He said "Stop!" and left. She replied, "Why?" Nobody knew... really. The end',
]


@pytest.mark.parametrize("reply", REPLIES)
def test_random_deltas_give_the_same_sentences(reply: str) -> None:
    whole = split(reply)
    assert whole and all(whole)
    for seed in range(40):
        rng = random.Random(seed)
        splitter = SentenceSplitter()
        pieces: list[str] = []
        i = 0
        while i < len(reply):
            size = rng.choice([1, 1, 2, 3, 5, 8, 13, 40])
            pieces += splitter.feed(reply[i : i + size])
            i += size
        pieces += splitter.flush()
        assert pieces == whole, f"seed {seed}"


def test_first_piece_is_capped_at_a_word_boundary() -> None:
    text = "You said: The quick brown fox jumps over the lazy dog. Then the second sentence follows, at ease."
    for size in (1, 3, 7, len(text)):
        splitter = SentenceSplitter(clean=False, first_max_chars=40)
        pieces = [p for i in range(0, len(text), size) for p in splitter.feed(text[i : i + size])]
        pieces += splitter.flush()
        assert pieces == [
            "You said: The quick brown fox jumps",
            "over the lazy dog.",
            "Then the second sentence follows, at ease.",
        ]
    # A first sentence shorter than the cap is left whole.
    splitter = SentenceSplitter(clean=False, first_max_chars=40)
    assert splitter.feed("Sure! Here it is.") + splitter.flush() == ["Sure!", "Here it is."]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        (
            "Then I went to see my good friend Dr. Smithson-Hartley today.",
            ["Then I went to see my good friend", "Dr. Smithson-Hartley today."],
        ),
        (
            "Yesterday the famous writer J. R. R. Tolkien wrote it.",
            ["Yesterday the famous writer", "J. R. R. Tolkien wrote it."],
        ),
        (
            "Please walk along the corridor to No. 12345 today.",
            ["Please walk along the corridor to", "No. 12345 today."],
        ),
    ],
)
def test_the_first_piece_is_never_cut_after_an_abbreviation(text: str, pieces: list[str]) -> None:
    """Cut at "Dr. | Smith", the piece would be spoken as a sentence of its own: "Doctor." and a pause."""
    for size in (1, 3, len(text)):
        splitter = SentenceSplitter(clean=False, first_max_chars=40)
        out = [p for i in range(0, len(text), size) for p in splitter.feed(text[i : i + size])]
        assert out + splitter.flush() == pieces, size


@pytest.mark.parametrize("abbreviation", ["No. 12345", "Dr. Smithson", "J. Robertson"])
def test_a_long_run_is_never_cut_after_an_abbreviation(abbreviation: str) -> None:
    head = "one two three four five six seven"
    text = f"{head} {abbreviation} and eight nine ten eleven twelve thirteen fourteen fifteen"
    assert text.index(abbreviation) + abbreviation.index(" ") < 40 < text.index(" and")  # the space by 2 * max_chars
    for size in (1, 4, len(text)):
        splitter = SentenceSplitter(clean=False, max_chars=20, first_min_chars=None)
        out = [p for i in range(0, len(text), size) for p in splitter.feed(text[i : i + size])]
        assert (out + splitter.flush())[0] == head, size
