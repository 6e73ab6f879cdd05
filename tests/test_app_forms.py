"""The app's conversions: form values -> GenerateOptions, suggestions/timing -> tables, progress HTML."""
from __future__ import annotations

import pytest

import engine
from engine.beatmap import read_beatmap
from engine.errors import OptionError
from engine.suggestions import Severity, Source, Suggestion
from mapperator_app import forms
from mapperator_app.worker import Job, JobState
from tests.conftest import BEATMAPS, UPSTREAM, need


def test_generate_options_from_form_values():
    opts = forms.generate_options({
        "audio_path": "  /songs/My Song [TV Size].mp3 ", "beatmap_path": "", "model_path": "v32", "gamemode": "mania",
        "difficulty": "5.5", "year": "2023", "mapper_id": "12345 (someone)", "descriptors": ["style/clean", "jump aim"],
        "negative_descriptors": [], "cfg_scale": 3.0, "seed": "", "hitsounded": True, "in_context": ["TIMING"],
        "output_type": [], "start_time": "1000", "end_time": "", "keycount": "7", "title": "", "do_sample": False,
    })
    assert opts.audio_path == "/songs/My Song [TV Size].mp3"
    assert opts.beatmap_path is None and opts.seed is None and opts.end_time is None and opts.title is None
    assert opts.gamemode == 3 and opts.difficulty == 5.5 and opts.year == 2023 and opts.mapper_id == 12345
    assert opts.descriptors == ("style/clean", "jump aim") and opts.negative_descriptors is None
    assert opts.in_context == ("timing",) and opts.output_type is None
    assert opts.cfg_scale == 3.0 and opts.start_time == 1000 and opts.keycount == 7 and opts.do_sample is False


@pytest.mark.parametrize("values, words", [
    ({"difficulty": "hard"}, "difficulty"),
    ({"year": "2023.5"}, "year"),
    ({"mapper_id": "peppy"}, "mapper"),
    ({"gamemode": "piano"}, "game mode"),
    ({"no_such_option": "1"}, "unknown option"),
])
def test_bad_form_values_raise_option_errors_naming_the_field(values, words):
    with pytest.raises(OptionError, match=words):
        forms.generate_options(values)


@pytest.mark.parametrize("value, index", [("osu!", 0), ("Taiko", 1), ("fruits", 2), ("3", 3), (1, 1), ("", None)])
def test_gamemode_index(value, index):
    assert forms.gamemode_index(value) == index


def _suggestions():
    return [
        Suggestion(Source.RULE, "Files", Severity.PROBLEM, "The difficulty has no background."),
        Suggestion(Source.AI, "Rhythm", Severity.WARNING, "Expected snapping 1/1 instead of 1/13", 3430.0,
                   "00:03:430 (3) - "),
        Suggestion(Source.AI, "Hit Sounds", Severity.MINOR, "Expected no clap", 6400.0, "00:06:400 (5) - "),
    ]


def test_suggestion_records_filter_and_table():
    records = forms.suggestion_records(_suggestions())
    assert [r["source"] for r in records] == ["rule", "AI", "AI"]
    assert records[1] == {"time_ms": 3430.0, "timestamp": "00:03:430 (3) - ", "category": "Rhythm",
                          "severity": "warning", "message": "Expected snapping 1/1 instead of 1/13", "source": "AI"}
    assert len(forms.filter_suggestions(records, severities=["problem", "warning"])) == 2
    assert [r["category"] for r in forms.filter_suggestions(records, sources=["AI"], text="clap")] == ["Hit Sounds"]
    assert forms.filter_suggestions(records, categories=["Timing"]) == []
    styler = forms.suggestion_table(records)
    frame = styler.data
    assert list(frame.columns) == forms.SUGGESTION_HEADERS
    assert frame.iloc[1].tolist() == ["0:03.430", "00:03:430 (3) - ", "Rhythm", "warning",
                                      "Expected snapping 1/1 instead of 1/13", "AI"]
    assert frame.iloc[0]["Time"] == ""  # a whole-map finding has no time
    styles = styler._compute().ctx  # (row, col) -> css of the severity cells
    severity_col = forms.SUGGESTION_HEADERS.index("Severity")
    assert ("background-color", forms.SEVERITY_COLOURS["problem"]) in styles[(0, severity_col)]
    assert ("background-color", forms.SEVERITY_COLOURS["minor"]) in styles[(2, severity_col)]


