"""The page's translations: every language has every key with the same placeholders, every key is used, and the
page (index.html and its scripts) writes no words of its own outside them."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "web_bot" / "static"
I18N = STATIC / "i18n"
TEMPLATE = ROOT / "web_bot" / "templates" / "index.html"
SCRIPTS = sorted(STATIC.glob("*.js"))
PLURAL_FORMS = {"zero", "one", "two", "few", "many", "other"}  # CLDR's categories; which a language has: its rules
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")
MARKUP = re.compile(r"</?(?:strong|kbd)>")
KEY = re.compile(r"[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)+")
LETTER = re.compile(r"[^\W\d_]")


def catalogue(code: str) -> dict[str, str]:
    data = json.loads((I18N / f"{code}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and all(isinstance(v, str) for v in data.values()), f"{code}.json: not flat"
    return data


def languages() -> dict[str, str]:
    names: dict[str, str] = json.loads((I18N / "languages.json").read_text(encoding="utf-8"))
    return names


ENGLISH = catalogue("en")
TRANSLATIONS = [code for code in languages() if code != "en"]


def grouped(entries: dict[str, str]) -> dict[str, dict[str | None, str]]:
    """Keys with their plural forms gathered: ``{"a.b": {None: text}, "n.x": {"one": …, "other": …}}``."""
    groups: dict[str, dict[str | None, str]] = {}
    for key, text in entries.items():
        base, _, last = key.rpartition(".")
        if last in PLURAL_FORMS:
            groups.setdefault(base, {})[last] = text
        else:
            groups.setdefault(key, {})[None] = text
    return groups


# ---- the catalogues --------------------------------------------------------------------------------------------


def test_languages_json_lists_exactly_the_catalogues() -> None:
    names = languages()
    files = {path.stem for path in I18N.glob("*.json")} - {"languages"}
    assert set(names) == files, f"listed without a file: {set(names) - files}; files not listed: {files - set(names)}"
    assert "en" in names, "English is the page's fallback: it must be there"
    for code, name in names.items():
        assert re.fullmatch(r"[a-z]{2,3}(-[A-Z][a-z]{3})?(-[A-Z]{2})?", code), f"{code}: not a BCP 47 tag"
        assert name.strip() and name == name.strip(), f"{code}: its name, written in the language itself"


def test_english_is_the_reference() -> None:
    for key, forms in grouped(ENGLISH).items():
        assert KEY.fullmatch(key), f"en.json: {key!r} is not a dotted lower-case key"
        if None in forms:
            assert len(forms) == 1, f"en.json: {key} is both a key and a plural group"
        else:
            assert set(forms) == {"one", "other"}, f"en.json: {key} needs exactly the forms one and other"
        for text in forms.values():
            assert text.strip() and text == text.strip(), f"en.json: {key}: {text!r}"


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_a_translation_has_every_key_and_no_other(code: str) -> None:
    english, other = grouped(ENGLISH), grouped(catalogue(code))
    assert other.keys() == english.keys(), (
        f"{code}.json misses {sorted(english.keys() - other.keys())}; "
        f"has keys English does not: {sorted(other.keys() - english.keys())}"
    )
    for key, forms in other.items():
        plural = None not in english[key]
        assert (None not in forms) == plural, f"{code}.json: {key} is a plural group in one file and not the other"
        if plural:
            # Exactly which forms a language needs is checked in the browser, against its Intl.PluralRules.
            assert "other" in forms, f"{code}.json: {key} has no 'other' form"
        for text in forms.values():
            assert text.strip() and text == text.strip(), f"{code}.json: {key}: {text!r}"


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_a_translation_has_the_same_placeholders_and_markup(code: str) -> None:
    english, other = grouped(ENGLISH), grouped(catalogue(code))
    for key, forms in other.items():
        reference = english[key].get(None) or english[key]["other"]
        wanted = set(PLACEHOLDER.findall(reference))
        for form, text in forms.items():
            where = f"{code}.json: {key}" + (f".{form}" if form else "")
            assert set(PLACEHOLDER.findall(text)) == wanted, f"{where}: placeholders {PLACEHOLDER.findall(text)}"
            assert sorted(MARKUP.findall(text)) == sorted(MARKUP.findall(reference)), f"{where}: markup differs"
        for form, text in english[key].items():
            assert set(PLACEHOLDER.findall(text)) == wanted, f"en.json: {key}.{form}: placeholders differ"


def test_markup_in_translations_is_only_strong_and_kbd_and_balanced() -> None:
    for code in languages():
        for key, text in catalogue(code).items():
            tags = re.findall(r"</?[a-zA-Z][^>]*>", text)
            assert all(MARKUP.fullmatch(tag) for tag in tags), f"{code}.json: {key}: only <strong> and <kbd>: {tags}"
            depth: list[str] = []
            for tag in tags:
                if tag.startswith("</"):
                    assert depth and depth.pop() == tag[2:-1], f"{code}.json: {key}: {tag} closes nothing"
                else:
                    assert not depth, f"{code}.json: {key}: markup does not nest"
                    depth.append(tag[1:-1])
            assert not depth, f"{code}.json: {key}: <{depth[-1]}> is never closed"


def test_russian_plurals_have_all_four_forms() -> None:
    # 1 час, 2 часа, 5 часов (and 1.5 часа: "other"); the browser test checks the forms are picked right.
    for key, forms in grouped(catalogue("ru")).items():
        if None not in forms:
            assert set(forms) == {"one", "few", "many", "other"}, f"ru.json: {key}: {sorted(forms)}"


# ---- keys used and keys defined --------------------------------------------------------------------------------


def script_sources() -> dict[str, str]:
    return {path.name: strip_comments(path.read_text(encoding="utf-8")) for path in SCRIPTS}


def template_keys() -> set[str]:
    html = TEMPLATE.read_text(encoding="utf-8")
    return set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', html))


def script_keys() -> set[str]:
    """Keys the scripts name: any string literal that looks like ``area.name`` in an area English has."""
    areas = {key.split(".")[0] for key in ENGLISH}
    found = set()
    for source in script_sources().values():
        for literal, _ in string_literals(source):
            if KEY.fullmatch(literal) and literal.split(".")[0] in areas:
                found.add(literal)
    return found


def test_every_key_the_page_names_is_in_english() -> None:
    defined = set(grouped(ENGLISH))
    missing = (template_keys() | script_keys()) - defined
    assert not missing, f"keys the page uses that en.json lacks: {sorted(missing)}"


def test_every_english_key_is_used() -> None:
    used = template_keys() | script_keys()
    # error.<code>: looked up as "error." + code; tests/test_error_codes.py holds them to errors.js's codes.
    unused = {key for key in grouped(ENGLISH) if key not in used and not key.startswith("error.")}
    assert not unused, f"keys in en.json nothing uses (remove them, or use them): {sorted(unused)}"


# ---- no words outside the catalogues ---------------------------------------------------------------------------


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
WORDY_ATTRIBUTES = {"title", "aria-label", "aria-description", "aria-roledescription", "placeholder", "alt"}
I18N_ATTRIBUTES = {"data-i18n", "data-i18n-title", "data-i18n-aria-label", "data-i18n-placeholder"}


class WordFinder(HTMLParser):
    """Words in the HTML that do not come from a catalogue: text outside data-i18n elements, wordy attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.check(tag, dict(attrs))
        if tag not in VOID:
            self.stack.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.check(tag, dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def check(self, tag: str, attrs: dict[str, str | None]) -> None:
        line = self.getpos()[0]
        for name in attrs.keys() & WORDY_ATTRIBUTES:
            self.problems.append(f"line {line}: <{tag} {name}=…> is written in the HTML; use data-i18n-{name}")
        for name in attrs:
            if name.startswith("data-i18n") and name not in I18N_ATTRIBUTES:
                self.problems.append(f"line {line}: <{tag} {name}> is not an attribute i18n.js fills")

    def handle_data(self, data: str) -> None:
        if not LETTER.search(data):
            return
        tags = [tag for tag, _ in self.stack]
        if {"script", "style", "svg"} & set(tags) or any(a.get("translate") == "no" for _, a in self.stack):
            return
        line = self.getpos()[0]
        if self.stack and "data-i18n" in self.stack[-1][1]:
            self.problems.append(f"line {line}: <{tags[-1]} data-i18n> holds words of its own: {data.strip()!r}")
        else:
            self.problems.append(f"line {line}: words outside the catalogues: {data.strip()!r}")


def test_the_html_has_no_words_of_its_own() -> None:
    html = TEMPLATE.read_text(encoding="utf-8")
    html = re.sub(r"\{#.*?#\}|\{%.*?%\}", "", html, flags=re.S)  # Jinja comments and statements
    finder = WordFinder()
    finder.feed(html)
    finder.close()
    assert not finder.problems, "\n".join(finder.problems)
    assert len(template_keys()) >= 20, "index.html no longer marks its words with data-i18n: teach this test"


def strip_comments(source: str) -> str:
    """The script with comments and regular expressions blanked (strings and template literals kept)."""
    out: list[str] = []
    i, n = 0, len(source)
    last = ""  # the last significant character outside comments, to tell a regex literal from a division
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        if source.startswith("/*", i):
            end = source.index("*/", i) + 2
            out.append("\n" * source.count("\n", i, end))
            i = end
            continue
        if c in "\"'`":
            j = i + 1
            while source[j] != c:
                j += 2 if source[j] == "\\" else 1
            out.append(source[i : j + 1])
            i, last = j + 1, c
            continue
        if c == "/" and (last in "(,=:[!&|?{};+-*%<>~^" or "".join(out[-8:]).rstrip().endswith("return")):
            j, in_class = i + 1, False
            while in_class or source[j] != "/":
                if source[j] == "\\":
                    j += 1
                elif source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                j += 1
            out.append("/~/")  # a regular expression: no words, and its quotes are no strings
            i, last = j + 1, "/"
            continue
        out.append(c)
        if not c.isspace():
            last = c
        i += 1
    return "".join(out)


LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'|`((?:[^`\\]|\\.)*)`')


