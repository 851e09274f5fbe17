"""Text for the voice: cut a streamed reply into sentences to speak, and strip what should not be read aloud.

``SentenceSplitter`` decides every cut from the text alone (never from where the deltas happened to break), so
the same reply always yields the same sentences. ``clean_for_speech`` reads a bare URL as its host name ("see
docs dot python dot org"): the host is what a listener can remember, and a path read aloud is noise.
"""

from __future__ import annotations

import html
import logging
import re
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

# --- clean_for_speech ------------------------------------------------------------------------------------------

_FENCED = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n?.*?(?:^[ \t]*\1[`~]*[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_AUTOLINK = re.compile(r"<((?:https?://|www\.)[^>\s]+)>")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\n]*)?/?>")
_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"\n]*\")?\)")
_REF_LINK = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
_REF_DEFINITION = re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S+.*$", re.MULTILINE)
_FOOTNOTE = re.compile(r"\[\^[^\]\n]+\]")
_INLINE_CODE = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]{}\"']*[^\s<>()\[\]{}\"'.,;:!?*_`]")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")
_BULLET = re.compile(r"^[ \t]*(?:[-*+•‣◦▪▸][ \t]+)(?:\[[ xX]\][ \t]+)?")
# "a. " is a list marker, but "p. 7" is a page.
_NUMBERED = re.compile(r"^[ \t]*(?:\d{1,3}[.)]|[a-z]\)|[a-z]\.(?![ \t]+\d)|[A-Z]\))[ \t]+")
_TABLE_SEPARATOR = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")
_EMPHASIS = (
    re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"),
    re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"),
    re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])"),
    re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])"),
)
_TIMES = re.compile(r"(?<=\d)[ \t]*[*×][ \t]*(?=\d)")
_STRAY_MARKUP = re.compile(r"[*_~=#]{2,}|(?<!\S)[*_~#](?!\S)|`")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])")
# Emoji and other pictographs: symbol blocks, dingbats, arrows, box drawing, flags, keycaps, skin tones,
# variation selectors and the zero-width joiner that glues emoji sequences together.
_PICTOGRAPHS = re.compile(
    "["
    "\U0001f000-\U0001faff"
    "\U00002190-\U000021ff"
    "\U00002300-\U000023ff"
    "\U00002460-\U000024ff"
    "\U00002500-\U000027bf"
    "\U00002900-\U00002bff"
    "\U00003030\U0000303d\U00003297\U00003299"
    "\U0000fe00-\U0000fe0f"
    "\U0000200d\U000020e3"
    "\U000e0020-\U000e007f"
    "]+"
)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:…])")
_REPEATED_PUNCT = re.compile(r"([,;:])(?:\s*[,;:])+")
_ENDS_CLAUSE = re.compile(r"[.!?…:;,。！？][\"'”’»)\]]*$")


def spoken_host(url: str) -> str:
    """How a URL is read aloud: its host without ``www.``, dots spoken ("example dot com"), or "a link"."""
    try:
        host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    except ValueError:
        host = ""
    host = host.removeprefix("www.")
    return host.replace(".", " dot ") if host else "a link"


def _table_row(line: str) -> str:
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return ", ".join(cell for cell in cells if cell)


def _clean_line(line: str) -> str:
    if _RULE.match(line) or _TABLE_SEPARATOR.match(line):
        return ""
    heading = _HEADING.match(line)
    if heading:
        line = heading.group(1)
    line = _QUOTE.sub("", line)
    line = _BULLET.sub("", line)
    line = _NUMBERED.sub("", line)
    stripped = line.strip()
    if stripped.startswith("|") or stripped.endswith("|") or stripped.count("|") >= 2:
        line = _table_row(stripped)
    return line


