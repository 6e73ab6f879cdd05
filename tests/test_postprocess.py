"""Post-processing on small hand-made event streams: timing, resnapping, sliders, hitsounds, modes."""
from __future__ import annotations

import zipfile

import pytest

from engine.beatmap import (HitCircle, HoldNote, Slider, Spinner, TimingPoint, encode_beatmap, parse_beatmap,
                            read_beatmap)
from engine.postprocess import (BeatmapSettings, PostprocessOptions, add_to_beatmap, build_beatmap, event_groups,
                                export_osz, generate_timing, human_sv_and_length, length_for, merge_contexts,
                                postprocess, resnap, resnap_events, save_beatmap, settings_from_beatmap,
                                snap_near_perfect_overlaps)
from engine.postprocess.groups import decode_hitsound
from engine.postprocess.upstream_curves import SliderCurve
from engine.presets import PRESETS
from engine.tokenizer import ContextType, Event, EventType
from tests.conftest import UPSTREAM, need

T = EventType
C = ContextType


def E(kind: str, value=0) -> Event:
    return Event(T(kind), value)


def obj(kind: str, time=None, x=None, y=None, *, snap=None, nc=False, hs=None, vol=None, sv=None,
        types_first=False) -> list[Event]:
    """One group: its describing events, before the type event (or after it with types_first)."""
    parts = []
    if time is not None:
        parts.append(E("t", time))
        if snap is not None:
            parts.append(E("snap", snap))
    if x is not None:
        parts += [E("pos_x", x), E("pos_y", y)]
    if nc:
        parts.append(E("new_combo"))
    if sv is not None:
        parts.append(E("scroll_speed", sv))
    for value in ([hs] if isinstance(hs, int) else hs or []):
        parts.append(E("hitsound", value))
    for value in ([vol] if isinstance(vol, int) else vol or []):
        parts.append(E("volume", value))
    return [E(kind)] + parts if types_first else parts + [E(kind)]


def beats(start: int, count: int, step: float, meter: int = 4, first: str = "timing_point", types_first=False):
    """Beat markers every ``step`` ms, a measure every ``meter`` beats, the first one ``first``."""
    out = []
    for i in range(count):
        kind = first if i == 0 else ("measure" if i % meter == 0 else "beat")
        out += obj(kind, int(round(start + i * step)), types_first=types_first)
    return out


def red(time: float, beat_length: float, meter: int = 4) -> TimingPoint:
    return TimingPoint(time=time, beat_length=beat_length, meter=meter, sample_set=2, sample_index=-1)


# --- timing from beat events ------------------------------------------------------------------------------


def test_timing_from_regular_beats():
    timing = generate_timing(beats(605, 33, 400))
    assert [(p.time, p.beat_length, p.meter, p.uninherited) for p in timing] == [(605, 400, 4, True)]


@pytest.mark.parametrize("types_first", [False, True])
def test_timing_rounds_jittered_beats_to_a_round_bpm(types_first):
    # 150 BPM with +-3 ms of noise on every beat, and no timing point marker: the first marker starts it
    noise = [0, 3, -2, 1, -3, 2, 0, -1, 3, -2, 1, 0, 2, -3, 1, 0]
    events = []
    for i, n in enumerate(noise):
        events += obj("measure" if i % 4 == 0 else "beat", 1000 + 400 * i + n, types_first=types_first)
    timing = generate_timing(events, types_first=types_first)
    assert len(timing) == 1
    assert timing[0].time == 1000 and timing[0].beat_length == 400.0  # exactly 150 BPM
    assert 60000 / timing[0].beat_length == 150


def test_timing_with_a_bpm_change_and_a_waltz():
    # 120 BPM in 4/4 for two measures, then a timing point and 150 BPM in 3/4
    events = beats(0, 8, 500) + beats(4000, 13, 400, meter=3)
    timing = generate_timing(events)
    assert [(p.time, round(60000 / p.beat_length, 6), p.meter) for p in timing] == [(0, 120, 4), (4000, 150, 3)]


