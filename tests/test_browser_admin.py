"""The operator's page (/admin) in headless Chromium against a real server: reached from an admin's account menu,
its charts drawn by the vendored uPlot from real turns, under the Content-Security-Policy with no console errors;
refused in words to a user and to nobody signed in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from websockets.sync.client import connect

from tests import test_browser as shared
from tests.conftest import Served
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, catalogue

pytestmark = pytest.mark.browser

new_tab = shared.new_tab  # fresh contexts on the browser below; fails a test whose page threw
EN = catalogue("en")
ROOT_USER, ROOT_PASSWORD = "root", "root-secret-pw-1"
BOB, BOB_PASSWORD = "bob", "bob-secret-pw-3"
SETTINGS = {"auth": {"mode": "password"}, "metrics": {"history_interval_s": 0.25, "history_keep_h": 0.1}}
CHARTS = ["turns", "first-audio", "stages", "errors", "connections", "health"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium without the chat tests' fake microphone: this page needs none."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (scripts/system-deps.sh installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def make_people_and_turns(served: Served) -> None:
    """The first admin and a user, then real turns in the admin's own conversation: two answered, one failed."""
    with httpx.Client(base_url=served.url) as http:
        made = http.post("/api/auth/setup", json={"username": ROOT_USER, "password": ROOT_PASSWORD})
        assert made.status_code == 201, made.text
        cookie = {"Cookie": f"web_bot_session={made.cookies['web_bot_session']}"}
        added = http.post("/api/users", json={"username": BOB, "password": BOB_PASSWORD, "role": "user"},
                          headers=cookie)
        assert added.status_code == 201, added.text
    with connect(f"{served.ws_url}/ws/ops-admin", additional_headers=cookie) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        for text in ("first question", "second question", "this fails [status:500]"):
            ws.send(json.dumps({"type": "text", "text": text}))
            while json.loads(ws.recv(timeout=15))["type"] not in ("reply", "error"):
                pass


def sign_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url + "/")
    page.fill("#signin-username", username)
    page.fill("#signin-password", password)
    page.locator("#signin-form [type=submit]").click()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=15000)


def console(tab: shared.Tab) -> list[tuple[str, str]]:
    said: list[tuple[str, str]] = []
    tab.page.on("console", lambda message: said.append((message.type, message.text)))
    return said


def test_an_admin_opens_the_charts_from_the_menu_and_others_are_told_why_not(new_tab, serve, make_settings) -> None:
    served: Served = serve(make_settings(SETTINGS))
    make_people_and_turns(served)

    tab = new_tab(viewport={"width": 1280, "height": 1100})
    said = console(tab)
    page = tab.page
    sign_in(page, served.url, ROOT_USER, ROOT_PASSWORD)
    page.click("#account-button")
    link = page.locator("#menu-admin")
    expect(link).to_be_visible()
    expect(link).to_have_text(EN["account.admin"])
    said.clear()  # the chat page's own requests are not this test's business
    link.click()
    page.wait_for_url(served.url + "/admin")
    expect(page.locator("body")).to_have_attribute("data-state", "ready", timeout=15000)
    expect(page.locator("#admin-title")).to_have_text(EN["admin.title"])
    assert page.title() == EN["admin.title"]

    # Every chart is there; those with data are drawn on a canvas by uPlot; with no TTS there is no first audio.
    expect(page.locator(".chart")).to_have_count(len(CHARTS))
    turns = page.locator('.chart[data-chart="turns"]')
    expect(turns.locator("figcaption")).to_have_text(EN["admin.turns"])
    expect(turns.locator(".u-legend")).to_contain_text(EN["admin.status-ok"], timeout=10000)
    expect(turns.locator(".u-legend")).to_contain_text(EN["admin.status-error"])
    for chart in ("turns", "stages", "errors", "connections", "health"):
        expect(page.locator(f'.chart[data-chart="{chart}"] canvas')).to_have_count(1)
    first_audio = page.locator('.chart[data-chart="first-audio"]')
    expect(first_audio.locator(".chart-empty")).to_have_text(EN["admin.no-data"])
    expect(first_audio.locator("canvas")).to_have_count(0)
    errors = page.locator('.chart[data-chart="errors"] .u-legend')
    expect(errors).to_contain_text("llm-")  # the code, as text
    expect(page.locator('.chart[data-chart="stages"] .u-legend')).to_contain_text(EN["admin.stage-total"])
    expect(page.locator('.chart[data-chart="health"] .u-legend')).to_contain_text(EN["admin.health-db"])
    expect(page.locator("#summary .card")).to_have_count(10)
    drawn = page.evaluate("() => webBotAdmin.charts()")
    assert sorted(drawn) == sorted(c for c in CHARTS if c != "first-audio"), drawn
    last = page.evaluate("() => webBotAdmin.last()")
    assert max(v for v in last["turns"]["ok"] if v is not None) == 2, last["turns"]

    # Another period and another percentile redraw from a new answer, without a reload.
    page.select_option("#quantile", "p99")
    expect(page.locator('.chart[data-chart="stages"] figcaption')).to_have_text(
        EN["admin.stages"].replace("{quantile}", EN["admin.quantile-p99"])
    )
    with page.expect_response(lambda r: "window=15m" in r.url and r.status == 200):
        page.select_option("#window", "15m")
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)
    problems = [text for kind, text in said if kind == "error" or "Content Security Policy" in text]
    assert not problems, problems

    # A user: no link in the menu, and the page says it is for administrators; nobody signed in: sign in first.
    user = new_tab()
    user_said = console(user)
    sign_in(user.page, served.url, BOB, BOB_PASSWORD)
    user.page.click("#account-button")
    expect(user.page.locator("#menu-users")).to_be_hidden()
    expect(user.page.locator("#menu-admin")).to_be_hidden()
    user.page.goto(served.url + "/admin")
    expect(user.page.locator("body")).to_have_attribute("data-state", "denied", timeout=15000)
    expect(user.page.locator("#admin-state")).to_have_text(EN["admin.not-admin"])
    expect(user.page.locator(".chart")).to_have_count(0)
    nobody = new_tab()
    nobody.page.goto(served.url + "/admin")
    expect(nobody.page.locator("body")).to_have_attribute("data-state", "denied", timeout=15000)
    expect(nobody.page.locator("#admin-state")).to_have_text(EN["admin.sign-in"])
    assert not [text for _, text in user_said if "Content Security Policy" in text]
