"""Reading then writing beatmaps: equal models for every shared file, byte equality for stable-written v14."""
from __future__ import annotations

import dataclasses

import pytest

from engine.beatmap import (Beatmap, Background, Break, Colour, Colours, CurvePoint, EdgeSet, HitCircle, HitSample,
                            HoldNote, Slider, Spinner, TimingPoint, beatmap_bytes, encode_beatmap, parse_beatmap,
                            read_beatmap)
from engine.beatmap.numbers import format_number
from tests.conftest import BEATMAPS, EDGE_CASES, UPSTREAM, need


def _files(folder, pattern="*.osu"):
    files = sorted(folder.glob(pattern)) if folder.exists() else []
    return [pytest.param(f, id=f.name) for f in files] or [
        pytest.param(None, marks=pytest.mark.skip(reason=f"{folder} is missing"))]


# Written by osu!stable (v14) or by upstream's template in stable's layout; these re-write byte for byte.
CANONICAL = [
    BEATMAPS / "Soleily - Renatus (Gamu) [Normal].osu",
    BEATMAPS / "Soleily - Renatus (Gamu) [Hard].osu",
    BEATMAPS / "Soleily - Renatus (Gamu) [Insane].osu",
    BEATMAPS / "Soleily - Renatus (ExPew) [Another].osu",
    BEATMAPS / "Soleily - Renatus (ExPew) [Hyper].osu",
    BEATMAPS / "Soleily - Renatus (ExPew) [Normal].osu",
    BEATMAPS / "Soleily - Renatus (MMzz) [Muzukashii].osu",
    BEATMAPS / "Soleily - Renatus (MMzz) [Oni].osu",
    UPSTREAM / "tokenization" / "kimi_no_bouken.osu",
    UPSTREAM / "tokenization" / "visual_spacing_test12.osu",
]


def _differences(a: Beatmap, b: Beatmap) -> list[str]:
    return [f.name for f in dataclasses.fields(Beatmap) if f.compare and getattr(a, f.name) != getattr(b, f.name)]


@pytest.mark.parametrize("path", _files(BEATMAPS) + _files(EDGE_CASES))
def test_read_write_read_is_equal(path):
    beatmap = read_beatmap(path)
    again = parse_beatmap(beatmap_bytes(beatmap))
    assert _differences(beatmap, again) == []
    assert again == beatmap
    # writing is idempotent: the second write gives the same text
    assert encode_beatmap(again) == encode_beatmap(beatmap)


@pytest.mark.parametrize("path", _files(UPSTREAM, "**/*.osu"))
def test_upstream_written_files_round_trip(path):
    # upstream's writer: BOM, "SampleSet: All", sample index -1, "Combo0", a U+034F before Combo3
    beatmap = read_beatmap(path)
    again = parse_beatmap(beatmap_bytes(beatmap))
    assert _differences(beatmap, again) == []


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in CANONICAL])
def test_canonical_v14_rewrites_byte_for_byte(path):
    data = need(path).read_bytes()
    assert beatmap_bytes(read_beatmap(path)) == data


def test_upstream_oddities_survive(upstream):
    path = upstream / "trained" / "v32" / "pipeline_greedy_std" / "generated.osu"
    beatmap = read_beatmap(need(path))
    assert beatmap.bom and beatmap.general.sample_set == "All"
    keys = [key for key, _ in beatmap.colours.entries]
    assert keys[0] == "Combo0" and "\u034fCombo3" in keys
    # Combo0 and the masked Combo3 are not combo colours for osu!
    assert len(beatmap.colours.combo) == len(keys) - 2
    assert beatmap.timing_points[0].sample_index == -1
    text = beatmap_bytes(beatmap)
    assert text.startswith(b"\xef\xbb\xbfosu file format v14") and "\u034fCombo3 : ".encode() in text


def test_older_versions_are_normalised_to_v14(beatmaps_dir):
    path = beatmaps_dir / "Soleily - Renatus (Deif) [Salad].osu"
    source = path.read_bytes()
    written = beatmap_bytes(read_beatmap(path))
    assert source.startswith(b"osu file format v13")
    # a stable v13 file differs from its v14 form only in the header line
    assert written == source.replace(b"osu file format v13", b"osu file format v14", 1)


def test_v4_offset_survives_rewriting(edge_cases_dir):
    text = (edge_cases_dir / "beatmap-version-4.osu").read_text()
    text += "\n[TimingPoints]\n1000,500,4,1,0,100,1,0\n\n[HitObjects]\n256,192,1500,1,0,0:0:0:0:\n"
    old = parse_beatmap(text)
    assert old.format_version == 4
    assert old.timing_points[0].time == 1024 and old.hit_objects[0].time == 1524
    assert old.general.preview_time == -1  # -1 means "none" and is not shifted
    new = parse_beatmap(encode_beatmap(old))
    assert new.format_version == 14 and new == old


def test_number_formatting_matches_stable():
    assert format_number(329.67032967033) == "329.67032967033"
    assert format_number(-100.0) == "-100"
    assert format_number(3.59999990463257) == "3.59999990463257"
    assert format_number(1e-5) == "1E-05"
    assert format_number(True) == "1" and format_number(7) == "7"
    # a value G15 cannot reproduce keeps its full precision
    assert float(format_number(333.3333333333333)) == 333.3333333333333


def test_new_beatmap_writes_and_reads_back():
    beatmap = Beatmap()
    beatmap.general.audio_filename = "audio.mp3"
    beatmap.metadata.title, beatmap.metadata.version = "Song", "Normal"
    beatmap.events.media.append(Background("bg.jpg"))
    beatmap.events.breaks.append(Break(5000, 8000))
    beatmap.colours = Colours.from_combo([Colour(255, 0, 0), Colour(0, 255, 0)])
    beatmap.timing_points += [TimingPoint(time=100, beat_length=500.0, sample_set=2, volume=70),
                              TimingPoint(time=2100, beat_length=-50.0, sample_set=2, volume=70,
                                          uninherited=False, effects=1)]
    beatmap.hit_objects += [
        HitCircle(x=100, y=100, time=100, new_combo=True),
        Slider(x=200, y=200, time=600, curve_type="B", slides=2, length=150.0,
               curve_points=(CurvePoint(250, 150), CurvePoint(300, 200)), edge_sounds=(2, 0, 8),
               edge_sets=(EdgeSet(1, 2), EdgeSet(), EdgeSet()), hit_sample=HitSample()),
        Spinner(x=256, y=192, time=2100, end_time=4000, new_combo=True),
        HoldNote(x=64, y=192, time=9000, end_time=9500, hit_sample=HitSample(volume=50)),
    ]
    text = encode_beatmap(beatmap)
    assert "\r\n" in text and text.endswith("\r\n")
    assert "200,200,600,2,0,B|250:150|300:200,2,150,2|0|8,1:2|0:0|0:0,0:0:0:0:" in text
    assert "64,192,9000,128,0,9500:0:0:0:50:" in text
    assert "2100,-50,4,2,0,70,0,1" in text
    again = parse_beatmap(text)
    assert again == beatmap and again.warnings == []