def test_timing_splits_an_unmarked_tempo_change_at_a_measure():
    # 120 BPM for 3 measures, then 150 BPM from the next measure without a timing point marker:
    # no beat length fits all markers, and splitting at that measure fits both parts exactly
    events = beats(0, 12, 500) + beats(6000, 13, 400, first="measure")
    timing = generate_timing(events)
    assert [p.time for p in timing] == [0, 6000]
    assert [60000 / p.beat_length for p in timing] == [120, 150]


def test_no_beat_events_no_timing():
    assert generate_timing(obj("circle", 100, 1, 1)) == []


# --- resnapping ---------------------------------------------------------------------------------------------
TIMING_150 = [red(600, 400)]


def test_resnap_to_divisor_ticks():
    assert resnap(805, TIMING_150, 2) == 800
    assert resnap(805, TIMING_150, 1) == 1000  # beats at 600, 1000, ...; 800 is a half beat
    # 1/4 never lands on a 1/2 tick: 700 and 900 remain, 900 is nearer
    assert resnap(805, TIMING_150, 4) == 900
    # 1/3: every 133.33 ms, beats excluded
    assert resnap(730, TIMING_150, 3) == 733
    # before the first red line its grid is extended backwards
    assert resnap(395, TIMING_150, 2) == 400


def test_resnap_uses_the_red_line_in_effect():
    timing = [red(0, 500), red(1000, 300)]
    assert resnap(990, timing, 1) == 1000  # the next section's first beat is within reach
    assert resnap(1290, timing, 1) == 1300
    assert resnap(740, timing, 2) == 750


def test_resnap_events_only_moves_snapped_time_shifts():
    events = [E("t", 805), E("snap", 4), E("circle"), E("t", 805), E("snap", 0), E("circle"), E("t", 805), E("circle")]
    out = resnap_events(events, TIMING_150)
    assert [e.value for e in out if e.type == T.TIME_SHIFT] == [900, 805, 805]
    assert [e.type for e in out] == [e.type for e in events]


# --- groups -------------------------------------------------------------------------------------------------


def test_hitsound_decoding():
    # whistle (1) + soft (8 * 1) + drum additions (24 * 2)
    assert decode_hitsound(1 + 8 + 48) == (2, 2, 3)
    assert decode_hitsound(0) == (0, 1, 1)


def test_groups_in_both_orders():
    plain = obj("circle", 100, 10, 20, nc=True, hs=4, vol=70) + obj("circle", 200, 30, 40)
    typed = obj("circle", 100, 10, 20, nc=True, hs=4, vol=70, types_first=True) + \
        obj("circle", 200, 30, 40, types_first=True)
    for groups in (event_groups(plain), event_groups(typed, types_first=True)):
        assert [(g.type, g.time, g.x, g.y, g.new_combo) for g in groups] == [
            (T.CIRCLE, 100, 10, 20, True), (T.CIRCLE, 200, 30, 40, False)]
        assert groups[0].hitsounds == [8] and groups[0].volumes == [70]


def test_near_perfect_overlaps_are_snapped():
    groups = event_groups(obj("circle", 100, 100, 100) + obj("circle", 500, 102, 101) + obj("circle", 1700, 101, 100))
    snap_near_perfect_overlaps(groups)
    assert [(g.x, g.y) for g in groups] == [(100, 100), (100, 100), (101, 100)]  # the last is over 1 s later


# --- slider velocity and length -----------------------------------------------------------------------------


def test_sv_choice():
    # one beat of 140 px at SM 1.4 is SV 1
    assert length_for(1.0, 400, 400, 1.4) == pytest.approx(140)
    assert human_sv_and_length(150, 400, 1.0, 400, False, 1.4)[0] == 1.0  # within 15 %: keep
    assert human_sv_and_length(150, 400, 1.0, 400, True, 1.4)[0] == 1.05  # new combo: 5 %, rounded to 1/20
    sv, length = human_sv_and_length(280, 400, 1.0, 400, False, 1.4)
    assert (sv, length) == (2.0, pytest.approx(280))
    assert human_sv_and_length(10, 400, 1.0, 400, False, 1.4)[0] == 0.07  # below 0.1: hundredths


