"""Timing: the facade, super timing against upstream's recorded run, and the beat-grid maths."""
from __future__ import annotations

import ast
import json

import numpy as np
import pytest

import engine
import engine.decoding
from engine.beatmap import read_beatmap
from engine.errors import OptionError
from engine.super_timing import BeatVotes, _Peak, _walk_beats, beat_grid
from engine.tokenizer import EventType

from .conftest import REPO, UPSTREAM, need

TRAINED = UPSTREAM / "trained"
SONG = TRAINED / "audio" / "synth150.wav"


def test_timing_finds_the_songs_tempo_and_offset(tmp_path):
    result = engine.timing(engine.TimingOptions(audio_path=str(need(SONG)),
                                                model_path=str(TRAINED / "v32" / "checkpoint"), device="cpu",
                                                output_path=str(tmp_path), seed=1))
    red = result.uninherited
    assert len(red) == 1
    # synth150: 150 BPM, first beat at 600 ms; upstream's decoder puts times +5 ms (half-step rounding).
    assert red[0].beat_length == pytest.approx(400.0) and red[0].time == 605
    written = read_beatmap(result.path)
    assert written.timing_points == result.timing_points and not written.hit_objects
    assert written.metadata.version == "Timing"
    assert result.warnings == []


def test_timing_without_output_path_writes_nothing(tmp_path):
    result = engine.timing(engine.TimingOptions(audio_path=str(need(SONG)),
                                                model_path=str(TRAINED / "v32" / "checkpoint"), device="cpu"))
    assert result.path is None and result.uninherited


def test_v30_has_no_timing_pass():
    with pytest.raises(OptionError, match="v30"):
        engine.timing(engine.TimingOptions(audio_path=str(need(SONG)), model_path="v30"))


def _calls(run):
    def value(v):
        v = ast.literal_eval(v) if isinstance(v, str) else v
        return v if isinstance(v[0], list) else [v]

    return [(c["context_type"], value(c["prompt"]), value(c["generated"]))
            for c in json.loads(need(TRAINED / run / "generate_calls.json").read_text())]


def _until_end(row, ends=(2, 4)):
    row = list(row)
    while row and row[-1] == 0:  # Hugging Face pads rows that finished early
        row.pop()
    for i, t in enumerate(row):
        if t in ends:
            return row[: i + 1]
    return row


@pytest.mark.slow
@pytest.mark.golden
@pytest.mark.parametrize("paths", ["ordinary", "gpu"])
def test_super_timing_reproduces_upstream(tmp_path, monkeypatch, paths):
    """20 shifted passes + the map pass, as upstream's run (README §9.3): the same windows with the same prompts
    and tokens up to each window's end of timing, the same timing points and beatmap. Upstream decoded pass
    after pass (20 calls of 2–3 windows); we batch the 46 windows across passes, 32 at a time (v32's max_batch_size).
    ``gpu``: what a GPU runs (every batch through one kept graph step, eight windows an encoder call), forced
    on the CPU."""
    if paths == "gpu":
        from engine import runtime

        monkeypatch.setattr(engine.decoding, "uses_cuda_graph", lambda device, batch, o: True)
        monkeypatch.setattr(runtime, "encoder_batch", lambda device: 8)
    seen = []
    real = engine.decoding.decode

    def spy(model, tokenizer, frames, prompts, opts, stop, **kwargs):
        rows = real(model, tokenizer, frames, prompts, opts, stop, **kwargs)
        seen.append((prompts, rows))
        return rows

    monkeypatch.setattr(engine.decoding, "decode", spy)
    result = engine.generate(engine.GenerateOptions(
        audio_path=str(need(SONG)), output_path=str(tmp_path), model_path=str(TRAINED / "v32" / "checkpoint"),
        gamemode=0, difficulty=3.2, mapper_id=2, year=2023, do_sample=False, seed=12345, device="cpu",
        precision="fp32", super_timing=True))
    expected = _calls("v32/pipeline_greedy_std_supertiming")
    expected_timing = [(p, r) for context, prompts, rows in expected if context != "map" for p, r in zip(prompts, rows)]
    expected_map = [(prompts, rows) for context, prompts, rows in expected if context == "map"]
    assert len(expected_timing) == 46 and len(expected_map) == 10
    map_calls = seen[len(seen) - len(expected_map):]
    timing_calls = seen[: len(seen) - len(expected_map)]
    assert [len(prompts) for prompts, _ in timing_calls] == [32, 14]
    ours_timing = [(list(p), r) for prompts, rows in timing_calls for p, r in zip(prompts, rows)]
    # upstream ran each row on to EOS; we stop at the end of timing
    assert [(p, _until_end(r)) for p, r in ours_timing] == [(p, _until_end(r)) for p, r in expected_timing]
    for (prompts, rows), (golden_prompts, golden_rows) in zip(map_calls, expected_map):
        assert [list(p) for p in prompts] == golden_prompts
        assert rows == golden_rows
    golden = read_beatmap(TRAINED / "v32" / "pipeline_greedy_std_supertiming" / "generated.osu")
    ours = read_beatmap(result.path)
    assert ours.timing_points == golden.timing_points
    assert ours.hit_objects == golden.hit_objects


def _votes_from_grid(beats_ms, measure_every=4, passes=5, length=20_000, jitter=0):
    votes = BeatVotes(length)
    rng = np.random.default_rng(0)

    class G:
        def __init__(self, t, kind):
            self.time, self.type = t, kind

    for _ in range(passes):
        groups = []
        for i, t in enumerate(beats_ms):
            kind = EventType.TIMING_POINT if i == 0 else EventType.MEASURE if i % measure_every == 0 else EventType.BEAT
            groups.append(G(int(t + rng.integers(-jitter, jitter + 1)), kind))
        votes.add_pass(groups, 0)
    return votes


def test_beat_grid_recovers_a_steady_tempo_with_measures():
    beats = np.arange(1000, 19_000, 500)  # 120 BPM from 1 s
    grid = beat_grid(_votes_from_grid(beats, jitter=3), passes=5, bpm_threshold=0.1)
    times = np.array([t for t, _ in grid])
    inside = times[(times >= 1000) & (times < 19_000)]
    assert np.all(np.abs(np.diff(inside) - 500) <= 10)
    kinds = [k for t, k in grid if 1000 <= t < 19_000]
    measures = [i for i, k in enumerate(kinds) if k in (EventType.MEASURE, EventType.TIMING_POINT)]
    assert np.all(np.diff(measures) == 4)


def test_beat_grid_without_votes_is_empty():
    assert beat_grid(BeatVotes(5000), passes=3, bpm_threshold=0.1) == []


def test_super_timing_on_a_song_shorter_than_half_a_window():
    """Shifts longer than the song leave nothing to hear in that pass (upstream divides by zero there)."""
    assets = REPO / "assets" / "selftest"
    result = engine.timing(engine.TimingOptions(audio_path=str(assets / "selftest.mp3"), super_timing=True,
                                                model_path=str(assets / "checkpoint"), device="cpu", seed=3,
                                                timer_iterations=4))
    assert result.uninherited and all(tp.beat_length == pytest.approx(400, abs=5) for tp in result.uninherited)


@pytest.mark.timeout(60)
def test_a_walk_that_would_snap_back_forever_ends():
    # one strong peak and a tempo whose next beat falls within its pull: each step snaps back onto it
    # (upstream's walk loops forever here)
    assert _walk_beats([_Peak(time=1000, prominence=8.0, bpm=150.0, measured=True)], length_ms=5000) == [1000]