def string_literals(source: str) -> list[tuple[str, int]]:
    """Every string literal's text (a template literal's ``${…}`` parts blanked) with its offset."""
    found = []
    for match in LITERAL.finditer(source):
        text = next(group for group in match.groups() if group is not None)
        if match.group(0).startswith("`"):
            text = re.sub(r"\$\{[^}]*\}", "", text)
        found.append((text, match.start()))
    return found


# Where a string becomes words on the page: assignments to text and wordy properties, wordy attributes, and the
# helpers that show text (the page's own: el()'s text, notices, message bubbles, cards, the voice panel).
SINK = re.compile(
    r"\.(?:textContent|innerText|title|placeholder|ariaLabel|alt)\s*=(?!=)"
    r"|setAttribute\(\s*\"(?:aria-label|aria-description|title|placeholder|alt)\""
    r"|\bel\(|\.(?:append|prepend|replaceChildren|after|before)\(|\bnew Option\("
    r"|\.(?:show|fail|setText|flash|setState|user)\(|(?<!console)\.error\("
)
# Literals in such statements that are not words: names of tags, classes, icons and attributes, and what a value
# is compared with.
NOT_WORDS = re.compile(
    r"\bel\(\s*\"[^\"]*\"\s*(?:,\s*(?:\"[^\"]*\"|null))?"  # el(tag, class, …)
    r"|\bicon\([^()]*\)"
    r"|(?:[sg]etAttribute|setState|querySelector(?:All)?|closest|getElementById|startsWith)\(\s*\"[^\"]*\""
    r"|friendlyError\([^,]*,"  # its code
    r"|commandLine\([^,()]*,\s*\"[^\"]*\""  # its state
    r"|\bform\.append\([^\n]*"  # a FormData field
    r"|(?:===|!==|==|!=|\bcase)\s*\"[^\"]*\""
    r"|\b[a-z]\w*:\s*\"[^\"]*\""  # { source: "voice", key: "sound" }: options, not words
)
# Anywhere in a script: a literal that reads like words for people: any letter beyond ASCII, a capitalised word
# and another, a phrase ending like a sentence, an ellipsis, or one capitalised word ("Today") that is not the name
# of a key or of a drag's data type. (Lower-case words outside the sinks above, "off" in a table, get through.)
SENTENCE = re.compile(
    r"(?![\x00-\x7f])[^\W\d_]|\b[A-Z][a-z]+\s+[A-Za-z]|[A-Za-z]\s.*[A-Za-z]{2}[.!?…]$|…"
    r"|^(?!(?:Enter|Space|Tab|Escape|Backspace|Delete|Home|End|Shift|Control|Alt|Meta|Files)$)"
    r"[A-Z][a-z]+(?:-[a-z]+)*[.!?]?$"
)