def test_curve_length_and_progress():
    line = SliderCurve("B", [(0, 0), (300, 0)])
    assert line.length == 300
    # 100 unit steps of upstream's numerical descent get close to the nearest point, not onto it
    assert line.progress_of((150, 40)) == pytest.approx(0.5, abs=0.01)
    assert line.progress_of((400, 0)) == 1 and line.progress_of((-50, 0)) == 0
    arc = SliderCurve("P", [(0, 0), (100, 100), (200, 0)])  # a half circle of radius 100, drawn with chords
    assert arc.length == pytest.approx(100 * 3.14159, abs=0.2) and arc.length < 100 * 3.14159
    red_anchor = SliderCurve("B", [(0, 0), (100, 0), (100, 0), (100, 100)])
    assert red_anchor.length == 200


OPTIONS = PostprocessOptions.for_preset(PRESETS["v32"])


def slider(start, end_first_span, end, points, *, sv=None, nc=False, hs=None, vol=None):
    """A v32 slider: head, bezier anchors, last anchor (end of the first span, carrying the body
    and repeat sounds) and end (at the curve's end, whatever the span count)."""
    (hx, hy), *anchors, (lx, ly) = points
    hs = hs or {}
    vol = vol or {}
    events = obj("slider_head", start, hx, hy, nc=nc, sv=sv, hs=hs.get("head"), vol=vol.get("head"))
    for x, y in anchors:
        events += obj("bezier_anchor", None, x, y)
    events += obj("last_anchor", end_first_span, lx, ly, hs=hs.get("body"), vol=vol.get("body"))
    return events + obj("slider_end", end, lx, ly, hs=hs.get("tail"), vol=vol.get("tail"))


def test_one_beat_slider_keeps_sv_1():
    beatmap = build_beatmap(slider(1000, 1400, 1400, [(100, 100), (240, 100)], nc=True), BeatmapSettings(),
                            OPTIONS, [red(600, 400)])
    [s] = beatmap.hit_objects
    assert isinstance(s, Slider) and s.new_combo and s.slides == 1
    assert (s.x, s.y, s.time, s.curve_type, [(p.x, p.y) for p in s.curve_points]) == (100, 100, 1000, "B", [(240, 100)])
    assert s.length == pytest.approx(140)
    assert [p.uninherited for p in beatmap.timing_points] == [True]  # no SV change needed


def test_repeating_slider_and_node_sounds():
    # soft whistles on head, repeat and tail, a silent normal body; node volumes 80, 30, 80, body 50
    events = slider(1000, 1400, 1800, [(100, 100), (240, 100)], hs=dict(head=9, body=[0, 9], tail=9),
                    vol=dict(head=80, body=[50, 30], tail=80))
    beatmap = build_beatmap(events, BeatmapSettings(), OPTIONS, [red(600, 400)])
    [s] = beatmap.hit_objects
    assert s.slides == 2 and s.length == pytest.approx(140)
    assert s.edge_sounds == (2, 2, 2) and [str(e) for e in s.edge_sets] == ["2:1"] * 3
    assert (s.hitsound, str(s.hit_sample)) == (0, "1:1:-1:0:")
    # each node's volume at the node, the body volume 6 ms after every node but the last
    assert [(p.time, p.volume) for p in beatmap.timing_points] == [
        (600, 100), (1000, 80), (1006, 50), (1400, 30), (1406, 50), (1800, 80)]