def clean_for_speech(text: str) -> str:
    """``text`` as it should be read aloud: no markdown, code, emoji or URLs; "" if nothing speakable is left."""
    # Entities first: "&#96;" or "&lt;b&gt;" is markup spelt another way, and must be cleaned like it.
    text = html.unescape(text).replace("\r\n", "\n").replace("\r", "\n")
    text = _FENCED.sub("\n", text)
    text = _ESCAPE.sub(r"\1", text)  # for the ear, an escaped * is as silent as any other
    text = _HTML_COMMENT.sub(" ", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _REF_DEFINITION.sub("", text)
    text = _FOOTNOTE.sub("", text)
    text = _INLINE_CODE.sub(lambda m: m.group(2).strip(), text)
    text = _TIMES.sub(" times ", text)
    text = _URL.sub(lambda m: spoken_host(m.group(0)), text)
    for pattern in (*_EMPHASIS, *_EMPHASIS):  # twice: ***both*** nests one inside the other
        text = pattern.sub(lambda m: m.group(m.lastindex or 1), text)
    text = _PICTOGRAPHS.sub(" ", text)
    lines = [" ".join(_STRAY_MARKUP.sub(" ", _clean_line(line)).split()) for line in text.split("\n")]
    lines = [line for line in lines if any(ch.isalnum() for ch in line)]
    # A line break is a pause: keep it as a full stop where the line did not end a clause already.
    spoken = " ".join(
        line if i == len(lines) - 1 or _ENDS_CLAUSE.search(line) else f"{line}." for i, line in enumerate(lines)
    )
    spoken = _SPACE_BEFORE_PUNCT.sub(r"\1", spoken)
    spoken = _REPEATED_PUNCT.sub(r"\1", spoken)
    spoken = " ".join(spoken.split())
    return spoken if any(ch.isalnum() for ch in spoken) else ""


# --- SentenceSplitter ------------------------------------------------------------------------------------------

_TERMINATORS = ".!?…。！？"
_CJK_TERMINATORS = "。！？"
_CLOSERS = "\"'”’»)]}*_"
_CLAUSE_MARKS = ",;:"
_DASHES = "-–—"
# Never the end of a sentence: titles before a name, and Latin abbreviations inside one.
_NEVER_FINAL = frozenset(
    {
        *("mr", "mrs", "ms", "mx", "dr", "prof", "rev", "hon", "st", "mt", "sgt", "lt", "col", "gen", "capt"),
        *("gov", "sen", "rep", "pres", "jr", "sr", "e.g", "eg", "i.e", "ie", "cf", "vs", "viz", "approx", "incl"),
        "esp",
    }
)
# Abbreviations that sit before a number ("No. 5", "Fig. 2", "Jan. 5").
_BEFORE_NUMBER = frozenset(
    {
        *("no", "nos", "vol", "ch", "fig", "figs", "sec", "p", "pp", "art"),
        *("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"),  # "Jan. 5"
    }
)
_WORD_BEFORE = re.compile(r"(?:^|(?<=[\s(\[\"'“‘]))([A-Za-z][A-Za-z.]*)$")
_FENCE_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})")