def hardcoded_words(name: str, source: str) -> list[str]:
    problems = []
    for text, offset in string_literals(source):
        if SENTENCE.search(text.strip()) and not KEY.fullmatch(text):
            line = source.count("\n", 0, offset) + 1
            problems.append(f"{name}:{line}: {text!r} reads like words for people: put it in i18n/en.json")
    for statement in re.split(r"[;{}]\s*\n", source):
        if not SINK.search(statement):
            continue
        for text, _ in string_literals(NOT_WORDS.sub("", statement)):
            if LETTER.search(text) and not KEY.fullmatch(text):
                problems.append(f"{name}: {text!r} is shown as it is, in: {' '.join(statement.split())[:160]}")
    return problems


def test_the_scripts_write_no_words_of_their_own() -> None:
    problems = [p for name, source in script_sources().items() for p in hardcoded_words(name, source)]
    assert not problems, "\n".join(problems)


def test_the_word_finder_finds_words() -> None:
    """The scanner above, on lines like the ones the page had before it was translated."""
    before = {
        'ui.connText.textContent = "Online";': True,
        'this.notice.show("Nothing was recorded. Check the microphone.", { timeout: 6000 });': True,
        'ui.mic.title = noSpeech || (voice.live ? "Hands-free is on: just talk" : t("mic.title"));': True,
        'this.sourceTag.append(icon("mic", "icon-svg small"), "audio file");': True,
        'reason.setAttribute("aria-label", "Upload progress");': True,
        'const LABELS = { failed: "Not sent", error: "Incomplete" };': True,
        'return "Микрофон не найден.";': True,
        'const row = el("dt", null, "Status");': True,
        'return dayKey(date) === today ? "Today" : dayName(date);': True,
        'if (event.key === "Escape" || types.includes("Files")) return;': False,
        "this.stateTag.textContent = `${count} messages`;": True,
        'if (event.code === "Space") ui.panel.hidden = false; // "Space" is a key, "Hold Space" is not': False,
        'node.setAttribute("role", "separator");': False,
        'const card = el("section", "card command"); const ok = /["\']/.test(text);': False,
        'console.error("web-bot: the page\'s words could not be loaded", err);': False,
        'message.setState("uploading", msg("state.uploading-percent", { percent }));': False,
    }
    for line, expected in before.items():
        found = hardcoded_words("example.js", strip_comments(line + "\n"))
        assert bool(found) == expected, (line, found)
