"""Mutated real files: the reader returns a Beatmap or raises BeatmapError, never anything else."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.beatmap import Slider, encode_beatmap, parse_beatmap
from engine.errors import BeatmapError
from engine.events import context_events
from engine.presets import PRESETS
from engine.rules import check_beatmap
from engine.tokenizer import ContextType
from tests.conftest import BEATMAPS, EDGE_CASES, UPSTREAM

_SOURCES = sorted(EDGE_CASES.glob("*.osu")) + sorted(BEATMAPS.glob("sample-beatmap-*.osu")) + [
    BEATMAPS / "Soleily - Renatus (Gamu) [Normal].osu",
    BEATMAPS / "Soleily - Renatus (MMzz) [Futsuu].osu",
    UPSTREAM / "tokenization" / "visual_spacing_test12.osu",
    UPSTREAM / "trained" / "audio" / "synth150_mania.osu",
]
SOURCES = [p.read_bytes() for p in _SOURCES if p.exists()]
pytestmark = pytest.mark.skipif(not SOURCES, reason="shared beatmaps are missing")

# A Bezier slider of 1,100 control points (its binomial coefficients overflow a float) and subnormal
# beat lengths (60000 / 1e-320 is infinite): both once crashed the tokenizer.
_LONG_BEZIER = b"256,192,1000,2,0,B|" + b"|".join(b"%d:%d" % (i * 7 % 512, i * 13 % 384) for i in range(1100)) + b",1,300"
_EXTREME = [b"1e-320", b"-1e-320", b"5e-324", b"-5e-324", b"1e-300", b"0.0001", b"2147483647", b"-2147483647",
            b"NaN"]
if SOURCES:
    SOURCES.append(SOURCES[0].replace(b"[HitObjects]", b"[HitObjects]\n" + _LONG_BEZIER, 1))

_NUMBER = re.compile(rb"-?\d+(\.\d+)?")
_TOKENS = [b"NaN", b"nan", b"1e400", b"-2147483649", b"99999999999", b"0", b"-1", b"1.5", b"", b"+3", b"1e3",
           b"9001", b"-0", b"\xff", b"a", b"|", b":", b",", b"//", b"[", b"]"] + _EXTREME

# one mutation: (kind, where, what)
_MUTATION = st.tuples(
    st.sampled_from(["delete", "duplicate", "swap", "number", "garbage", "truncate", "join"]),
    st.integers(0, 2**31), st.integers(0, 2**31),
    st.one_of(st.binary(max_size=12), st.sampled_from(_TOKENS)),
)


def _mutate(data: bytes, mutations) -> bytes:
    lines = data.split(b"\n")
    for kind, a, b, blob in mutations:
        if not lines:
            lines = [b""]
        i, j = a % len(lines), b % len(lines)
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[j])
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "number":
            numbers = list(_NUMBER.finditer(lines[i]))
            if numbers:
                m = numbers[b % len(numbers)]
                lines[i] = lines[i][:m.start()] + blob + lines[i][m.end():]
        elif kind == "garbage":
            k = b % (len(lines[i]) + 1)
            lines[i] = lines[i][:k] + blob + lines[i][k:]
        elif kind == "truncate":
            joined = b"\n".join(lines)
            lines = joined[:b % (len(joined) + 1)].split(b"\n")
        elif kind == "join" and i + 1 < len(lines):
            lines[i:i + 2] = [lines[i] + lines[i + 1]]
    return b"\n".join(lines)


def _check(data: bytes) -> None:
    try:
        beatmap = parse_beatmap(data, "fuzzed.osu")
    except BeatmapError as e:
        assert not e.reason.startswith("internal error"), e.reason
        assert e.path is not None and e.path.name == "fuzzed.osu"
        return
    for warning in beatmap.warnings:
        assert warning.line is None or warning.line >= 1
    text = encode_beatmap(beatmap)
    again = parse_beatmap(text)
    if beatmap.format_version < 128:  # v128 keeps fractional positions that v14 cannot hold
        assert again == beatmap
    beatmap.combo_info()
    for obj in beatmap.hit_objects[:40]:
        beatmap.end_time(obj)
        if not isinstance(obj, Slider):
            beatmap.hit_sounds(obj)


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(range(max(len(SOURCES), 1))), mutations=st.lists(_MUTATION, min_size=1, max_size=6))
def test_mutated_real_files_parse_or_raise_beatmap_error(source, mutations):
    _check(_mutate(SOURCES[source], mutations))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_beatmap_error(data):
    _check(data)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(lines=st.lists(st.sampled_from([
    b"osu file format v14", b"osu file format v3", b"osu file format v128", b"[General]", b"[HitObjects]",
    b"[TimingPoints]", b"[Events]", b"[Colours]", b"[Difficulty]", b"Mode: 3", b"0,500,4,2,0,100,1,0",
    b"0,-50,4,2,0,100,0,1", b"256,192,0,1,0,0:0:0:0:", b"0,0,10,2,0,B|1:1|1:1|P|5:5|9:0,3,50",
    b"0,0,10,2,0,C|0:0|0:0|20:20,2,0", b"256,192,10,12,0,5", b"64,192,10,128,0,9:0:0:0:0:",
    b"2,100,50", b'0,0,"bg.jpg"', b"Combo1 : 1,2,3", b"CircleSize:40", b"ApproachRate:-3"]), max_size=25))
def test_recombined_lines_parse_or_raise_beatmap_error(lines):
    _check(b"\r\n".join(lines))


def _timing_and_objects(data: bytes) -> list[int]:
    """Indexes of the lines in [TimingPoints] and [HitObjects]."""
    out, section = [], b""
    for i, line in enumerate(data.split(b"\n")):
        if line.strip().startswith(b"["):
            section = line.strip()
        elif section in (b"[TimingPoints]", b"[HitObjects]") and line.strip():
            out.append(i)
    return out


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(range(max(len(SOURCES), 1))),
       changes=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 2**31), st.sampled_from(_EXTREME)),
                        min_size=1, max_size=4))
def test_extreme_numbers_pass_through_timing_tokenizer_and_rules(source, changes):
    """Extreme numbers in timing and object lines: read, tokenized and rule-checked without a crash."""
    data = SOURCES[source]
    lines = data.split(b"\n")
    targets = _timing_and_objects(data)
    for a, b, value in changes:
        if not targets:
            break
        i = targets[a % len(targets)]
        numbers = list(_NUMBER.finditer(lines[i]))
        if numbers:
            m = numbers[b % len(numbers)]
            lines[i] = lines[i][:m.start()] + value + lines[i][m.end():]
    try:
        beatmap = parse_beatmap(b"\n".join(lines), "fuzzed.osu")
    except BeatmapError as e:
        assert not e.reason.startswith("internal error"), e.reason
        return
    for obj in beatmap.hit_objects:
        beatmap.end_time(obj)
    for context in (ContextType.TIMING, ContextType.MAP, ContextType.SV):
        try:
            context_events(context, beatmap, PRESETS["v32"].data, song_length_ms=60_000)
        except BeatmapError as e:  # a clear refusal (no timing left, an absurd beat grid) is fine
            assert "no timing points" in e.reason or "beat grid" in e.reason, e.reason
    check_beatmap(beatmap)
