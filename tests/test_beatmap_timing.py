"""Timing point lookups with osu!'s rules, and combos."""
from __future__ import annotations

import dataclasses

import pytest

from engine.beatmap import TimingPoint, parse_beatmap, read_beatmap
from engine.beatmap.timing_lookup import sv_beat_length_multiplier


def _timing(lines: str, general: str = ""):
    return parse_beatmap(f"osu file format v14\n[General]\n{general}\n[TimingPoints]\n{lines}\n")


def test_overlapping_control_points_follow_osu(edge_cases_dir):
    beatmap = read_beatmap(edge_cases_dir / "overlapping-control-points.osu")
    drum, normal = 3, 1
    assert [beatmap.slider_velocity_at(t) for t in (500, 1500, 2500, 3500)] == pytest.approx([1.5, 1.5, 0.75, 1.5])
    assert [beatmap.control_points().kiai_at(t) for t in (500, 1500, 2500, 3500)] == [True, True, False, True]
    assert [beatmap.control_points().sample_at(t).sample_set for t in (500, 1500, 2500, 3500)] == [
        drum, drum, normal, drum]
    assert [beatmap.beat_length_at(t) for t in (500, 1500, 2500, 3500)] == [500, 500, 250, 500]
    assert len(beatmap.control_points().uninherited_points) == 4


def test_same_time_rules():
    beatmap = _timing("0,400,4,1,0,100,1,0\n0,300,3,1,0,100,1,0\n"  # two red lines: the first wins
                      "1000,-50,4,1,0,100,0,0\n1000,-25,4,1,0,90,0,1\n")  # two green lines: the last wins
    assert beatmap.beat_length_at(0) == 400 and beatmap.control_points().meter_at(0) == 4
    assert beatmap.slider_velocity_at(1000) == 4 and beatmap.control_points().kiai_at(1000)
    assert beatmap.effective_point_at(1000).volume == 90
    assert beatmap.uninherited_point_at(1000).beat_length == 400


def test_before_the_first_point_and_without_points():
    beatmap = _timing("1000,-50,4,2,0,40,0,1\n2000,500,4,1,0,100,1,0", "SampleSet: Soft")
    assert beatmap.uninherited_point_at(0).time == 2000  # timing falls back to the first red line
    assert beatmap.slider_velocity_at(0) == 1 and not beatmap.control_points().kiai_at(0)
    assert beatmap.effective_point_at(0) is None
    assert beatmap.control_points().sample_at(0).volume == 40  # samples fall back to the first point
    empty = _timing("")
    assert empty.beat_length_at(0) == 1000 and empty.uninherited_point_at(0) is None
    assert empty.control_points().sample_at(0).volume == 100


def test_clamping():
    beatmap = _timing("0,1,4,1,0,100,1,0\n10,-100000,4,1,0,100,0,0\n20,-1,4,1,0,100,0,0\n30,100000,4,1,0,100,1,0")
    assert beatmap.beat_length_at(0) == 6 and beatmap.beat_length_at(30) == 60000
    assert beatmap.slider_velocity_at(10) == 0.1 and beatmap.slider_velocity_at(20) == 10


def test_mania_scroll_speed_goes_below_slider_velocity(edge_cases_dir):
    beatmap = read_beatmap(edge_cases_dir / "mania-0-01-sv.osu")
    points = beatmap.control_points()
    assert points.scroll_speed_at(7000) == pytest.approx(0.01) and points.slider_velocity_at(7000) == 0.1
    assert points.scroll_speed_at(100) == 1


def test_missing_fields_take_osu_defaults():
    beatmap = _timing("100,500\n200,-50,3", "SampleSet: Drum\nSampleVolume: 70")
    first, second = beatmap.timing_points
    assert (first.meter, first.sample_set, first.volume, first.uninherited, first.effects) == (4, 3, 70, True, 0)
    assert first.fields == 2 and second.fields == 3 and second.meter == 3
    # without the uninherited field a line is uninherited, even with a negative beat length
    assert second.uninherited and beatmap.beat_length_at(200) == 6 and beatmap.slider_velocity_at(200) == 2


def test_point_properties():
    point = TimingPoint(time=0, beat_length=500.0, effects=9)
    assert point.kiai and point.omit_first_barline and point.bpm == 120
    assert TimingPoint(time=0, beat_length=-50.0, uninherited=False).bpm is None


def test_sv_precision_loss_like_stable():
    # osu! turns SV back into a float32 beat length: 1/SV is not exact
    assert sv_beat_length_multiplier(1.5000000000000007) == pytest.approx(0.6666666412353516, abs=1e-12)
    assert sv_beat_length_multiplier(1.0) == 1.0


def test_lookups_follow_edits(beatmaps_dir):
    beatmap = read_beatmap(beatmaps_dir / "Soleily - Renatus (Gamu) [Normal].osu")
    assert beatmap.beat_length_at(1000) == pytest.approx(329.67032967033)
    beatmap.timing_points[0] = dataclasses.replace(beatmap.timing_points[0], beat_length=400.0)
    assert beatmap.beat_length_at(1000) == 400
    copy = beatmap.copy()
    copy.timing_points.clear()
    assert beatmap.beat_length_at(1000) == 400 and copy.beat_length_at(1000) == 1000


def test_combo_offsets_follow_osu(edge_cases_dir):
    combos = read_beatmap(edge_cases_dir / "hitobject-combo-offset.osu").combo_info()
    assert [combos[i].combo_index_with_offsets for i in (0, 2, 4, 6, 8, 11)] == [1, 2, 3, 4, 8, 9]


def test_combos_on_a_real_map(beatmaps_dir):
    beatmap = read_beatmap(beatmaps_dir / "Soleily - Renatus (Gamu) [Normal].osu")
    combos = beatmap.combo_info()
    objects = beatmap.hit_objects
    assert combos[0].new_combo and combos[0].number == 1 and combos[0].colour_index == 1
    # numbers count up within a combo and restart at each new combo
    for prev, cur in zip(combos, combos[1:]):
        assert cur.number == (1 if cur.new_combo else prev.number + 1)
    brk = beatmap.events.breaks[0]
    after = next(i for i, o in enumerate(objects) if o.time > brk.end_time)
    assert combos[after].new_combo
    n_colours = len(beatmap.colours.combo)
    assert all(c.colour_index == c.combo_index_with_offsets % n_colours for c in combos)


def test_breaks_and_spinners_force_new_combos():
    beatmap = parse_beatmap("osu file format v14\n[Events]\n2,2500,4000\n[HitObjects]\n"
                            "1,1,1000,5,0\n1,1,2000,1,0\n1,1,5000,1,0\n1,1,6000,1,0\n"
                            "256,192,7000,12,0,8000\n1,1,9000,1,0\n")
    combos = beatmap.combo_info()
    assert [c.new_combo for c in combos] == [True, False, True, False, False, True]
    assert [c.number for c in combos] == [1, 2, 1, 2, 3, 1]
    assert [c.combo_index for c in combos] == [1, 1, 2, 2, 2, 3]
    assert all(c.colour_index is None for c in combos)  # no [Colours]