def test_slider_with_an_sv_token_is_stretched_to_its_length():
    # the model asks for SV 1.3 over one 400 ms beat: 182 px, but the curve is only 140 px long
    events = slider(1000, 1400, 1400, [(100, 100), (240, 100)], sv=130)
    beatmap = build_beatmap(events, BeatmapSettings(), OPTIONS, [red(600, 400)])
    [s] = beatmap.hit_objects
    assert s.length == pytest.approx(182)
    assert [(p.x, p.y) for p in s.curve_points] == [(282, 100)]
    green = beatmap.timing_points[1]
    assert not green.uninherited and green.time == 1000 and -100 / green.beat_length == pytest.approx(1.3)
    assert green.beat_length == -100 / 1.3 + 1e-10
    # far too fast for its curve: the SV drops to the one that covers the curve once
    events = slider(1000, 1400, 1400, [(100, 100), (240, 100)], sv=300)
    [s] = build_beatmap(events, BeatmapSettings(), OPTIONS, [red(600, 400)]).hit_objects
    assert s.length == pytest.approx(140) and [(p.x, p.y) for p in s.curve_points] == [(240, 100)]


def test_slider_without_positive_duration_is_dropped():
    events = slider(1000, 1000, 1400, [(100, 100), (240, 100)]) + obj("circle", 2000, 5, 5)
    beatmap = build_beatmap(events, BeatmapSettings(), OPTIONS, [red(600, 400)])
    assert [type(o) for o in beatmap.hit_objects] == [HitCircle]


# --- hitsounds, volume, kiai --------------------------------------------------------------------------------


def test_circles_volume_and_samples():
    events = obj("circle", 1000, 10, 20, nc=True, hs=2 + 16, vol=50) + obj("circle", 1400, 30, 40, hs=0, vol=50) + \
        obj("circle", 1800, 50, 60, hs=0, vol=90)
    beatmap = build_beatmap(events, BeatmapSettings(), OPTIONS, [red(600, 400)])
    c = beatmap.hit_objects[0]
    assert (c.hitsound, c.hit_sample.normal_set, c.hit_sample.addition_set, c.hit_sample.volume) == (4, 3, 1, 0)
    # one green line per volume change, none where it stays the same
    assert [(p.time, p.volume, p.uninherited) for p in beatmap.timing_points] == [
        (600, 100, True), (1000, 50, False), (1800, 90, False)]


def test_volume_before_the_first_red_line_moves_it_back_whole_measures():
    # upstream behaviour seen in the trained v31 run: a circle at 0 ms before the red line at 605 ms
    beatmap = build_beatmap(obj("circle", 0, 1, 1, vol=60), BeatmapSettings(), OPTIONS, [red(605, 400)])
    assert [(p.time, p.uninherited, p.volume) for p in beatmap.timing_points] == [(-995, True, 100), (0, False, 60)]


def test_kiai_and_spinner():
    events = [E("t", 1000), E("kiai", 1)] + obj("spinner", 1200, 256, 192) + obj("spinner_end", 2000, hs=4, vol=40)
    events += [E("t", 3000), E("kiai", 0)]
    beatmap = build_beatmap(events, BeatmapSettings(), OPTIONS, [red(600, 400)])
    [sp] = beatmap.hit_objects
    assert isinstance(sp, Spinner) and (sp.time, sp.end_time, sp.hitsound, sp.new_combo) == (1200, 2000, 8, True)
    assert [(p.time, p.kiai, p.volume) for p in beatmap.timing_points] == [
        (600, False, 100), (1000, True, 100), (2000, True, 40), (3000, False, 40)]


def test_no_timing_uses_the_settings_bpm():
    beatmap = build_beatmap(obj("circle", 100, 1, 1), BeatmapSettings(bpm=150, offset=20), OPTIONS, None)
    assert [(p.time, p.beat_length) for p in beatmap.timing_points] == [(20, 400)]


# --- taiko and mania ----------------------------------------------------------------------------------------


def test_taiko_objects():
    settings = BeatmapSettings(mode=1)
    events = obj("circle", 1000, 80, 300, hs=1) + obj("drumroll", 1400, sv=100) + obj("drumroll_end", 2200)
    events += obj("denden", 3000, hs=4) + obj("denden_end", 4000)
    beatmap = build_beatmap(events, settings, OPTIONS, [red(600, 400)])
    don, roll, denden = beatmap.hit_objects
    assert (don.x, don.y, don.hitsound) == (256, 192, 2)
    # two beats at SV 1 and SM 1.4: 280 px, drawn as a line across the playfield
    assert isinstance(roll, Slider) and (roll.x, roll.y, roll.curve_type, roll.slides) == (0, 192, "L", 1)
    assert roll.length == pytest.approx(280) and [(p.x, p.y) for p in roll.curve_points] == [(512, 192)]
    assert isinstance(denden, Spinner) and (denden.time, denden.end_time, denden.hitsound) == (3000, 4000, 8)


