"""Conditioning values measured from beatmaps, against the numbers upstream computed for the fixtures."""
from __future__ import annotations

import json

import pytest

from engine.beatmap import read_beatmap
from engine.beatmap_stats import (
    conditions_from_beatmap,
    hold_note_ratio,
    is_hitsounded,
    key_count,
    median_beat_length,
    scroll_speed_ratio,
    star_rating,
)
from engine.presets import PRESETS
from engine.tokenizer import Tokenizer
from tests.conftest import BEATMAPS, UPSTREAM, need

KIMI = UPSTREAM / "tokenization" / "kimi_no_bouken.osu"
SYNTH = UPSTREAM / "trained" / "audio"


def read(path):
    return read_beatmap(need(path))


# --- star rating (rosu-pp) -----------------------------------------------------------------------------

def test_star_rating_of_kimi_matches_upstream():
    """README section 4: upstream filled difficulty 6.97 from rosu-pp (rosu-pp-py 3.1.0, upstream's pin)."""
    assert star_rating(read(KIMI)) == 6.97


@pytest.mark.parametrize("mode, stars", [("std", 3.2), ("taiko", 1.16), ("catch", 1.84), ("mania", 1.04)])
def test_star_rating_of_the_trained_maps_matches_upstream(mode, stars):
    """README section 9.2: the difficultyrating upstream's calculate_difficulty gave each synth150 map."""
    assert star_rating(read(SYNTH / f"synth150_{mode}.osu")) == stars


def test_star_rating_of_an_unsaved_beatmap_comes_from_its_text():
    beatmap = read(KIMI).copy()
    beatmap.path = None
    assert star_rating(beatmap) == 6.97


def test_star_rating_is_none_when_rosu_cannot_read_the_map(tmp_path):
    assert star_rating(tmp_path / "missing.osu") is None


# --- hitsounds, hold notes, scroll speeds -------------------------------------------------------------

@pytest.mark.parametrize("mode", ["std", "taiko", "catch", "mania"])
def test_trained_maps_are_hitsounded(mode):
    assert is_hitsounded(read(SYNTH / f"synth150_{mode}.osu"))


def test_a_map_without_hitsounds_is_not_hitsounded():
    """README section 4: upstream filled "hitsounded false" from click150_timing.osu."""
    assert not is_hitsounded(read(UPSTREAM / "audio" / "click150_timing.osu"))


def test_hold_note_ratio_of_the_mania_sample():
    path = need(BEATMAPS / "sample-beatmap-mania.osu")
    lines = path.read_text(encoding="utf-8-sig").split("[HitObjects]")[1].split()
    types = [int(line.split(",")[3]) for line in lines if line.count(",") >= 4]
    assert hold_note_ratio(read(path)) == sum(t & 128 != 0 for t in types) / len(types)


def test_hold_note_ratio_of_a_map_without_objects_is_unknown():
    beatmap = read(KIMI).copy()
    beatmap.hit_objects = []
    assert hold_note_ratio(beatmap) is None
    assert scroll_speed_ratio(beatmap) is None


# Values upstream's data_utils (get_scroll_speed_ratio, get_median_mpb_beatmap, get_hold_note_ratio)
# computed on these files with the slider fork, hold notes kept as its code intends.
UPSTREAM_STATS = {
    "Soleily - Renatus (MMzz) [Oni].osu": (0.004552352048558422, 329.67032967033, 0.0),
    "Soleily - Renatus (MMzz) [Futsuu].osu": (0.013333333333333334, 329.67032967033, 0.0),
    "Soleily - Renatus (ExPew) [Another].osu": (0.00966183574879227, 329.67032967033, 0.16973886328725038),
    "Soleily - Renatus (ExPew) [Normal].osu": (0.004172461752433936, 329.67032967033, 0.034047919293820936),
    "Soleily - Renatus (Deif) [Rain].osu": (0.010958904109589041, 329.67032967033, 0.0),
    "Soleily - Renatus (Gamu) [Insane].osu": (0.005574136008918618, 329.67032967033, 0.0),
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_STATS))
def test_ratios_and_median_beat_length_match_upstream(name):
    beatmap = read(BEATMAPS / name)
    ratio, median, holds = UPSTREAM_STATS[name]
    assert scroll_speed_ratio(beatmap) == ratio
    assert median_beat_length(beatmap) == median
    assert hold_note_ratio(beatmap) == holds


