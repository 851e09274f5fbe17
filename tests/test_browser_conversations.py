"""The list of conversations in headless Chromium against a real server: a new one, switching (the address and the
back button follow), renaming, a reload, deleting after a confirmation (here and in another tab), export and import,
earlier messages as the log is scrolled up, a recording's player, search, and with accounts only the user's own
conversations; the drawer on a phone, light and dark, in screenshots."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests import test_browser as shared
from tests.conftest import Served
from tests.speech import SENTENCES, speak, wav
from tests.test_browser import ARTIFACTS, Tab, catalogue, open_chat, replies, send
from tests.test_browser_accounts import PHONE, chat_is_open, csp_complaints, sign_in, watch_console

pytestmark = pytest.mark.browser

# The browser tests' fixtures, used here under their own names: Chromium (with its fake microphone) and fresh tabs.
browser = shared.browser
mic_file = shared.mic_file
new_tab = shared.new_tab

EN = catalogue("en")
RU = catalogue("ru")
PASSWORD_MODE = {"auth": {"mode": "password"}}
WHISPER = {"stt": {"engine": "whisper"}}


def api(served: Served, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request to the server as a program would make it (mode none: no sign-in)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{served.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def listed(served: Served) -> dict[str, str | None]:
    """Every conversation the server lists: id -> title."""
    status, body = api(served, "GET", "/api/conversations?limit=500")
    assert status == 200, body
    return {c["client_id"]: c["title"] for c in body["conversations"]}


def client_id(page: Any) -> str:
    value: str = page.evaluate("() => webBot.clientId")
    return value


def row(page: Any, conversation: str) -> Any:
    return page.locator(f'#conversation-list .conv[data-client-id="{conversation}"]')


def open_actions(page: Any, conversation: str, action: str) -> None:
    """The conversation's menu (its ⋯ button), then one of its items."""
    row(page, conversation).locator(".conv-more").click()
    menu = page.locator("#conversation-menu")
    expect(menu).to_be_visible()
    menu.locator(f'[data-action="{action}"]').click()


