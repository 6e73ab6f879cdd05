"""engine.generate_mapset: a mapset's or variants' rows decoded as one batch give, row for row, the maps of the
separate jobs; the set is written as one (.osz or folder); variants can be kept one at a time."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest

import engine
from engine.beatmap import read_beatmap, read_osz
from engine.errors import OptionError
from engine.mapset_job import MapsetOptions, difficulty_name, discard_variants, row_options
from engine.options import GenerateOptions

from .conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
SONG = TRAINED / "audio" / "synth150.wav"
V32 = TRAINED / "v32" / "checkpoint"
END_MS = 9000  # a part of the 30 s song: a few windows are enough to show rows staying apart


def base(tmp_path, **kw) -> dict:
    values = dict(audio_path=str(need(SONG)), model_path=str(need(V32)), mapper_id=2, year=2023, do_sample=False,
                  device="cpu", precision="fp32", end_time=END_MS, output_path=str(tmp_path / "out"))
    values.update(kw)
    return values


def red_lines(beatmap):
    return [(tp.time, tp.beat_length, tp.meter) for tp in beatmap.timing_points if tp.uninherited]


def separate(tmp_path, row: GenerateOptions, name: str):
    return engine.generate(dataclasses.replace(row, output_path=str(tmp_path / name))).beatmap


# --- the rows ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stars,mode,keys,name", [
    (1.5, 0, None, "Easy"), (2.0, 0, None, "Normal"), (2.69, 0, None, "Normal"), (3.2, 0, None, "Hard"),
    (4.5, 0, None, "Insane"), (5.3, 0, None, "Expert"), (7.1, 0, None, "Expert+"), (3.2, 1, None, "Muzukashii"),
    (4.1, 1, None, "Oni"), (1.84, 2, None, "Cup"), (5.0, 2, None, "Rain"), (1.04, 3, 4, "4K Easy"),
    (6.6, 3, 7, "7K Expert+"), (None, 0, None, "Difficulty")])
def test_difficulty_names_follow_the_star_ranges(stars, mode, keys, name):
    assert difficulty_name(stars, mode, keys) == name


def test_rows_get_consecutive_seeds_and_every_mode_gets_every_difficulty(tmp_path):
    rows = row_options(MapsetOptions(**base(tmp_path, gamemodes=(0, 3), difficulties=(2.0, 5.0), seed=10)))
    assert [(r.gamemode, r.difficulty, r.seed) for r in rows] == [(0, 2.0, 10), (0, 5.0, 11), (3, 2.0, 12),
                                                                   (3, 5.0, 13)]
    assert all(type(r) is GenerateOptions and r.mapper_id == 2 for r in rows)
    variants = row_options(MapsetOptions(**base(tmp_path, difficulty=4.0, num_variants=3, do_sample=True,
                                                seeds=(5, 9, 1))))
    assert [(r.difficulty, r.seed) for r in variants] == [(4.0, 5), (4.0, 9), (4.0, 1)]


@pytest.mark.parametrize("kw,message", [
    ({"difficulty": 3.0, "difficulties": (2.0, 4.0)}, "either difficulty or difficulties"),
    ({"gamemode": 0, "gamemodes": (0, 1)}, "either gamemode or gamemodes"),
    ({"num_variants": 3}, "do_sample=true"),
    ({"num_variants": 2, "do_sample": True, "difficulties": (2.0, 4.0)}, "one difficulty"),
    ({"difficulties": (2.0, 4.0), "seeds": (1, 2, 3)}, "3 seeds for 2 maps"),
    ({"difficulties": (2.0, 4.0), "difficulty_names": ("Easy",)}, "1 names for 2 maps"),
    ({"difficulties": (2.0, 4.0), "version": "Mine"}, "difficulty_names"),
    ({"difficulties": (2.0,), "add_to_beatmap": True}, "add_to_beatmap"),
])
def test_requests_that_make_no_set_are_refused(tmp_path, kw, message):
    with pytest.raises(OptionError, match=message):
        row_options(MapsetOptions(**base(tmp_path, **kw)))


def test_words_parse_into_mapset_options():
    options = engine.parse_overrides(MapsetOptions, ["audio_path=song.mp3", "difficulties=[2,3.5,5,6.5]",
                                                     "gamemodes=[0,3]", "difficulty_names=[A,B,C,D,E,F,G,H]"])
    assert options.difficulties == (2.0, 3.5, 5.0, 6.5) and options.gamemodes == (0, 3)
    assert len(row_options(options)) == 8
    with pytest.raises(OptionError, match="difficulties"):
        engine.parse_overrides(MapsetOptions, ["difficulties=[2,99]"])


# --- whole jobs on the trained tiny checkpoint ---------------------------------------------------------------


@pytest.mark.slow
def test_batched_mapset_equals_separate_greedy_jobs_and_opens_as_one_set(tmp_path):
    options = MapsetOptions(**base(tmp_path, gamemode=0, difficulties=(3.2, 6.0), seed=21, export_osz=True))
    result = engine.generate_mapset(options)
    assert result.kind == "mapset" and result.path.suffix == ".osz" and [m.path for m in result.maps] == [
        result.path] * 2
    assert [m.seed for m in result.maps] == [21, 22]
    for i, (row, made) in enumerate(zip(row_options(options), result.maps)):
        alone = separate(tmp_path, row, f"alone{i}")
        assert made.beatmap.hit_objects == alone.hit_objects and made.beatmap.timing_points == alone.timing_points
        assert made.beatmap.hit_objects
    archive = read_osz(result.path)
    maps = [d.beatmap for d in archive.difficulties]
    assert sorted(m.metadata.version for m in maps) == sorted(m.beatmap.metadata.version for m in result.maps)
    assert len({m.metadata.version for m in maps}) == 2  # named apart even when the stars agree
    assert all(red_lines(m) == red_lines(maps[0]) and m.general.audio_filename == SONG.name for m in maps)
    assert archive.audio_file == SONG.name
    for m in maps:
        assert m.metadata.creator == "Mapperatorinator" and "ai-generated" in m.metadata.tags
    assert {f"seed={s}" for s in (21, 22)} == {w for m in maps for w in m.metadata.tags.split() if
                                              w.startswith("seed=")}
    assert list((tmp_path / "out").iterdir()) == [result.path]  # one output: the .osz


@pytest.mark.slow
def test_sampled_variants_with_fixed_seeds_equal_separate_jobs_and_keep_one(tmp_path):
    options = MapsetOptions(**base(tmp_path, gamemode=0, difficulty=3.2, do_sample=True, num_variants=2,
                                   seeds=(5, 9)))
    result = engine.generate_mapset(options)
    assert result.kind == "variants" and [m.seed for m in result.maps] == [5, 9]
    for i, (row, made) in enumerate(zip(row_options(options), result.maps)):
        alone = separate(tmp_path, row, f"alone{i}")
        assert made.beatmap.hit_objects == alone.hit_objects and made.beatmap.timing_points == alone.timing_points
        assert read_beatmap(made.path).hit_objects == made.beatmap.hit_objects
        assert made.beatmap.metadata.version == f"Mapperatorinator V32 (seed {row.seed})"
    # (the tiny model is overfitted to this song, so its samples barely differ; other seeds drawing other tokens
    # is shown by test_rows_with_their_own_generators_sample_what_they_sample_alone)
    assert [w for m in result.maps for w in m.beatmap.metadata.tags.split() if w.startswith("seed=")] == [
        "seed=5", "seed=9"]
    removed = discard_variants(result, keep=1)
    assert removed == [result.maps[0].path] and not result.maps[0].path.exists()
    assert result.maps[1].path.is_file() and (result.maps[1].path.parent / SONG.name).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("kw", [dict(difficulties=(3.2, 6.0), seed=21),
                                dict(difficulty=3.2, do_sample=True, num_variants=2, seeds=(5, 9))],
                         ids=["mapset", "variants"])
def test_the_gpus_decoding_paths_write_the_same_maps(tmp_path, monkeypatch, kw):
    """What a GPU runs for a batch (a CUDA graph for all its rows, kept from window to window; eight windows an
    encoder call), forced here on the CPU where the graph step runs eagerly: the same maps as the ordinary
    paths (pruned rows, one window an encoder call)."""
    import engine.decoding
    import engine.runtime

    options = MapsetOptions(**base(tmp_path, gamemode=0, **kw))
    ordinary = engine.generate_mapset(options)
    monkeypatch.setattr(engine.decoding, "uses_cuda_graph", lambda device, batch, o: batch <= 16)
    monkeypatch.setattr(engine.runtime, "encoder_batch", lambda device: 8)
    import engine.cuda_graph

    made, real = [], engine.cuda_graph.graphed_step
    monkeypatch.setattr(engine.cuda_graph, "graphed_step", lambda *a: (made.append(a[3]), real(*a))[1])
    graphed = engine.generate_mapset(dataclasses.replace(options, output_path=str(tmp_path / "graphed")))
    for a, b in zip(ordinary.maps, graphed.maps, strict=True):
        assert a.beatmap.hit_objects == b.beatmap.hit_objects and a.beatmap.timing_points == b.beatmap.timing_points
        assert a.beatmap.hit_objects
    assert 2 in made  # the two rows went through one graph step (kept from window to window)


@pytest.mark.slow
def test_reference_timing_is_shared_and_the_reference_is_untouched(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    song = folder / SONG.name
    song.write_bytes(SONG.read_bytes())
    reference = folder / "Synth - 150 (Mapper) [Normal].osu"
    reference.write_bytes((TRAINED / "audio" / "synth150_std.osu").read_bytes())
    before = hashlib.sha256(reference.read_bytes()).hexdigest()
    options = MapsetOptions(**base(tmp_path, audio_path=None, output_path=None, beatmap_path=str(reference),
                                   in_context=("TIMING",), difficulties=(2.0, 5.0), difficulty_names=("A", "A")))
    result = engine.generate_mapset(options)
    assert result.path == folder and [m.beatmap.metadata.version for m in result.maps] == ["A", "A 2"]
    for row, made in zip(row_options(options), result.maps):
        assert red_lines(made.beatmap) == red_lines(read_beatmap(reference))
        assert made.beatmap.hit_objects == separate(tmp_path, row, f"alone{row.seed}").hit_objects
    assert hashlib.sha256(reference.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [SONG.name, reference.name] + [m.path.name for m in result.maps])


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    """All or nothing: the second map's write fails, so the first map and the copied song go too."""
    import engine.mapset_job as job
    from engine.beatmap import Beatmap

    calls = []
    real = job._write

    def failing_bytes(beatmap):
        calls.append(beatmap)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return b"osu file format v14\n"

    monkeypatch.setattr("engine.beatmap.beatmap_bytes", failing_bytes)
    out = tmp_path / "out"
    fake = type("Plan", (), {"output_dir": out, "audio_path": need(SONG)})
    jobs = [type("Job", (), {"plan": fake, "opts": GenerateOptions(), "reference_background": None})()] * 2
    maps = [Beatmap(), Beatmap()]
    for i, m in enumerate(maps):
        m.metadata = dataclasses.replace(m.metadata, version=f"v{i}")
    with pytest.raises(OptionError, match="nothing was written"):
        real(jobs, maps, MapsetOptions(difficulties=(1.0, 2.0)))
    assert not out.exists()


