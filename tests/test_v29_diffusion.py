"""V29 with ``generate_positions=true``: the map pass's events go through osu-diffusion (engine.diffusion) after the
resnap and before the beatmap is built, as upstream's inference.py does.

The tiny random V29 (tests/fixtures/upstream_v29) maps no objects, so the map pass here returns a real map's
events on V29's 32-px grid (what its decoder gives) and everything after it runs for real: the CLI, the resnap,
the refinement with the tiny DiT of tests/fixtures/diffusion, the post-processor and the written .osu."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from engine.beatmap import read_beatmap
from engine.errors import ModelError, OptionError
from engine.events import EventStream, context_events
from engine.presets import PRESETS
from engine.tokenizer import ContextType, Event, EventType
from tests.conftest import BEATMAPS, UPSTREAM, need
from tests.test_v29 import CHECKPOINT, song_cut

DIFFUSION = Path(__file__).parent / "fixtures" / "diffusion" / "checkpoint"
MAP = "Himeringo - Yotsuya-san ni Yoroshiku (RLC) [Winber1's Extreme].osu"
SHIFT_MS = 21000  # the map's first objects (22.4 s on) moved into the 10 s song cut
C = ContextType


@pytest.fixture(scope="module")
def diff_ckpt(tmp_path_factory) -> Path:
    """The fixture's pickles converted once (the tiny DiT's width is no published size, so its head count is given
    here); a folder of converted files is a valid diff_ckpt."""
    from engine.diffusion import load_diffusion_model

    return load_diffusion_model(DIFFUSION, cache_dir=tmp_path_factory.mktemp("diffusion"), heads=2).folder


@lru_cache(maxsize=1)
def grid_map_stream() -> EventStream:
    """A real map's MAP context from 1.4 s to 4 s, in pixels on V29's grid (the map pass's finished stream)."""
    from engine.prompt import rescale_positions

    flags = PRESETS["v29"].data
    beatmap = read_beatmap(need(BEATMAPS / MAP))
    stream = context_events(C.MAP, beatmap, flags)
    events, times = [], []
    for event, time in zip(stream.events, stream.times):
        if time - SHIFT_MS > 4000:  # a few seconds of objects keep the refinement short
            break
        events.append(Event(EventType.TIME_SHIFT, event.value - SHIFT_MS) if event.type == EventType.TIME_SHIFT
                      else event)
        times.append(time - SHIFT_MS)
    return rescale_positions(events, times, flags)


@pytest.fixture
def map_pass(monkeypatch):
    """The map pass returns the real map's grid stream (and records that it ran)."""
    from engine.generation import _Job

    ran = []

    def fake_pass(self, ck, conditions, segments, wanted, given, label):
        ran.append(wanted)
        return {C.MAP: EventStream(list(grid_map_stream().events), list(grid_map_stream().times))}

    monkeypatch.setattr(_Job, "generate_pass", fake_pass)
    return ran


def _generate(tmp_path: Path, name: str, *words: str) -> Path:
    from mapperator_app.cli import main

    out = tmp_path / name
    out.mkdir()
    code = main(["generate", f"audio_path={song_cut(tmp_path)}", f"output_path={out}", f"model_path={CHECKPOINT}",
                 f"beatmap_path={need(UPSTREAM / 'audio' / 'click150_timing.osu')}", "in_context=[TIMING]",
                 "gamemode=0", "difficulty=5.0", "seed=7", "device=cpu", "precision=fp32", *words])
    assert code == 0
    return next(out.glob("*.osu"))


def _positions(path: Path) -> list[tuple[int, int]]:
    return [(round(o.x), round(o.y)) for o in read_beatmap(path).hit_objects]


@pytest.mark.slow
def test_generate_positions_refines_the_grid_positions_through_the_cli(tmp_path, diff_ckpt, map_pass):
    grid = _positions(_generate(tmp_path, "grid", "generate_positions=false", f"diff_ckpt={diff_ckpt}"))
    refined = _positions(_generate(tmp_path, "refined", "generate_positions=true", f"diff_ckpt={diff_ckpt}"))
    assert len(map_pass) == 2 and len(grid) == len(refined) >= 8
    assert all((x - 16) % 32 == 0 and (y - 16) % 32 == 0 for x, y in grid)  # V29's cell centres
    off_grid = [(x, y) for x, y in refined if (x - 16) % 32 or (y - 16) % 32]
    assert len(off_grid) > len(refined) // 2
    assert all(0 <= x <= 512 and 0 <= y <= 384 for x, y in refined)


@pytest.mark.slow
def test_v29_refines_by_default_and_diff_cfg_scale_changes_the_result(tmp_path, diff_ckpt, map_pass):
    # the guidance pushes from the unconditioned vector (no descriptors) towards the asked descriptor
    plain = _positions(_generate(tmp_path, "plain", f"diff_ckpt={diff_ckpt}", "descriptors=[streams]"))
    guided = _positions(_generate(tmp_path, "guided", f"diff_ckpt={diff_ckpt}", "descriptors=[streams]",
                                  "diff_cfg_scale=3"))
    assert any((x - 16) % 32 or (y - 16) % 32 for x, y in plain)  # v29 refines by default
    assert guided != plain


def test_refinement_reports_its_stage_and_honours_cancel(tmp_path, diff_ckpt, map_pass):
    import threading

    from engine.errors import Cancelled
    from engine.generation import generate
    from engine.options import GenerateOptions

    opts = GenerateOptions(audio_path=str(song_cut(tmp_path)), output_path=str(tmp_path), model_path=str(CHECKPOINT),
                           beatmap_path=str(need(UPSTREAM / "audio" / "click150_timing.osu")), in_context=("TIMING",),
                           gamemode=0, seed=7, device="cpu", precision="fp32", diff_ckpt=str(diff_ckpt))
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append((str(p.stage), p.fraction))
        if str(p.stage) == "Refining positions" and len([s for s in seen if s[0] == "Refining positions"]) == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        generate(opts, progress=progress, cancel=cancel)
    fractions = [f for stage, f in seen if stage == "Refining positions"]
    assert len(fractions) == 3 and fractions == sorted(fractions)
    assert not list(tmp_path.glob("*.osu"))


def test_generate_positions_on_v32_is_refused_clearly(tmp_path, upstream):
    from engine.generation import generate
    from engine.options import GenerateOptions

    with pytest.raises(OptionError, match="generate_positions=true .* only for v29"):
        generate(GenerateOptions(audio_path=str(song_cut(tmp_path)), output_path=str(tmp_path),
                                 model_path=str(need(upstream / "v32" / "checkpoint")), generate_positions=True, device="cpu"))


def test_a_missing_diff_ckpt_is_a_clear_model_error(tmp_path, map_pass):
    from engine.generation import generate
    from engine.options import GenerateOptions

    missing = tmp_path / "no-such-diffusion"
    with pytest.raises(ModelError, match="no-such-diffusion"):
        generate(GenerateOptions(audio_path=str(song_cut(tmp_path)), output_path=str(tmp_path),
                                 model_path=str(CHECKPOINT), beatmap_path=str(need(UPSTREAM / "audio" /
                                                                                 "click150_timing.osu")),
                                 in_context=("TIMING",), diff_ckpt=str(missing), device="cpu"))
    assert not map_pass  # refused before the map pass


def test_the_generate_tab_ticks_super_timing_for_v29_as_its_default(tmp_path):
    """The tab used to send super_timing=false for every model, turning off v29's default."""
    from mapperator_app.settings import Settings
    from mapperator_app.ui import AppContext, build_app
    from mapperator_app.worker import Worker

    demo = build_app(AppContext(Worker(), Settings(tmp_path / "settings.json")))
    follow = [f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "super_timing_default"]
    assert len(follow) == 1
    assert follow[0]("v29")["value"] is True and follow[0]("v32")["value"] is False
    assert "value" not in follow[0](str(tmp_path))  # a folder: left as the user set it


def test_an_unreachable_hub_diff_ckpt_is_a_clear_model_error(tmp_path, monkeypatch, map_pass):
    """The default diff_ckpt is a Hub repo: offline and not cached, v29 says what to do instead of a traceback."""
    import engine.checkpoint
    from engine.generation import generate
    from engine.options import GenerateOptions

    monkeypatch.setattr(engine.checkpoint, "hub_online", lambda *a, **k: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match="OliBomby/osu-diffusion-v2 .* not downloaded yet .* diff_ckpt"):
        generate(GenerateOptions(audio_path=str(song_cut(tmp_path)), output_path=str(tmp_path),
                                 model_path=str(CHECKPOINT), beatmap_path=str(need(UPSTREAM / "audio" /
                                                                                 "click150_timing.osu")),
                                 in_context=("TIMING",), device="cpu"))
    assert not map_pass


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_a_v29_job_runs_the_dit_in_its_precision(tmp_path, diff_ckpt, map_pass, monkeypatch, precision):
    """precision=auto (int8 on a CPU) runs the DiT in bf16 where the CPU multiplies bf16, else in int8; fp32 keeps
    the published numbers. The loaded DiT is what the refinement then used."""
    import torch

    from engine.diffusion import diffusion_precision, refine
    from engine.options import GenerateOptions

    loaded = []
    real = refine.load_diffusion_model
    monkeypatch.setattr(refine, "load_diffusion_model", lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    refine.cached_diffusion_model.cache_clear()
    opts = GenerateOptions(audio_path=str(song_cut(tmp_path)), output_path=str(tmp_path), model_path=str(CHECKPOINT),
                           beatmap_path=str(need(UPSTREAM / "audio" / "click150_timing.osu")), in_context=("TIMING",),
                           gamemode=0, seed=7, device="cpu", precision=precision, diff_ckpt=str(diff_ckpt))
    from engine.generation import generate

    try:
        generate(opts)
    finally:
        refine.cached_diffusion_model.cache_clear()
    expected = "fp32" if precision == "fp32" else diffusion_precision(torch.device("cpu"), "int8")
    assert [m.precision for m in loaded] == [expected]
    refined = _positions(next(tmp_path.glob("*.osu")))
    assert any((x - 16) % 32 or (y - 16) % 32 for x, y in refined)