def test_taiko_scroll_speed_becomes_green_lines():
    events = obj("circle", 1000, sv=100) + obj("circle", 1400, sv=200) + obj("circle", 1800, sv=200)
    beatmap = build_beatmap(events, BeatmapSettings(mode=1), OPTIONS, [red(600, 400)])
    greens = [p for p in beatmap.timing_points if not p.uninherited]
    assert [(p.time, round(-100 / p.beat_length, 9)) for p in greens] == [(1000, 1.0), (1400, 2.0)]


def test_mania_notes_holds_and_scroll_speed():
    settings = BeatmapSettings(mode=3, circle_size=4)
    events = obj("circle", 1000, 64, 300, hs=0, vol=60) + obj("hold_note", 1400, 448, 10, hs=2, vol=60)
    events += obj("hold_note_end", 2000)
    # scroll speed changes are relative to the main BPM: 1.0 in the 200 ms section is SV 0.5
    events += [E("t", 5000), E("scroll_speed", 100), E("scroll_speed_change")]
    timing = [red(600, 400), red(4600, 200), red(20000, 400)]
    beatmap = build_beatmap(events, settings, OPTIONS, timing)
    note, hold = beatmap.hit_objects
    assert (note.x, note.y, note.hit_sample.volume) == (64, 192, 60)  # mania keeps volume on the note
    assert isinstance(hold, HoldNote) and (hold.x, hold.y, hold.time, hold.end_time) == (448, 192, 1400, 2000)
    greens = [(p.time, round(-100 / p.beat_length, 9)) for p in beatmap.timing_points if not p.uninherited]
    assert greens == [(5000, 0.5), (20000, 1.0)]
    assert all(p.volume == 100 for p in beatmap.timing_points)


# --- contexts, settings, merging, files ---------------------------------------------------------------------


def test_postprocess_merges_contexts_and_uses_the_timing_context():
    timing_events = beats(600, 12, 400)
    map_events = obj("circle", 1005, 100, 100, snap=1) + obj("circle", 1395, 200, 100, snap=4)
    kiai = [E("t", 1400), E("kiai", 1)]
    contexts = {C.MAP: (map_events, [1005] * 5 + [1395] * 5), C.KIAI: (kiai, [1400, 1400]),
                C.TIMING: (timing_events, [t for t in range(600, 5400, 400) for _ in range(2)])}
    beatmap = postprocess(contexts, BeatmapSettings(), OPTIONS)
    # resnapped to the timing context's grid: 1/1, and 1/4 where the 1/2 tick 1400 does not count
    assert [o.time for o in beatmap.hit_objects] == [1000, 1300]
    assert [(p.time, p.beat_length, p.kiai) for p in beatmap.timing_points] == [(600, 400, False), (1400, -100, True)]


def test_merge_order_at_equal_times():
    contexts = {C.SV: ([E("scroll_speed_change")], [5]), C.MAP: ([E("circle"), E("circle")], [5, 9]),
                C.KIAI: ([E("kiai", 1)], [5])}
    merged = merge_contexts(contexts)
    assert [e.type for e in merged.events] == [T.KIAI, T.CIRCLE, T.SCROLL_SPEED_CHANGE, T.CIRCLE]
    assert merged.times == [5, 5, 5, 9]


