"""The preview player inside the app, in Debian's chromium: a generated map plays in the Generate result area
(drawn objects checked by pixels where the engine's geometry puts them), and a MaiMod row click seeks the
MaiMod player. Screenshots go to test-artifacts/app/.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine import preview_json, read_beatmap
from tests.conftest import UPSTREAM, need
from tests.e2e.test_app_browser import (  # noqa: F401  (fixtures)
    JOB_TIMEOUT_MS, ROWS, UI_TIMEOUT_MS, browser_context, choose_custom, fill, page,
)
from tests.e2e.test_player import OsuView, close_to

TRAINED = UPSTREAM / "trained"

pytestmark = pytest.mark.slow


def pixel(page, player_id: str, x: float, y: float) -> tuple[int, int, int]:
    """The colour of the player's view canvas at CSS pixel (x, y)."""
    return tuple(page.evaluate("""([id, x, y]) => {
        const p = MapperatorPlayer.get(id), dpr = p.dpr;
        const d = p.view.getContext("2d").getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data;
        return [d[0], d[1], d[2]];
    }""", [player_id, x, y]))


class AppOsuView(OsuView):
    """OsuView of test_player, measuring the player found by its id instead of `window.player`."""

    def __init__(self, page, player_id: str, data):
        page.evaluate(f"window.player = MapperatorPlayer.get({player_id!r})")
        super().__init__(page, data)


def wait_for_player(page, player_id: str) -> None:
    page.wait_for_function(f"window.MapperatorPlayer && MapperatorPlayer.get({player_id!r}) && "
                           f"MapperatorPlayer.get({player_id!r}).viewW > 0 && "
                           f"MapperatorPlayer.get({player_id!r}).stats.frames > 0", timeout=UI_TIMEOUT_MS)


def test_the_page_serves_the_player_script(app_server):
    with httpx.Client(trust_env=False, timeout=60) as http:
        assert "MapperatorPlayer" in http.get(app_server.page_url).text


def test_generated_map_plays_and_draws_its_objects(page, artifacts, tmp_path):
    song = need(TRAINED / "audio" / "synth150.wav")
    fill(page, "gen-audio", str(song))
    choose_custom(page, "gen-model", str(need(TRAINED / "v32" / "checkpoint")))
    page.wait_for_function("document.querySelector('#gen-model-note').innerText.includes('descriptors')",
                           timeout=UI_TIMEOUT_MS)
    # the picker shows the folder's version; the path stays the value (the generation below uses it)
    page.wait_for_function("document.querySelector('#gen-model input').value === 'v32 (…/v32/checkpoint)'",
                           timeout=UI_TIMEOUT_MS)
    page.locator("#gen-model").screenshot(path=str(artifacts / "model-picker.png"))
    fill(page, "gen-seed", "11")
    fill(page, "gen-output-folder", str(tmp_path))
    page.click("#gen-start")
    page.wait_for_selector("#gen-status .mp-done, #gen-status .mp-error", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#gen-status .mp-done").count() == 1, page.locator("#gen-status").inner_text()
    wait_for_player(page, "generate")
    result_area = page.locator("#gen-status").locator("xpath=ancestor::div[contains(@class, 'column')][1]")
    result_area.screenshot(path=str(artifacts / "player-generate-result.png"))
    written = Path(page.locator("#gen-output input, #gen-output textarea").first.input_value())
    # a tidy result: the path once (in its own box), tables whose header cells all say something
    assert written.is_file() and written.name not in page.locator("#gen-result").inner_text()
    assert page.locator("#gen-result th").count() >= 4 and page.locator("#gen-result th:empty").count() == 0
    beatmap = read_beatmap(written)
    data = preview_json(beatmap)
    o, r = data["objects"], data["radius"]
    assert page.evaluate("MapperatorPlayer.get('generate').map.time.length") == len(o["time"]) > 2

    # play: the song is served through the app (with the page's key cookie) and the clock runs
    page.locator("#gen-player .mp-play").click()
    page.wait_for_function("MapperatorPlayer.get('generate').currentTime > 300", timeout=UI_TIMEOUT_MS)
    page.evaluate("MapperatorPlayer.get('generate').pause()")

    view = AppOsuView(page, "generate", data)
    circles = [i for i in range(len(o["time"])) if o["kind"][i] == 0
               and view.clear_around(i, o["time"][i], (o["x"][i], o["y"][i]), r, only_earlier=True)]
    assert len(circles) >= 2, "the generated map has two circles clear of the objects drawn above them"
    for n, i in enumerate((circles[0], circles[-1])):
        page.evaluate(f"MapperatorPlayer.get('generate').seek({o['time'][i]})")
        colour = data["colours"][o["colour"][i]]
        assert close_to(pixel(page, "generate", *view.at(o["x"][i], o["y"][i] + 0.55 * r)), colour), \
            f"circle {i} at {o['time'][i]} ms is drawn at its position"
        page.locator("#gen-player").screenshot(path=str(artifacts / f"player-generate-{n}.png"))
    # before its approach time a circle is not drawn yet
    first = circles[0]
    if view.clear_around(first, o["time"][first] - data["preempt"] - 300, (o["x"][first], o["y"][first]), r):
        page.evaluate(f"MapperatorPlayer.get('generate').seek({o['time'][first] - data['preempt'] - 300})")
        assert pixel(page, "generate", *view.at(o["x"][first], o["y"][first] + 0.55 * r)) == (0, 0, 0)


def test_maimod_preview_and_row_click_seeks(page, artifacts):
    damaged = need(TRAINED / "v30" / "maimod" / "std_damaged" / "synth150_std_damaged.osu")
    page.get_by_role("tab", name="MaiMod").click()
    fill(page, "mm-beatmap", str(damaged))
    page.click("#mm-preview")  # an existing map plays before anything runs
    wait_for_player(page, "maimod")
    assert page.evaluate("MapperatorPlayer.get('maimod').map.time.length") == len(read_beatmap(damaged).hit_objects)
    page.locator("label", has_text="AI suggestions").first.click()  # rules only: no model needed
    page.click("#mm-start")
    page.wait_for_selector("#mm-status .mp-done, #mm-status .mp-error", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#mm-status .mp-done").count() == 1, page.locator("#mm-status").inner_text()
    wait_for_player(page, "maimod")
    page.wait_for_function(f"document.querySelectorAll({ROWS!r}).length >= 1", timeout=UI_TIMEOUT_MS)
    rows = page.locator(ROWS)
    stamps = [rows.nth(i).locator("[role='gridcell']").nth(1).inner_text().strip() for i in range(rows.count())]
    row = next(i for i, stamp in enumerate(stamps) if stamp)  # whole-map findings have no time
    stamp = stamps[row]
    minutes, seconds, millis = (int(v) for v in stamp.split(" ")[0].split(":"))
    expected = (minutes * 60 + seconds) * 1000 + millis
    rows.nth(row).locator("[role='gridcell']").nth(4).click()
    page.wait_for_function(f"Math.abs(MapperatorPlayer.get('maimod').currentTime - {expected}) < 1.5",
                           timeout=UI_TIMEOUT_MS)
    assert not page.evaluate("MapperatorPlayer.get('maimod').playing")
    page.locator("#mm-player").screenshot(path=str(artifacts / "player-maimod-focus.png"))
