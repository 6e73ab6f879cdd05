"""The page in the users' languages: labels from the catalogues, the Settings language picker, and fonts for
the scripts the catalogues are written in (Thai, Chinese, Japanese, Korean).

French, Thai and Japanese are each shown once through the picker; the app's language is set back to automatic
afterwards, so the other browser tests keep the English page.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from mapperator_app import i18n
from tests.conftest import REPO
from tests.e2e.test_app_browser import JOB_TIMEOUT_MS, UI_TIMEOUT_MS, browser_context, page  # noqa: F401

pytestmark = pytest.mark.slow
LOCALES = REPO / "mapperator_app" / "locales"
SAMPLES = {"th": "ภาษาไทย", "zh-cn": "简体中文", "ja": "日本語のテキスト", "ko": "한국어 텍스트"}


def catalogue(lang: str) -> dict[str, str]:
    return json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))


def shown_languages() -> list[str]:
    """Languages to switch to: one in Latin script, Thai and Japanese (their fonts drawn; screenshots kept)."""
    return ["fr", "th", "ja"]


def tab_names(page) -> list[str]:
    return [t.strip() for t in page.get_by_role("tab").all_inner_texts()]


def ready(page) -> None:
    page.wait_for_selector("html[data-mapperator-ready='true']", state="attached", timeout=JOB_TIMEOUT_MS)


def test_labels_are_catalogue_texts_never_keys(page):
    en = catalogue("en")
    assert tab_names(page)[:5] == [en[k] for k in ("tab.generate", "tab.maimod", "tab.timing", "tab.models",
                                                   "tab.settings")]
    text = page.locator("body").inner_text()
    assert "__i18n__" not in text and "generate.audio" not in text and "common.song" not in text
    assert en["common.song"] in text and en["generate.start"] in text


@pytest.mark.parametrize("lang", shown_languages())
def test_the_language_picker_switches_the_page_and_is_kept(page, app_server, client, artifacts, lang):
    expected = catalogue(lang)
    try:
        page.get_by_role("tab", name=catalogue("en")["tab.settings"]).click()
        picker = page.locator("#set-language input").first
        page.evaluate("window.mapperatorOldPage = true")
        picker.click()
        page.get_by_role("option", name=i18n.LANGUAGE_NAMES[lang], exact=True).click()
        # the page reloads itself in the chosen language: wait for its tabs (a locator waits across the reload)
        page.get_by_role("tab", name=expected["tab.generate"]).wait_for(timeout=JOB_TIMEOUT_MS)
        ready(page)
        assert page.evaluate("window.mapperatorOldPage") is None  # a new page, not the old one relabelled
        assert tab_names(page)[:2] == [expected["tab.generate"], expected["tab.maimod"]]
        page.screenshot(path=str(artifacts / f"language-{lang}.png"))
        assert json.loads(app_server.settings_file.read_text(encoding="utf-8"))["language"] == lang
        assert client.predict(api_name="/restore_settings")[2] == lang
        # the server's own texts (the job list) follow the setting too
        assert expected["jobs.none"] in client.predict(api_name="/jobs")
    finally:
        client.predict("auto", api_name="/set_language")


@pytest.mark.skipif(shutil.which("fc-list") is None, reason="fontconfig's fc-list is not installed")
@pytest.mark.parametrize("script", sorted(SAMPLES))
def test_fonts_for_every_script_are_installed(script):
    """Chromium (and Qt WebEngine) draw with fontconfig's fonts: each script needs one (.ci/run installs
    fonts-thai-tlwg and fonts-noto-cjk)."""
    families = subprocess.run(["fc-list", f":lang={script}", "family"], capture_output=True, text=True,
                              timeout=60).stdout.strip()
    assert families, f"no font covers {script} ({SAMPLES[script]}): install fonts-noto-cjk and fonts-thai-tlwg"