def open_at(tab: Tab, served: Served, conversation: str) -> Any:
    """The page with `conversation` named in its address, connected."""
    page = tab.page
    page.goto(f"{served.url}/?c={conversation}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    return page


def user_texts(page: Any) -> Any:
    return page.locator(".msg.user .text")


def an_export(title: str, texts: list[str], start: datetime | None = None) -> dict[str, Any]:
    """A conversation as web-bot exports it: the user and the bot taking turns, a minute apart."""
    start = start or datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    return {
        "format": "web-bot.conversation",
        "version": 1,
        "title": title,
        "messages": [
            {
                "role": "user" if n % 2 == 0 else "assistant",
                "content": text,
                "created_at": (start + timedelta(minutes=n)).isoformat(),
            }
            for n, text in enumerate(texts)
        ],
    }


def search_exists(served: Served) -> bool:
    """Whether this server has GET /api/search (which answers 200 even when nothing matches)."""
    return api(served, "GET", "/api/search?q=anything")[0] != 404


# ---- mode none: everything on one browser -----------------------------------------------------------------------


def test_new_switch_back_rename_reload_delete(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings())
    tab = new_tab()
    said = watch_console(tab)
    page = open_chat(tab, served.url)
    current = page.locator("#conversations [aria-current=page]")

    # The open conversation is listed at once, as a new one, and marked as the current page.
    first = client_id(page)
    expect(current).to_have_count(1)
    expect(row(page, first).locator(".conv-title")).to_have_text(EN["conversations.untitled"])
    expect(page.locator("#conversations")).to_have_attribute("aria-labelledby", "sidebar-title")
    send(page, "Plan a picnic by the lake")
    expect(replies(page)).to_have_count(1, timeout=10000)
    # After its first reply the server titles it with its first words (no event: the page asks again).
    expect(row(page, first).locator(".conv-title")).to_have_text("Plan a picnic by the lake", timeout=10000)
    expect(page).to_have_title("Plan a picnic by the lake · web-bot")
    assert page.url == served.url + "/"  # the browser's own conversation: a plain address

    # A new conversation: a new entry in the history, and in the address.
    page.click("#new-chat")
    expect(page.locator(".msg")).to_have_count(0)
    second = client_id(page)
    assert second != first
    expect(page).to_have_url(f"{served.url}/?c={second}")
    expect(current).to_have_count(1)
    expect(row(page, second).locator(".conv-link")).to_have_attribute("aria-current", "page")
    send(page, "Bake bread at home")
    expect(replies(page)).to_have_count(1, timeout=10000)
    titles = page.locator("#conversation-list .conv-title")
    expect(titles).to_have_text(["Bake bread at home", "Plan a picnic by the lake"], timeout=10000)

    # Switching by a click, then back and forward.
    row(page, first).locator(".conv-link").click()
    expect(user_texts(page)).to_have_text(["Plan a picnic by the lake"], timeout=10000)
    expect(page).to_have_url(f"{served.url}/?c={first}")
    expect(row(page, first).locator(".conv-link")).to_have_attribute("aria-current", "page")
    expect(row(page, second).locator(".conv-link")).not_to_have_attribute("aria-current", "page")
    page.go_back()
    expect(user_texts(page)).to_have_text(["Bake bread at home"], timeout=10000)
    assert client_id(page) == second
    expect(row(page, second).locator(".conv-link")).to_have_attribute("aria-current", "page")
    page.go_back()
    expect(user_texts(page)).to_have_text(["Plan a picnic by the lake"], timeout=10000)
    assert client_id(page) == first and page.url == served.url + "/"
    page.go_forward()
    expect(user_texts(page)).to_have_text(["Bake bread at home"], timeout=10000)
    row(page, first).locator(".conv-link").click()
    expect(user_texts(page)).to_have_text(["Plan a picnic by the lake"], timeout=10000)

    # Renaming in place: Escape keeps the old name, Enter saves the new one (shown as text, never as markup).
    open_actions(page, first, "rename")
    field = row(page, first).locator("input.conv-rename")
    expect(field).to_be_focused()
    expect(field).to_have_value("Plan a picnic by the lake")
    field.fill("not this")
    field.press("Escape")
    expect(row(page, first).locator(".conv-title")).to_have_text("Plan a picnic by the lake")
    expect(row(page, first).locator(".conv-link")).to_be_focused()
    open_actions(page, first, "rename")
    field.fill("Picnic <b>plans</b>")
    field.press("Enter")
    expect(row(page, first).locator(".conv-title")).to_have_text("Picnic <b>plans</b>")
    expect(row(page, first).locator(".conv-link")).to_be_focused()
    expect(page.locator("#conversation-list b")).to_have_count(0)
    expect(page).to_have_title("Picnic <b>plans</b> · web-bot")
    assert listed(served)[first] == "Picnic <b>plans</b>"

    # A reload keeps the open conversation (the address names it) and the list.
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    assert client_id(page) == first
    expect(user_texts(page)).to_have_text(["Plan a picnic by the lake"])
    expect(titles).to_have_text(["Bake bread at home", "Picnic <b>plans</b>"])

    # Another tab on the second conversation hears of a rename at once (the server's conversation event).
    other = new_tab()
    other_page = open_at(other, served, second)
    assert client_id(other_page) == second
    open_actions(page, second, "rename")
    row(page, second).locator("input.conv-rename").fill("Sourdough")
    row(page, second).locator("input.conv-rename").press("Enter")
    expect(row(other_page, second).locator(".conv-title")).to_have_text("Sourdough", timeout=10000)
    expect(other_page).to_have_title("Sourdough · web-bot")

    # Deleting asks first (Escape is "no"); the open conversation gone, the other one opens.
    open_actions(page, first, "delete")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-text")).to_have_text(
        EN["conversations.delete-confirm"].replace("{title}", "Picnic <b>plans</b>")
    )
    expect(page.locator("#confirm-cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    expect(row(page, first)).to_have_count(1)
    open_actions(page, first, "delete")
    page.click("#confirm-ok")
    expect(row(page, first)).to_have_count(0)
    expect(user_texts(page)).to_have_text(["Bake bread at home"], timeout=10000)
    assert client_id(page) == second
    expect(page).to_have_url(f"{served.url}/?c={second}")
    expect(page.locator("#notice-text")).to_have_text(
        EN["conversations.deleted"].replace("{title}", "Picnic <b>plans</b>")
    )
    assert first not in listed(served)
    assert api(served, "GET", f"/api/history/{first}")[1]["messages"] == []

    # Deleted here, the conversation the other tab has open: it moves on, and says why.
    open_actions(page, second, "delete")
    page.click("#confirm-ok")
    expect(row(page, second)).to_have_count(0)
    expect(other_page.locator("#notice-text")).to_have_text(EN["conversations.deleted-elsewhere"], timeout=10000)
    assert client_id(other_page) != second
    expect(other_page.locator(".msg")).to_have_count(0)
    assert client_id(page) != second
    expect(page.locator(".msg")).to_have_count(0)
    assert second not in listed(served)
    assert not csp_complaints(said), csp_complaints(said)


def test_export_and_import(new_tab, serve, make_settings, tmp_path) -> None:
    served: Served = serve(make_settings())
    page = open_chat(new_tab(), served.url)
    send(page, "Export me")
    expect(replies(page)).to_have_count(1, timeout=10000)
    send(page, "And me too")
    expect(replies(page)).to_have_count(2, timeout=10000)
    conversation = client_id(page)
    texts = [
        "Export me",
        "You said: Export me. (context 2 messages)",
        "And me too",
        "You said: And me too. (context 4 messages)",
    ]

    # Each format is a download named by the server.
    with page.expect_download() as download:
        open_actions(page, conversation, "json")
    assert download.value.suggested_filename == f"conversation-{conversation}.json"
    saved = tmp_path / "export.json"
    download.value.save_as(saved)
    exported = json.loads(saved.read_text(encoding="utf-8"))
    assert exported["format"] == "web-bot.conversation"
    assert [m["content"] for m in exported["messages"]] == texts
    with page.expect_download() as download:
        open_actions(page, conversation, "md")
    assert download.value.suggested_filename == f"conversation-{conversation}.md"
    markdown = Path(download.value.path()).read_text(encoding="utf-8")
    assert "Export me" in markdown and "And me too" in markdown
    expect(row(page, conversation).locator(".conv-more")).to_be_focused()  # back where the menu was opened

    # Everything, as a ZIP.
    with page.expect_download() as download:
        page.click("#export-all")
    assert download.value.suggested_filename == "web-bot-conversations.zip"
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert f"{conversation}.json" in archive.namelist()

    # Imported back: a new conversation with the same messages, opened at once.
    page.set_input_files("#import-file", str(saved))
    expect(page.locator("#notice-text")).to_have_text(
        EN["conversations.imported"].replace("{title}", "Export me"), timeout=10000
    )
    imported = client_id(page)
    assert imported != conversation
    expect(page).to_have_url(f"{served.url}/?c={imported}")
    expect(page.locator(".msg .text")).to_have_text(texts, timeout=10000)
    expect(page.locator("#conversation-list .conv")).to_have_count(2)
    assert set(listed(served)) == {conversation, imported}
    _, body = api(served, "GET", f"/api/history/{imported}")
    assert [m["content"] for m in body["messages"]] == texts

    # What cannot be imported is said in words: not JSON, JSON of something else, an export the server refuses.
    for name, content in [
        ("notes.json", b"these are my notes"),
        ("other.json", b'{"hello": "world"}'),
        ("broken.json", json.dumps({**exported, "messages": [{"role": "robot"}]}).encode()),
    ]:
        page.evaluate("() => document.getElementById('notice').hidden = true")
        page.set_input_files("#import-file", files=[{"name": name, "mimeType": "application/json", "buffer": content}])
        expect(page.locator("#notice-text")).to_have_text(EN["conversations.import-not-export"], timeout=10000)
    assert set(listed(served)) == {conversation, imported}
    assert client_id(page) == imported

    # An export of a conversation deleted meanwhile (in another tab, say) says so.
    assert api(served, "DELETE", f"/api/conversations/{conversation}")[0] == 204
    open_actions(page, conversation, "txt")
    expect(page.locator("#notice-text")).to_have_text(EN["error.not-found"], timeout=10000)


def test_long_list_and_long_conversation_load_as_they_are_scrolled(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings())
    for n in range(1, 66):  # more than one page of the list (50)
        status, _ = api(served, "POST", "/api/conversations", {"title": f"Topic number {n}"})
        assert status == 201
    long_texts = [f"line {n}" for n in range(1, 131)]
    status, long_one = api(served, "POST", "/api/conversations/import", an_export("Long one", long_texts))
    assert status == 201
    page = open_at(new_tab(), served, long_one["client_id"])

    # The list: a page of 50, more as it is scrolled down. The open conversation is shown first until its own page
    # comes (its messages are from 2025: it is the last of all).
    items = page.locator("#conversation-list .conv")
    expect(items).to_have_count(51, timeout=10000)
    expect(items.first).to_have_attribute("data-client-id", long_one["client_id"])
    expect(items.nth(1).locator(".conv-title")).to_have_text("Topic number 65")
    page.locator("#conversations").evaluate("(el) => el.scrollTo({ top: el.scrollHeight })")
    expect(items).to_have_count(66, timeout=10000)
    expect(items.last).to_have_attribute("data-client-id", long_one["client_id"])
    expect(items.last.locator(".conv-link")).to_have_attribute("aria-current", "page")
    expect(page.locator("#conversation-more")).to_be_hidden()

    # The log: the latest 50, then earlier ones as the reader scrolls up (no button press), keeping their place.
    messages = page.locator(".msg[data-message-id]")
    expect(messages).to_have_count(50)
    expect(page.locator("#earlier")).to_be_attached()
    log = page.locator("#log")
    log.hover()
    for _ in range(40):
        page.mouse.wheel(0, -2000)
        if messages.count() == 130:
            break
        page.wait_for_timeout(100)
    expect(messages).to_have_count(130, timeout=10000)
    expect(messages.first.locator(".text")).to_have_text("line 1")
    expect(page.locator("#earlier")).to_be_hidden()


def test_a_recording_plays_in_its_message(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings(WHISPER))
    page = open_chat(new_tab(), served.url)
    pcm, rate = speak(SENTENCES[3])
    page.set_input_files("#file", files=[{"name": "green.wav", "mimeType": "audio/wav", "buffer": wav(pcm, rate)}])
    expect(replies(page)).to_have_count(1, timeout=30000)
    page.reload()  # the history says which messages have a recording
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    spoken = page.locator('.msg.user[data-source="upload"]')
    play = spoken.locator("button.play")
    expect(play).to_have_text(EN["recording.play"])
    expect(play).to_have_attribute("aria-label", EN["recording.name"])
    expect(page.locator(".msg.bot button.play")).to_have_count(0)
    message_id = spoken.get_attribute("data-message-id")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "screenshot-recording-button.png"), animations="disabled")
    play.click()
    audio = spoken.locator("audio.recording")
    expect(audio).to_have_attribute("src", f"{served.url}/api/recordings/{message_id}")
    expect(audio).to_be_focused()
    page.wait_for_function("() => document.querySelector('audio.recording').duration > 1", timeout=10000)
    page.screenshot(path=str(ARTIFACTS / "screenshot-recording-player.png"), animations="disabled")
    # It can seek: the server answers a range.
    status = page.evaluate(
        f"() => fetch('api/recordings/{message_id}', {{ headers: {{ Range: 'bytes=100-199' }} }})"
        ".then((response) => response.status)"
    )
    assert status == 206


