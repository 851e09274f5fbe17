"""The chat page in headless Chromium against a real server: text, commands, uploads, the microphone (Chromium's
fake device fed from generated speech), hands-free with barge-in, reconnection, offline typing, the page in another
language, screenshots."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from core.config import Settings
from core.speech_text import SentenceSplitter
from tests.conftest import Served
from tests.fakes.openai_server import FakeOpenAI, ThreadedServer, free_port
from tests.speech import SENTENCES, resample, silence, speak, wav, wer
from web_bot.app import create_app

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "web_bot" / "static"
I18N = STATIC / "i18n"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MIC_SENTENCE = SENTENCES[3]  # "My favourite colour is green." (short: every recording waits for it)
MIC_RATE = 48000
LEAD_S, TAIL_S = 0.3, 2.5  # silence around the sentence; Chromium loops the file
WHISPER = {"stt": {"engine": "whisper"}}
HOLD_MS = 300  # voice.js: a shorter press is a tap (it starts recording); a longer one sends on release
LONG_REPLY = " ".join(
    f"Sentence number {n} of a long answer about colours, which takes a while to say out loud." for n in range(1, 11)
)


# ---- the browser ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mic_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A WAV for Chromium's fake microphone: a pause, the sentence, a longer pause; and the speech's length."""
    pcm, rate = speak(MIC_SENTENCE)
    speech = resample(pcm, rate, MIC_RATE)
    path = tmp_path_factory.mktemp("mic") / "microphone.wav"
    path.write_bytes(wav(silence(LEAD_S, MIC_RATE) + speech + silence(TAIL_S, MIC_RATE), MIC_RATE))
    return path, len(speech) / 2 / MIC_RATE


@pytest.fixture(scope="module")
def browser(mic_file: tuple[Path, float]) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (scripts/system-deps.sh installs it)")
    fake_mic = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_file[0]}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + fake_mic)
        yield browser
        browser.close()