def test_timing_rows_from_a_real_map():
    beatmap = read_beatmap(need(BEATMAPS / "Soleily - Renatus (Gamu) [Insane].osu"))
    rows = forms.timing_rows(beatmap.timing_points)
    assert len(rows) == len(beatmap.timing_points)
    for row, point in zip(rows, beatmap.timing_points):
        assert row[0] == round(point.time, 2)
        if point.uninherited:
            assert row[2] == "red line" and row[3] == pytest.approx(60000 / point.beat_length, abs=1e-3)
            assert row[5] is None
        else:
            assert row[2] == "green line" and row[3] is None
            assert row[5] == pytest.approx(-100 / point.beat_length, abs=1e-3)
        assert row[6] == point.kiai


def test_progress_html_states():
    job = Job(1, "generate", "Generate song.mp3", "", lambda p, c: None)
    assert "Queued: 2 ahead of this one" in forms.progress_html(job, 2)
    job.state, job.fraction, job.stage, job.rate = JobState.RUNNING, 0.42, "Map: window 3 of 10", "600 tokens/s"
    text = forms.progress_html(job)
    assert "width:42.0%" in text and "Map: window 3 of 10" in text and "600 tokens/s" in text
    job.state, job.error = JobState.FAILED, "audio file <x> not found"
    assert "mp-error" in forms.progress_html(job) and "&lt;x&gt;" in forms.progress_html(job)
    assert "No jobs running" in forms.jobs_html([])
    job.state = JobState.RUNNING
    queued = Job(2, "mod", "MaiMod map.osu", "", lambda p, c: None)
    listing = forms.jobs_html([job, queued])
    assert listing.index("Running") < listing.index("Queued") and "MaiMod map.osu" in listing


def test_model_picker_labels_a_folder_with_its_version_and_keeps_the_path_as_value():
    checkpoint = need(UPSTREAM / "trained" / "v31" / "checkpoint")
    choices = forms.model_choices(["v32", "v31"], str(checkpoint))
    assert choices[:2] == [("v32", "v32"), ("v31", "v31")]
    label, value = choices[2]
    assert value == str(checkpoint), "the value is the path, so a saved value restores unchanged"
    assert label == "v31 (…/v31/checkpoint)"
    assert forms.model_choices(["v32"], "v32") == [("v32", "v32")] == forms.model_choices(["v32"], " ")
    assert forms.model_label("no/such-repo") == "no/such-repo"


def test_full_size_models_point_cpu_users_to_v32_mini():
    on_cpu = engine.auto_device_type() == "cpu"  # CI: no GPU
    for version in forms.FULL_SIZE_VERSIONS:
        hint = forms.cpu_speed_hint(version)
        assert bool(hint) == on_cpu
        if on_cpu:
            assert "v32-mini" in hint and version in hint and "a third" in hint
            assert "v32-mini" in forms.cpu_speed_hint(version, "ja") and "3分の1" in forms.cpu_speed_hint(version, "ja")
    for other in ("v32-mini", "v29", "OliBomby/Some-Other-Model", None):
        assert forms.cpu_speed_hint(other) == ""


def test_auto_device_type_is_what_device_auto_picks():
    from engine.runtime import pick_device

    assert pick_device("auto").type == engine.auto_device_type()


def test_every_precision_menu_offers_the_engines_choices_with_auto_selected(tmp_path):
    import gradio as gr

    from mapperator_app.settings import Settings
    from mapperator_app.ui import AppContext, build_app
    from mapperator_app.worker import Worker

    demo = build_app(AppContext(Worker(), Settings(tmp_path / "settings.json")))
    menus = [b for b in demo.blocks.values()
             if isinstance(b, gr.Dropdown) and any(value == "fp32" for _, value in b.choices)]
    assert len(menus) == 3  # Generate, MaiMod, Timing
    for menu in menus:
        assert [value for _, value in menu.choices] == list(engine.PRECISION_CHOICES)
        assert menu.value == "auto"
    assert "int8" in engine.PRECISION_CHOICES


def test_a_picked_beatmap_previews_with_its_song_or_says_why_not(tmp_path):
    from mapperator_app.player import preview_picked

    osu = need(UPSTREAM / "trained" / "audio" / "synth150_std.osu")
    shown = preview_picked(str(osu), "", "maimod", "en")
    assert 'class="mapperator-player" data-player-id="maimod"' in shown and "data-map=" in shown
    missing = preview_picked(str(tmp_path / "nothing.osu"), "", "reference", "en")
    assert "mp-error" in missing and "nothing.osu" in missing and "mapperator-player" not in missing