def test_search_opens_the_conversation_at_the_message(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings())
    if not search_exists(served):
        pytest.skip("GET /api/search is not on this server yet (issue 14's search is built separately)")
    texts = [f"filler message {n}" for n in range(1, 121)]
    texts[2] = "We flew over the Alps in a zeppelin called Greta"
    status, old = api(served, "POST", "/api/conversations/import", an_export("Travel stories", texts))
    assert status == 201
    page = open_chat(new_tab(), served.url)
    page.fill("#search", "zeppelin")
    results = page.locator("#results-list .result")
    expect(results).to_have_count(1, timeout=10000)
    expect(page.locator("#conversations")).to_be_hidden()
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(ARTIFACTS / f"screenshot-search-desktop-{scheme}.png"), animations="disabled")
    expect(results.locator(".result-title")).to_have_text("Travel stories")
    expect(results.locator("mark")).to_have_text(["zeppelin"])
    expect(results.locator(".result-snippet")).to_contain_text("in a zeppelin called Greta")
    expect(page.locator("#results-status")).to_have_text("1 message found")
    results.click()

    # The conversation opens at that message, 117 messages back from the latest: it is in sight, and marked.
    target = page.locator(".msg.found")
    expect(target.locator(".text")).to_have_text(texts[2], timeout=15000)
    assert client_id(page) == old["client_id"]
    expect(page).to_have_url(f"{served.url}/?c={old['client_id']}")
    expect(target).to_be_in_viewport()
    expect(target).to_be_focused()

    # Results come 20 at a time; more on request.
    lanterns = [f"paper lantern number {n}" for n in range(1, 26)]
    assert api(served, "POST", "/api/conversations/import", an_export("Lanterns", lanterns))[0] == 201
    page.fill("#search", "lanterns number")  # every word, in any form
    expect(results).to_have_count(20, timeout=10000)
    expect(results.first.locator(".result-snippet")).to_have_text("You: paper lantern number 25", use_inner_text=True)
    more = page.locator("#results-more")
    expect(more).to_be_visible()
    more.click()
    expect(results).to_have_count(25, timeout=10000)
    expect(more).to_be_hidden()
    expect(page.locator("#results-status")).to_have_text("25 messages found")

    # Nothing found is said; Escape empties the box and the list is back.
    page.fill("#search", "xylophone")
    expect(page.locator("#results-status")).to_have_text(EN["search.none"].replace("{query}", "xylophone"))
    expect(results).to_have_count(0)
    page.press("#search", "Escape")
    expect(page.locator("#search")).to_have_value("")
    expect(page.locator("#conversations")).to_be_visible()


