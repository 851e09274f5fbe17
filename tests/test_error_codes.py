"""One source of truth for error codes: ``core.errors.ErrorCode`` against the raise sites, the page and the README."""

from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path

import core.errors
from core.errors import ErrorCode

ROOT = Path(__file__).resolve().parent.parent
SERVER_SOURCES = sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "web_bot").rglob("*.py")])
STATIC = ROOT / "web_bot" / "static"
I18N = STATIC / "i18n"
CODES = {code.value for code in ErrorCode}
KEBAB = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")


def openai_suffixes() -> set[str]:
    """The suffixes ``openai_error`` returns; ``code=f"llm-{suffix}"`` builds a code from one of them."""
    path = ROOT / "core" / "llm" / "openai_chat.py"
    function = next(
        node
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and node.name == "openai_error"
    )
    suffixes = {
        node.value.elts[0].value
        for node in ast.walk(function)
        if isinstance(node, ast.Return)
        and isinstance(node.value, ast.Tuple)
        and isinstance(node.value.elts[0], ast.Constant)
        and isinstance(node.value.elts[0].value, str)
    }
    assert suffixes, "openai_error returns no (suffix, message) tuples any more: teach this test where codes come from"
    return suffixes


def last_name(node: ast.expr) -> str | None:
    """``x`` for the name ``x`` or an attribute ``….x``."""
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None


class CodeScan(ast.NodeVisitor):
    """The codes one module sends (``sent``) and the codes it only compares against (``checked``), with lines."""

    def __init__(self, where: str, suffixes: set[str]) -> None:
        self.where = where
        self.suffixes = suffixes
        self.sent: dict[str, list[str]] = {}
        self.checked: dict[str, list[str]] = {}

    def visit_keyword(self, node: ast.keyword) -> None:  # raise STTError("…", code="no-speech")
        if node.arg == "code":
            self._send(node.value)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._assigned(target, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._assigned(node.target, node.value)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:  # JSONResponse({"code": "bad-request", "detail": …})
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "code":
                self._send(value)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:  # ErrorEvent("…", message)
        if isinstance(node.func, ast.Name) and node.func.id == "ErrorEvent" and node.args:
            self._send(node.args[0])
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:  # err.code == "audio-too-large", err.code not in (…)
        if last_name(node.left) == "code":
            for comparator in node.comparators:
                items = comparator.elts if isinstance(comparator, (ast.Tuple, ast.List, ast.Set)) else [comparator]
                for item in items:
                    if isinstance(item, ast.Constant) and isinstance(item.value, str):
                        self._note(self.checked, item.value, item)
        self.generic_visit(node)

    def _assigned(self, target: ast.expr, value: ast.expr) -> None:
        if last_name(target) in ("code", "default_code"):  # default_code = "tts-failed"; code = "…" if … else "…"
            self._send(value)
        elif isinstance(target, ast.Name) and target.id.endswith("_CODES") and isinstance(value, ast.Dict):
            for item in value.values:  # _CODES = {"timeout": "stt-unavailable", …}: suffix -> code
                self._send(item)
        elif isinstance(target, ast.Name) and target.id.endswith("_FOR_CODE") and isinstance(value, ast.Dict):
            for key in value.keys:  # STATUS_FOR_CODE = {"bad-request": 400, …}: code -> something
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    self._note(self.checked, key.value, key)

    def _send(self, expr: ast.expr) -> None:
        for code in self._codes(expr):
            self._note(self.sent, code, expr)

    def _codes(self, expr: ast.expr) -> set[str]:
        """The codes ``expr`` can evaluate to; a name or attribute passes on a code made elsewhere."""
        if isinstance(expr, ast.Constant):
            return {expr.value} if isinstance(expr.value, str) else set()  # websocket.close(code=1008) is no code
        if isinstance(expr, (ast.Name, ast.Attribute)):
            return set()
        if isinstance(expr, ast.IfExp):
            return self._codes(expr.body) | self._codes(expr.orelse)
        if isinstance(expr, ast.BoolOp):
            return set().union(*(self._codes(value) for value in expr.values))
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "get":
            # _CODES.get(suffix, "stt-failed"): the mapping's values are collected where it is defined.
            return self._codes(expr.args[1]) if len(expr.args) > 1 else set()
        if (
            isinstance(expr, ast.JoinedStr)
            and len(expr.values) == 2
            and isinstance(prefix := expr.values[0], ast.Constant)
            and isinstance(prefix.value, str)
            and isinstance(formatted := expr.values[1], ast.FormattedValue)
            and isinstance(formatted.value, ast.Name)
            and formatted.value.id == "suffix"
        ):
            return {f"{prefix.value}{suffix}" for suffix in self.suffixes}  # f"llm-{suffix}" after openai_error
        raise AssertionError(
            f"{self.where}:{expr.lineno}: a code built in a way this test cannot read: {ast.unparse(expr)}; "
            "write it as a string constant, or teach CodeScan to read it"
        )

    def _note(self, found: dict[str, list[str]], code: str, node: ast.AST) -> None:
        found.setdefault(code, []).append(f"{self.where}:{getattr(node, 'lineno', '?')}")


def scan_server() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Every code core/ and web_bot/ send, and every code they compare against, each with where it is."""
    suffixes = openai_suffixes()
    sent: dict[str, list[str]] = {}
    checked: dict[str, list[str]] = {}
    for path in SERVER_SOURCES:
        scan = CodeScan(str(path.relative_to(ROOT)), suffixes)
        scan.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for code, places in scan.sent.items():
            sent.setdefault(code, []).extend(places)
        for code, places in scan.checked.items():
            checked.setdefault(code, []).extend(places)
    return sent, checked


def js_set(source: str, name: str) -> set[str]:
    """``const NAME = new Set([ "code", … ]);`` (optionally exported)."""
    match = re.search(rf"^(?:export )?const {name} = new Set\(\[(.*?)\]\);$", source, re.S | re.M)
    assert match, f"errors.js has no `const {name} = new Set([…]);`"
    assert re.fullmatch(r'(\s*"[a-z0-9-]+",?)*\s*', match.group(1)), f"{name} in errors.js holds more than codes"
    codes = re.findall(r'"([a-z0-9-]+)"', match.group(1))
    assert len(codes) == len(set(codes)), f"{name} in errors.js lists a code twice"
    return set(codes)


def errors_js() -> str:
    return (STATIC / "errors.js").read_text(encoding="utf-8")


def translations() -> dict[str, dict[str, str]]:
    """Every language the page speaks (static/i18n/languages.json) -> its catalogue."""
    names = json.loads((I18N / "languages.json").read_text(encoding="utf-8"))
    assert "en" in names, "the page has no English"
    return {code: json.loads((I18N / f"{code}.json").read_text(encoding="utf-8")) for code in names}


def page_sentences(catalogue: dict[str, str]) -> dict[str, str]:
    """The catalogue's sentences for error codes: ``"error.<code>": "…"``."""
    return {key.removeprefix("error."): text for key, text in catalogue.items() if key.startswith("error.")}


def test_every_code_the_server_sends_is_an_error_code() -> None:
    sent, _ = scan_server()
    unknown = {code: places for code, places in sent.items() if code not in CODES}
    assert not unknown, f"codes sent but missing from ErrorCode: {unknown}"


def test_every_error_code_is_sent_somewhere() -> None:
    sent, _ = scan_server()
    dead = CODES - sent.keys()
    assert not dead, f"ErrorCode members nothing sends (dead codes): {sorted(dead)}"


def test_codes_the_server_compares_against_are_error_codes() -> None:
    _, checked = scan_server()
    unknown = {code: places for code, places in checked.items() if code not in CODES}
    assert not unknown, f"codes compared against but never sent: {unknown}"


def test_the_tree_in_the_errors_module_lists_every_code() -> None:
    doc = core.errors.__doc__ or ""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("BotError"))
    tree = itertools.takewhile(str.strip, lines[start:])
    assert {code for line in tree for code in KEBAB.findall(line)} == CODES


