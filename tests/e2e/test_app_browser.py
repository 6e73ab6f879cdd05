"""The page in a real browser: Debian's chromium, headless, driven by Playwright (no browser is downloaded).

Screenshots go to test-artifacts/app/ (git-ignored). The browser records every request: the page must
never fetch anything from outside 127.0.0.1 (fonts, analytics, CDNs). The page is opened as the app opens
it, with the launch's key in the address; every later request of the page goes with the cookie it sets.

Every wait is on a condition. Limits are upper bounds only, generous because other work may share the
machine: UI steps get UI_TIMEOUT_MS, model work (generation, MaiMod) JOB_TIMEOUT_MS.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

import engine
from tests.conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROWS = "#mm-table .virtual-body [role='row']"  # Gradio's Dataframe draws body rows as ARIA grid rows
UI_TIMEOUT_MS = 120_000  # a click's answer, a table redraw: well under a second on a free machine
JOB_TIMEOUT_MS = 600_000  # a generation or a MaiMod check on the CPU: seconds free, minutes when loaded

pytestmark = pytest.mark.slow

try:
    from playwright.sync_api import expect
except ImportError:  # the fixture below skips the tests
    expect = None


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does this)")
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path_factory.mktemp("chromium-profile")  # empty user-data-dir
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, permissions=["clipboard-read", "clipboard-write"])
        context.set_default_timeout(UI_TIMEOUT_MS)  # clicks and fills wait for their element up to this
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context, app_server):
    page = browser_context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
        (app_server.url.rstrip("/"), "data:", "blob:")) else None)
    page.goto(app_server.page_url)
    # the tabs' last values arrive after the page shows: typing before they are all in would be overwritten
    page.wait_for_selector("html[data-mapperator-ready='true']", state="attached", timeout=JOB_TIMEOUT_MS)
    yield page
    page.close()
    assert outside == [], f"the page fetched from outside 127.0.0.1: {outside}"


def fill(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(text)
    box.blur()


def choose_custom(page, elem_id: str, text: str) -> None:
    """Type a value into a dropdown that allows custom values."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(text)
    box.press("Enter")
    box.blur()


def test_generate_shows_progress_and_the_result(page, artifacts, tmp_path):
    song = need(TRAINED / "audio" / "synth150.wav")
    checkpoint = need(TRAINED / "v32" / "checkpoint")
    # in a browser the native Browse buttons are hidden and uploads are offered
    assert page.locator("#gen-audio-browse").is_hidden() and page.locator("#gen-audio-upload").is_visible()
    fill(page, "gen-audio", str(song))
    choose_custom(page, "gen-model", str(checkpoint))
    page.wait_for_function("document.querySelector('#gen-model-note').innerText.includes('descriptors')",
                           timeout=UI_TIMEOUT_MS)
    # the fixture is a v32 checkpoint: without a GPU its note points to the faster v32-mini
    note = page.locator("#gen-model-note").inner_text()
    assert ("v32-mini" in note) == (engine.auto_device_type() == "cpu"), note
    fill(page, "gen-diff", "3.2")
    fill(page, "gen-seed", "11")
    fill(page, "gen-output-folder", str(tmp_path))
    page.screenshot(path=str(artifacts / "generate-form.png"), full_page=True)
    page.click("#gen-start")
    page.wait_for_function("document.querySelector('#gen-status').innerText.includes('window') || "
                           "document.querySelector('#gen-status .mp-error') !== null", timeout=JOB_TIMEOUT_MS)
    assert "window" in page.locator("#gen-status").inner_text(), page.locator("#gen-status").inner_text()
    page.screenshot(path=str(artifacts / "generate-progress.png"))
    page.wait_for_selector("#gen-status .mp-done, #gen-status .mp-error", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#gen-status .mp-done").count() == 1, page.locator("#gen-status").inner_text()
    expect(page.locator("#gen-thumbnail img")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.screenshot(path=str(artifacts / "generate-result.png"), full_page=True)
    output = page.locator("#gen-output input, #gen-output textarea").first.input_value()
    assert output.endswith(".osu") and Path(output).parent == tmp_path and Path(output).is_file()
    result = page.locator("#gen-result").inner_text()
    assert "★" in result and "asked for 3.20★" in result
    assert page.locator("#gen-timeline img").count() == 1


def test_maimod_table_rows_and_timestamp_copy(page, artifacts):
    damaged = need(TRAINED / "v30" / "maimod" / "std_damaged" / "synth150_std_damaged.osu")
    page.get_by_role("tab", name="MaiMod").click()
    fill(page, "mm-beatmap", str(damaged))
    fill(page, "mm-audio", str(need(TRAINED / "audio" / "synth150.wav")))
    choose_custom(page, "mm-model", str(need(TRAINED / "v30" / "checkpoint")))
    page.click("#mm-start")
    # the check runs the v30 model on the CPU: a fixed 120 s limit failed here on a loaded machine
    page.wait_for_selector("#mm-status .mp-done, #mm-status .mp-error", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#mm-status .mp-done").count() == 1, page.locator("#mm-status").inner_text()
    rows = page.locator(ROWS)
    page.wait_for_function(f"document.querySelectorAll({ROWS!r}).length >= 3", timeout=UI_TIMEOUT_MS)
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert any("Rhythm" in t and "AI" in t for t in texts), texts
    assert any("rule" in t for t in texts), texts
    page.screenshot(path=str(artifacts / "maimod-table.png"), full_page=True)
    row = next(i for i, t in enumerate(texts) if "00:03:430" in t)
    rows.nth(row).locator("[role='gridcell']").nth(4).click()
    copied = page.locator("#mm-copied input, #mm-copied textarea").first
    expect(copied).to_have_value(re.compile(r"^00:03:430"), timeout=UI_TIMEOUT_MS)
    page.wait_for_function("navigator.clipboard.readText().then(t => t.startsWith('00:03:430'))",
                           timeout=UI_TIMEOUT_MS)
    # filtering: only problems
    page.locator("#mm-severity label", has_text="warning").click()
    page.locator("#mm-severity label", has_text="minor").click()
    page.wait_for_function(
        f"[...document.querySelectorAll({ROWS!r})].every(r => r.innerText.includes('problem'))",
        timeout=UI_TIMEOUT_MS)


def test_models_tab_explains_offline(page, artifacts):
    page.get_by_role("tab", name="Models").click()
    page.wait_for_function("document.querySelector('#models-table').innerText.includes('v32-mini')",
                           timeout=UI_TIMEOUT_MS)
    page.click("#models-download")
    expect(page.locator("#models-status .mp-error")).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert "cannot be reached" in page.locator("#models-status").inner_text()
    page.screenshot(path=str(artifacts / "models-offline.png"), full_page=True)


def test_the_key_becomes_a_cookie_and_leaves_the_address(page, app_server):
    """The page arrived with ?key=...; it works by an HttpOnly, SameSite=Strict cookie and drops the key from
    its address (and so from the history and copied links)."""
    from mapperator_app.access import cookie_name

    page.wait_for_function("!window.location.search.includes('key=')", timeout=UI_TIMEOUT_MS)
    assert page.url == app_server.url
    cookies = {c["name"]: c for c in page.context.cookies(app_server.url)}
    cookie = cookies[cookie_name(app_server.port)]
    assert cookie["value"] == app_server.key and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    # the page's own calls go with the cookie; the same call from elsewhere (no cookie) is refused
    assert page.evaluate("fetch('/config').then(r => r.status)") == 200
    assert httpx.get(app_server.url + "config", timeout=60, trust_env=False).status_code == 401
