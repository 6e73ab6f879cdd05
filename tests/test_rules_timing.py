"""Timing rules on small maps: each case fails without its check, and the clean twin stays clean.

The maps come from ``build_map``: a red line at 0 ms with 500 ms beats, 140 px per beat.
"""
from __future__ import annotations

import pytest

from engine.rules.snapping import nearest_snap, unsnap
from engine.suggestions import Severity
from tests.test_rules import build_map, found

RED = "0,500,4,2,0,100,1,0"


def circle(t: float, x: int = 256, y: int = 192) -> str:
    return f"{x},{y},{t:g},1,0,0:0:0:0:"


# ----------------------------------------------------------------------------------- snapping
@pytest.mark.parametrize("time, expected", [
    (1000, 0), (1001, 1), (999, -1), (1003, 3), (997, -3),
    (1031, 0), (1032, 1),  # 1/16 tick at 1031.25: the editor truncates it to 1031
    (1166, 0), (1167, 1),  # 1/3 at 1166.67
    (1041, 0), (1083, 0),  # 1/12 at 1041.67, 1/6 at 1083.33
    (1055, 0), (1071, 0), (1100, 0),  # 1/9, 1/7, 1/5
    (1020, -11),  # 20 ms after the beat, 11 ms before the 1/16 tick at 1031
])
def test_unsnap_uses_common_divisors_and_the_editors_truncation(time, expected):
    assert unsnap(time, 0, 500) == pytest.approx(expected)


def test_nearest_snap_names_the_lowest_divisor_and_the_tick():
    snap = nearest_snap(1167, 0, 500)
    assert (snap.tick, snap.divisor, snap.unsnap) == (1166, 3, 1)
    assert nearest_snap(1252, 0, 500).divisor == 2
    assert nearest_snap(-498, 0, 500).tick == -500  # before the line: extrapolated backwards


# ------------------------------------------------------------------------------------ unsnapped
def test_unsnapped_circles_minor_at_1ms_problem_at_2ms():
    clean = build_map([circle(1000), circle(1071), circle(1166)])
    assert found(clean, "unsnapped") == []
    result = found(build_map([circle(1001), circle(1073), circle(1167)]), "unsnapped")
    assert [(s.time_ms, s.severity, s.message) for s in result] == [
        (1001, Severity.MINOR, "Circle unsnapped by 1 ms."),
        (1073, Severity.PROBLEM, "Circle unsnapped by 2 ms."),
        (1167, Severity.MINOR, "Circle unsnapped by 1 ms."),
    ]
    assert result[1].expected == "00:01:071 (1/7)" and result[1].actual == "1073"


def test_unsnapped_slider_reverse_and_tail():
    # 70 px is 250 ms (1/2); 71 px is 253.57 ms, so the reverse and the tail are off the grid.
    assert found(build_map(["100,100,1000,2,0,L|170:100,2,70"]), "unsnapped") == []
    result = found(build_map(["100,100,1000,2,0,L|171:100,2,71"]), "unsnapped")
    assert [(s.details["part"], round(s.time_ms, 2), s.severity) for s in result] == [
        ("Slider reverse", 1253.57, Severity.PROBLEM), ("Slider tail", 1507.14, Severity.PROBLEM)]
    assert result[0].timestamp == "00:01:254 - "  # no combo number: the object starts elsewhere


def test_unsnapped_spinner_and_hold_note_ends():
    assert found(build_map(["256,192,1000,12,0,3000,0:0:0:0:"]), "unsnapped") == []
    result = found(build_map(["256,192,1000,12,0,3004,0:0:0:0:"]), "unsnapped")
    assert [(s.details["part"], s.time_ms) for s in result] == [("Spinner tail", 3004)]
    mania = build_map(["64,192,1000,128,0,1500:0:0:0:0:", "192,192,2000,128,0,2502:0:0:0:0:"], mode=3)
    result = found(mania, "unsnapped")
    assert [(s.details["part"], s.time_ms, s.timestamp) for s in result] == [
        ("Hold note tail", 2502, "00:02:502 - ")]


