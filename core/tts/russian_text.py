"""Text cleaning for Festival's Russian voice (festvox-ru, ``msu_ru_nsh_clunits``).

festvox-ru drops the whole utterance (no audio at all) on a single character its letter-to-sound rules lack. Its
alphabet is Cyrillic А-Я а-я Ё ё, Latin A-Z a-z and digits, with ``-`` and ``'`` inside words; Festival's tokenizer
strips ASCII punctuation (``. , ! ? ; :``) from the edges of words. Everything else (— – « » “ ” … % № @ \\ emoji,
a decimal comma inside "3,5") silences the sentence, so it is written out as words or removed here.
"""

from __future__ import annotations

import re
import unicodedata

_LETTER = "A-Za-zА-Яа-яЁё"
# A dash between words, or a double hyphen, is a pause; a hyphen inside a word ("кто-то") stays.
_DASHES = re.compile(r"\s*[\u2012\u2013\u2014\u2015\u2212]\s*|\s+-\s+|\s*--+\s*")
_HYPHENS = re.compile(r"[\u2010\u2011]")  # Unicode hyphens: plain "-"
# A typographic apostrophe between letters ("д’Артаньян") is the apostrophe festvox-ru knows.
_APOSTROPHE = re.compile(rf"(?<=[{_LETTER}])[’ʼ`´](?=[{_LETTER}])")
_QUOTES = re.compile(r"[«»“”„‟\"`´‘’‚‛‹›]")
_BRACKETS = re.compile(r"[()\[\]{}]")
_MINUS = re.compile(r"(^|[\s(\[{])[\u2212\u2013-](?=\d)")  # −5, -5, (-5): a negative number
_GROUPED = re.compile(r"(?<=\d) (?=\d{3}\b)")  # 1 500 -> 1500 (festvox-ru reads only all-digit tokens)
_DECIMAL = re.compile(r"(\d)[.,](?=\d)")  # 3,5 and 3.5 -> 3 запятая 5
_WORDS = {
    **{"%": "процентов", "№": "номер", "&": "и", "@": "собака", "+": "плюс", "=": "равно"},
    **{"$": "долларов", "€": "евро", "₽": "рублей", "°": "градусов"},
}
_SYMBOLS = re.compile("[" + re.escape("".join(_WORDS)) + "]")
_CURRENCY_FIRST = re.compile(r"([$€₽])\s?(\d+)")  # $100 -> 100 $ (read "100 долларов")
_CELSIUS = re.compile(r"°\s?[CС]\b")  # Latin or Cyrillic C
# Letters of neighbouring alphabets that festvox-ru lacks, as the nearest it has.
_NEAREST = str.maketrans(
    {"і": "и", "І": "И", "ї": "йи", "Ї": "Йи", "є": "е", "Є": "Е", "ґ": "г", "Ґ": "Г", "ў": "у", "Ў": "У"}
    | {"ß": "ss", "æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d"}
)
_NOT_ALLOWED = re.compile(rf"[^0-9{_LETTER}\s.,!?;:\-']")
_LONE_APOSTROPHE = re.compile(rf"(?<![{_LETTER}])'|'(?![{_LETTER}])")
_LONE_HYPHEN = re.compile(rf"(?<![0-9{_LETTER}])-|-(?![0-9{_LETTER}])")
# Punctuation must hang on a word: festvox-ru reads a lone "." or "," as a word and fails on it.
_PUNCT_RUN = re.compile(r"\s*([.,!?;:])[\s.,!?;:]*")
_ORPHAN = re.compile(r"(^|\s)[.,!?;:]+")
_SPEAKABLE = re.compile(rf"[0-9{_LETTER}]")
_STRESS = "\u0301"  # a combining acute, as Russian texts mark stress ("за́мок")


def _latin_base(char: str) -> str:
    """A Latin letter with a diacritic as its plain letter ("é" -> "e"); any other character unchanged."""
    if char.isascii() or not char.isalpha() or "LATIN" not in unicodedata.name(char, ""):
        return char
    base = "".join(part for part in unicodedata.normalize("NFKD", char) if not unicodedata.combining(part))
    return base if base.isascii() else char


def for_festival(text: str) -> str:
    """``text`` in festvox-ru's alphabet, with symbols and numbers it cannot read written out; empty if nothing
    speakable is left (a dash, an ellipsis, an emoji)."""
    text = unicodedata.normalize("NFD", text).replace(_STRESS, "")
    text = unicodedata.normalize("NFC", text)  # й and ё recomposed
    text = "".join(" " if unicodedata.category(c) in ("Zs", "Cc") else _latin_base(c) for c in text)
    text = text.translate(_NEAREST)
    text = text.replace("…", ". ")
    text = _HYPHENS.sub("-", text)
    text = _APOSTROPHE.sub("'", text)
    text = _MINUS.sub(r"\1минус ", text)
    text = _DASHES.sub(", ", text)
    text = _QUOTES.sub(" ", text)
    text = _GROUPED.sub("", text)
    text = _DECIMAL.sub(r"\1 запятая ", text)
    text = _CELSIUS.sub(" градусов Цельсия", text)
    text = _CURRENCY_FIRST.sub(r"\2 \1", text)
    text = _SYMBOLS.sub(lambda match: f" {_WORDS[match.group(0)]} ", text)
    text = _BRACKETS.sub(", ", text)
    text = _NOT_ALLOWED.sub(" ", text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    text = _LONE_HYPHEN.sub(" ", text)
    text = " ".join(text.split())
    text = _PUNCT_RUN.sub(lambda match: match.group(1) + " ", text)  # "да ." -> "да. ", "?!" -> "? "
    text = _ORPHAN.sub(r"\1", text)
    text = " ".join(text.split())
    return text if _SPEAKABLE.search(text) else ""


def plain_words(text: str) -> str:
    """Only the letters and digits of ``text``, as words: the last thing to try when festvox-ru refuses a text."""
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def scheme_string(text: str) -> str:
    """``text`` as a Scheme string literal (``for_festival`` leaves neither a backslash nor a quote; quote anyway)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
