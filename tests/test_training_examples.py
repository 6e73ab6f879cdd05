"""Training examples against upstream: ``trained/vXX/train/train_example0.json`` was built by upstream's
``_get_next_beatmap`` (fixtures README §9.2) for window 0 of synth150.wav with synth150_std.osu. Its random
choices (conditioning dropout, lookback masking, timing and snapping noise) are read off the golden; every
other token, every label and every conditioning tensor must come out identical. Also: the vocabulary built
from a version's flags equals upstream's tokenizer.json, and the random augmentations stay in their ranges."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
# What the golden's special tokens show was dropped to "unknown" in upstream's random draws, and whether
# its labels start after the lookback point.
GOLDEN_DRAWS = {"v30": (frozenset(), True), "v31": (frozenset({"cs"}), False),
                "v32": (frozenset({"cs", "mapper"}), False)}


def _golden_example(version: str, draws):
    from engine.audio import load_audio
    from engine.beatmap import read_beatmap
    from engine.presets import PRESETS
    from engine.tokenizer import Tokenizer
    from engine.training.augment import Augmentations
    from engine.training.examples import ExampleBuilder, MapInput, map_facts
    from engine.training.recipes import RECIPES

    tok = Tokenizer.from_file(need(TRAINED / version / "checkpoint" / "tokenizer.json"))
    samples = load_audio(need(TRAINED / "audio" / "synth150.wav"), 16000)
    beatmap = read_beatmap(TRAINED / "audio" / "synth150_std.osu")
    # the web-style metadata the harness gave upstream: beatmap 100000 by user 2, 3.2 stars, submitted 2023
    facts = map_facts(beatmap, beatmap_id=100000, beatmap_idx=tok.beatmap_idx.get(100000, 100000), user_id=2,
                      difficulty=3.2, year=2023, song_length_ms=len(samples) / 16000 * 1000)
    preset = PRESETS[version]
    builder = ExampleBuilder(preset, tok, Augmentations.for_version(preset, RECIPES[version]))
    example = next(iter(builder.examples(samples, MapInput(beatmap, facts, "std"), [], draws)))
    return example, tok


def _golden(version: str) -> dict:
    data = json.loads(need(TRAINED / version / "train" / "train_example0.json").read_text())
    # the harness batched examples and padded to the longest: strip that padding
    ids, labels = np.array(data["decoder_input_ids"]), np.array(data["labels"])
    n = len(ids)
    while n and ids[n - 1] == 0 and labels[n - 1] == -100:
        n -= 1
    data["ids"], data["label_ids"] = ids[:n], labels[:n]
    return data


@pytest.mark.golden
@pytest.mark.parametrize("version", ["v30", "v31", "v32"])
def test_example_tokens_labels_and_conditioning_equal_upstream(version):
    from engine.tokenizer import EventType
    from engine.training.augment import FixedDraws

    golden = _golden(version)
    dropped, lookback = GOLDEN_DRAWS[version]
    ex, tok = _golden_example(version, FixedDraws(lookback=lookback, dropped=dropped))
    assert ex.labels.tolist() == golden["label_ids"].tolist()
    assert len(ex.decoder_input_ids) == len(golden["ids"])
    ours, theirs = ex.decoder_input_ids, golden["ids"]
    ts = (theirs >= tok.start[EventType.TIME_SHIFT]) & (theirs < tok.end[EventType.TIME_SHIFT])
    snap = (theirs >= tok.start.get(EventType.SNAPPING, -1)) & (theirs < tok.end.get(EventType.SNAPPING, -1))
    # noise-free tokens: identical except where upstream's random jitter (±2 steps) or snapping changed them
    assert np.abs(ours[ts] - theirs[ts]).max() <= 2
    differs = np.nonzero(ours != theirs)[0]
    assert all(ts[i] or (snap[i] and version == "v32") for i in differs), [tok.describe(int(theirs[i])) for i in differs]
    keep = ~ts & ~snap
    assert [tok.describe(int(i)) for i in ours[keep]] == [e for e, k in zip(golden["events"], keep) if k]
    for key in ("beatmap_idx", "mapper_idx"):
        assert int(ex.cond[key]) == golden[key]
    assert float(ex.cond["difficulty"]) == pytest.approx(golden["difficulty"], abs=0)
    assert ex.cond["song_position"].tolist() == pytest.approx(golden["song_position"], abs=0)


@pytest.mark.golden
@pytest.mark.parametrize("version", ["v30", "v32"])
def test_scripted_noise_reproduces_the_whole_example(version):
    """With upstream's jitter and snapping draws replayed, every input id matches (noise is applied only
    after the conditioning tokens, to time shifts, clipped to the range; snapping anywhere)."""
    from engine.tokenizer import EventType
    from engine.training.augment import FixedDraws

    golden = _golden(version)
    dropped, lookback = GOLDEN_DRAWS[version]
    clean, tok = _golden_example(version, FixedDraws(lookback=lookback, dropped=dropped))
    start = int(np.nonzero(clean.decoder_input_ids == tok.sos_id)[0][0])  # noise starts at SOS
    noise = golden["ids"][start:] - clean.decoder_input_ids[start:]
    snap_lo, snap_hi = tok.start[EventType.SNAPPING], tok.end[EventType.SNAPPING]
    snaps = {int(i): int(golden["ids"][i] - snap_lo) for i in np.nonzero(clean.decoder_input_ids != golden["ids"])[0]
             if snap_lo <= golden["ids"][i] < snap_hi}
    for i in snaps:
        noise[i - start] = 0
    replay = FixedDraws(lookback=lookback, dropped=dropped, noise=noise, snaps=snaps)
    ex, _ = _golden_example(version, replay)
    assert ex.decoder_input_ids.tolist() == golden["ids"].tolist()
    assert ex.labels.tolist() == golden["label_ids"].tolist()


@pytest.mark.golden
def test_examples_cover_the_song_in_windows():
    """All windows of a beatmap: consecutive, without overlap, the last one zero-padded; labels end with EOS."""
    from engine.audio import load_audio
    from engine.beatmap import read_beatmap
    from engine.presets import PRESETS
    from engine.tokenizer import Tokenizer
    from engine.training.augment import Augmentations, FixedDraws
    from engine.training.examples import ExampleBuilder, MapInput, map_facts
    from engine.training.recipes import RECIPES

    tok = Tokenizer.from_file(need(TRAINED / "v32" / "checkpoint" / "tokenizer.json"))
    samples = load_audio(need(TRAINED / "audio" / "synth150.wav"), 16000)
    beatmap = read_beatmap(TRAINED / "audio" / "synth150_std.osu")
    facts = map_facts(beatmap, beatmap_id=None, beatmap_idx=None, user_id=None, difficulty=None, year=None,
                      song_length_ms=30000.0)
    builder = ExampleBuilder(PRESETS["v32"], tok, Augmentations.for_version(PRESETS["v32"], RECIPES["v32"]))
    examples = list(builder.examples(samples, MapInput(beatmap, facts), [], FixedDraws(offset=100)))
    starts = [e.window_ms for e in examples]
    assert starts == [800.0, 17176.0]  # frame 100 (8 ms frames), then one window (2047 frames) later
    assert all(len(e.frames) == 2047 * 128 for e in examples)
    assert not examples[-1].frames[-1000:].any()  # past the song's end
    circles = [sum(tok.describe(int(i)) == "circle0" for i in e.decoder_input_ids) for e in examples]
    # every circle from the first window's start on, each in exactly one window (the one at 600 ms is before it)
    assert sum(circles) == sum(1 for o in beatmap.hit_objects if type(o).__name__ == "HitCircle" and o.time >= 800)
    assert sum(circles) == 47
    for e in examples:
        assert e.labels[-1] == tok.eos_id and (e.labels != -100).sum() > 10
        # unknown year, mapper and difficulty: the "unknown" tokens
        names = [tok.describe(int(i)) for i in e.decoder_input_ids[:12]]
        assert "year2077" in names and "mapper40" in names and "difficulty24" in names


@pytest.mark.golden
@pytest.mark.parametrize("version", ["v30", "v31", "v32"])
@pytest.mark.parametrize("base", ["", "trained"])
def test_vocabulary_from_flags_equals_upstreams(version, base):
    """A new vocabulary, given the conditioning tables upstream used, is upstream's tokenizer.json exactly."""
    from engine.presets import PRESETS
    from engine.tokenizer import Tokenizer
    from engine.training.recipes import RECIPES
    from engine.training.vocab import VocabTables, build_tokenizer

    path = need(UPSTREAM / base / version / "checkpoint" / "tokenizer.json")
    reference = Tokenizer.from_file(path)
    built = build_tokenizer(PRESETS[version], RECIPES[version], VocabTables.from_tokenizer(reference))
    assert built.to_dict() == json.loads(path.read_text(encoding="utf-8"))


