"""engine.check_result on real ranked maps of every mode and on copies damaged the ways generated maps go wrong."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import engine
from engine.beatmap import HoldNote, Slider, Spinner, read_beatmap
from engine.beatmap_stats import star_rating

from .conftest import BEATMAPS, REPO, UPSTREAM, need

# One ranked map per mode, with its rosu-pp 3.1.0 star rating (upstream's pin; osu!'s website shows newer values).
MAPS = {
    0: ("Soleily - Renatus (Gamu) [Insane].osu", 5.29),
    1: ("Soleily - Renatus (MMzz) [Oni].osu", 5.80),
    2: ("Soleily - Renatus (Deif) [Rain].osu", 4.66),
    3: ("Soleily - Renatus (ExPew) [Another].osu", 4.73),
}
MODES = sorted(MAPS)


def ranked(mode: int):
    return read_beatmap(need(BEATMAPS / MAPS[mode][0]))


def with_objects(beatmap, objects):
    damaged = beatmap.copy()
    damaged.hit_objects = list(objects)
    damaged.path = None
    return damaged


def moved(obj, x: float, y: float):
    dx, dy = x - obj.x, y - obj.y
    if isinstance(obj, Slider):
        points = tuple(dataclasses.replace(p, x=p.x + dx, y=p.y + dy) for p in obj.curve_points)
        return dataclasses.replace(obj, x=x, y=y, curve_points=points)
    return dataclasses.replace(obj, x=x, y=y)


def shifted(obj, ms: float):
    if isinstance(obj, (Spinner, HoldNote)):
        return dataclasses.replace(obj, time=obj.time + ms, end_time=obj.end_time + ms)
    return dataclasses.replace(obj, time=obj.time + ms)


@pytest.mark.parametrize("mode", MODES)
def test_a_ranked_map_is_clean_and_rated_as_known(mode):
    beatmap = ranked(mode)
    check = engine.check_result(beatmap)
    assert check.mode == mode and check.object_count == len(beatmap.hit_objects)
    assert check.star_rating == pytest.approx(MAPS[mode][1], abs=0.01)
    assert (check.offscreen, check.stacked, check.doubled, check.unsnapped) == (0, 0, 0, 0)
    assert check.flags == []
    assert len(check.empty_sections) <= 1  # Gamu's 18.5 s break; the others have none this long
    assert [(line.offset_ms, round(line.bpm)) for line in check.red_lines][0] == (956, 182)
    assert check.evaluation is None


def test_the_star_rating_is_of_the_map_in_memory_not_its_file():
    beatmap = ranked(0)
    halved = beatmap.copy()
    halved.hit_objects = beatmap.hit_objects[::2]  # the copy keeps the path of the file it was read from
    assert halved.path is not None and star_rating(halved) == 5.29
    assert engine.check_result(halved).star_rating < 5.0


@pytest.mark.parametrize("mode", [0, 2])
def test_all_objects_on_one_spot_are_stacked(mode):
    beatmap = ranked(mode)
    pile = with_objects(beatmap, (moved(o, 256, 192) if not isinstance(o, Spinner) else o
                                  for o in beatmap.hit_objects))
    check = engine.check_result(pile)
    spinners = sum(isinstance(o, Spinner) for o in beatmap.hit_objects)
    assert check.stacked >= check.object_count - spinners - 2
    assert "stacked" in check.flags and f"{check.stacked} stacked" in check.summary_line()


def test_a_normal_stacked_stream_is_not_flagged():
    beatmap = ranked(0)
    objects = sorted(beatmap.hit_objects, key=lambda o: o.time)
    first = next(i for i, o in enumerate(objects) if o.time >= 30000)
    # 8 objects on the spot of the first, a short stacked pattern as mappers make them
    stream = [moved(o, objects[first].x, objects[first].y) for o in objects[first:first + 8]]
    beat = beatmap.beat_length_at(stream[0].time)
    assert stream[-1].time - stream[0].time < 8 * beat
    check = engine.check_result(with_objects(beatmap, objects[:first] + stream + objects[first + 8:]))
    assert check.stacked == 0


@pytest.mark.parametrize("mode", MODES)
def test_every_object_twice_is_doubled(mode):
    beatmap = ranked(mode)
    check = engine.check_result(with_objects(beatmap, [o for obj in beatmap.hit_objects for o in (obj, obj)]))
    assert check.doubled == len(beatmap.hit_objects)
    assert "doubled" in check.flags


@pytest.mark.parametrize("mode", MODES)
def test_objects_7_ms_late_are_unsnapped(mode):
    beatmap = ranked(mode)
    check = engine.check_result(with_objects(beatmap, (shifted(o, 7) for o in beatmap.hit_objects)))
    assert check.unsnapped >= 0.8 * len(beatmap.hit_objects)
    assert "unsnapped" in check.flags and check.doubled == check.stacked == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_20_second_hole_is_an_empty_section(mode):
    beatmap = ranked(mode)
    before = engine.check_result(beatmap).empty_sections
    kept = [o for o in beatmap.hit_objects if not 60000 <= o.time < 80000]
    sections = engine.check_result(with_objects(beatmap, kept)).empty_sections
    assert len(sections) == len(before) + 1
    hole = next(s for s in sections if s not in before)
    assert 59000 < hole.start_ms < 61000 and hole.end_ms >= 80000 and hole.bars >= 4  # a hold may end after 60 s
    assert "empty section" in engine.check_result(with_objects(beatmap, kept)).summary_line()


def test_asked_and_actual_stars_are_reported():
    check = engine.check_result(ranked(0), asked_difficulty=6.5)
    assert check.star_difference == pytest.approx(5.29 - 6.5)
    line = check.summary_line()
    assert line.startswith("5.29★ (asked 6.5) · 4 red lines 91-182 BPM, first @ 956 ms · 897 objects · 0 offscreen")
    data = json.loads(json.dumps(check.to_json()))
    assert (data["star_rating"], data["asked_difficulty"]) == (5.29, 6.5)
    assert data["summary"] == line and data["red_lines"][0] == {"offset_ms": 956, "bpm": pytest.approx(182, abs=1),
                                                               "meter": 4}


def test_a_reference_is_evaluated_against():
    beatmap = ranked(1)
    check = engine.check_result(with_objects(beatmap, beatmap.hit_objects[::2]), reference=need(BEATMAPS / MAPS[1][0]))
    assert 0 < check.evaluation.active_rhythm.recall < 0.6 and check.evaluation.active_rhythm.precision == 1
    assert check.to_json()["evaluation"]["active_rhythm_f1"] == check.evaluation.active_rhythm.f1
    assert "rhythm F1" in check.summary_line()


def test_an_unreadable_reference_is_skipped(tmp_path):
    broken = tmp_path / "broken.osu"
    broken.write_bytes(b"\x00not a beatmap")
    assert engine.check_result(ranked(0), reference=broken).evaluation is None


def test_an_empty_map_says_so():
    check = engine.check_result(with_objects(ranked(0), []))
    assert check.star_rating is None and check.object_count == 0 and check.flags == ["no objects"]
    assert check.summary_line().startswith("?★ · 4 red lines")


# --- the command line --------------------------------------------------------------------------------------

TRAINED = UPSTREAM / "trained"


def generate_cli(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    """`mapperator generate` with the tiny trained v32, timed by the reference map (so no timing pass)."""
    words = [f"beatmap_path={need(TRAINED / 'audio' / 'synth150_std.osu')}", f"output_path={tmp_path / 'out'}",
             f"model_path={need(TRAINED / 'v32' / 'checkpoint')}", "in_context=[TIMING]", "gamemode=0",
             "difficulty=3.2", "mapper_id=2", "year=2023", "do_sample=false", "seed=1", "device=cpu"]
    return subprocess.run([sys.executable, "-m", "mapperator_app.cli", "generate", *extra[:1], *words, *extra[1:]],
                          cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_generate_prints_the_check_summary(tmp_path):
    out = generate_cli(tmp_path)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.strip().startswith("check:"))
    written = next((tmp_path / "out").glob("*.osu"))
    expected = engine.check_result(read_beatmap(written), 3.2, TRAINED / "audio" / "synth150_std.osu")
    assert line.strip() == f"check: {expected.summary_line()}"
    assert "(asked 3.2)" in line and "1 red line 150 BPM" in line and "rhythm F1" in line


@pytest.mark.slow
def test_generate_json_holds_the_result_and_its_check(tmp_path):
    out = generate_cli(tmp_path, "--json", "title=Checked")  # the flag before and among key=value words
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["options"]["title"] == "Checked" and data["path"].endswith(".osu")
    check = data["check"]
    assert check["asked_difficulty"] == 3.2 and check["object_count"] == data["objects"] > 0
    assert check["star_rating"] > 0 and check["red_lines"][0]["bpm"] == pytest.approx(150)
    assert check["evaluation"]["reference"] == "synth150_std.osu"
    assert {"stacked", "doubled", "unsnapped", "offscreen", "empty_sections", "summary"} <= set(check)


# --- the app's Generate tab -----------------------------------------------------------------------------------


def fake_result(beatmap, osu_path, **options):
    """What the Generate tab reads from a GenerationResult (the options it needs, the written map)."""
    from types import SimpleNamespace

    base = {"difficulty": None, "beatmap_path": None}
    return SimpleNamespace(beatmap=beatmap, osu_path=osu_path, options=SimpleNamespace(**{**base, **options}))


def test_the_generate_tab_shows_the_check_beneath_the_result(tmp_path):
    from mapperator_app import forms
    from mapperator_app.tabs.generate import Outcome, result_markdown

    reference = need(BEATMAPS / MAPS[0][0])
    beatmap = ranked(0)
    pile = with_objects(beatmap, (moved(o, 256, 192) if not isinstance(o, Spinner) else o
                                  for o in beatmap.hit_objects))
    result = fake_result(pile, tmp_path / "new.osu", difficulty=5.5, beatmap_path=str(reference))
    check = forms.result_check(result)
    assert check.asked_difficulty == 5.5 and check.evaluation.reference == reference.name
    table = forms.check_markdown(check)
    assert f"| Stacked on one spot | ⚠ {check.stacked} |" in table and "| Doubled | 0 |" in table
    assert "(asked 5.5★, " in table and "rhythm F1" in table
    assert all(line.startswith("|") and line.endswith("|") for line in table.splitlines())
    r = dataclasses.make_dataclass("R", ["beatmap", "options", "version", "seed", "tokens", "seconds", "warnings",
                                         "tokens_per_second"])(pile, result.options, "v32", 1, 10, 1.0, [], 10.0)
    assert result_markdown(Outcome(r, check.star_rating, None, None, "", check)).endswith(table)


def test_a_result_written_over_its_reference_is_not_evaluated_against_itself():
    from mapperator_app import forms

    reference = need(BEATMAPS / MAPS[1][0])
    result = fake_result(ranked(1), reference, beatmap_path=str(reference))
    assert forms.result_check(result).evaluation is None
