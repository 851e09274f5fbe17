"""The server's own words in each language it speaks: one JSON catalogue per language in ``core/locales/``.

Adding a language is adding one file with the same keys (a test holds every catalogue to English's keys and
placeholders). Plural forms follow CLDR's categories: English has one/other; Russian one/few/many (1 сообщение,
2 сообщения, 5 сообщений), rules from the Unicode CLDR plural rules chart.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

LOCALES = Path(__file__).resolve().parent / "locales"
DEFAULT = "en"


@functools.cache
def catalogue(locale: str) -> dict[str, str]:
    """The messages of ``locale`` (read once; an unknown locale has none)."""
    path = LOCALES / f"{locale}.json"
    if not path.is_file():
        return {}
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return data


def locales() -> list[str]:
    """Every language the server has words for."""
    return sorted(p.stem for p in LOCALES.glob("*.json"))


def translate(locale: str | None, key: str, **params: object) -> str:
    """The message ``key`` in ``locale`` (falling back to English), with ``{name}`` placeholders filled."""
    for lang in (locale or DEFAULT, DEFAULT):
        text = catalogue(lang).get(key)
        if text is not None:
            return text.format(**params)
    raise KeyError(key)


def plural(locale: str | None, key: str, count: int, **params: object) -> str:
    """``key.<category>`` for ``count`` in ``locale``'s plural rules (``key.other`` when a form is missing)."""
    lang = locale or DEFAULT
    category = _category(lang, count)
    for lang_ in (lang, DEFAULT):
        words = catalogue(lang_)
        text = words.get(f"{key}.{category}") or words.get(f"{key}.other")
        if text is not None:
            return text.format(count=count, **params)
    raise KeyError(key)


def _category(locale: str, n: int) -> str:
    if locale in ("ru", "uk", "be"):
        if n % 10 == 1 and n % 100 != 11:
            return "one"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "few"
        return "many"
    return "one" if n == 1 else "other"