def test_unsnapped_measures_against_the_red_line_in_effect():
    timing = [RED, "1010,400,4,2,0,100,1,0"]
    # 1410 is a beat after the second line but 90 ms off the first line's grid.
    assert found(build_map([circle(1410)], timing), "unsnapped") == []
    assert [s.time_ms for s in found(build_map([circle(1410)]), "unsnapped")] == [1410]
    # Before the second line the first line still rules.
    assert [s.time_ms for s in found(build_map([circle(1005)], timing), "unsnapped")] == [1005]


def test_slider_tail_just_before_a_new_grid_is_exempt():
    slider = "100,100,1000,2,0,L|171:100,1,71"  # tail at 1253.57
    assert [s.details["part"] for s in found(build_map([slider]), "unsnapped")] == ["Slider tail"]
    new_bpm = [RED, "1255,400,4,2,0,100,1,0"]  # a new grid 1.4 ms after the tail
    assert found(build_map([slider], new_bpm), "unsnapped") == []
    too_far = [RED, "1300,400,4,2,0,100,1,0"]
    assert [s.details["part"] for s in found(build_map([slider], too_far), "unsnapped")] == ["Slider tail"]

    near_bar = "100,100,1000,2,0,L|400:100,1,279.56"  # tail at 1998.43, 1.57 ms before a bar
    result = found(build_map([near_bar]), "unsnapped")
    assert [(s.severity, round(s.details["unsnap_ms"], 2)) for s in result] == [(Severity.MINOR, -1.57)]
    # A red line continuing the same bars does not excuse it; one starting a new grid does.
    assert len(found(build_map([near_bar], [RED, "2000,500,4,2,0,100,1,0"]), "unsnapped")) == 1
    assert found(build_map([near_bar], [RED, "2000,400,4,2,0,100,1,0"]), "unsnapped") == []


# ------------------------------------------------------------------------- first line, before
def test_first_line_problems():
    assert found(build_map([circle(1000)]), "first-line") == []
    cases = {
        "There are no timing lines.": [],
        "There is no uninherited (red) line, so the map has no BPM or offset.": ["0,-100,4,2,0,100,0,0"],
        "First timing line is inherited.": ["0,-100,4,2,0,100,0,0", "10,500,4,2,0,100,1,0"],
        "First timing line toggles kiai.": ["0,500,4,2,0,100,1,1"],
    }
    for message, timing in cases.items():
        result = found(build_map([circle(1000)], timing), "first-line")
        assert [(s.message, s.severity) for s in result] == [(message, Severity.PROBLEM)]


def test_objects_before_the_first_red_line():
    timing = ["1000,500,4,2,0,100,1,0"]
    assert found(build_map([circle(1000), circle(1500)], timing), "before-first-line") == []
    # 1 ms early is editor rounding (the unsnap check reports it as minor).
    assert found(build_map([circle(999)], timing), "before-first-line") == []
    result = found(build_map([circle(0), circle(500), circle(1000)], timing), "before-first-line")
    assert len(result) == 1
    s = result[0]
    assert s.severity is Severity.PROBLEM and s.time_ms == 0 and s.details["objects_before"] == 2
    assert s.message.startswith("2 objects start before the first uninherited line at 00:01:000")


# -------------------------------------------------------------------------------- concurrent
def test_concurrent_lines():
    assert found(build_map([circle(1000)], [RED, "1000,-50,4,2,0,100,0,0"]), "concurrent-lines") == []
    two_reds = found(build_map([circle(1000)], [RED, "0,500,4,2,0,100,1,0"]), "concurrent-lines")
    assert [(s.severity, s.message, s.time_ms) for s in two_reds] == [
        (Severity.PROBLEM, "2 concurrent uninherited lines; keep one.", 0)]
    greens = [RED, "1000,-50,4,2,0,100,0,0", "1000,-200,4,2,0,100,0,0"]
    assert [s.message for s in found(build_map([circle(1000)], greens), "concurrent-lines")] == [
        "2 concurrent inherited lines; keep one."]
    conflicting = [RED, "2000,500,4,2,0,100,1,0", "2000,-100,4,2,0,60,0,1"]
    result = found(build_map([circle(1000)], conflicting), "concurrent-lines")
    assert [(s.severity, s.time_ms) for s in result] == [(Severity.MINOR, 2000)]
    assert "Green: kiai, 60% volume. Red: no kiai, 100% volume." in result[0].message