def test_settings_and_header_written(tmp_path):
    settings = BeatmapSettings(audio_filename="song.mp3", title="Song", artist="Band", title_unicode="曲",
                               version="Insane", background="/some/folder/bg.jpg", mode=0, preview_time=1234,
                               circle_size=3.5, slider_multiplier=1.8, tags="a b")
    beatmap = build_beatmap(obj("circle", 0, 1, 1), settings, OPTIONS, [red(0, 500)])
    again = parse_beatmap(encode_beatmap(beatmap))
    assert not again.warnings
    assert (again.metadata.title, again.metadata.title_unicode, again.metadata.artist_unicode) == ("Song", "曲", "Band")
    assert again.general.preview_time == 1234 and again.general.audio_filename == "song.mp3"
    assert again.events.background.filename == "bg.jpg"
    assert (again.difficulty.circle_size, again.difficulty.slider_multiplier) == (3.5, 1.8)
    assert len(again.colours.combo) == 4
    path = save_beatmap(beatmap, tmp_path)
    assert path.name == "Band - Song (Mapperatorinator) [Insane].osu"
    assert read_beatmap(path) == again


def test_settings_from_reference_beatmap():
    reference = read_beatmap(need(UPSTREAM / "trained" / "audio" / "synth150_std.osu"))
    s = settings_from_beatmap(reference, version="Mine")
    assert (s.title, s.artist, s.creator, s.version, s.tags) == ("synth150", "harness", "harness", "Mine", "synthetic")
    assert (s.bpm, s.offset, s.slider_multiplier, s.preview_time) == (150, 600, 1.4, 0)


def test_add_to_beatmap_replaces_a_time_range(tmp_path):
    source = need(UPSTREAM / "trained" / "audio" / "synth150_std.osu")
    before = source.read_bytes()
    reference = read_beatmap(source)
    # a part generated at 120 BPM (from 600 ms) put into 10 s to 12 s of the 150 BPM reference
    generated = build_beatmap(obj("circle", 10100, 50, 50) + obj("circle", 10600, 60, 60), BeatmapSettings(), OPTIONS,
                              [red(600, 500)])
    merged = add_to_beatmap(generated, reference, 10000, 12000)
    times = [o.time for o in merged.hit_objects]
    assert times == sorted(times)
    assert [o.time for o in merged.hit_objects if 10000 <= o.time <= 12000] == [10100, 10600]
    assert [o for o in merged.hit_objects if not 10000 <= o.time <= 12000] == [
        o for o in reference.hit_objects if not 10000 <= o.time <= 12000]
    # the reference's red line stays; a red line continues the generated 500 ms grid from the start of
    # its measure before 10 s (10000 - 2.8 beats * 500 = 8599.95 ms, written floored), and a green line
    # restores SV 1 at the generated map's red line
    reds = [(p.time, p.beat_length, p.meter) for p in merged.timing_points if p.uninherited]
    assert reds == [(600, 400, 4), (8599, 500, 4)]
    assert [(p.time, p.beat_length) for p in merged.timing_points if not p.uninherited] == [(600, -100)]
    assert merged.metadata == reference.metadata
    assert source.read_bytes() == before  # the reference file is untouched


def test_export_osz(tmp_path):
    audio = need(UPSTREAM / "trained" / "audio" / "synth150.wav")
    beatmap = build_beatmap(obj("circle", 600, 1, 1), BeatmapSettings(audio_filename=audio.name, title="T",
                                                                       artist="A"), OPTIONS, [red(600, 400)])
    path = export_osz(beatmap, tmp_path, audio)
    assert path.name == "A - T (Mapperatorinator).osz"
    with zipfile.ZipFile(path) as z:
        names = sorted(z.namelist())
        assert names == sorted(["synth150.wav", "A - T (Mapperatorinator) [Mapperatorinator].osu"])
        assert parse_beatmap(z.read(names[0])).hit_objects == beatmap.hit_objects


# --- junk streams -------------------------------------------------------------------------------------------
from hypothesis import given, settings as hyp_settings, strategies as st  # noqa: E402

_OBJECT_TYPES = [T.CIRCLE, T.SLIDER_HEAD, T.BEZIER_ANCHOR, T.PERFECT_ANCHOR, T.CATMULL_ANCHOR, T.RED_ANCHOR,
                 T.LAST_ANCHOR, T.SLIDER_END, T.SPINNER, T.SPINNER_END, T.BEAT, T.MEASURE, T.TIMING_POINT, T.KIAI,
                 T.HOLD_NOTE, T.HOLD_NOTE_END, T.DRUMROLL, T.DRUMROLL_END, T.DENDEN, T.DENDEN_END,
                 T.SCROLL_SPEED_CHANGE]