class SentenceSplitter:
    """Cuts a reply streamed as text deltas into speakable sentences, as soon as each is complete.

    ``max_chars``: a run without a sentence end is cut at a clause boundary (``,`` ``;`` ``:`` or a dash)
    between ``max_chars / 2`` and ``max_chars``, else at the first one after, else at a space by
    ``2 * max_chars``. ``first_min_chars``: the first sentence of a reply is cut at its first clause boundary
    past this many characters, so speech starts sooner (None: wait for a full sentence). ``first_max_chars``: with
    no boundary by then, the first piece is cut at its last space (prosody traded for first-audio latency; None:
    never). Fenced code blocks
    are held until they close and then dropped. With ``clean`` (the default) pieces come out through
    ``clean_for_speech``; a piece with nothing to say is never returned.
    """

    def __init__(
        self,
        *,
        max_chars: int = 150,
        first_min_chars: int | None = 24,
        first_max_chars: int | None = None,
        clean: bool = True,
    ) -> None:
        self.max_chars = max_chars
        self.first_min_chars = first_min_chars
        self.first_max_chars = first_max_chars
        self.clean = clean
        self.reset()

    def reset(self) -> None:
        """Forget the reply in progress (a new reply, or the old one was interrupted)."""
        self._buffer = ""
        self._line_start = True
        self._first = True
        self._code_scan = 0  # inside a held code block: where to resume looking for its closing fence

    def feed(self, delta: str) -> list[str]:
        """Add a delta; return the sentences it completed."""
        self._buffer += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """The reply is over: return whatever is left, then start afresh."""
        out = self._drain(final=True)
        self.reset()
        return out

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while self._buffer:
            cut = self._next_cut(self._buffer, final)
            if cut is None:
                break
            end, speak = cut
            piece = self._buffer[:end]
            self._buffer = self._buffer[end:]
            self._line_start = piece.endswith("\n")
            if speak:
                spoken = clean_for_speech(piece)
                if spoken:
                    out.append(spoken if self.clean else piece.strip())
                    self._first = False
        return out

    def _next_cut(self, text: str, final: bool) -> tuple[int, bool] | None:
        """Where the next piece ends and whether to speak it, or None to wait for more text.

        Every decision looks only a bounded distance ahead and waits when that text has not arrived, so a
        cut found now is the cut the whole reply would give.
        """
        lead = len(text) - len(text.lstrip(" \t"))
        if lead == len(text):
            return (len(text), False) if final else None
        if self._line_start:
            fence = self._fence(text, lead, final)
            if fence is not None:
                return (fence, False) if fence >= 0 else None
        return self._sentence(text, lead, final)

    def _fence(self, text: str, lead: int, final: bool) -> int | None:
        """Where a code block opening ``text`` ends, -1 while it is open, None if ``text`` opens none."""
        rest = text[lead:]
        if len(rest) < 3 and not final and ("```".startswith(rest) or "~~~".startswith(rest)):
            return -1
        opened = _FENCE_OPEN.match(text)
        if opened is None:
            return None
        marker = opened.group(1)
        line_end = text.find("\n", opened.end())
        if line_end < 0:
            return len(text) if final else -1
        closing = re.compile(rf"\n[ \t]*{re.escape(marker[0])}{{{len(marker)},}}[ \t]*(?=\n)")
        found = closing.search(text, max(line_end, self._code_scan))
        if found is not None:
            self._code_scan = 0
            return found.end()
        if final:
            return len(text)
        self._code_scan = text.rfind("\n")  # a closing fence still arriving starts at the last line break
        return -1

    def _sentence(self, text: str, lead: int, final: bool) -> tuple[int, bool] | None:
        n = len(text)
        soft = lead + self.max_chars
        hard = lead + 2 * self.max_chars
        early = lead + self.first_min_chars if self._first and self.first_min_chars is not None else None
        # The first piece may also be cut at a word boundary, so the first audio is never held up by a long clause.
        first_cap = lead + self.first_max_chars if self._first and self.first_max_chars else None
        clause = -1  # the last clause boundary between max_chars / 2 and max_chars
        past_soft = False
        i = lead
        while i < n:
            if first_cap is not None and i >= first_cap:
                space = self._last_space(text, lead, i)
                if space > (early if early is not None else lead):
                    return (space, True)
                first_cap = None
            if i >= hard:
                space = self._last_space(text, lead, hard + 1)
                if space + 1 >= n and not final:
                    return None  # whether "No." there binds to the next word depends on text still to come
                cut = space if space > lead else hard
                return (cut, True)
            if not past_soft and i >= soft:
                if clause > 0:
                    return (clause, True)
                past_soft = True
            ch = text[i]
            if ch == "\n":
                return (i + 1, True)
            if ch in _TERMINATORS:
                decision = self._terminator(text, lead, i, final)
                if decision is None:
                    return None
                is_end, after = decision
                if is_end:
                    return (after, True)
                i = max(after, i + 1)
                continue
            if ch in _CLAUSE_MARKS or (ch in _DASHES and i > lead and text[i - 1] == " "):
                if i + 1 >= n:
                    if not final:
                        return None
                elif text[i + 1] in " \t\n":
                    boundary = i + 1
                    if past_soft or (early is not None and boundary >= early):
                        return (boundary, True)
                    if boundary >= lead + self.max_chars // 2:
                        clause = boundary
            i += 1
        return (n, True) if final else None

    def _terminator(self, text: str, lead: int, i: int, final: bool) -> tuple[bool, int] | None:
        """Whether the run of terminators at ``i`` ends a sentence, and where the sentence then ends."""
        n = len(text)
        j = i
        while j < n and text[j] in _TERMINATORS:
            j += 1
        k = j
        while k < n and text[k] in _CLOSERS:
            k += 1
        run = text[i:j]
        if any(ch in _CJK_TERMINATORS for ch in run):
            if k < n or final:
                return True, k
            return None
        if k >= n:
            return (True, k) if final else None
        if text[k] not in " \t\n":
            return False, k  # "3.14", "e.g", "example.com", "?q=1": inside a token
        m = k
        while m < n and text[m] in " \t":
            m += 1
        if m >= n:
            return (True, k) if final else None
        following = text[m]
        if following == "\n":
            return True, k
        if following.islower():
            return False, k  # "etc. and", "Wait... what", '"Stop!" he said'
        if run == ".":
            return not self._abbreviation(text, lead, i, following), k
        return True, k

    def _last_space(self, text: str, lead: int, end: int) -> int:
        """The last space before ``end`` to cut a piece at, -1 if none: never one that parts an abbreviation from
        the word it belongs to ("Dr. | Smith", "J. | R. R. Tolkien", "No. | 5"), which would be spoken as a
        sentence of its own."""
        space = text.rfind(" ", lead + 1, end)
        while space > lead and text[space - 1] == "." and space + 1 < len(text):
            if not self._abbreviation(text, lead, space - 1, text[space + 1]):
                break
            space = text.rfind(" ", lead + 1, space)
        return space

    def _abbreviation(self, text: str, lead: int, i: int, following: str) -> bool:
        before = text[lead:i]
        if before.strip().isdigit():
            return True  # "2. Then" is a numbered list marker
        found = _WORD_BEFORE.search(before)
        if found is None:
            return False
        word = found.group(1)
        lowered = word.lower()
        if lowered in _NEVER_FINAL or ("." in word and all(len(part) <= 2 for part in word.split("."))):
            return True  # "Dr. Smith", "e.g. This", "the U.S. Army", "Ph.D. Thesis"; not "example.com."
        if lowered in _BEFORE_NUMBER and following.isdigit():
            return True
        return len(word) == 1 and word != "I"  # an initial: "J. Smith"