# ------------------------------------------------------------------------------ unused lines
def test_red_line_that_changes_nothing():
    objects = [circle(1000), circle(9000)]
    sixteen_beats = [RED, "8000,500,4,2,0,100,1,0"]  # 4 bars on: even nightcore cymbals line up
    result = found(build_map(objects, sixteen_beats), "unused-lines")
    assert [(s.severity, s.message, s.time_ms) for s in result] == [
        (Severity.PROBLEM, "Uninherited line changes nothing; remove it.", 8000)]
    # A new BPM, or a line off the bar grid, is real timing.
    assert found(build_map(objects, [RED, "8000,400,4,2,0,100,1,0"]), "unused-lines") == []
    assert found(build_map(objects, [RED, "8250,500,4,2,0,100,1,0"]), "unused-lines") == []
    # Changing the volume where objects play: an inherited line could do that.
    louder = [RED, "8000,500,4,2,0,60,1,0"]
    assert [s.message for s in found(build_map(objects, louder), "unused-lines")] == [
        "Uninherited line changes nothing that an inherited line couldn't change; use an inherited line."]


def test_red_line_with_a_non_obvious_effect_is_a_warning():
    objects = [circle(1000)]
    one_bar = [RED, "2000,500,4,2,0,100,1,0"]  # on a bar but not on a 4-bar nightcore phrase
    result = found(build_map(objects, one_bar), "unused-lines")
    assert [(s.severity, s.message) for s in result] == [
        (Severity.WARNING, "Uninherited line only resets nightcore mod cymbals; make sure this is intended, "
                           "otherwise remove it.")]
    omits = [RED, "8000,500,4,2,0,100,1,8"]
    assert "omits the first bar line" in found(build_map(objects, omits), "unused-lines")[0].message
    # Bar lines show in taiko, so there the line does something.
    taiko = build_map(["256,192,1000,1,0,0:0:0:0:"], omits, mode=1)
    assert found(taiko, "unused-lines") == []


def test_green_lines_that_affect_nothing():
    objects = [circle(1000), circle(3000)]
    same = [RED, "2000,-100,4,2,0,100,0,0"]
    assert [(s.severity, s.message, s.time_ms) for s in found(build_map(objects, same), "unused-lines")] == [
        (Severity.MINOR, "Inherited line uses the same values as the previous timing line.", 2000)]
    sv = [RED, "2000,-50,4,2,0,100,0,0"]  # SV 2 while only circles play
    assert [s.message for s in found(build_map(objects, sv), "unused-lines")] == [
        "Inherited line changes SV, but affects nothing."]
    quiet_after_end = [RED, "5000,-100,4,2,0,40,0,0"]
    assert [s.message for s in found(build_map(objects, quiet_after_end), "unused-lines")] == [
        "Inherited line changes sample settings, but affects nothing."]
    # Used: SV with a slider starting under it, volume over an object, kiai, SV in taiko.
    with_slider = [circle(1000), "100,100,3000,2,0,L|240:100,1,140"]
    assert found(build_map(with_slider, sv), "unused-lines") == []
    assert found(build_map(objects, [RED, "2000,-100,4,2,0,40,0,0"]), "unused-lines") == []
    assert found(build_map(objects, [RED, "2000,-100,4,2,0,100,0,1"]), "unused-lines") == []
    assert found(build_map(["256,192,1000,1,0,0:0:0:0:", "256,192,3000,1,0,0:0:0:0:"], sv, mode=1),
                 "unused-lines") == []