def test_random_draws_stay_in_range():
    from engine.presets import PRESETS
    from engine.training.augment import Augmentations, RandomDraws
    from engine.training.recipes import RECIPES

    a = Augmentations.for_version(PRESETS["v32"], RECIPES["v32"], dt_augment_prob=1.0)
    d = RandomDraws(a, np.random.default_rng(0))
    speeds = [d.speed() for _ in range(200)]
    assert min(speeds) >= 1.0 and max(speeds) <= 1.2 and np.mean(speeds) > 1.1  # sqrt-biased towards fast
    noise = d.timing_noise(5000)
    assert set(np.unique(noise)) == {-2, -1, 0, 1, 2}
    offsets = [d.frame_offset(2000) for _ in range(400)]
    assert 0.35 < np.mean([o == 0 for o in offsets]) < 0.65 and max(offsets) <= 2000  # half the time (v32)
    kept = [d.keep("mapper") for _ in range(2000)]
    assert 0.85 < np.mean(kept) < 0.95  # v32 drops the mapper 10 % of the time
    mask, classes = d.snapping_noise(4000, 17)
    assert 0.2 < mask.mean() < 0.3 and classes.min() >= 0 and classes.max() <= 16
    off = Augmentations.for_version(PRESETS["v32"], RECIPES["v32"], timing_random_offset=0, mapper_dropout_prob=0.0)
    d = RandomDraws(off, np.random.default_rng(1))
    assert not d.timing_noise(100).any() and all(d.keep("mapper") for _ in range(100))