_group = st.tuples(
    st.sampled_from([0, 0, 50, 100, 200, 400, -30]),  # time step
    st.sampled_from([None, 0, 1, 2, 3, 4, 6, 8, 12, 16]),  # snap (None: no time shift)
    st.one_of(st.none(), st.tuples(st.integers(-50, 560), st.integers(-50, 430))),  # position
    st.one_of(st.none(), st.integers(0, 300)),  # distance
    st.one_of(st.none(), st.integers(0, 400)),  # scroll speed
    st.one_of(st.none(), st.tuples(st.integers(0, 71), st.integers(0, 100))),  # hitsound, volume
    st.sampled_from(_OBJECT_TYPES), st.integers(0, 1))


def _junk(groups, start) -> list[Event]:
    events, t = [], start
    for step, snap, pos, dist, speed, sound, kind, value in groups:
        t += step
        if snap is not None:
            events += [E("t", t), E("snap", snap)]
        if pos is not None:
            events += [E("pos_x", pos[0]), E("pos_y", pos[1])]
        if dist is not None:
            events.append(E("dist", dist))
        if speed is not None:
            events.append(E("scroll_speed", speed))
        if sound is not None:
            events += [E("hitsound", sound[0]), E("volume", sound[1])]
        events.append(Event(kind, value))
    return events


@hyp_settings(max_examples=200, deadline=None)
@given(groups=st.lists(_group, max_size=50), start=st.integers(-100, 2000), mode=st.integers(0, 3),
       preset=st.sampled_from(["v30", "v31", "v32"]), overlaps=st.booleans())
def test_junk_streams_still_give_a_beatmap(groups, start, mode, preset, overlaps):
    """A badly trained or sampled model writes anything; the result must still be a writable map
    (upstream raises on some of these: no timing for a slider, no object at all)."""
    events = _junk(groups, start)
    options = PostprocessOptions.for_preset(PRESETS[preset], seed=0, snap_near_perfect_overlaps=overlaps)
    beatmap = postprocess({C.MAP: (events, [0] * len(events))}, BeatmapSettings(mode=mode), options)
    again = parse_beatmap(encode_beatmap(beatmap))
    assert again.hit_objects == beatmap.hit_objects and again.timing_points == beatmap.timing_points
    assert all(float(o.time).is_integer() for o in beatmap.hit_objects)
    assert all(p.uninherited for p in beatmap.timing_points[:1])  # nothing before the first red line


_near_values = st.one_of(st.floats(width=32), st.floats(), st.just(0),
                         st.floats(-1e-7, 1e-7), st.sampled_from([1e-8, -1e-8, 9.999999e-9, 1.0000001e-8]))


@given(_near_values, _near_values, st.sampled_from(["f32", "f64", "python"]), st.booleans())
@hyp_settings(max_examples=3000, deadline=None)
def test_curve_closeness_is_numpys_isclose(a, b, kind, near_pair):
    """The curves' scalar closeness test gives numpy.isclose's answer in its own arithmetic (float32 inputs compare
    in float32; infinities and NaN as numpy treats them), including at the tolerance's edge."""
    import numpy as np

    from engine.postprocess.upstream_curves import _near

    if near_pair and isinstance(b, float) and np.isfinite(b):
        a = b + (1e-8 + 1e-5 * abs(b)) * (1 if a != a or a >= 0 else -1)  # on the edge, either side after rounding
    cast = {"f32": np.float32, "f64": np.float64, "python": lambda v: v}[kind]
    with np.errstate(all="ignore"):  # float64 values past float32's range become infinities
        x, y = cast(a), (b if b == 0 and isinstance(b, int) else cast(b))
        assert _near(x, y) == bool(np.isclose(x, y)), (x, y)