# ---- accounts -----------------------------------------------------------------------------------------------------


def test_with_accounts_the_list_shows_only_ones_own(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings(PASSWORD_MODE))
    tab = new_tab()
    page = tab.page
    page.goto(served.url + "/")
    page.fill("#setup-username", "alice")
    page.fill("#setup-password", "alice's long password")
    page.fill("#setup-repeat", "alice's long password")
    page.locator("#setup-form [type=submit]").click()
    chat_is_open(page)
    made = page.evaluate(
        """() => fetch('api/users', { method: 'POST', headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ username: 'bob', password: "bob's long password", role: 'user' }) })
            .then((response) => response.status)"""
    )
    assert made == 201
    send(page, "Alice's secret recipe")
    expect(replies(page)).to_have_count(1, timeout=10000)
    alice_ids = {client_id(page)}
    page.click("#new-chat")
    send(page, "Alice's second thought")
    expect(replies(page)).to_have_count(1, timeout=10000)
    alice_ids.add(client_id(page))
    titles = page.locator("#conversation-list .conv-title")
    expect(titles).to_have_text(["Alice's second thought", "Alice's secret recipe"], timeout=10000)

    bob = new_tab().page
    bob.goto(served.url + "/")
    sign_in(bob, "bob", "bob's long password")
    chat_is_open(bob)
    send(bob, "Bob's own words")
    expect(replies(bob)).to_have_count(1, timeout=10000)
    expect(bob.locator("#conversation-list .conv-title")).to_have_text(["Bob's own words"], timeout=10000)
    bob.reload()
    chat_is_open(bob)
    expect(bob.locator("#conversation-list .conv-title")).to_have_text(["Bob's own words"], timeout=10000)

    # Alice's list did not change; one of hers named in the address of Bob's page is refused.
    page.reload()
    chat_is_open(page)
    expect(titles).to_have_text(["Alice's second thought", "Alice's secret recipe"], timeout=10000)
    alice_one = sorted(alice_ids)[0]
    bob.goto(f"{served.url}/?c={alice_one}")
    chat_is_open(bob)
    expect(bob.locator("#notice-text")).to_have_text(EN["conversation.foreign"], timeout=10000)
    assert client_id(bob) not in alice_ids
    expect(bob.locator("#conversation-list .conv-title")).to_have_text(
        [EN["conversations.untitled"], "Bob's own words"]
    )

    # Signing out empties the list and the address; the next person starts from their own.
    page.click("#account-button")
    page.click("#menu-sign-out")
    expect(page.locator("#signin-form")).to_be_visible()
    expect(page.locator("#conversation-list .conv")).to_have_count(0)
    assert "?c=" not in page.url
    expect(page).to_have_title("web-bot")