@pytest.mark.golden
def test_speed_and_flip_augmentations():
    """DT speed divides event times (the song is loaded at the same speed); flips mirror positions."""
    from engine.audio import load_audio
    from engine.beatmap import read_beatmap
    from engine.presets import PRESETS
    from engine.tokenizer import Tokenizer
    from engine.training.augment import Augmentations, FixedDraws
    from engine.training.examples import ExampleBuilder, MapInput, map_facts
    from engine.training.recipes import RECIPES

    tok = Tokenizer.from_file(need(TRAINED / "v30" / "checkpoint" / "tokenizer.json"))
    beatmap = read_beatmap(need(TRAINED / "audio" / "synth150_std.osu"))
    builder = ExampleBuilder(PRESETS["v30"], tok, Augmentations.for_version(PRESETS["v30"], RECIPES["v30"]))

    def first_window(speed=1.0, flip=(False, False)):
        samples = load_audio(TRAINED / "audio" / "synth150.wav", 16000, speed=speed)
        facts = map_facts(beatmap, beatmap_id=None, beatmap_idx=None, user_id=None, difficulty=3.2, year=None,
                          song_length_ms=len(samples) / 16)
        ex = next(iter(builder.examples(samples, MapInput(beatmap, facts), [], FixedDraws(), speed=speed, flip=flip)))
        return [tok.describe(int(i)) for i in ex.labels if i >= 0], len(samples)

    normal, n_normal = first_window()
    fast, n_fast = first_window(speed=1.5)
    assert n_fast == pytest.approx(n_normal / 1.5, abs=2)
    shifts = [int(e[1:]) for e in normal if e.startswith("t") and e[1:].isdigit()]
    fast_shifts = [int(e[1:]) for e in fast if e.startswith("t") and e[1:].isdigit()]
    assert shifts[:3] == [60, 60, 100] and fast_shifts[:3] == [40, 40, 66]  # 600 ms -> 400 ms, 1000 -> 666
    assert [e for e in fast if not e.startswith("t")][:8] == [e for e in normal if not e.startswith("t")][:8]
    mirrored, _ = first_window(flip=(True, False))
    xs = [int(e[5:]) for e in normal if e.startswith("pos_x")]
    xs_flipped = [int(e[5:]) for e in mirrored if e.startswith("pos_x")]
    assert len(xs) == len(xs_flipped) and xs != xs_flipped
    assert all(abs((a + b) * 4 - 512) <= 4 for a, b in zip(xs, xs_flipped))  # x -> 512 - x at 4 px precision
    assert [e for e in mirrored if e.startswith("pos_y")] == [e for e in normal if e.startswith("pos_y")]
