"""MaiMod against upstream's recorded runs (fixtures README §7 and §9.4), and v31/v32 on the trained map."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.beatmap import read_beatmap, write_beatmap
from engine.maimod import ai_mod, candidates, load_model, score_beatmap, severity_of, suggestions
from engine.maimod.explain import EventText, group_events
from engine.suggestions import Severity, Source
from engine.tokenizer import ContextType, Event, EventType
from tests.conftest import UPSTREAM, need

T = EventType
TRAINED = UPSTREAM / "trained"
SONG = TRAINED / "audio" / "synth150.wav"


def golden_json(path: Path):
    return json.loads(need(path).read_text())


def plain(text: str | None) -> str | None:
    """Upstream's strings without rich's link markup."""
    return None if text is None else re.sub(r"\[/?link[^\]]*\]", "", text)


def event_of(pair) -> Event:
    return Event(T(pair[0]), int(pair[1]))


@pytest.fixture(scope="module")
def v30_trained():
    return load_model(str(need(TRAINED / "v30" / "checkpoint")), 0, device="cpu")


# --- v30, random weights: every event of a long map --------------------------------------------------------


def test_random_v30_scores_every_event_like_upstream():
    ck = load_model(str(need(UPSTREAM / "v30" / "checkpoint")), 0, device="cpu")
    beatmap = read_beatmap(need(UPSTREAM / "tokenization" / "kimi_no_bouken.osu"))
    (scored,) = score_beatmap(beatmap, need(UPSTREAM / "audio" / "click150.wav"), ck)
    golden = golden_json(UPSTREAM / "v30" / "maimod" / "per_event_surprisal.json")

    assert scored.type == ContextType.MAP and len(scored.events) == len(golden) == 6412
    assert [[e.type.value, e.value] for e in scored.events] == [g["event"] for g in golden]
    assert scored.times == [g["time"] for g in golden]
    np.testing.assert_allclose(scored.surprisal, [g["relative_surprisal"] for g in golden], atol=1e-4, rtol=0)
    # only the single window's events are scored; the rest of the map lies past the song
    assert scored.scored.sum() == 2361 and scored.scored[:2361].all()
    assert [[e.type.value, e.value] for e in scored.expected] == [g["expected"] for g in golden]
    text = EventText(ck.preset.data, ck.tokenizer)
    for i in range(2361):
        assert text(scored.events[i]) == plain(golden[i]["event_str"]), i
        assert text(scored.expected[i]) == plain(golden[i]["expected_str"]), i
    # a random model is never sure, so nothing stands out ("Found 0 suggestions")
    assert suggestions([scored], beatmap, ck.preset.data, ck.tokenizer) == []


# --- v30, trained on synth150: the map itself and upstream's damaged copy ------------------------------------


@pytest.mark.parametrize("case", ["std", "std_damaged"])
def test_trained_v30_per_event_surprisal(case, v30_trained):
    folder = TRAINED / "v30" / "maimod" / case
    beatmap = read_beatmap(need(folder / f"synth150_{case}.osu"))
    (scored,) = score_beatmap(beatmap, need(SONG), v30_trained)
    golden = golden_json(folder / "per_event_surprisal.json")
    assert [[e.type.value, e.value] for e in scored.events] == [g["event"] for g in golden]
    assert scored.scored.all()
    assert [[e.type.value, e.value] for e in scored.expected] == [g["expected"] for g in golden]
    # The trained model is nearly certain almost everywhere, so surprisal / entropy divides by tiny
    # entropies: float32 rounding (upstream's fp32 differs from fp64 by as much) moves it by up to 0.5 %.
    np.testing.assert_allclose(scored.surprisal, [g["relative_surprisal"] for g in golden], rtol=1e-2, atol=1e-3)


def test_trained_v30_finds_nothing_on_its_training_map(v30_trained):
    beatmap = read_beatmap(need(TRAINED / "v30" / "maimod" / "std" / "synth150_std.osu"))
    assert ai_mod(beatmap, need(SONG), str(TRAINED / "v30" / "checkpoint"), device="cpu") == []


def test_trained_v30_damaged_map_gives_upstreams_ten_suggestions(v30_trained):
    folder = TRAINED / "v30" / "maimod" / "std_damaged"
    beatmap = read_beatmap(need(folder / "synth150_std_damaged.osu"))
    found = ai_mod(beatmap, need(SONG), str(TRAINED / "v30" / "checkpoint"), device="cpu")
    golden = golden_json(folder / "suggestions.json")
    printed = golden["printed_suggestions"]
    assert golden["found_line"] == f"Found {len(found)} suggestions:"

    # upstream prints by category (alphabetical), chronological within each
    ours = sorted(found, key=lambda s: s.category)
    assert len(ours) == len(printed) == 10
    for s, g in zip(ours, printed):
        assert s.source == Source.AI
        assert s.category == g["category"]
        assert s.message == g["message"]
        assert s.details["group"] == g["group"]
        assert round(s.surprisal / 10) == g["surprisal_div10_rounded"]
        minutes, seconds, ms = (int(x) for x in g["timestamp"].split(":"))
        assert s.time_ms == minutes * 60000 + seconds * 1000 + ms
        # the editor link selects the object (a slider end's slider) by its time and combo number
        assert "osu://edit/" + s.timestamp.removesuffix(" - ").replace(" ", "%20") == g["edit_url"]
    assert [s.severity for s in found].count(Severity.WARNING) == 1  # (12), upstream's one yellow line
    assert all(s.severity == Severity.MINOR for s in found if s.surprisal < 100)


def test_trained_v30_candidates_before_filtering(v30_trained):
    folder = TRAINED / "v30" / "maimod" / "std_damaged"
    beatmap = read_beatmap(need(folder / "synth150_std_damaged.osu"))
    scored = score_beatmap(beatmap, need(SONG), v30_trained)
    golden = golden_json(folder / "suggestions.json")["candidates_surprisal_ge_20_prefilter"]
    found = candidates(scored, types_first=False)
    assert [(c.context.value, c.index, c.time) for c in found] == \
        [(g["context"], g["index"], g["time"]) for g in golden]
    for c, g in zip(found, golden):
        assert c.event == event_of(g["event"]) and c.expected == event_of(g["expected"])
        assert c.group.type.value == g["group_type"]
        assert (c.group_label, c.previous_group_label) == (g["group_str"], g["previous_group_str"])
        assert c.surprisal == pytest.approx(g["surprisal"], rel=1e-2)
    # every candidate survives upstream's filters here: the ten printed suggestions are these ten
    found_suggestions = suggestions(scored, beatmap, v30_trained.preset.data, v30_trained.tokenizer)
    assert [(s.details["index"], s.time_ms) for s in found_suggestions] == [(g["index"], g["time"]) for g in golden]


# --- pieces ----------------------------------------------------------------------------------------------------


def test_severity_follows_upstreams_colour_bands():
    # upstream shows surprisal / 10: red from 100, yellow from 10
    assert severity_of(999.9) == Severity.WARNING
    assert severity_of(1000.0) == Severity.PROBLEM
    assert severity_of(100.0) == Severity.WARNING
    assert severity_of(99.9) == Severity.MINOR


def test_groups_own_their_events_with_types_last_and_first():
    ev = [Event(T.TIME_SHIFT, 100), Event(T.POS_X, 10), Event(T.CIRCLE), Event(T.TIME_SHIFT, 200),
          Event(T.SLIDER_HEAD), Event(T.BEZIER_ANCHOR), Event(T.TIME_SHIFT, 300), Event(T.LAST_ANCHOR),
          Event(T.HITSOUND, 0)]
    times = [100, 100, 100, 200, 200, 250, 300, 300, 300]
    groups, owner = group_events(ev, times, types_first=False)
    assert [g.type for g in groups] == [T.CIRCLE, T.SLIDER_HEAD, T.BEZIER_ANCHOR, T.LAST_ANCHOR]
    assert [g.time for g in groups] == [100, 200, 250, 300]  # the anchor keeps its interpolated time
    assert [g.has_position for g in groups] == [True, False, False, False]
    assert owner == [0, 0, 0, 1, 1, 2, 3, 3, 3]  # a trailing event joins the last group

    first = [Event(T.CIRCLE), Event(T.TIME_SHIFT, 100), Event(T.POS_X, 10), Event(T.BEAT),
             Event(T.TIME_SHIFT, 200)]
    groups, owner = group_events(first, [100, 100, 100, 190, 200], types_first=True)
    assert [(g.type, g.time) for g in groups] == [(T.CIRCLE, 100), (T.BEAT, 200)]
    assert owner == [0, 0, 0, 1, 1]


# --- v31 / v32: upstream stops on the SV context; ours scores every context ----------------------------------


def damaged_copy(src: Path, dst: Path) -> Path:
    """synth150_std.osu damaged the way upstream's MaiMod run was: three circles shifted off the beat,
    a new combo removed and a hitsound added."""
    beatmap = read_beatmap(src)
    shifts = {3400: 30, 9800: -25, 19000: 40}
    objects = []
    for obj in beatmap.hit_objects:
        t = int(obj.time)
        if t in shifts:
            obj = dataclasses.replace(obj, time=obj.time + shifts[t])
        elif t == 13400:
            assert obj.new_combo
            obj = dataclasses.replace(obj, new_combo=False)
        elif t == 6400:
            assert obj.hitsound == 0
            obj = dataclasses.replace(obj, hitsound=8)
        objects.append(obj)
    write_beatmap(dataclasses.replace(beatmap, hit_objects=objects), dst)
    return dst


DAMAGED_TIMES = (3430, 6400, 9775, 13400, 19040)


@pytest.mark.slow
@pytest.mark.parametrize("version", ["v31", "v32"])
def test_later_versions_judge_the_trained_map_and_its_damage(version, tmp_path):
    model = str(need(TRAINED / version / "checkpoint"))
    original = need(TRAINED / "audio" / "synth150_std.osu")
    ck = load_model(model, 0, device="cpu")
    beatmap = read_beatmap(original)
    scored = score_beatmap(beatmap, need(SONG), ck)
    expected_contexts = ([ContextType.TIMING, ContextType.KIAI, ContextType.MAP, ContextType.SV] if version == "v31"
                         else [ContextType.TIMING, ContextType.MAP, ContextType.SV])
    assert [c.type for c in scored] == expected_contexts
    for c in scored:
        assert c.scored.all(), c.type  # every event of every context lies in some window's region
        if c.type == ContextType.SV:
            assert c.events == []  # outside mania the SV context stays empty, as in training
    assert suggestions(scored, beatmap, ck.preset.data, ck.tokenizer) == []

    damaged = read_beatmap(damaged_copy(original, tmp_path / "damaged.osu"))
    found = ai_mod(damaged, need(SONG), model, device="cpu")
    times = {s.time_ms for s in found}
    assert [t for t in DAMAGED_TIMES if t not in times] == []  # every damaged object is flagged
    assert all(s.source == Source.AI and s.timestamp for s in found)
    # nothing far from the damage: every suggestion is on a damaged object or the next one
    assert all(min(abs(s.time_ms - t) for t in DAMAGED_TIMES) <= 400 for s in found), \
        [(s.time_ms, s.message) for s in found]
    by_time = {(s.time_ms, s.category): s for s in found}
    assert by_time[6400, "Hit Sounds"].actual == "soft:soft-clap"
    assert by_time[6400, "Hit Sounds"].expected == "soft:soft-none"
    assert by_time[13400, "New Combos"].message == "Expected new combo."
    assert by_time[9775, "Rhythm"].timestamp == "00:09:775 (8) - "


def test_batching_does_not_change_the_scores():
    # every window is padded to the song's longest prompt, so a window scores the same in any batch
    ck = load_model(str(need(UPSTREAM / "v32" / "checkpoint")), 0, device="cpu")
    beatmap = read_beatmap(need(UPSTREAM / "tokenization" / "kimi_no_bouken.osu"))
    song = need(UPSTREAM / "audio" / "click150.wav")
    one = score_beatmap(beatmap, song, ck, batch_size=1)
    three = score_beatmap(beatmap, song, ck, batch_size=3)
    assert [c.type for c in one] == [ContextType.TIMING, ContextType.MAP, ContextType.SV]
    for a, b in zip(one, three):
        np.testing.assert_allclose(a.surprisal, b.surprisal, rtol=1e-5, atol=1e-6)
        assert a.expected == b.expected and (a.scored == b.scored).all()


def test_a_halved_prompt_scores_only_the_events_it_holds(v30_trained):
    # Prompts as long as the decoder's context keep only each context's last events (upstream asserted
    # here instead). Pretend the decoder holds 512 tokens: the map's 922 events shrink to the last 256.
    flags = dataclasses.replace(v30_trained.preset.data, tgt_seq_len=512)
    small = dataclasses.replace(v30_trained, preset=dataclasses.replace(v30_trained.preset, data=flags))
    (scored,) = score_beatmap(read_beatmap(need(TRAINED / "audio" / "synth150_std.osu")), need(SONG), small)
    held = np.nonzero(scored.scored)[0]
    assert list(held) == list(range(len(scored.events) - 256, len(scored.events)))
    # aligned logits: the trained model still predicts most of the events it sees (none when shifted by one)
    assert np.mean([scored.expected[i] == scored.events[i] for i in held]) > 0.6
    assert not any(scored.expected[i] == scored.events[i + 1] for i in held[:-1])
