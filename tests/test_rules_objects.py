"""Compose and slider rules on small maps: each case fails without its check, the clean twin passes.

``build_map``: 120 BPM, 140 px per beat (0.28 px/ms) at SV 1, CS 4 (radius 36.48), AR 9 (stacks
within 420 ms at StackLeniency 0.7).
"""
from __future__ import annotations

import pytest

from engine.rules.context import MapContext
from engine.rules.stacking import circle_radius, preempt_ms, stack_heights
from engine.suggestions import Severity
from tests.test_rules import build_map, found


def circle(t: float, x: float = 256, y: float = 192) -> str:
    return f"{x:g},{y:g},{t:g},1,0,0:0:0:0:"


# ---------------------------------------------------------------------------------- zero length
def test_zero_length_objects():
    clean = build_map(["100,100,1000,2,0,L|240:100,1,140", "256,192,2000,12,0,3000,0:0:0:0:"])
    assert found(clean, "zero-length") == []
    broken = build_map([
        "100,100,1000,2,0,B,1,100",
        "100,100,2000,2,0,B|100:100|100:100,1,100",
        "100,100,3000,2,0,L|200:100,1,-50",
        "256,192,4000,12,0,4000,0:0:0:0:",
        "256,192,5000,12,0,4900,0:0:0:0:",
    ])
    assert [(s.time_ms, s.severity, s.message) for s in found(broken, "zero-length")] == [
        (1000, Severity.PROBLEM, "Slider has no curve points, only its head, so it has no visible path."),
        (2000, Severity.PROBLEM, "Slider has zero length: every curve point is on its head."),
        (3000, Severity.PROBLEM, "Slider has a negative pixel length (-50)."),
        (4000, Severity.PROBLEM, "Spinner has zero duration."),
        (5000, Severity.PROBLEM, "Spinner ends 100 ms before it starts."),
    ]
    spinner = found(broken, "zero-length")[3]
    assert spinner.timestamp == "00:04:000 - "  # spinners show no combo number
    mania = build_map(["64,192,1000,128,0,1000:0:0:0:0:", "192,192,2000,128,0,2500:0:0:0:0:"], mode=3)
    assert [s.message for s in found(mania, "zero-length")] == ["Hold note has zero duration."]


# ------------------------------------------------------------------------------------ offscreen
def test_circle_radius_and_preempt():
    assert circle_radius(4) == pytest.approx(36.48)
    assert circle_radius(5) == 32
    assert (preempt_ms(0), preempt_ms(5), preempt_ms(10)) == (1800, 1200, 450)


def test_offscreen_heads():
    assert found(build_map([circle(1000, 256, 380), circle(2000, -25, 192)]), "offscreen") == []
    result = found(build_map([circle(1000, 256, 400), circle(2000, -40, 192)]), "offscreen")
    assert [(s.time_ms, s.severity, s.message) for s in result] == [
        (1000, Severity.PROBLEM, "Circle is offscreen."),  # past the bottom edge nothing pushes it back
        (2000, Severity.WARNING, "Circle would be offscreen, but the game prevents it."),
    ]
    assert found(build_map([circle(1000, 256, 400)], mode=1), "offscreen") == []  # osu!standard only


def test_stacking_moves_objects_offscreen():
    # Three circles on one spot within 420 ms stack up-left: the first moves 2 * 3.648 px.
    stacked = build_map([circle(1000, -25), circle(1100, -25), circle(1200, -25)])
    ctx = MapContext(stacked)
    assert [stack_heights(ctx)[id(o)] for o in ctx.objects] == [2, 1, 0]
    result = found(stacked, "offscreen")
    assert [(s.time_ms, s.severity, s.message) for s in result] == [
        (1000, Severity.PROBLEM, "Circle is offscreen (stacking moves it out).")]
    spread_in_time = build_map([circle(1000, -25), circle(2000, -25), circle(3000, -25)])
    assert found(spread_in_time, "offscreen") == []


@pytest.mark.parametrize("version", [14, 5])  # the v6+ rule and the older one agree on simple stacks
def test_stack_heights(version):
    ctx = MapContext(build_map([circle(1000, 100), circle(1100, 101), circle(1200, 100), circle(2000, 300)],
                               version=version))
    assert [stack_heights(ctx)[id(o)] for o in ctx.objects] == [2, 1, 0, 0]
    under_slider = build_map(["100,100,1000,2,0,L|240:100,1,140", circle(1750, 240, 100), circle(1800, 241, 100)],
                             version=version)
    ctx = MapContext(under_slider)
    assert [stack_heights(ctx)[id(o)] for o in ctx.objects] == [0, -1, -2]
    late = MapContext(build_map(["100,100,1000,2,0,L|240:100,1,140", circle(1950, 240, 100)], version=version))
    assert [stack_heights(late)[id(o)] for o in late.objects] == [0, 0]  # 450 ms after the slider end
    assert stack_heights(MapContext(build_map([circle(1000), circle(1100)], mode=2))) == {}


