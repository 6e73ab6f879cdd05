"""Event streams from beatmaps, checked against upstream's tokenization goldens and on real maps of every mode."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import lru_cache

import pytest

from engine.beatmap import HoldNote, Slider, Spinner, read_beatmap
from engine.errors import BeatmapError
from engine.events import (
    NON_TIMED_EVENTS,
    TIMED_EVENTS,
    EventStream,
    context_events,
    events_of_type,
    kiai_events,
    map_events,
    merge_events,
    no_hitsound_events,
    remove_events_of_type,
    scroll_speed_events,
    speed_events,
    timing_events,
    update_event_times,
)
from engine.events._upstream_parser import curve_kind, end_position
from engine.presets import PRESETS
from engine.tokenizer import ContextType, Event, EventType, Tokenizer
from tests.conftest import BEATMAPS, UPSTREAM, need

T = EventType
GOLDEN_MAPS = ["kimi_no_bouken.osu", "visual_spacing_test12.osu"]
VERSIONS = ["v30", "v31", "v32"]


@lru_cache(maxsize=None)
def golden(version: str) -> dict:
    return json.loads(need(UPSTREAM / "tokenization" / f"{version}.json").read_text())


@lru_cache(maxsize=None)
def beatmap(path):
    return read_beatmap(need(path))


@lru_cache(maxsize=None)
def checkpoint_tokenizer(version: str) -> Tokenizer:
    return Tokenizer.from_file(need(UPSTREAM / version / "checkpoint" / "tokenizer.json"))


def triples(stream: EventStream) -> list[list]:
    return [[e.type.value, e.value, t] for e, t in zip(*stream)]


def real_maps(mode: int | None = None) -> list:
    if not BEATMAPS.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{BEATMAPS} is missing"))]
    paths = sorted(BEATMAPS.glob("*.osu"))
    return [p for p in paths if mode is None or read_beatmap(p).mode == mode]


# --- upstream goldens -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", GOLDEN_MAPS)
def test_map_events_equal_upstream(version, name):
    g = golden(version)[name]
    stream = map_events(beatmap(UPSTREAM / "tokenization" / name), PRESETS[version].data, song_length_ms=g["song_length_ms"])
    assert triples(stream) == g["map_events"]


@pytest.mark.parametrize("version", ["v31", "v32"])
@pytest.mark.parametrize("name", GOLDEN_MAPS)
def test_timing_events_equal_upstream(version, name):
    g = golden(version)[name]
    stream = timing_events(beatmap(UPSTREAM / "tokenization" / name), PRESETS[version].data, song_length_ms=g["song_length_ms"])
    assert triples(stream) == g["timing_events"]


@pytest.mark.parametrize("name", GOLDEN_MAPS)
def test_v30_map_stream_carries_the_beat_grid(name):
    """v30 has no TIMING context: its MAP stream interleaves the grid, timing events first at equal times."""
    g = golden("v30")[name]
    bm = beatmap(UPSTREAM / "tokenization" / name)
    flags = PRESETS["v30"].data
    grid = timing_events(bm, flags, song_length_ms=g["song_length_ms"])
    objects = map_events(bm, replace(flags, add_timing=False))
    assert triples(merge_events(grid, objects)) == g["map_events"]
    assert {e.type for e in grid.events} == {T.TIME_SHIFT, T.BEAT, T.MEASURE}  # no TIMING_POINT in v30


@pytest.mark.parametrize("version", ["v31", "v32"])
@pytest.mark.parametrize("name", GOLDEN_MAPS)
def test_context_events_dispatch(version, name):
    g = golden(version)[name]
    bm = beatmap(UPSTREAM / "tokenization" / name)
    flags = PRESETS[version].data
    song = g["song_length_ms"]
    assert triples(context_events(ContextType.MAP, bm, flags, song_length_ms=song)) == g["map_events"]
    assert triples(context_events(ContextType.GD, bm, flags, song_length_ms=song)) == g["map_events"]
    assert triples(context_events(ContextType.TIMING, bm, flags, song_length_ms=song)) == g["timing_events"]
    no_hs = triples(context_events(ContextType.NO_HS, bm, flags, song_length_ms=song))
    assert no_hs == [x for x in g["map_events"] if x[0] not in ("hitsound", "volume")]
    assert context_events(ContextType.NONE, None, flags) == EventStream([], [])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", GOLDEN_MAPS)
def test_update_event_times_recovers_group_times(version, name):
    """Times rebuilt from the TIME_SHIFT values alone (what inference does with generated events).

    Every timed event and time shift gets its group's time back. With slider_version 2 (v32) the
    anchors sit at the head's time and come back exactly too; version 1 anchors are interpolated
    between head and end instead, which only stays inside the slider.
    """
    g = golden(version)[name]["map_events"]
    events = [Event(T(kind), value) for kind, value, _ in g]
    times: list[int] = []
    update_event_times(events, times, end_time=golden(version)[name]["song_length_ms"],
                       types_first=PRESETS[version].data.types_first)
    expected = [t for *_, t in g]
    if PRESETS[version].data.slider_version == 2:
        assert times == expected
    timed = [i for i, e in enumerate(events) if e.type in TIMED_EVENTS or e.type == T.TIME_SHIFT]
    assert [times[i] for i in timed] == [expected[i] for i in timed]
    anchors = [i for i, e in enumerate(events) if e.type in NON_TIMED_EVENTS]
    assert anchors and all(times[i] >= 0 for i in anchors)


def test_update_event_times_keeps_existing_times_and_extends():
    events = [Event(T.TIME_SHIFT, 100), Event(T.CIRCLE), Event(T.TIME_SHIFT, 250), Event(T.CIRCLE)]
    times = [100, 100]
    update_event_times(events, times)
    assert times == [100, 100, 250, 250]
    first = [Event(T.CIRCLE), Event(T.TIME_SHIFT, 100), Event(T.CIRCLE), Event(T.TIME_SHIFT, 250)]
    times = []
    update_event_times(first, times, types_first=True)
    assert times == [100, 100, 250, 250]


def test_update_event_times_spreads_anchors_between_time_shifts():
    """Two anchors between a head at 1000 and a last anchor at 1300 land at 1100 and 1200."""
    events = [Event(T.TIME_SHIFT, 1000), Event(T.SLIDER_HEAD), Event(T.POS, 1), Event(T.BEZIER_ANCHOR),
              Event(T.POS, 2), Event(T.BEZIER_ANCHOR), Event(T.TIME_SHIFT, 1300), Event(T.LAST_ANCHOR)]
    times: list[int] = []
    update_event_times(events, times, end_time=5000)
    assert times == [1000, 1000, 1100, 1100, 1200, 1200, 1300, 1300]


# --- stream operations ------------------------------------------------------------------------------

def test_merge_events_is_stable_and_prefers_the_first_stream_at_equal_times():
    a = EventStream([Event(T.BEAT), Event(T.MEASURE)], [0, 10])
    b = EventStream([Event(T.CIRCLE), Event(T.SPINNER), Event(T.SPINNER_END)], [0, 5, 10])
    merged = merge_events(a, b)
    assert merged.events == [Event(T.BEAT), Event(T.CIRCLE), Event(T.SPINNER), Event(T.MEASURE), Event(T.SPINNER_END)]
    assert merged.times == [0, 0, 5, 10, 10]


def test_speed_events_divides_times_and_time_shifts():
    stream = EventStream([Event(T.TIME_SHIFT, 1000), Event(T.SNAPPING, 4), Event(T.CIRCLE)], [1000, 1000, 1000])
    fast = speed_events(stream, 1.5)
    assert fast.events == [Event(T.TIME_SHIFT, 666), Event(T.SNAPPING, 4), Event(T.CIRCLE)]
    assert fast.times == [666, 666, 666]


def test_map_events_at_double_time_equals_scaled_stream():
    bm = beatmap(UPSTREAM / "tokenization" / "kimi_no_bouken.osu")
    flags = PRESETS["v32"].data
    assert map_events(bm, flags, speed=1.5) == speed_events(map_events(bm, flags), 1.5)


def test_remove_and_select_event_types_partition_a_stream():
    stream = map_events(beatmap(UPSTREAM / "tokenization" / "visual_spacing_test12.osu"), PRESETS["v31"].data)
    kinds = {T.HITSOUND, T.VOLUME}
    kept, removed = remove_events_of_type(stream, kinds), events_of_type(stream, kinds)
    assert len(kept.events) + len(removed.events) == len(stream.events)
    assert removed.events and {e.type for e in removed.events} == kinds
    assert not kinds & {e.type for e in kept.events}


def test_flip_mirrors_positions_and_keeps_distances():
    bm = beatmap(UPSTREAM / "tokenization" / "kimi_no_bouken.osu")
    flags = replace(PRESETS["v31"].data, position_precision=1)
    plain, flipped = map_events(bm, flags), map_events(bm, flags, flip=(True, True))
    assert [e.type for e in plain.events] == [e.type for e in flipped.events]
    circles = [i for i, e in enumerate(plain.events) if e.type == T.CIRCLE]
    for i in circles:  # types_first: CIRCLE t snap dist pos_x pos_y ...
        x, y = plain.events[i + 4].value, plain.events[i + 5].value
        assert (flipped.events[i + 4].value, flipped.events[i + 5].value) == (512 - x, 384 - y)
    dists = [(a.value, b.value) for a, b in zip(plain.events, flipped.events) if a.type == T.DISTANCE]
    assert all(abs(a - b) <= 1 for a, b in dists)


# --- real maps of every mode -------------------------------------------------------------------------

def assert_sane(stream: EventStream, tok: Tokenizer, keycount: int | None = None) -> None:
    events, times = stream
    assert len(events) == len(times)
    assert all(a <= b for a, b in zip(times, times[1:])), "times must not go backwards"
    for event, time in zip(events, times):
        if event.type == T.TIME_SHIFT:
            assert event.value == time
        else:
            tok.encode(event)  # raises when the type or value is outside the checkpoint's vocabulary
        if event.type == T.MANIA_COLUMN and keycount is not None:
            assert 0 <= event.value < keycount


@pytest.mark.parametrize("version", ["v31", "v32"])
@pytest.mark.parametrize("path", real_maps(), ids=lambda p: getattr(p, "name", "none"))
def test_real_maps_tokenize_inside_the_vocabulary(version, path):
    bm = beatmap(path)
    flags = PRESETS[version].data
    tok = checkpoint_tokenizer(version)
    keycount = int(bm.difficulty.circle_size) if bm.mode == 3 else None
    stream = map_events(bm, flags)
    assert stream.events
    assert_sane(stream, tok, keycount)
    assert_sane(timing_events(bm, flags), tok)
    if tok.has(T.KIAI):
        assert_sane(kiai_events(bm, flags), tok)
    sv = scroll_speed_events(bm, flags)
    assert sv.times[0] == int(bm.timing_points[0].time)  # the first point always sets the speed
    changes = [e for e in sv.events if e.type == T.SCROLL_SPEED_CHANGE]
    assert changes and len(changes) == sum(e.type == T.SCROLL_SPEED for e in sv.events)
    assert_sane(sv, tok)
    assert {e.type for e in no_hitsound_events(bm, flags).events}.isdisjoint({T.HITSOUND, T.VOLUME})


@pytest.mark.parametrize("path", real_maps(mode=0), ids=lambda p: getattr(p, "name", "none"))
def test_real_std_maps_fit_the_v30_vocabulary(path):
    bm = beatmap(path)
    assert_sane(map_events(bm, PRESETS["v30"].data, song_length_ms=600_000), checkpoint_tokenizer("v30"))


@pytest.mark.parametrize("path", real_maps(mode=3), ids=lambda p: getattr(p, "name", "none"))
def test_mania_hold_notes_become_hold_note_groups(path):
    """Upstream's parser loses hold notes; ours keeps one HOLD_NOTE and one HOLD_NOTE_END per hold note."""
    bm = beatmap(path)
    holds = [o for o in bm.hit_objects if isinstance(o, HoldNote)]
    assert holds, "the mania sample should contain hold notes"
    events = map_events(bm, PRESETS["v32"].data).events
    count = {kind: sum(e.type == kind for e in events) for kind in (T.HOLD_NOTE, T.HOLD_NOTE_END, T.CIRCLE)}
    assert count[T.HOLD_NOTE] == count[T.HOLD_NOTE_END] == len(holds)
    assert count[T.CIRCLE] == len(bm.hit_objects) - len(holds)
    long_holds = sum((h.end_time - h.time - 10) // 8000 for h in holds if h.end_time - h.time > 8010)
    assert sum(e.type == T.HOLD_NOTE_SUSTAIN for e in events) >= long_holds


@pytest.mark.parametrize("path", real_maps(mode=1), ids=lambda p: getattr(p, "name", "none"))
def test_taiko_long_notes_are_drumrolls_and_dendens(path):
    bm = beatmap(path)
    events = map_events(bm, PRESETS["v32"].data).events
    kinds = {e.type for e in events}
    assert not kinds & {T.SLIDER_HEAD, T.SPINNER, T.POS, T.NEW_COMBO}
    assert sum(e.type == T.DRUMROLL for e in events) == sum(isinstance(o, Slider) for o in bm.hit_objects)
    assert sum(e.type == T.DENDEN for e in events) == sum(isinstance(o, Spinner) for o in bm.hit_objects)
    # every taiko object head carries the scroll speed in effect
    heads = sum(e.type in (T.CIRCLE, T.DRUMROLL, T.DENDEN) for e in events)
    assert sum(e.type == T.SCROLL_SPEED for e in events) == heads


def test_timing_from_bare_timing_points_runs_to_the_song_end():
    bm = beatmap(UPSTREAM / "tokenization" / "visual_spacing_test12.osu")
    flags = PRESETS["v32"].data
    stream = timing_events(list(bm.timing_points), flags, song_length_ms=2000)
    assert stream.times[-1] <= 2000 and stream.events[:2] == [Event(T.TIME_SHIFT, 0), Event(T.TIMING_POINT)]
    with pytest.raises(BeatmapError):
        timing_events([], flags, song_length_ms=2000)


# --- slider geometry as the slider library computes it -----------------------------------------------

def test_perfect_curve_falls_back_to_bezier_when_collinear_or_not_three_points():
    assert curve_kind("P", [(0, 0), (50, 50), (100, 0)]) == "P"
    assert curve_kind("P", [(0, 0), (50, 0), (100, 0)]) == "B"
    assert curve_kind("P", [(0, 0), (50, 50), (100, 0), (150, 50)]) == "B"
    assert curve_kind("X", [(0, 0), (1, 1)]) == "B"


def test_curve_end_positions():
    # A linear slider stretched beyond its points continues along the last segment.
    assert end_position("L", [(0, 0), (100, 0)], 150.0) == pytest.approx((150.0, 0.0))
    # A perfect half circle cut to a quarter of its arc.
    x, y = end_position("P", [(0, 0), (50, 50), (100, 0)], 3.141592653589793 * 50 / 2)
    assert (x, y) == pytest.approx((50.0, 50.0))
    # Catmull ignores the length: its end is the last point.
    assert end_position("C", [(0, 0), (10, 40), (80, 80)], 1.0) == (80.0, 80.0)
    # Degenerate paths stretched to a length never give NaN (slider's NaN would crash the tokenizer).
    for kind in "LBP":
        assert all(math.isfinite(v) for v in end_position(kind, [(5, 5), (5, 5), (5, 5)], 10.0))


def test_a_slider_without_pixel_length_ends_where_its_path_ends():
    """slider cannot read such a line; osu! then uses the path's own length, and so do we."""
    bm = read_beatmap(need(UPSTREAM / "tokenization" / "visual_spacing_test12.osu")).copy()
    i = next(i for i, o in enumerate(bm.hit_objects) if isinstance(o, Slider))
    bm.hit_objects[i] = replace(bm.hit_objects[i], length=None)
    events = map_events(bm, PRESETS["v32"].data).events
    last_anchor = events.index(Event(T.LAST_ANCHOR))
    end = events.index(Event(T.SLIDER_END))
    last_point_pos = events[last_anchor - 2]  # POS POS_REFINE LAST_ANCHOR
    assert last_point_pos.type == T.POS and events[end - 4] == last_point_pos  # t snap POS REF HS VOL END


def test_old_format_times_are_read_without_osus_24ms_offset():
    """slider (and so the checkpoints' training data) reads v3/v4 times as written; our reader adds 24 ms."""
    from engine.beatmap import parse_beatmap

    body = "\n[TimingPoints]\n0,500,4,2,0,100,1,0\n\n[HitObjects]\n256,192,1000,1,0,0:0:0:0:\n256,192,1500,1,2,0:0:0:0:\n"
    old, new = parse_beatmap("osu file format v4\n" + body), parse_beatmap("osu file format v14\n" + body)
    assert old.hit_objects[0].time == 1024
    flags = PRESETS["v32"].data
    assert map_events(old, flags) == map_events(new, flags)
    assert map_events(old, flags).times[0] == 1000
