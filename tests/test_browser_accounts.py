"""Accounts in the page, in headless Chromium against a real server: the first admin made in the page, signing out
and in, API tokens, adding a user, conversations kept apart per user, the socket's refusals (another user's
conversation, an ended session, too fast), the page under its Content-Security-Policy, and, with no accounts, the
page as it always was."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import expect

from tests import test_browser as shared
from tests.conftest import Served
from tests.test_browser import ARTIFACTS, ROOT, STATIC, Tab, catalogue, open_chat, replies, send

pytestmark = pytest.mark.browser

# The browser tests' fixtures, used here under their own names: Chromium (with its fake microphone) and fresh tabs.
browser = shared.browser
mic_file = shared.mic_file
new_tab = shared.new_tab

EN = catalogue("en")
RU = catalogue("ru")
PASSWORD_MODE = {"auth": {"mode": "password"}}
ALICE, ALICE_PASSWORD = "alice", "correct horse battery"
BOB, BOB_PASSWORD = "bob", "bob's own passphrase"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def watch_console(tab: Tab) -> list[str]:
    """Everything the page writes to the console from now on (Chromium reports refusals by the CSP there)."""
    said: list[str] = []
    tab.page.on("console", lambda message: said.append(message.text))
    return said


def csp_complaints(said: list[str]) -> list[str]:
    return [text for text in said if "Content Security Policy" in text or "Refused to" in text]


def bearer(served: Served, path: str, token: str) -> tuple[int, dict[str, Any]]:
    """GET `path` with an API token, as a program would."""
    request = urllib.request.Request(f"{served.url}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: dict[str, Any] = json.loads(response.read() or b"{}")
            return response.status, body
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def sign_in(page: Any, username: str, password: str) -> None:
    page.fill("#signin-username", username)
    page.fill("#signin-password", password)
    page.locator("#signin-form [type=submit]").click()


def open_menu_item(page: Any, item: str) -> None:
    page.click("#account-button")
    expect(page.locator("#account-menu")).to_be_visible()
    page.click(item)


def chat_is_open(page: Any) -> None:
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    expect(page.locator("#gate")).to_be_hidden()
    expect(page.locator("#input")).to_be_visible()


# ---- password mode ---------------------------------------------------------------------------------------------


def test_accounts_from_the_first_admin_to_a_second_user(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings(PASSWORD_MODE))
    tab = new_tab()
    said = watch_console(tab)
    page = tab.page
    response = page.goto(served.url + "/")
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self' 'sha256-" in csp and "style-src 'self'" in csp, csp

    # No account yet, and the page is on the server's own machine: the one-time form, and no chat behind it.
    setup = page.locator("#setup-form")
    expect(setup).to_be_visible()
    expect(page.locator("#signin-form")).to_be_hidden()
    expect(page.locator(".stage")).to_be_hidden()
    expect(page.locator("#input")).to_be_hidden()
    expect(page.locator("#account")).to_be_hidden()
    expect(page.locator("#setup-username")).to_be_focused()
    assert page.evaluate("webBot.clientId") is None
    page.fill("#setup-username", ALICE)
    page.fill("#setup-password", ALICE_PASSWORD)
    page.fill("#setup-repeat", ALICE_PASSWORD + "!")
    page.locator("#setup-form [type=submit]").click()
    expect(page.locator("#setup-error")).to_have_text(EN["account.mismatch"])
    page.fill("#setup-password", "short")
    page.fill("#setup-repeat", "short")
    page.locator("#setup-form [type=submit]").click()
    expect(page.locator("#setup-error")).to_have_text(EN["error.weak-password"])
    page.fill("#setup-password", ALICE_PASSWORD)
    page.fill("#setup-repeat", ALICE_PASSWORD)
    page.locator("#setup-form [type=submit]").click()

    # Signed in at once: the chat, under a conversation id kept for this user alone.
    chat_is_open(page)
    expect(page.locator("#account-name")).to_have_text(ALICE)
    expect(page.locator("#account-button")).to_have_attribute("aria-label", f"Account: {ALICE}")
    alice_id = page.evaluate("webBot.clientId")
    assert page.evaluate(f"localStorage.getItem('web-bot-client-id:{ALICE}')") == alice_id
    assert page.evaluate("localStorage.getItem('web-bot-client-id')") is None
    send(page, "hello from alice")
    expect(replies(page)).to_have_text(["You said: hello from alice. (context 2 messages)"], timeout=10000)

    # The menu: keyboard in and out.
    page.click("#account-button")
    expect(page.locator("#account-menu")).to_be_visible()
    expect(page.locator("#account-button")).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#account-who")).to_have_text(ALICE)
    expect(page.locator("#account-role")).to_have_text(EN["users.role-admin"])
    expect(page.locator("#menu-password")).to_be_focused()
    page.keyboard.press("End")
    expect(page.locator("#menu-sign-out")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#account-menu")).to_be_hidden()
    expect(page.locator("#account-button")).to_be_focused()

    # Signing out forgets what the page held; a wrong password is said in words; the right one brings it all back.
    open_menu_item(page, "#menu-sign-out")
    expect(page.locator("#signin-form")).to_be_visible()
    expect(page.locator("#signin-note")).to_have_text(EN["signin.signed-out"])
    expect(page.locator("#signin-username")).to_be_focused()
    expect(page.locator(".msg")).to_have_count(0)
    assert page.evaluate("webBot.clientId") is None
    expect(page.locator("#account")).to_be_hidden()
    sign_in(page, ALICE, "not my password")
    expect(page.locator("#signin-error")).to_have_text(EN["error.bad-credentials"], timeout=10000)
    expect(page.locator("#signin-password")).to_have_value("")
    sign_in(page, ALICE, ALICE_PASSWORD)
    chat_is_open(page)
    assert page.evaluate("webBot.clientId") == alice_id
    expect(page.locator(".msg .text")).to_have_text(
        ["hello from alice", "You said: hello from alice. (context 2 messages)"]
    )

    # An API token: made with a name (shown as text), shown once with a copy button, working, then revoked.
    open_menu_item(page, "#menu-tokens")
    dialog = page.locator("#tokens-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#token-name")).to_be_focused()
    expect(page.locator("#tokens-status")).to_have_text(EN["tokens.none"])
    page.locator("#token-form [type=submit]").click()
    expect(page.locator("#token-error")).to_have_text(EN["tokens.name-missing"])
    name = "laptop <b>script</b>"
    page.fill("#token-name", name)
    page.press("#token-name", "Enter")
    expect(page.locator("#token-new")).to_be_visible()
    expect(page.locator("#token-new")).to_contain_text(EN["tokens.once"])
    token = page.input_value("#token-value")
    assert token.startswith("wbt_"), token
    row = page.locator("#tokens-list .row")
    expect(row).to_have_count(1)
    expect(row.locator(".row-title")).to_have_text(name)
    expect(row.locator("b")).to_have_count(0)
    prefix = (row.locator(".prefix").text_content() or "").rstrip("…")
    assert token.startswith(prefix) and len(prefix) >= 6, (prefix, token)
    expect(row.locator(".row-meta")).to_contain_text(EN["tokens.never-used"])
    assert bearer(served, "/api/auth/me", token)[1]["user"]["username"] == ALICE
    page.click("#token-copy")
    expect(page.locator("#token-copy-label")).to_have_text(re.compile(f"{EN['tokens.copied']}|Ctrl"))
    # Escape closes the dialog, and the token leaves the page: it is never shown again.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#account-button")).to_be_focused()
    expect(page.locator("#token-value")).to_have_value("")
    open_menu_item(page, "#menu-tokens")
    expect(page.locator("#token-new")).to_be_hidden()
    expect(row.locator(".row-meta")).to_contain_text(EN["tokens.last-used"].replace("{date}", ""))
    row.get_by_role("button", name=f"Revoke the token {name}").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text(f"“{name}”")
    expect(page.locator("#confirm-cancel")).to_be_focused()
    page.keyboard.press("Escape")  # Escape is "no"
    expect(confirm).to_be_hidden()
    expect(row).to_have_count(1)
    row.get_by_role("button", name=f"Revoke the token {name}").click()
    page.click("#confirm-ok")
    expect(row).to_have_count(0)
    expect(page.locator("#tokens-status")).to_have_text(EN["tokens.none"])
    assert bearer(served, "/api/auth/me", token)[1].get("user") is None
    assert bearer(served, "/api/tokens", token)[0] == 401
    page.keyboard.press("Escape")

    # Users, for the admin: a second user (mistakes said in words), and the last admin kept.
    open_menu_item(page, "#menu-users")
    expect(page.locator("#users-dialog")).to_be_visible()
    users = page.locator("#users-list .row")
    expect(users).to_have_count(1)
    expect(users.first.locator(".row-title")).to_have_text(ALICE)
    page.fill("#user-username", "no spaces please")
    page.fill("#user-password", BOB_PASSWORD)
    page.locator("#user-form [type=submit]").click()
    expect(page.locator("#user-error")).to_have_text(EN["error.bad-username"])
    page.fill("#user-username", ALICE)
    page.locator("#user-form [type=submit]").click()
    expect(page.locator("#user-error")).to_have_text(EN["error.username-taken"])
    page.fill("#user-username", BOB)
    page.fill("#user-password", "short")
    page.locator("#user-form [type=submit]").click()
    expect(page.locator("#user-error")).to_have_text(EN["error.weak-password"])
    page.fill("#user-password", BOB_PASSWORD)
    page.locator("#user-form [type=submit]").click()
    expect(users).to_have_count(2)
    expect(page.locator("#users-status")).to_have_text(f"Added {BOB}.")
    expect(page.locator("#user-error")).to_have_text("")
    alice_row = page.locator(f'#users-list .row[data-username="{ALICE}"]')
    bob_row = page.locator(f'#users-list .row[data-username="{BOB}"]')
    expect(bob_row.locator(".badge.role")).to_have_text(EN["users.role-user"])
    expect(alice_row.locator(".badge")).to_have_text([EN["users.role-admin"], EN["users.you"]])
    alice_row.get_by_label(f"Role of {ALICE}").select_option("user")
    expect(alice_row.locator(".form-error")).to_have_text(EN["error.last-admin"])
    expect(alice_row.get_by_label(f"Role of {ALICE}")).to_have_value("admin")
    # Disabled, bob cannot sign in; enabled again, he can.
    bob_row.get_by_role("button", name=f"Disable {BOB}").click()
    page.click("#confirm-ok")
    expect(bob_row).to_have_attribute("data-disabled", "")
    expect(bob_row.locator(".badge.off")).to_have_text(EN["users.disabled"])
    page.keyboard.press("Escape")
    expect(page.locator("#users-dialog")).to_be_hidden()

    bobs = new_tab()
    bob_page = bobs.page
    bob_page.goto(served.url + "/")
    expect(bob_page.locator("#signin-form")).to_be_visible()  # the first account exists: no setup form
    sign_in(bob_page, BOB, BOB_PASSWORD)
    expect(bob_page.locator("#signin-error")).to_have_text(EN["error.account-disabled"], timeout=10000)

    open_menu_item(page, "#menu-users")
    bob_row.get_by_role("button", name=f"Enable {BOB}").click()
    expect(bob_row).not_to_have_attribute("data-disabled", "")
    page.keyboard.press("Escape")

    # Bob signs in where Alice was (one browser): his own conversation, none of hers; no Users menu for him.
    open_menu_item(page, "#menu-sign-out")
    expect(page.locator("#signin-form")).to_be_visible()
    sign_in(page, BOB, BOB_PASSWORD)
    chat_is_open(page)
    expect(page.locator("#account-name")).to_have_text(BOB)
    bob_id = page.evaluate("webBot.clientId")
    assert bob_id != alice_id
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    page.click("#account-button")
    expect(page.locator("#menu-users")).to_be_hidden()
    expect(page.locator("#account-role")).to_have_text(EN["users.role-user"])
    page.keyboard.press("Escape")
    assert page.evaluate(f"fetch('api/history/{alice_id}').then((response) => response.status)") == 404
    send(page, "hello from bob")
    expect(replies(page)).to_have_text(["You said: hello from bob. (context 2 messages)"], timeout=10000)

    # Told to use Alice's conversation, the socket refuses it (4404): the page starts a new one, with none of hers.
    page.evaluate(f"localStorage.setItem('web-bot-client-id:{BOB}', '{alice_id}')")
    page.reload()
    chat_is_open(page)
    expect(page.locator("#notice-text")).to_have_text(EN["conversation.foreign"])
    new_id = page.evaluate("webBot.clientId")
    assert new_id not in (alice_id, bob_id)
    assert page.evaluate(f"localStorage.getItem('web-bot-client-id:{BOB}')") == new_id
    expect(page.get_by_text("hello from alice")).to_have_count(0)
    expect(page.locator(".msg")).to_have_count(0)

    # Bob's session ends elsewhere (his password changed in another tab): the socket says so (4401), and the page
    # asks him to sign in again.
    sign_in(bob_page, BOB, BOB_PASSWORD)
    chat_is_open(bob_page)
    open_menu_item(bob_page, "#menu-password")
    expect(bob_page.locator("#password-dialog")).to_be_visible()
    expect(bob_page.locator("#password-current")).to_be_focused()
    bob_page.fill("#password-current", "wrong one")
    bob_page.fill("#password-new", BOB_PASSWORD + " 2")
    bob_page.fill("#password-repeat", BOB_PASSWORD + " 2")
    bob_page.locator("#password-form [type=submit]").click()
    expect(bob_page.locator("#password-error")).to_have_text(EN["password.wrong"])
    bob_page.fill("#password-current", BOB_PASSWORD)
    bob_page.locator("#password-form [type=submit]").click()
    expect(bob_page.locator("#password-dialog")).to_be_hidden()
    expect(bob_page.locator("#notice-text")).to_have_text(EN["password.changed"])
    send(page, "still there?")  # the first tab's session was revoked: its socket is closed on this frame
    expect(page.locator("#signin-form")).to_be_visible(timeout=10000)
    expect(page.locator("#signin-note")).to_have_text(EN["signin.expired"])
    chat_is_open(bob_page)  # the tab that changed the password stays signed in

    assert not csp_complaints(said), csp_complaints(said)


def test_sign_in_form_on_a_phone_in_russian_light_and_dark(new_tab, serve, make_settings) -> None:
    """The sign-in form at 390×844, in both colour schemes (screenshots in test-artifacts/), in Russian, with an
    error shown: nothing scrolls sideways, nothing moves when the error appears; too many attempts say how long."""
    served: Served = serve(
        make_settings({**PASSWORD_MODE, "limits": {"enabled": True, "sign_in": "2/minute", "sign_in_slow_after": 10}})
    )
    setup = new_tab()
    setup.page.goto(served.url + "/")
    setup.page.fill("#setup-username", ALICE)
    setup.page.fill("#setup-password", ALICE_PASSWORD)
    setup.page.fill("#setup-repeat", ALICE_PASSWORD)
    setup.page.locator("#setup-form [type=submit]").click()
    chat_is_open(setup.page)

    tab = new_tab(**PHONE, locale="ru-RU")
    said = watch_console(tab)
    page = tab.page
    page.goto(served.url + "/")
    form = page.locator("#signin-form")
    expect(form).to_be_visible()
    expect(page.locator("#signin-title")).to_have_text(RU["signin.title"])
    expect(page.locator("label[for=signin-username]")).to_have_text(RU["signin.username"])
    assert page.get_attribute("#signin-username", "autocomplete") == "username"
    assert page.get_attribute("#signin-password", "autocomplete") == "current-password"
    expect(page.locator("#signin-username")).to_be_focused()
    submit = page.locator("#signin-form [type=submit]")
    before = submit.bounding_box()
    sign_in(page, ALICE, "wrong password")
    expect(page.locator("#signin-error")).to_have_text(RU["error.bad-credentials"], timeout=10000)
    after = submit.bounding_box()
    assert before and after and abs(before["y"] - after["y"]) < 1, (before, after)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the sign-in form scrolls sideways by {overflow} px"
    page.locator("#signin-password").blur()
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(ARTIFACTS / f"screenshot-signin-phone-{scheme}.png"), animations="disabled")

    # Past the rate, the form says how long to wait, in seconds, and its button waits too.
    too_many = re.compile(r"^Слишком много попыток входа\. Попробуйте снова через \d+ секунд[уы]?\.$")
    for _ in range(3):
        with page.expect_response("**/api/auth/login") as answer:
            sign_in(page, ALICE, "wrong again")
        if answer.value.status == 429:
            break
    assert answer.value.status == 429
    expect(page.locator("#signin-error")).to_have_text(too_many)
    expect(submit).to_be_disabled()
    assert not csp_complaints(said), csp_complaints(said)


def test_sending_too_fast_says_how_long_to_wait(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings({**PASSWORD_MODE, "limits": {"enabled": True, "messages": "2/minute"}}))
    page = new_tab().page
    page.goto(served.url + "/")
    page.fill("#setup-username", ALICE)
    page.fill("#setup-password", ALICE_PASSWORD)
    page.fill("#setup-repeat", ALICE_PASSWORD)
    page.locator("#setup-form [type=submit]").click()
    chat_is_open(page)
    for n in (1, 2):
        send(page, f"message {n}")
        expect(replies(page)).to_have_count(n, timeout=10000)
    send(page, "message 3")
    refused = page.locator('.msg.user[data-state="failed"]')
    expect(refused.locator(".text")).to_have_text("message 3")
    expect(refused.locator(".reason")).to_have_text(re.compile(r"^Too fast: wait \d+ seconds? and try again\.$"))
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")  # the socket stays open


# ---- proxy mode ------------------------------------------------------------------------------------------------


def test_behind_a_proxy_the_page_follows_the_user_it_names(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings({"auth": {"mode": "proxy"}}))
    # The proxy (here: the browser itself, from 127.0.0.1, a trusted address) named nobody: the page says so.
    page = new_tab().page
    page.goto(served.url + "/")
    expect(page.locator("#gate-message")).to_be_visible()
    expect(page.locator("#gate-message-title")).to_have_text(EN["proxy.title"])
    expect(page.locator("#gate-message-text")).to_have_text(EN["proxy.text"])
    expect(page.locator("#signin-form")).to_be_hidden()
    expect(page.locator("#input")).to_be_hidden()

    # It names carol: her chat, and a menu without a password or a sign-out (the proxy has both).
    carol = new_tab(extra_http_headers={"X-Forwarded-User": "carol"}).page
    carol.goto(served.url + "/")
    chat_is_open(carol)
    expect(carol.locator("#account-name")).to_have_text("carol")
    assert carol.evaluate("localStorage.getItem('web-bot-client-id:carol')") == carol.evaluate("webBot.clientId")
    carol.click("#account-button")
    expect(carol.locator("#menu-tokens")).to_be_visible()
    expect(carol.locator("#menu-password")).to_be_hidden()
    expect(carol.locator("#menu-sign-out")).to_be_hidden()
    carol.keyboard.press("Escape")
    send(carol, "hello from carol")
    expect(replies(carol)).to_have_text(["You said: hello from carol. (context 2 messages)"], timeout=10000)


# ---- no accounts -----------------------------------------------------------------------------------------------


def test_without_accounts_the_page_is_as_it_was(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings())
    tab = new_tab()
    said = watch_console(tab)
    page = open_chat(tab, served.url)
    expect(page.locator("#gate")).to_be_hidden()
    expect(page.locator("#account")).to_be_hidden()
    expect(page.locator("#signin-form")).to_be_hidden()
    client_id = page.evaluate("webBot.clientId")
    assert page.evaluate("localStorage.getItem('web-bot-client-id')") == client_id
    send(page, "no accounts here")
    expect(replies(page)).to_have_text(["You said: no accounts here. (context 2 messages)"], timeout=10000)
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)
    assert page.evaluate("webBot.clientId") == client_id
    expect(page.locator(".msg .text")).to_have_count(2)
    expect(page.locator("#account")).to_be_hidden()
    assert not csp_complaints(said), csp_complaints(said)


def test_the_page_has_no_inline_script_handler_or_style() -> None:
    """What the Content-Security-Policy refuses: inline scripts (but the hashed import map), on…= handlers, style
    attributes and <style> elements, in the page and in the scripts that build it."""
    html = (ROOT / "web_bot" / "templates" / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    inline = [attrs for attrs, body in scripts if body.strip() and 'type="importmap"' not in attrs]
    assert not inline, inline
    assert re.search(r'<script type="importmap">\{\{ import_map\|safe \}\}</script>', html)
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "a style attribute"
    assert "<style" not in html
    for script in STATIC.glob("*.js"):
        source = script.read_text(encoding="utf-8")
        assert not re.search(r"setAttribute\(\s*\"(?:style|on[a-z]+)\"", source), script.name
        assert 'createElement("style")' not in source, script.name