@pytest.mark.parametrize("mode", ["taiko", "mania"])
def test_trained_maps_have_no_scroll_speed_changes(mode):
    """README section 9.5: scroll_speed_ratio 0.0 reproduces the training prompts of these maps."""
    beatmap = read(SYNTH / f"synth150_{mode}.osu")
    assert scroll_speed_ratio(beatmap) == 0.0
    assert median_beat_length(beatmap) == 400.0


def test_key_count():
    assert key_count(read(BEATMAPS / "sample-beatmap-mania.osu")) == int(
        read(BEATMAPS / "sample-beatmap-mania.osu").difficulty.circle_size
    )
    assert key_count(read(SYNTH / "synth150_mania.osu")) == 4
    assert key_count(read(KIMI)) == 4


# --- conditions of a reference beatmap --------------------------------------------------------------

@pytest.mark.parametrize("version", ["v31", "v32"])
@pytest.mark.parametrize("name", ["kimi_no_bouken.osu", "visual_spacing_test12.osu"])
def test_conditions_give_upstreams_class_tokens(version, name):
    """Upstream's reference-MAP context carries class tokens filled from the beatmap (tokenization golden)."""
    from engine.prompt.conditions import class_tokens

    golden = json.loads(need(UPSTREAM / "tokenization" / f"{version}.json").read_text())[name]
    tok = Tokenizer.from_file(need(UPSTREAM / version / "checkpoint" / "tokenizer.json"))
    conditions = conditions_from_beatmap(read(UPSTREAM / "tokenization" / name), tok)
    windows = [w for w in golden["windows"] if w["form"] == "in_context" and w["context_type"] == "map"]
    assert windows
    for window in windows:
        tokens = class_tokens(tok, PRESETS[version].data, conditions, golden["song_length_ms"])
        assert tokens == window["class_tokens"]


def test_conditions_of_kimi():
    beatmap = read(KIMI)
    conditions = conditions_from_beatmap(beatmap)
    assert (conditions.gamemode, conditions.difficulty, conditions.slider_multiplier) == (0, 6.97, 1.8)
    assert conditions.beatmap_id == beatmap.metadata.beatmap_id
    assert conditions.hold_note_ratio is None and conditions.scroll_speed_ratio is None
    assert conditions.mapper_id is None and conditions.descriptors is None and conditions.year is None


def test_conditions_of_a_mania_map():
    beatmap = read(BEATMAPS / "sample-beatmap-mania.osu")
    conditions = conditions_from_beatmap(beatmap, star_rating_value=2.5)
    assert conditions.gamemode == 3 and conditions.difficulty == 2.5
    assert conditions.keycount == key_count(beatmap)
    assert conditions.hold_note_ratio == hold_note_ratio(beatmap) and conditions.hold_note_ratio > 0
    assert conditions.scroll_speed_ratio == scroll_speed_ratio(beatmap)


def test_conditions_look_up_mapper_and_descriptors_in_the_tokenizer():
    tok = Tokenizer.from_file(need(UPSTREAM / "v32" / "checkpoint" / "tokenizer.json"))
    beatmap = read(KIMI).copy()
    beatmap_id, user_id = next(iter(tok.beatmap_mapper.items()))
    beatmap.metadata.beatmap_id = beatmap_id
    names = tok.descriptor_names()[:2]
    tok.beatmap_descriptors[beatmap_id] = [tok.descriptor_idx[n] for n in names]
    conditions = conditions_from_beatmap(beatmap, tok, star_rating_value=6.97)
    assert conditions.mapper_id == user_id
    assert conditions.descriptors == tuple(names)
