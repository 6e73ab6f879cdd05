"""The page in the browser's own language: Chromium started with the locale fr-FR, th-TH or ja-JP and the app's
language left on automatic shows the Generate tab and a MaiMod result in that language, with no English left
but what the translation itself keeps (osu!'s proper nouns and terms such as BPM or slider) and file names.

Screenshots are kept (test-artifacts/app/locale-*.png) and the page's text is checked for tofu: every
character shown must be in the character set of an installed font (Chromium draws with fontconfig's fonts;
a character none of them has is drawn as an empty box).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, UPSTREAM, need
from tests.e2e.test_app_browser import JOB_TIMEOUT_MS, ROWS, UI_TIMEOUT_MS, choose_custom, fill
from tests.e2e.test_player import browser  # noqa: F401 (Debian's chromium, one per module)

pytestmark = pytest.mark.slow
TRAINED = UPSTREAM / "trained"
LOCALES = {"fr": "fr-FR", "th": "th-TH", "ja": "ja-JP"}
WORD = re.compile(r"[A-Za-z]{2,}")
HITSOUND = re.compile(r"\b[a-z]+:[a-z]+-[a-z]+\b")  # MaiMod's hitsound values (soft:soft-none): osu!'s own names
PATH = re.compile(r"\S*[/\\]\S*")  # file and folder names are the user's, in any language
# Kept in every language, as osu! keeps them: names of the game, its modes and tools, and units
PROPER = {"osu", "taiko", "catch", "mania", "MaiMod", "Mapperator", "Gradio", "BPM", "AI", "SV", "ms", "API"}


def catalogue(lang: str) -> dict[str, str]:
    return json.loads((REPO / "mapperator_app" / "locales" / f"{lang}.json").read_text(encoding="utf-8"))


# Gradio's own English texts that a page of ours can show (upload areas, tables, footer, errors)
GRADIO_ENGLISH = {"Drop", "File", "Files", "Here", "Click", "Upload", "Use", "via", "Built", "with", "Settings",
                  "Search", "Loading", "Clear", "Submit", "Stop", "Error", "Copy", "Copied", "Sort", "Select",
                  "all", "or", "Download", "Share", "Close", "Empty", "No", "rows", "columns"}


def english_left(text: str, lang: str) -> list[str]:
    """English words on the page (words of our English catalogue or of Gradio's English texts) that the
    language's own catalogue does not use: a text of ours or Gradio's left untranslated."""
    english = set(WORD.findall(" ".join(catalogue("en").values()))) | GRADIO_ENGLISH
    kept = set(WORD.findall(" ".join(catalogue(lang).values()))) | PROPER
    return sorted((set(WORD.findall(HITSOUND.sub(" ", PATH.sub(" ", text)))) & english) - kept)


def font_coverage() -> set[int]:
    """Every code point some installed font has a glyph for (fontconfig's charsets)."""
    listing = subprocess.run(["fc-list", "--format", "%{charset}\n"], capture_output=True, text=True,
                             timeout=120).stdout
    covered: set[int] = set()
    for span in re.findall(r"([0-9a-f]+)(?:-([0-9a-f]+))?", listing):
        first = int(span[0], 16)
        covered.update(range(first, int(span[1] or span[0], 16) + 1))
    return covered


def tofu(text: str, covered: set[int]) -> list[str]:
    return sorted({ch for ch in text if ord(ch) > 0x7F and not ch.isspace() and ord(ch) not in covered})


@pytest.fixture(scope="module")
def covered():
    if shutil.which("fc-list") is None:
        pytest.skip("fontconfig's fc-list is not installed")
    return font_coverage()


@pytest.fixture(params=list(LOCALES))
def localized(request, browser, app_server, client):  # noqa: F811
    """(language, page) of a browser whose locale is the language; the app follows it (setting: automatic)."""
    lang = request.param
    client.predict("auto", api_name="/set_language")
    context = browser.new_context(locale=LOCALES[lang], viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    page.goto(app_server.page_url)
    page.wait_for_selector("html[data-mapperator-ready='true']", state="attached", timeout=JOB_TIMEOUT_MS)
    try:
        yield lang, page
    finally:
        context.close()


def tab_names(page) -> list[str]:
    return [t.strip() for t in page.get_by_role("tab").all_inner_texts()]


def test_the_generate_tab_speaks_the_browsers_language(localized, artifacts, covered):
    lang, page = localized
    words = catalogue(lang)
    assert tab_names(page)[:3] == [words["tab.generate"], words["tab.maimod"], words["tab.timing"]]
    text = page.locator("body").inner_text()
    assert words["generate.start"] in text and words["common.song"] in text
    page.screenshot(path=str(artifacts / f"locale-{lang}-generate.png"), full_page=True)
    left = english_left(text, lang)
    assert left == [], (left, [line for line in text.splitlines() if any(w in line for w in left)][:40])
    assert tofu(text, covered) == []


def test_a_maimod_result_speaks_the_browsers_language(localized, artifacts, covered):
    lang, page = localized
    words = catalogue(lang)
    page.get_by_role("tab", name=words["tab.maimod"]).click()
    fill(page, "mm-beatmap", str(need(TRAINED / "v30" / "maimod" / "std_damaged" / "synth150_std_damaged.osu")))
    fill(page, "mm-audio", str(need(TRAINED / "audio" / "synth150.wav")))
    choose_custom(page, "mm-model", str(need(TRAINED / "v30" / "checkpoint")))
    page.click("#mm-start")
    page.wait_for_selector("#mm-status .mp-done, #mm-status .mp-error", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#mm-status .mp-done").count() == 1, page.locator("#mm-status").inner_text()
    page.wait_for_function(f"document.querySelectorAll({ROWS!r}).length >= 3", timeout=UI_TIMEOUT_MS)
    rows = page.locator(ROWS).all_inner_texts()
    # the AI's suggestions and the rule checks' findings, with their category, severity and source translated
    assert any(words["category.rhythm"] in r and words["source.ai"] in r for r in rows), rows
    assert any(words["source.rule"] in r for r in rows), rows
    assert all(any(words[f"severity.{s}"] in r for s in ("problem", "warning", "minor")) for r in rows), rows
    assert any("00:03:430" in r for r in rows)  # editor timestamps stay in osu!'s format
    page.screenshot(path=str(artifacts / f"locale-{lang}-maimod.png"), full_page=True)
    text = page.locator("body").inner_text()
    left = english_left(text, lang)
    assert left == [], (left, [line for line in text.splitlines() if any(w in line for w in left)][:40])
    assert tofu(text, covered) == []