def test_the_page_has_words_for_every_server_code() -> None:
    source = errors_js()
    friendly = js_set(source, "FRIENDLY")
    page_only = js_set(source, "PAGE_CODES")
    server_words = js_set(source, "SERVER_WORDS")
    assert not page_only & CODES, "a page-only code is one the server sends: move it to FRIENDLY"
    assert not friendly & page_only
    assert not friendly & server_words, "a code is either the page's sentence or the server's words, not both"
    assert friendly | server_words == CODES, (
        f"missing on the page: {sorted(CODES - friendly - server_words)}; "
        f"unknown to the server: {sorted((friendly | server_words) - CODES)}"
    )


def test_every_translation_has_a_sentence_for_every_code_the_page_explains() -> None:
    source = errors_js()
    explained = js_set(source, "FRIENDLY") | js_set(source, "PAGE_CODES")
    for language, catalogue in translations().items():
        sentences = page_sentences(catalogue)
        assert sentences.keys() == explained, (
            f"i18n/{language}.json: no sentence for {sorted(explained - sentences.keys())}; "
            f"sentences for codes errors.js does not explain: {sorted(sentences.keys() - explained)}"
        )


def test_the_page_sentences_are_sentences() -> None:
    for language, catalogue in translations().items():
        for code, text in page_sentences(catalogue).items():
            assert text[0].isupper() and text.endswith("."), f"{language}: {code}: {text!r}"
            assert code not in text, f"{language}: {code}: the sentence is for people, not a code"


def test_audio_codes_are_server_codes() -> None:
    audio = js_set(errors_js(), "AUDIO_CODES")
    assert audio <= CODES, f"AUDIO_CODES in errors.js holds codes the server never sends: {sorted(audio - CODES)}"
    assert {"no-speech", "empty-audio"} <= audio  # app.js treats these as a missed utterance in hands-free mode


def test_the_page_script_names_only_known_codes() -> None:
    known = CODES | js_set(errors_js(), "PAGE_CODES")
    named = set()
    for name in ("app.js", "uploads.js"):
        script = (STATIC / name).read_text(encoding="utf-8")
        named |= set(re.findall(r'(?:friendlyError|refuse)\("([a-z0-9-]+)"', script))
        named |= set(re.findall(r'code === "([a-z0-9-]+)"', script))
        named |= set(re.findall(r'code: "([a-z0-9-]+)"', script))
    assert named, "the page's scripts no longer name codes the way this test reads them"
    assert named <= known, f"codes the page's scripts name that nobody sends: {sorted(named - known)}"


def test_the_readme_table_lists_every_code() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert "| code | when |" in lines, "README.md has no error-code table headed | code | when |"
    start = lines.index("| code | when |")
    codes = []
    for row in itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2 :]):
        match = re.fullmatch(r"\| `([a-z0-9-]+)` \| .+ \|", row)
        assert match, f"README error-code table: {row!r} is not | `code` | when |"
        codes.append(match.group(1))
    assert len(codes) == len(set(codes)), "the README's error-code table lists a code twice"
    assert set(codes) == CODES, (
        f"missing from the README: {sorted(CODES - set(codes))}; not in ErrorCode: {sorted(set(codes) - CODES)}"
    )