# ---- how it looks -------------------------------------------------------------------------------------------------


def test_drawer_on_a_phone_light_and_dark(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings())
    for n, title in enumerate(["Weekend hiking plan", "Ideas for a birthday present", "Learning the guitar"]):
        texts = [f"About {title.lower()}", f"Here are some thoughts on {title.lower()}."]
        start = datetime.now(UTC) - timedelta(days=3 * n)
        assert api(served, "POST", "/api/conversations/import", an_export(title, texts, start))[0] == 201
    tab: Tab = new_tab(**PHONE)
    said = watch_console(tab)
    page = open_chat(tab, served.url)
    send(page, "What should I cook tonight?")
    expect(replies(page)).to_have_count(1, timeout=10000)
    drawer = page.locator("#sidebar")
    button = page.locator("#drawer-button")
    expect(drawer).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")
    composer = page.locator("#composer").bounding_box()

    button.click()
    expect(drawer).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#conversation-list .conv")).to_have_count(4, timeout=10000)
    expect(page.locator("#conversations [aria-current=page]")).to_be_focused()
    page.wait_for_timeout(300)  # the slide
    assert page.locator("#composer").bounding_box() == composer  # nothing behind it moved
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(ARTIFACTS / f"screenshot-drawer-phone-{scheme}.png"), animations="disabled")

    # Escape closes it (the focus back on its button); a tap outside it too; picking a conversation too.
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(button).to_be_focused()
    button.click()
    expect(drawer).to_be_visible()
    page.mouse.click(380, 400)  # the scrim, beside the drawer
    expect(drawer).to_be_hidden()
    button.click()
    page.locator("#conversation-list .conv-link", has_text="Learning the guitar").click()
    expect(drawer).to_be_hidden()
    expect(user_texts(page)).to_have_text(["About learning the guitar"], timeout=10000)

    # In Russian: the drawer's words, and the menu of a conversation.
    page.evaluate("() => webBot.i18n.setLanguage('ru')")
    button.click()
    expect(page.locator("#sidebar-title")).to_have_text(RU["conversations.title"])
    expect(page.locator("#search")).to_have_attribute("placeholder", RU["search.placeholder"])
    page.locator("#conversation-list .conv").first.locator(".conv-more").click()
    expect(page.locator('#conversation-menu [data-action="delete"]')).to_have_text(RU["conversations.delete"])
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(ARTIFACTS / f"screenshot-drawer-menu-phone-ru-{scheme}.png"), animations="disabled")
    assert not csp_complaints(said), csp_complaints(said)
