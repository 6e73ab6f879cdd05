"""The post-processor against upstream's own outputs.

- round trips (README §6): the event list upstream's post-processor got for a real map must give
  the .osu it wrote;
- end-to-end runs (README §4, §9): the recorded token ids of every generate call, absorbed through
  engine.prompt, with timing rebuilt by our generate_timing between the passes (its result is in
  the next pass's prompt, which must equal the recorded one), must give the recorded generated.osu.

Beatmaps are compared through our parser: timing points, hit objects, difficulty, metadata except
Tags, the [General] values except SampleSet (upstream writes an invalid "All") and combo colours.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.audio import load_audio
from engine.beatmap import Beatmap, encode_beatmap, parse_beatmap, read_beatmap
from engine.events import timing_events
from engine.postprocess import (BeatmapSettings, PostprocessOptions, build_beatmap, generate_timing, postprocess,
                                resnap_events, settings_from_beatmap, timing_from_contexts)
from engine.presets import PRESETS
from engine.prompt import Conditions, ContextStream, Embeds, GenerationRun
from engine.tokenizer import ContextType, Event, EventType, Tokenizer
from engine.windows import WindowLayout
from tests.conftest import UPSTREAM, need
from tests.goldens import all_runs

C = ContextType


def events_of(pairs) -> list[Event]:
    return [Event(EventType(item[0]), item[1]) for item in pairs]


def snapped_times(events: list[Event], skip_after=None) -> list[tuple[int, int]]:
    """(time, divisor) of every TIME_SHIFT followed by a SNAPPING token, except those right after
    an event of type ``skip_after``."""
    return [(events[i].value, events[i + 1].value) for i in range(len(events) - 1)
            if events[i].type == EventType.TIME_SHIFT and events[i + 1].type == EventType.SNAPPING
            and not (skip_after and i > 0 and events[i - 1].type == skip_after)]


def assert_same_beatmap(ours: Beatmap, osu: Path) -> None:
    """``ours`` written by our encoder and read back equals upstream's file as our parser reads it."""
    mine = parse_beatmap(encode_beatmap(ours))
    theirs = read_beatmap(need(osu))
    assert len(mine.timing_points) == len(theirs.timing_points)
    for i, (a, b) in enumerate(zip(mine.timing_points, theirs.timing_points)):
        assert a == b, f"timing point {i}"
    assert len(mine.hit_objects) == len(theirs.hit_objects)
    for i, (a, b) in enumerate(zip(mine.hit_objects, theirs.hit_objects)):
        assert a == b, f"hit object {i}"
    assert mine.difficulty == theirs.difficulty
    assert {**vars(mine.metadata), "tags": None} == {**vars(theirs.metadata), "tags": None}
    assert {**vars(mine.general), "sample_set": None} == {**vars(theirs.general), "sample_set": None}
    assert theirs.general.sample_set == "All" and mine.general.sample_set == "Normal"
    assert mine.colours.combo == theirs.colours.combo
    assert mine.events.media == theirs.events.media


# --- round trips --------------------------------------------------------------------------------------------
ROUNDTRIPS = [(v, m) for v in ("v30", "v31", "v32") for m in ("visual_spacing_test12", "kimi_no_bouken")]


@pytest.mark.parametrize("version, name", ROUNDTRIPS, ids=[f"{v}-{m}" for v, m in ROUNDTRIPS])
def test_roundtrip_golden(version, name):
    case = json.loads(need(UPSTREAM / version / "roundtrip" / f"{name}.roundtrip.json").read_text())
    preset = PRESETS[version]
    options = PostprocessOptions.for_preset(preset)
    assert options.types_first == case["types_first"] and case["resnap_events"]
    events = events_of(case["postprocessor_input_events"])
    tokenized = json.loads(need(UPSTREAM / "tokenization" / f"{version}.json").read_text())[f"{name}.osu"]
    if preset.data.add_timing:
        # v30: the beat events inside the map stream give the timing
        timing = generate_timing(events, types_first=options.types_first)
    else:
        # v31/v32: the TIMING context upstream tokenized from the same map
        timing = generate_timing(events_of(tokenized["timing_events"]), types_first=options.types_first)
    # upstream resnapped the map's exact times onto this timing: ours must move them the same way
    raw = events_of(tokenized["map_events"])
    assert snapped_times(resnap_events(raw, timing)) == snapped_times(events, EventType.KIAI)
    assert resnap_events(events, timing) == events

    settings = BeatmapSettings(audio_filename="click150.wav", version=preset.beatmap_version)
    beatmap = build_beatmap(events, settings, options, timing)
    assert_same_beatmap(beatmap, UPSTREAM / version / "roundtrip" / f"{name}.roundtrip.osu")