def test_rows_with_their_own_generators_sample_what_they_sample_alone():
    """decode with one generator per row: each row draws from its own stream only, as a batch of one would."""
    import numpy as np
    import torch

    from engine.checkpoint import load_checkpoint
    from engine.decoding import DecodingOptions, decode
    from engine.tokenizer import EOS_ID, SOS_ID

    ck = load_checkpoint(str(need(V32)), device="cpu")
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.standard_normal((3, 16000 * 8)).astype(np.float32) * 0.1)
    prompts = [[SOS_ID], [SOS_ID, SOS_ID], [SOS_ID]]
    opts = DecodingOptions(do_sample=True, temperature=1.5, top_p=1.0, max_length=24)

    def gens():
        return [torch.Generator().manual_seed(s) for s in (1, 2, 3)]

    together = decode(ck.model, ck.tokenizer, frames, prompts, opts, [EOS_ID], generator=gens())
    alone = [decode(ck.model, ck.tokenizer, frames[i: i + 1], [prompts[i]], opts, [EOS_ID], generator=g)[0]
             for i, g in enumerate(gens())]
    assert together == alone
    assert together[0] != together[2]  # same prompt and audio, other seed: other tokens
    shared = decode(ck.model, ck.tokenizer, frames, prompts, opts, [EOS_ID], generator=torch.Generator().manual_seed(1))
    assert shared != alone  # one stream for the whole batch: the rows' draws depend on each other


def test_pass_runner_hands_each_row_its_passs_generator(monkeypatch):
    """Passes with their own generator get it row by row; passes without share the context's (one object)."""
    from types import SimpleNamespace

    import torch

    import engine.decoding
    from engine.decoding import DecodingOptions
    from engine.passes import PassContext, PassRunner

    from .test_passes import Chain, CountingEncoder

    seen = []

    def fake_decode(model, tokenizer, frames, prompts, opts, stop, **kw):
        seen.append(kw["generator"])
        return [[7] for _ in prompts]

    monkeypatch.setattr(engine.decoding, "decode", fake_decode)
    shared = torch.Generator()
    context = PassContext(SimpleNamespace(model=CountingEncoder(), tokenizer=None), torch.device("cpu"),
                          generator=shared)
    own = [torch.Generator(), torch.Generator()]
    passes = [Chain(1, 1), Chain(2, 1)]
    for p, g in zip(passes, own):
        p.generator = g
    list(PassRunner(context, DecodingOptions(), batch_size=4).run([*passes, Chain(3, 1)]))
    assert seen[0] == [own[0], own[1], shared]
    list(PassRunner(context, DecodingOptions(), batch_size=4).run([Chain(4, 1), Chain(5, 1)]))
    assert seen[1] is shared