class Tab:
    """A page plus what it did that a test may want to check: script errors and dialogs."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def new_tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    """Opens pages in fresh contexts (own storage); fails the test if a page threw an uncaught error."""
    contexts: list[Any] = []
    tabs: list[Tab] = []

    def open_tab(**options: Any) -> Tab:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        options.setdefault("locale", "en-US")  # the page speaks the browser's language: English unless a test says
        context = browser.new_context(**options)
        contexts.append(context)
        tab = Tab(context.new_page())
        tabs.append(tab)
        return tab

    yield open_tab
    for context in contexts:
        context.close()
    errors = [e for tab in tabs for e in tab.errors]
    assert not errors, errors


def open_chat(tab: Tab, url: str) -> Any:
    page = tab.page
    page.goto(url + "/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    return page


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def replies(page: Any) -> Any:
    """Finished bot replies (stored: they carry a message id)."""
    return page.locator(".msg.bot[data-message-id] .text")


def voice_messages(page: Any) -> Any:
    return page.locator('.msg.user[data-source="voice"][data-message-id] .text')


@pytest.fixture
def scripted(fake_openai: FakeOpenAI) -> Iterator[dict[str, str]]:
    """Replies for this test only."""
    before = dict(fake_openai.scripted)
    yield fake_openai.scripted
    fake_openai.scripted.clear()
    fake_openai.scripted.update(before)


class Restartable:
    """A web-bot that can be stopped and started again on the same port (Served picks a new one each time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedServer | None = None

    def start(self) -> Restartable:
        app = create_app(self.settings)
        self._server = ThreadedServer(app, port=self.port, ws_max_size=16 * 1024 * 1024).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def restartable(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Restartable]]:
    started: list[Restartable] = []

    def make(overrides: dict[str, Any] | None = None) -> Restartable:
        server = Restartable(make_settings(overrides)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# ---- text, commands, safety ----------------------------------------------------------------------------------


def test_page_scripts_never_parse_text_as_html() -> None:
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function")
    for script in STATIC.glob("*.js"):
        found = sinks.findall(script.read_text())
        assert not found, f"{script.name}: {found}"


def test_text_chat_streams_and_commands_work(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings())
    tab = new_tab()
    page = open_chat(tab, served.url)
    expect(page.locator("#empty")).to_be_visible()

    # Every control has a name a screen reader can say.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, textarea, select, input:not([type=file])')]
             .filter(el => !el.closest('[hidden]'))
             .filter(el => !(el.getAttribute('aria-label') || el.labels?.length || el.textContent.trim()))
             .map(el => el.id)"""
    )
    assert unnamed == []

    send(page, "Tell me something [slow:0.3]")
    expect(page.locator(".msg.user .text")).to_have_text(["Tell me something [slow:0.3]"])
    streaming = page.locator(".msg.bot.streaming[aria-busy=true] .text")
    expect(streaming).to_have_text(re.compile(r"^You said"), timeout=5000)
    partial = streaming.text_content() or ""
    expected = "You said: Tell me something [slow:0.3]. (context 2 messages)"
    assert expected.startswith(partial.strip()) and len(partial.strip()) < len(expected)
    expect(replies(page)).to_have_text([expected], timeout=10000)
    expect(page.locator(".msg.bot .timing")).to_contain_text("LLM")
    expect(page.locator(".msg.user")).not_to_have_attribute("data-state", "sending")
    expect(page.locator("#empty")).to_be_hidden()

    # "/" lists the server's commands; the keyboard moves through them and picks one.
    page.fill("#input", "")
    page.type("#input", "/")
    options = page.locator("#suggest [role=option]")
    expect(options).to_have_count(5)
    expect(options.nth(0)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Escape")
    expect(page.locator("#suggest")).to_be_hidden()
    page.fill("#input", "")
    page.type("#input", "/he")
    expect(options).to_have_count(1)
    page.keyboard.press("Tab")
    expect(page.locator("#input")).to_have_value("/help ")
    page.keyboard.press("Enter")
    help_card = page.locator('.card[data-command="help"]')
    expect(help_card.locator(".cmd-name")).to_have_text(["/help", "/status", "/clear", "/info", "/voice"])

    send(page, "/nonsense")
    expect(page.locator('.card.error[data-code="unknown-command"]')).to_contain_text("Unknown command /nonsense")

    send(page, "/clear")
    expect(page.locator('.card[data-command="clear"]')).to_contain_text("Cleared 2 messages")
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator('.card[data-command="help"]')).to_have_count(0)
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    expect(page.locator("#empty")).to_be_visible()

    # A new conversation gets a new id and an empty view; "Go back" returns to the old one.
    send(page, "remember me")
    expect(replies(page)).to_have_count(1, timeout=10000)
    first_id = page.evaluate("webBot.clientId")
    page.click("#new-chat")
    expect(page.locator(".msg")).to_have_count(0)
    assert page.evaluate("webBot.clientId") != first_id
    assert page.evaluate("localStorage.getItem('web-bot-client-id')") == page.evaluate("webBot.clientId")
    page.click("#notice-action")
    expect(page.locator(".msg.user .text")).to_have_text(["remember me"], timeout=10000)
    assert page.evaluate("webBot.clientId") == first_id


def test_markup_in_messages_is_shown_as_text(new_tab, serve, make_settings, scripted) -> None:
    markup = '<img src=x onerror="alert(1)"> <b>bold</b> <script>alert(2)</script>'
    scripted["show me markup"] = markup
    served: Served = serve(make_settings())
    tab = new_tab()
    page = open_chat(tab, served.url)
    typed = "<img src=y onerror=alert(3)> show me markup"
    send(page, typed)
    expect(replies(page)).to_have_text([markup], timeout=10000)
    expect(page.locator(".msg.user .text")).to_have_text([typed])
    page.wait_for_timeout(300)  # room for a broken image's onerror to fire, were it an image
    assert page.locator("#log img, #log b, #log script").count() == 0
    assert tab.dialogs == []


def test_scrolling_follows_only_a_reader_at_the_bottom(new_tab, serve, make_settings, scripted) -> None:
    scripted["long one"] = " ".join(f"line {n}\n" for n in range(1, 120))
    served: Served = serve(make_settings())
    page = open_chat(new_tab(), served.url)
    log = page.locator("#log")
    send(page, "long one")
    expect(replies(page)).to_have_count(1, timeout=10000)
    at_bottom = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 100"
    assert log.evaluate(at_bottom)

    send(page, "long one again [slow:0.25] [chunks:10]")  # streams for ~6 s, long enough under load
    expect(page.locator(".msg.bot.streaming")).to_have_count(1, timeout=5000)
    log.evaluate("el => el.scrollTo({top: 0})")
    expect(page.locator("#jump")).to_be_visible(timeout=5000)
    expect(replies(page)).to_have_count(2, timeout=30000)
    assert log.evaluate("el => el.scrollTop") < 50  # the reader's place was kept while the reply streamed
    page.click("#jump")
    page.wait_for_function(
        "() => { const l = document.getElementById('log'); "
        "return l.scrollHeight - l.scrollTop - l.clientHeight < 100; }"
    )
    expect(page.locator("#jump")).to_be_hidden()


# ---- audio files ---------------------------------------------------------------------------------------------


def drop_file(page: Any, name: str, data: bytes, mime: str) -> None:
    """Drag a file over the window (the drop overlay shows), then drop it."""
    handle = page.evaluate_handle(
        """([name, b64, type]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type }));
            return transfer;
        }""",
        [name, base64.b64encode(data).decode(), mime],
    )
    page.dispatch_event("body", "dragenter", {"dataTransfer": handle})
    expect(page.locator("#drop")).to_be_visible()
    page.dispatch_event("body", "drop", {"dataTransfer": handle})
    expect(page.locator("#drop")).to_be_hidden()


def test_upload_wav_shows_progress_transcription_and_reply(new_tab, serve, make_settings, tmp_path) -> None:
    served: Served = serve(make_settings(WHISPER))
    page = open_chat(new_tab(), served.url)
    sentence = SENTENCES[1]
    pcm, rate = speak(sentence)
    clip = tmp_path / "reminder.wav"
    clip.write_bytes(wav(pcm, rate))

    page.set_input_files("#file", str(clip))
    upload = page.locator('.msg.user[data-source="upload"]').first
    expect(upload).to_have_attribute("data-message-id", re.compile(r"^\d+$"), timeout=20000)
    said = upload.locator(".text").text_content() or ""
    assert wer(sentence, said) <= 0.2, said
    expect(upload.locator(".text")).to_have_attribute("lang", "en")  # as the server heard it
    assert float(upload.get_attribute("data-progress-max") or 0) == 1.0
    expect(upload.locator(".upload-progress")).to_be_hidden()
    expect(replies(page)).to_have_text([f"You said: {said}. (context 2 messages)"], timeout=10000)
    expect(replies(page)).to_have_attribute("lang", "en")  # the reply to speech is in its language
    expect(page.locator(".msg.bot .timing")).to_contain_text("STT")

    # Problems come back as plain sentences in the file's own bubble.
    page.set_input_files("#file", files=[{"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"not audio " * 50}])
    broken = page.locator('.msg.user[data-source="upload"][data-state="failed"]')
    expect(broken.locator(".reason")).to_have_text(re.compile(r"isn't audio I can read|damaged"), timeout=10000)
    drop_file(page, "quiet.wav", wav(silence(1.0), 16000), "audio/wav")
    expect(broken.nth(1).locator(".reason")).to_have_text(re.compile(r"couldn't hear any speech"), timeout=15000)
    drop_file(page, "letter.pdf", b"%PDF-1.4", "application/pdf")
    expect(broken.nth(2).locator(".reason")).to_contain_text("isn't audio I can read")
    expect(replies(page)).to_have_count(1)

    # With the socket down, the HTTP response alone fills in the transcription and the reply.
    page.evaluate("webBot.connection.connect = () => {}; webBot.connection.dropSocket()")
    sentence = SENTENCES[4]
    pcm, rate = speak(sentence)
    page.set_input_files("#file", files=[{"name": "lights.wav", "mimeType": "audio/wav", "buffer": wav(pcm, rate)}])
    expect(replies(page)).to_have_count(2, timeout=20000)
    said = page.locator('.msg.user[data-source="upload"]').last.locator(".text").text_content() or ""
    assert wer(sentence, said) <= 0.2, said
    expect(replies(page).last).to_have_text(f"You said: {said}. (context 4 messages)")


# ---- the microphone ------------------------------------------------------------------------------------------


# Installed before the page's scripts: every frame its socket sends or receives, with when (performance.now()), and
# what each getUserMedia call asked for.
WIRE_TAP = """
(() => {
  const Native = window.WebSocket;
  const wire = (window.wire = []);
  const frame = (data) => {
    if (typeof data !== "string") return { type: "binary", bytes: data.byteLength ?? data.size };
    try {
      return JSON.parse(data);
    } catch {
      return { type: "text" };
    }
  };
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        wire.push({ way: "in", at: performance.now(), ...frame(event.data) });
      });
    }
    send(data) {
      wire.push({ way: "out", at: performance.now(), ...frame(data) });
      super.send(data);
    }
  };
  const devices = navigator.mediaDevices;
  const getUserMedia = devices.getUserMedia.bind(devices);
  window.micRequests = [];
  devices.getUserMedia = (constraints) => {
    window.micRequests.push(constraints);
    return getUserMedia(constraints);
  };
})();
"""


def wire(page: Any) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = page.evaluate("window.wire.map(({ history, ...rest }) => rest)")
    return frames


def asked_for_clean_speech(page: Any) -> None:
    """Every microphone request asked the browser to cancel echo (the bot's own voice) and suppress noise."""
    requests = page.evaluate("window.micRequests")
    assert requests, "the microphone was never opened"
    for constraints in requests:
        audio = constraints["audio"]
        assert audio["echoCancellation"] is True and audio["noiseSuppression"] is True, constraints


def pushed_turns(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each push-to-talk stream the page sent (audio_start … audio_stop) and what the server answered after it."""
    turns = []
    sent = [(i, f["type"]) for i, f in enumerate(frames) if f["way"] == "out"]
    starts = [i for i, kind in sent if kind == "audio_start"]
    for n, begin in enumerate(starts):
        stop = next(i for i, kind in sent if i > begin and kind == "audio_stop")
        after = frames[stop + 1 : starts[n + 1] if n + 1 < len(starts) else len(frames)]
        turns.append(
            {
                "start": frames[begin],
                "sent": [f for f in frames[begin:stop] if f["way"] == "out" and f["type"] == "binary"],
                "heard_while_held": [f["type"] for f in frames[begin:stop] if f["way"] == "in"],
                "released_at": frames[stop]["at"],
                "answer": [f for f in after if f["way"] == "in"],
                "sent_after": [f for f in after if f["way"] == "out" and f["type"] == "binary"],
            }
        )
    return turns


def first(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(e for e in events if e["type"] == kind)


def test_voice_button_hold_tap_and_space_stream_what_was_said(new_tab, serve, make_settings, mic_file) -> None:
    # Replies to speech are spoken (voice.replies = auto), so the time from release to the first audio shows.
    served: Served = serve(make_settings({**WHISPER, "tts": {"engine": "piper"}}))
    tab = new_tab()
    tab.page.add_init_script(WIRE_TAP)
    page = open_chat(tab, served.url)
    listen_s = LEAD_S + mic_file[1] + 0.4
    panel = page.locator("#voice-panel")

    def answered(count: int) -> None:
        """The count-th turn is over, spoken reply and all (a press while the bot speaks would be barge-in)."""
        expect(replies(page)).to_have_count(count, timeout=20000)
        page.wait_for_function(f"() => wire.filter(f => f.type === 'audio_done').length >= {count}", timeout=20000)

    # Hold the button (pointer events) while the sentence plays.
    page.locator("#mic").hover()
    page.mouse.down()
    expect(panel).to_have_attribute("data-state", "recording")
    expect(page.locator("#voice-hint")).to_have_text("Release to send")
    page.wait_for_timeout(listen_s * 1000)
    page.mouse.up()
    expect(panel).to_be_hidden()
    expect(voice_messages(page)).to_have_count(1, timeout=20000)
    heard = voice_messages(page).first.text_content() or ""
    assert wer(MIC_SENTENCE, heard) <= 0.2, heard
    expect(replies(page)).to_have_text([f"You said: {heard}. (context 2 messages)"], timeout=10000)
    assert float(panel.get_attribute("data-peak") or 0) > 0.2  # the level meter moved
    answered(1)

    # A short tap starts recording; the next tap sends.
    page.click("#mic")
    expect(page.locator("#voice-hint")).to_have_text("Tap again to send")
    page.wait_for_timeout(listen_s * 1000)
    page.click("#mic")
    expect(voice_messages(page)).to_have_count(2, timeout=20000)
    answered(2)

    # Holding Space (outside the text box) records; the key's auto-repeat does not restart anything.
    page.locator("#log").focus()
    page.keyboard.down("Space")
    expect(panel).to_have_attribute("data-state", "recording")
    page.keyboard.down("Space")  # a repeat
    page.wait_for_timeout(listen_s * 1000)
    page.keyboard.up("Space")
    expect(voice_messages(page)).to_have_count(3, timeout=20000)
    for text in voice_messages(page).all_text_contents():
        assert wer(MIC_SENTENCE, text) <= 0.2, text
    answered(3)
    assert page.locator(".msg.user[data-state=failed]").count() == 0

    # Each press streamed 20 ms PCM16 chunks while held, and its release ended the turn (the server ends none
    # itself in push-to-talk); no recording went up as one file, and nothing followed a release.
    frames = wire(page)
    turns = pushed_turns(frames)
    assert len(turns) == 3, [f["type"] for f in frames if f["way"] == "out"]
    timings = []
    for turn in turns:
        assert turn["start"]["mode"] == "push_to_talk" and turn["start"]["sample_rate"] == 16000, turn["start"]
        assert len(turn["sent"]) >= (listen_s - 0.5) / 0.02, len(turn["sent"])
        assert {f["bytes"] for f in turn["sent"]} == {640}
        assert "speech_started" in turn["heard_while_held"], turn["heard_while_held"]
        assert turn["sent_after"] == []
        answer = turn["answer"]
        assert first(answer, "speech_stopped")["reason"] == "push_to_talk"
        assert wer(MIC_SENTENCE, first(answer, "transcription")["text"]) <= 0.2
        assert "error" not in [e["type"] for e in answer], answer
        released = turn["released_at"]
        timings.append([first(answer, kind)["at"] - released for kind in ("transcription", "reply", "binary")])
    streamed = sum(1 for f in frames if f["way"] == "out" and f["type"] == "binary")
    assert streamed == sum(len(turn["sent"]) for turn in turns)  # every binary frame sent was inside a stream
    log = Path(served.settings.logging.file).read_text(encoding="utf-8")
    assert log.count(f"live audio from {page.evaluate('webBot.clientId')} at 16000 Hz") == 3
    asked_for_clean_speech(page)
    print("\npush-to-talk, release → transcription / reply text / first reply audio frame (ms):")
    for mode, (heard_ms, reply_ms, audio_ms) in zip(("hold", "tap", "Space"), timings, strict=True):
        print(f"  {mode:5} {heard_ms:6.0f} {reply_ms:6.0f} {audio_ms:6.0f}")
    print(f"  p50 release → first audio: {sorted(t[2] for t in timings)[1]:.0f} ms")

    # A slip (held past a tap, too short to be meant) says so, and sends nothing.
    page.locator("#mic").hover()
    page.mouse.down()
    page.wait_for_timeout(HOLD_MS + 50)
    page.mouse.up()
    expect(page.locator("#notice-text")).to_contain_text("That was too short")
    page.wait_for_timeout(300)
    assert [f for f in wire(page)[len(frames) :] if f["way"] == "out" and f["type"] != "ping"] == []

    # Offline, the button explains that speech cannot wait for the connection (nothing is kept, nothing opened).
    opened = page.evaluate("window.micRequests.length")
    page.evaluate("webBot.connection.connect = () => {}; webBot.connection.dropSocket()")
    page.locator("#log").focus()
    page.keyboard.down("Space")
    expect(page.locator("#notice-text")).to_contain_text("You're offline")
    page.keyboard.up("Space")
    expect(panel).to_be_hidden()
    assert page.evaluate("window.micRequests.length") == opened


def test_hands_free_turn_with_spoken_reply_and_barge_in(new_tab, serve, make_settings, scripted) -> None:
    scripted["colo"] = LONG_REPLY  # colour / color: long enough that the looping microphone talks over it
    served: Served = serve(make_settings({**WHISPER, "tts": {"engine": "piper"}}))
    tab = new_tab()
    tab.page.add_init_script(WIRE_TAP)
    page = open_chat(tab, served.url)
    voice = page.locator("#voice-replies")
    # voice.replies = auto: typing is answered in text only, and the server synthesises nothing for it.
    expect(voice).to_have_attribute("aria-pressed", "false")
    send(page, "a quiet answer please")
    expect(replies(page)).to_have_count(1, timeout=10000)
    send(page, "/voice")
    expect(page.locator('.card[data-command="voice"]').last).to_contain_text(
        "Spoken replies are on for speech, off for typing."
    )
    assert page.evaluate("webBot.player.stats.frames") == 0
    assert page.evaluate("localStorage.getItem('web-bot-voice-replies')") is None

    # Switched by hand, the choice is the user's: on, then off again (muted, nothing is even sent).
    voice.click()
    expect(voice).to_have_attribute("aria-pressed", "true")
    voice.click()
    expect(voice).to_have_attribute("aria-pressed", "false")
    send(page, "/voice")
    expect(page.locator('.card[data-command="voice"]').last).to_contain_text("Spoken replies are off.")
    assert page.evaluate("localStorage.getItem('web-bot-voice-replies')") == "off"
    voice.click()
    expect(voice).to_have_attribute("aria-pressed", "true")

    page.click("#hands-free")
    expect(page.locator("#hands-free")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#voice-panel")).to_have_attribute("data-state", re.compile("live-"))
    # Nothing else is pressed: the server's VAD hears the sentence, and a turn follows.
    expect(voice_messages(page).first).to_have_text(re.compile(r"green", re.I), timeout=20000)
    assert wer(MIC_SENTENCE, voice_messages(page).first.text_content() or "") <= 0.2
    page.wait_for_function("() => webBot.player.stats.scheduled > 0", timeout=20000)
    # The sentence comes round again while the bot is still talking: playback stops, the reply is cut.
    page.wait_for_function("() => webBot.player.stats.stopped > 0", timeout=20000)
    cut = page.locator('.msg.bot[data-state="interrupted"]').first
    expect(cut).to_be_visible(timeout=20000)
    assert len(cut.locator(".text").text_content() or "") < len(LONG_REPLY)
    states = page.evaluate("webBot.voice.states")
    for wanted in ("listening", "speaking", "thinking", "bot"):
        assert wanted in states, states
    started = [f for f in wire(page) if f["way"] == "out" and f["type"] == "audio_start"]
    assert [f["mode"] for f in started] == ["hands_free"]
    asked_for_clean_speech(page)

    page.click("#hands-free")
    expect(page.locator("#hands-free")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#voice-panel")).to_be_hidden()


def test_microphone_problems_are_explained(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings(WHISPER))
    failures = {
        "NotAllowedError": "Microphone access is blocked",
        "NotFoundError": "No microphone was found",
        "NotReadableError": "another app may be using it",
    }
    for name, words in failures.items():
        tab = new_tab()
        tab.page.add_init_script(
            "navigator.mediaDevices.getUserMedia = () => "
            f"Promise.reject(new DOMException('refused', {json.dumps(name)}));"
        )
        page = open_chat(tab, served.url)
        page.click("#mic")
        expect(page.locator("#notice-text")).to_contain_text(words)
        expect(page.locator("#voice-panel")).to_be_hidden()
        page.click("#notice-close")
        page.click("#hands-free")
        expect(page.locator("#notice-text")).to_contain_text(words)
        expect(page.locator("#hands-free")).to_have_attribute("aria-pressed", "false")

    # Served over plain HTTP from another host, the page cannot have the microphone at all.
    tab = new_tab()
    tab.page.add_init_script("Object.defineProperty(window, 'isSecureContext', { value: false });")
    page = open_chat(tab, served.url)
    page.locator("#log").focus()
    page.keyboard.down("Space")
    expect(page.locator("#notice-text")).to_contain_text("HTTPS")
    page.keyboard.up("Space")


def test_history_loads_on_open_and_pages_back(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings())
    page = open_chat(new_tab(), served.url)
    # One after another: a message sent while a reply is being written interrupts that reply.
    page.evaluate(
        """async () => {
            const done = (n) => document.querySelectorAll('.msg.bot[data-message-id]').length >= n;
            for (let i = 1; i <= 27; i++) {
                webBot.connection.send({ type: 'text', text: 'message ' + i });
                while (!done(i)) await new Promise((resolve) => setTimeout(resolve, 5));
            }
        }"""
    )
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    messages = page.locator(".msg[data-message-id]")
    expect(messages).to_have_count(50)  # the welcome carries the latest 50
    assert page.locator("#log").evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 100
    page.click("#earlier")
    expect(messages).to_have_count(54)
    expect(messages.first.locator(".text")).to_have_text("message 1")
    expect(page.locator("#earlier")).to_be_hidden()
    expect(page.locator(".day")).to_have_count(1)


# ---- connection ----------------------------------------------------------------------------------------------


def test_page_reconnects_after_a_restart_and_keeps_the_history(new_tab, restartable) -> None:
    server = restartable()
    page = open_chat(new_tab(), server.url)
    send(page, "before the restart")
    expect(replies(page)).to_have_count(1, timeout=10000)
    page.evaluate("document.querySelector('.msg').dataset.stale = 'yes'")

    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", re.compile("offline|connecting"))
    expect(page.locator("#conn-text")).to_have_text(re.compile(r"Offline|Reconnecting"), timeout=10000)
    time.sleep(1.0)
    server.start()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=20000)
    # The view was rebuilt from the server's history, not merely left on screen.
    expect(page.locator(".msg[data-stale]")).to_have_count(0)
    expect(page.locator(".msg .text")).to_have_text(
        ["before the restart", "You said: before the restart. (context 2 messages)"]
    )
    send(page, "after the restart")
    expect(replies(page).last).to_have_text("You said: after the restart. (context 4 messages)", timeout=10000)


def test_messages_typed_offline_are_queued_and_delivered(new_tab, restartable) -> None:
    server = restartable()
    page = open_chat(new_tab(), server.url)
    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline", timeout=10000)
    expect(page.locator("#retry")).to_be_visible()

    send(page, "typed while offline")
    pending = page.locator('.msg.user[data-state="pending"]')
    expect(pending.locator(".text")).to_have_text(["typed while offline"])
    expect(pending.locator(".state")).to_have_text("Waiting for the connection…")
    outbox = page.evaluate("localStorage.getItem('web-bot-outbox:' + webBot.clientId)")
    assert json.loads(outbox) == ["typed while offline"]

    server.start()
    # "Retry now" skips the rest of the backoff (unless the page is already trying again).
    page.locator("#retry").evaluate("button => button.hidden || button.click()")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=20000)
    expect(pending).to_have_count(0, timeout=10000)
    expect(page.locator(".msg.user .text")).to_have_text(["typed while offline"])
    expect(replies(page)).to_have_text(["You said: typed while offline. (context 2 messages)"], timeout=10000)
    assert page.evaluate("localStorage.getItem('web-bot-outbox:' + webBot.clientId)") is None


# ---- languages -----------------------------------------------------------------------------------------------


def catalogue(code: str) -> dict[str, str]:
    words: dict[str, str] = json.loads((I18N / f"{code}.json").read_text(encoding="utf-8"))
    return words


def test_the_page_speaks_the_browsers_language_and_switches_at_once(new_tab, serve, make_settings) -> None:
    ru, en = catalogue("ru"), catalogue("en")
    served: Served = serve(make_settings())
    page = open_chat(new_tab(locale="ru-RU"), served.url)
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.locator("#input")).to_have_attribute("placeholder", ru["composer.placeholder"])
    expect(page.locator("#send")).to_have_attribute("aria-label", ru["composer.send"])
    expect(page.locator("#new-chat")).to_have_attribute("title", ru["new-chat.title"])
    expect(page.locator("#empty h2")).to_have_text(ru["empty.title"])
    expect(page.locator("#empty li").first).to_have_text("Напишите сообщение или введите /, чтобы увидеть команды")
    expect(page.locator("#empty li strong").first).to_have_text("Напишите")  # markup made as elements, not parsed
    expect(page.locator("#keys kbd")).to_have_count(5)
    expect(page.locator("#conn-text")).to_have_text(ru["conn.online"])
    expect(page.locator("#mic")).to_have_attribute("title", ru["stt.off"])
    # The menu names each language in itself, and says which language that name is in.
    options = page.locator("#language option")
    expect(options).to_have_text(["English", "Русский"])
    expect(options.nth(1)).to_have_attribute("lang", "ru")
    expect(page.locator("#language")).to_have_value("ru")
    expect(page.locator("#language")).to_have_attribute("aria-label", ru["language.label"])

    # Plurals follow each language's rules: 1 час, 2 часа, 5 часов, 21 час (and every plural group in every
    # catalogue has exactly the forms the browser's Intl.PluralRules asks of that language).
    hours = page.evaluate("[1, 2, 5, 11, 21, 22, 25].map((count) => webBot.i18n.t('duration.hours', { count }))")
    assert hours == ["1 час", "2 часа", "5 часов", "11 часов", "21 час", "22 часа", "25 часов"]
    retry = page.evaluate("[1, 3, 5, 21].map((count) => webBot.i18n.t('conn.retry-in', { count }))")
    assert retry == [f"повтор через {n}" for n in ("1 секунду", "3 секунды", "5 секунд", "21 секунду")]
    for code in json.loads((I18N / "languages.json").read_text(encoding="utf-8")):
        needed = set(page.evaluate("(code) => new Intl.PluralRules(code).resolvedOptions().pluralCategories", code))
        groups: dict[str, set[str]] = {}
        for key in catalogue(code):
            base, _, form = key.rpartition(".")
            if form in {"zero", "one", "two", "few", "many", "other"}:
                groups.setdefault(base, set()).add(form)
        assert groups, f"{code}.json has no plural forms"
        for base, forms in groups.items():
            assert forms == needed, f"{code}.json: {base} has {sorted(forms)}; {code} needs {sorted(needed)}"

    # What the page writes later is in Russian too: a notice, a failed upload's reason, a command card.
    send(page, "Привет")
    expect(replies(page)).to_have_count(1, timeout=10000)
    assert page.locator(".msg.user .text").get_attribute("lang") is None  # typed: its language is not known
    page.set_input_files("#file", files=[{"name": "note.wav", "mimeType": "audio/wav", "buffer": b"RIFF" * 50}])
    reason = page.locator('.msg.user[data-state="failed"] .reason')
    expect(reason).to_have_text(ru["error.stt-unavailable"])
    expect(page.locator('.msg.user[data-state="failed"] .state')).to_have_text(ru["state.failed"])
    send(page, "/status")
    facts = page.locator('.card[data-command="status"] dt')
    expect(facts.first).to_have_text(ru["card.status"])
    uptime = page.locator('.card[data-command="status"] dd').nth(2)
    expect(uptime).to_have_text(re.compile(r"^\d+ секунд[аы]?$"))
    page.click("#mic", force=True)  # switched off (aria-disabled): a press explains why
    expect(page.locator("#notice-text")).to_have_text(ru["stt.off"])
    expect(page.locator(".day span").first).to_have_text(ru["day.today"])

    # Picked in the page: everything changes at once, and the choice outlives a reload.
    page.select_option("#language", "en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#input")).to_have_attribute("placeholder", en["composer.placeholder"])
    expect(page.locator("#send")).to_have_attribute("aria-label", en["composer.send"])
    expect(page.locator("#empty h2")).to_have_text(en["empty.title"])
    expect(page.locator("#conn-text")).to_have_text(en["conn.online"])
    expect(page.locator("#mic")).to_have_attribute("title", en["stt.off"])
    expect(page.locator("#notice-text")).to_have_text(en["stt.off"])
    expect(reason).to_have_text(en["error.stt-unavailable"])
    expect(page.locator('.msg.user[data-state="failed"] .state')).to_have_text(en["state.failed"])
    expect(facts.first).to_have_text(en["card.status"])
    expect(uptime).to_have_text(re.compile(r"^\d+ seconds?$"))
    expect(page.locator(".day span").first).to_have_text(en["day.today"])
    assert page.evaluate("localStorage.getItem('web-bot-language')") == "en"
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#input")).to_have_attribute("placeholder", en["composer.placeholder"])
    expect(page.locator("#language")).to_have_value("en")

    # Messages whose language the server knows carry it, for screen readers; back in Russian, on a phone.
    with sqlite3.connect(served.settings.database.db_path) as db:
        db.execute("UPDATE messages SET language = 'ru' WHERE client_id = ?", (page.evaluate("webBot.clientId"),))
    page.select_option("#language", "ru")
    page.set_viewport_size({"width": 360, "height": 740})
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    expect(page.locator('.msg .text[lang="ru"]')).to_have_count(2)
    expect(page.locator("#send")).to_have_attribute("aria-label", ru["composer.send"])
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"in Russian, the phone page scrolls sideways by {overflow} px"


# ---- how it looks ------------------------------------------------------------------------------------------


def spoken_parts(reply: str) -> int:
    """How many audio frames the server sends for a reply: one per piece its sentence splitter cuts."""
    splitter = SentenceSplitter(clean=False)
    return len([*splitter.feed(reply), *splitter.flush()])


def test_screenshots_desktop_and_phone_light_and_dark(new_tab, serve, make_settings, scripted, tmp_path) -> None:
    intro = scripted["What can you do"] = (
        "I can chat by text or by voice. Hold the microphone button to talk, switch on hands-free for a spoken "
        "conversation, or drop an audio file and I'll transcribe and answer it."
    )
    scripted["weather"] = (
        "I can't look up live weather, but Paris in spring is usually mild, around 15 °C, with the odd shower. "
        "Take a light jacket!"
    )
    # Typed replies spoken too (voice.replies = always), so the shot shows a spoken reply's controls.
    served: Served = serve(make_settings({**WHISPER, "tts": {"engine": "piper"}, "voice": {"replies": "always"}}))
    pcm, rate = speak(SENTENCES[2])  # "What is the weather like in Paris today?"
    clip = tmp_path / "paris.wav"
    clip.write_bytes(wav(pcm, rate))
    ARTIFACTS.mkdir(exist_ok=True)
    sizes = {
        "desktop": {"viewport": {"width": 1280, "height": 800}},
        "phone": {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True},
    }
    for name, options in sizes.items():
        page = open_chat(new_tab(**options), served.url)
        send(page, "What can you do?")
        expect(replies(page)).to_have_count(1, timeout=10000)
        # Until the whole reply has been spoken: a new message while the server still speaks would interrupt it.
        page.wait_for_function(f"() => webBot.player.stats.frames >= {spoken_parts(intro)}", timeout=20000)
        page.set_input_files("#file", str(clip))
        expect(replies(page)).to_have_count(2, timeout=20000)
        page.locator("#input").blur()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow} px"
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.screenshot(path=str(ARTIFACTS / f"screenshot-{name}-{scheme}.png"), animations="disabled")