def test_circles_under_a_slider_end_stack_down_right():
    objects = ["405,192,1000,2,0,L|545:192,1,140", circle(1750, 545, 192)]
    ctx = MapContext(build_map(objects))
    assert [stack_heights(ctx)[id(o)] for o in ctx.objects] == [0, -1]
    result = found(build_map(objects), "offscreen")
    # The slider's tail is 2.5 px past the right edge; the circle is pushed further right.
    assert [(s.time_ms, s.severity, s.message) for s in result] == [
        (1500, Severity.PROBLEM, "Slider tail is offscreen."),  # reported when the tail is reached
        (1750, Severity.PROBLEM, "Circle is offscreen (stacking moves it out)."),
    ]
    alone = build_map([circle(1750, 545, 192)])
    assert [s.severity for s in found(alone, "offscreen")] == [Severity.WARNING]


def test_offscreen_slider_tail_and_body():
    assert found(build_map(["256,192,1000,2,0,L|256:380,1,188"]), "offscreen") == []
    tail = found(build_map(["256,192,1000,2,0,L|256:420,1,228"]), "offscreen")
    assert [(round(s.time_ms, 2), s.message, s.timestamp) for s in tail] == [
        (1814.29, "Slider tail is offscreen.", "00:01:814 - ")]
    # A Bezier dipping to y = 400 at its middle while head and tail stay up.
    body = found(build_map(["100,300,1000,2,0,B|200:500|300:300,1,300"]), "offscreen")
    assert [(s.time_ms, s.severity, s.message) for s in body] == [(1000, Severity.PROBLEM, "Slider body is offscreen.")]
    near = found(build_map(["100,300,1000,2,0,B|200:482|300:300,1,300"]), "offscreen")  # dips to 391
    assert [s.severity for s in near] == [Severity.WARNING]
    assert found(build_map(["100,300,1000,2,0,B|200:470|300:300,1,300"]), "offscreen") == []


# ---------------------------------------------------------------------------------- after audio
def test_objects_after_the_audio_ends():
    beatmap = build_map([circle(1000), "100,100,1500,2,0,L|240:100,1,140"])  # the slider ends at 2000
    assert found(beatmap, "after-audio") == []  # no duration given
    assert found(beatmap, "after-audio", audio_duration_ms=2000) == []
    one = found(beatmap, "after-audio", audio_duration_ms=1800)
    assert [(s.time_ms, s.severity, s.message) for s in one] == [
        (1500, Severity.PROBLEM, "Slider ends after the audio ends at 00:01:800.")]
    both = found(beatmap, "after-audio", audio_duration_ms=900)
    assert [(s.time_ms, s.message, s.details["starting_after"]) for s in both] == [
        (1000, "2 objects start or end after the audio ends at 00:00:900.", 2)]


# -------------------------------------------------------------------------------- slider length
def test_slider_length_longer_than_the_drawn_path():
    assert found(build_map(["100,100,1000,2,0,L|240:100,1,140"]), "slider-length") == []
    assert found(build_map(["100,100,1000,2,0,L|237:100,1,140"]), "slider-length") == []  # 3 px: tolerated
    result = found(build_map(["100,100,1000,2,0,L|200:100,1,140"]), "slider-length")
    assert [(s.severity, s.message) for s in result] == [
        (Severity.WARNING, "Slider length is 40 px longer than its drawn path; osu! extends its last segment "
                           "in a straight line past the last control point.")]
    assert result[0].details["drawn_px"] == pytest.approx(100) and result[0].details["stored_px"] == 140
    stuck = found(build_map(["100,100,1000,2,0,L|200:100|200:100,1,140"]), "slider-length")
    assert "cannot extend it" in stuck[0].message


def test_slider_length_cutting_a_beat_or_more_off_the_path():
    assert found(build_map(["100,100,1000,2,0,L|260:100,1,140"]), "slider-length") == []  # cut by 20 px
    result = found(build_map(["100,100,1000,2,0,L|400:100,1,140"]), "slider-length")
    assert [s.message for s in result] == [
        "Slider length cuts 160 px (1.1 beats) off its drawn path; the control points past its end are never shown."]
    # At SV 2 a beat is 280 px of travel, so the same cut is within what the editor does.
    fast = build_map(["100,100,1000,2,0,L|400:100,1,140"], ["0,500,4,2,0,100,1,0", "0,-50,4,2,0,100,0,0"])
    assert found(fast, "slider-length") == []


# ------------------------------------------------------------------------------ straight bezier
@pytest.mark.parametrize("curve", ["B|200:100", "B|150:100|200:100", "B|200:100|200:100|200:200"])
def test_straight_bezier_sliders(curve):
    result = found(build_map([f"100,100,1000,2,0,{curve},1,100"]), "straight-bezier")
    assert [(s.severity, s.expected) for s in result] == [(Severity.MINOR, "L (Linear)")]


@pytest.mark.parametrize("curve", ["L|200:100", "B|150:150|200:100", "B|200:100|150:100", "P|150:150|200:100",
                                   "B|200:100|200:100|250:150|300:100"])
def test_curved_or_linear_sliders_are_not_straight_bezier(curve):
    assert found(build_map([f"100,100,1000,2,0,{curve},1,100"]), "straight-bezier") == []