# --- end-to-end runs ----------------------------------------------------------------------------------------
# every run but the random-weight pipeline_greedy ones (their prompts are replayed by test_prompt, v30's
# stream by the test below)
RUNS = [run for run in all_runs() if run[1] != "pipeline_greedy"]
CONDITION_KEYS = ("gamemode", "difficulty", "mapper_id", "year", "hitsounded", "circle_size", "slider_multiplier",
                  "keycount", "hold_note_ratio", "scroll_speed_ratio", "hp_drain_rate", "overall_difficulty",
                  "approach_rate", "slider_tick_rate")


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def _row(x):
    return x[0] if x and isinstance(x[0], list) else x


class Replay:
    """One recorded run: its settings, and its generate calls replayed through engine.prompt."""

    def __init__(self, base: str, name: str):
        self.dir = need(UPSTREAM / base / name)
        self.preset = PRESETS[base.split("/")[-1]]
        self.checkpoint = UPSTREAM / base / "checkpoint"
        run = json.loads((self.dir / "run.json").read_text())
        settings = {k: _value(v) for k, v in (o.split("=", 1) for o in run["overrides"])}
        settings.update({k: v for k, v in run["resolved"].items() if v is not None})
        self.settings = settings
        self.output_type = [C(x) for x in run["output_type"]]
        self.calls = json.loads((self.dir / "generate_calls.json").read_text())
        audio_dir = UPSTREAM / ("trained/audio" if base.startswith("trained") else "audio")
        self.audio = need(audio_dir / Path(settings["audio_path"]).name)
        beatmap = settings.get("beatmap_path")
        self.reference = read_beatmap(need(audio_dir / Path(beatmap).name)) if beatmap else None

    def play(self, run: GenerationRun, pending: list) -> None:
        for call in run.calls():
            recorded = pending.pop(0)
            assert call.prompt == _row(recorded["prompt"]), f"prompt of call {len(self.calls) - len(pending) - 1}"
            run.absorb(call, _row(recorded["generated"]))

    def beatmap(self) -> Beatmap:
        flags = self.preset.data
        tok = Tokenizer.from_file(need(self.checkpoint / "tokenizer.json"))
        layout = WindowLayout.for_preset(self.preset, self.settings["lookback"], self.settings["lookahead"])
        seg = layout.segment(load_audio(self.audio, layout.sample_rate))
        segments = (layout, list(seg.starts_ms), seg.song_length_ms)
        cond = Conditions(**{k: self.settings[k] for k in CONDITION_KEYS if k in self.settings})
        embeds = Embeds.from_config(json.loads((self.checkpoint / "config.json").read_text()))
        options = PostprocessOptions.for_preset(self.preset, snap_near_perfect_overlaps=self.settings[
            "snap_near_perfect_overlaps"], resnap_events=self.settings["resnap_events"])
        pending = list(self.calls)
        output_type = list(self.output_type)
        given, timing = {}, None
        if self.reference is not None:  # in_context=[TIMING]: timing from the reference map
            timing = [p for p in self.reference.timing_points if p.uninherited]
            given[C.TIMING] = ContextStream(C.TIMING, timing_events(self.reference, flags,
                                                                    song_length_ms=seg.song_length_ms), given=True)
        elif any(C.TIMING in t.outputs for t in flags.context_templates):
            # upstream's timing pass, then its timing re-tokenized for the other contexts
            run = GenerationRun(tok, flags, segments, cond, requested=[C.TIMING], embeds=embeds)
            self.play(run, pending)
            timing = timing_from_contexts(run.results(), options)
            given[C.TIMING] = ContextStream(C.TIMING, timing_events(timing, flags,
                                                                    song_length_ms=seg.song_length_ms), given=True)
            output_type.remove(C.TIMING)
        run = GenerationRun(tok, flags, segments, cond, requested=output_type, given=given, embeds=embeds)
        self.play(run, pending)
        assert not pending

        mode = self.settings.get("gamemode", 0)
        if self.reference is not None:
            settings = settings_from_beatmap(self.reference, audio_filename=self.audio.name,
                                             creator="Mapperatorinator", version=self.preset.beatmap_version)
        else:
            settings = BeatmapSettings(audio_filename=self.audio.name, version=self.preset.beatmap_version, mode=mode,
                                       circle_size=self.settings["keycount"] if mode == 3 else 4)
        return postprocess(run.results(), settings, options, timing=timing)


@pytest.mark.parametrize("base, name", RUNS, ids=[f"{b}/{n}" for b, n in RUNS])
def test_pipeline_golden(base, name):
    replay = Replay(base, name)
    assert_same_beatmap(replay.beatmap(), replay.dir / "generated.osu")


def test_v30_greedy_without_objects_does_not_crash():
    """Upstream's post-processor raised IndexError on this stream (no object events at all)."""
    replay = Replay("v30", "pipeline_greedy")
    beatmap = replay.beatmap()
    assert beatmap.hit_objects == [] and beatmap.timing_points == []
