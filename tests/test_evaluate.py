"""engine.evaluate on real beatmaps of all four modes: a map against itself and against damaged copies."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.beatmap import HoldNote, Slider, Spinner, read_beatmap
from engine.evaluation import evaluate, evaluate_all, pair_paths, rhythm_times
from mapperator_app import cli, logs
from tests.conftest import BEATMAPS, REPO, need

OSU = "Soleily - Renatus (Gamu) [Insane].osu"
TAIKO = "Soleily - Renatus (MMzz) [Oni].osu"
CATCH = "Soleily - Renatus (Deif) [Rain].osu"
MANIA = "Soleily - Renatus (ExPew) [Another].osu"
ALL_MODES = [OSU, TAIKO, CATCH, MANIA]
SAMPLES = [f"sample-beatmap-{mode}.osu" for mode in ("osu", "taiko", "catch", "mania")]


def load(name: str):
    return read_beatmap(need(BEATMAPS / name))


def shift_objects(beatmap, ms: float):
    """A copy with every object (and spinner/hold end) moved by ``ms``; timing left alone."""
    def moved(obj):
        changes = {"time": obj.time + ms}
        if isinstance(obj, (Spinner, HoldNote)):
            changes["end_time"] = obj.end_time + ms
        return dataclasses.replace(obj, **changes)

    damaged = beatmap.copy()
    damaged.hit_objects = [moved(o) for o in beatmap.hit_objects]
    return damaged


def drop_every_other_time(beatmap):
    """A copy without the objects starting at every second distinct active time (chords go together)."""
    dropped = set(rhythm_times(beatmap)[1::2].tolist())
    damaged = beatmap.copy()
    damaged.hit_objects = [o for o in beatmap.hit_objects if math.trunc(o.time + 1e-5) not in dropped]
    return damaged


def edit_red_lines(beatmap, edit):
    damaged = beatmap.copy()
    damaged.timing_points = [edit(tp) if tp.uninherited else tp for tp in beatmap.timing_points]
    return damaged


def red_lines(beatmap):
    return beatmap.control_points().uninherited_points


@pytest.mark.parametrize("name", ALL_MODES + SAMPLES)
def test_a_map_against_itself_is_perfect(name):
    result = evaluate(need(BEATMAPS / name), need(BEATMAPS / name))
    assert result.active_rhythm.f1 == result.passive_rhythm.f1 == 1.0
    assert result.active_rhythm.false_positives == result.active_rhythm.false_negatives == 0
    assert result.bpm_error == 0.0 and result.offset_error_ms == 0.0
    assert result.star_rating_diff == 0.0 and result.reference_star_rating > 0
    assert result.drain_time_diff_s == 0.0 and result.reference_drain_time_s > 0


@pytest.mark.parametrize("name", ALL_MODES + SAMPLES)
def test_dropping_every_other_time_halves_active_recall(name):
    reference = load(name)
    count = len(rhythm_times(reference))
    result = evaluate(drop_every_other_time(reference), reference)
    assert result.active_rhythm.recall == (count - count // 2) / count
    assert result.active_rhythm.true_positives == count - count // 2
    assert result.active_rhythm.precision == 1.0
    assert result.passive_rhythm.precision == 1.0 and result.passive_rhythm.recall < 1.0
    assert result.star_rating_diff < 0  # half the objects: an easier map


def test_recall_is_exactly_half_for_an_even_count():
    reference = load(CATCH)
    assert len(rhythm_times(reference)) % 2 == 0
    assert evaluate(drop_every_other_time(reference), reference).active_rhythm.recall == 0.5


@pytest.mark.parametrize("name", [OSU, TAIKO, *SAMPLES])  # maps whose active times are > 30 ms apart
def test_objects_20ms_late_match_nothing(name):
    reference = load(name)
    assert np.diff(rhythm_times(reference)).min() > 30
    result = evaluate(shift_objects(reference, 20), reference)
    assert result.active_rhythm.f1 == result.passive_rhythm.f1 == 0.0
    assert result.active_rhythm.false_positives == len(rhythm_times(reference))
    assert result.bpm_error == 0.0 and result.offset_error_ms == 0.0 and result.drain_time_diff_s == 0.0


@pytest.mark.parametrize("name", [CATCH, MANIA])  # 1/12 notes (27 ms apart): a 20 ms shift lands a few near others
def test_objects_20ms_late_on_dense_maps_match_almost_nothing(name):
    reference = load(name)
    assert 0 < evaluate(shift_objects(reference, 20), reference).active_rhythm.f1 < 0.01


@pytest.mark.parametrize("name", ALL_MODES)
def test_tolerance_is_10ms_inclusive(name):
    reference = load(name)
    assert evaluate(shift_objects(reference, 10), reference).active_rhythm.f1 == 1.0
    assert evaluate(shift_objects(reference, -10), reference).active_rhythm.f1 == 1.0
    if np.diff(rhythm_times(reference)).min() > 21:
        assert evaluate(shift_objects(reference, 11), reference).active_rhythm.f1 == 0.0


def test_passive_rhythm_counts_slider_ends_and_spinner_ends_but_not_hold_tails():
    osu = load(OSU)
    slider = next(o for o in osu.hit_objects if isinstance(o, Slider) and o.slides > 1)
    info = osu.slider_info(slider)
    ends = {math.trunc(slider.time + info.span_duration * k + 1e-5) for k in range(1, slider.slides + 1)}
    assert ends <= set(rhythm_times(osu, passive=True).tolist())
    assert not ends & set(rhythm_times(osu).tolist())
    spinner = next(o for o in osu.hit_objects if isinstance(o, Spinner))
    assert int(spinner.end_time) in rhythm_times(osu, passive=True)
    assert int(spinner.time) not in rhythm_times(osu, passive=True)

    mania = load("sample-beatmap-mania.osu")
    holds = [o for o in mania.hit_objects if isinstance(o, HoldNote)]
    assert holds
    assert np.array_equal(rhythm_times(mania, passive=True), rhythm_times(mania))
    assert {int(h.time) for h in holds} <= set(rhythm_times(mania).tolist())


def test_bpm_error_of_a_single_red_line_is_the_bpm_difference():
    reference = load("sample-beatmap-osu.osu")
    (line,) = red_lines(reference)
    assert line.bpm == pytest.approx(170)
    damaged = edit_red_lines(reference, lambda tp: dataclasses.replace(tp, beat_length=60000 / 180))
    result = evaluate(damaged, reference)
    assert result.bpm_error == pytest.approx(10, abs=1e-9)
    assert result.offset_error_ms == 0.0  # same offset


@pytest.mark.parametrize("name", ALL_MODES)
def test_bpm_error_of_one_changed_red_line_is_weighted_by_its_share_of_the_song(name):
    reference = load(name)
    lines = red_lines(reference)
    assert [round(tp.time) for tp in lines] == [956, 119637, 161834, 206669]
    second = lines[1]
    damaged = edit_red_lines(reference, lambda tp: dataclasses.replace(tp, beat_length=60000 / (second.bpm + 12))
                             if tp.time == second.time else tp)
    song = max(o.time for o in reference.hit_objects)  # the song is measured up to the last object start
    by_hand = 12 * math.sqrt((lines[2].time - second.time) / song)
    assert evaluate(damaged, reference).bpm_error == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("name", ALL_MODES + SAMPLES)
def test_every_red_line_7ms_late_gives_offset_error_7(name):
    reference = load(name)
    damaged = edit_red_lines(reference, lambda tp: dataclasses.replace(tp, time=tp.time + 7))
    result = evaluate(damaged, reference)
    assert result.offset_error_ms == pytest.approx(7, abs=1e-9)
    assert result.active_rhythm.f1 == 1.0  # objects did not move


def test_offset_error_is_the_mean_over_the_reference_red_lines():
    reference = load(OSU)
    first = red_lines(reference)[0].time
    damaged = edit_red_lines(reference,
                             lambda tp: dataclasses.replace(tp, time=tp.time - 7) if tp.time == first else tp)
    assert evaluate(damaged, reference).offset_error_ms == pytest.approx(7 / 4, abs=1e-9)


def test_offset_error_measures_beat_phase_not_which_beat():
    reference = load("sample-beatmap-taiko.osu")
    (line,) = red_lines(reference)
    two_beats_later = edit_red_lines(reference, lambda tp: dataclasses.replace(tp, time=tp.time + 2 * tp.beat_length))
    assert evaluate(two_beats_later, reference).offset_error_ms == pytest.approx(0, abs=1e-9)
    half_beat = edit_red_lines(reference, lambda tp: dataclasses.replace(tp, time=tp.time + tp.beat_length / 2))
    assert evaluate(half_beat, reference).offset_error_ms == pytest.approx(line.beat_length / 2, abs=1e-9)


def test_drain_time_leaves_out_gaps_over_8_seconds():
    reference = load(OSU)
    starts = sorted(o.time for o in reference.hit_objects)
    assert (starts[0], starts[-1]) == (956, 206751)
    # Its one long gap: 21 s from the spinner at 1:59.719 to the next object, at 2:20.735.
    assert [(a, b) for a, b in zip(starts, starts[1:]) if b - a > 8000] == [(119719, 140735)]
    assert evaluate(reference, reference).reference_drain_time_s == (206751 - 956 - (140735 - 119719)) / 1000

    damaged = reference.copy()  # a second long gap: nothing from 1:00 to 1:15
    damaged.hit_objects = [o for o in reference.hit_objects if not 60000 <= o.time <= 75000]
    before = max(t for t in starts if t < 60000)
    after = min(t for t in starts if t > 75000)
    assert evaluate(damaged, reference).drain_time_diff_s == pytest.approx(-(after - before) / 1000, abs=1e-9)


def test_in_memory_maps_are_rated_from_their_content():
    reference = load(OSU)
    easier = drop_every_other_time(reference)
    assert easier.path == reference.path  # a copy keeps the source path ...
    result = evaluate(easier, reference)  # ... but its own objects are rated
    assert result.generated_star_rating < result.reference_star_rating
    assert result.generated == result.reference == OSU


def test_engine_facade_exports_evaluate():
    assert engine.evaluate is evaluate and engine.evaluate_all is evaluate_all


# ---------------------------------------------------------------------------------- pairs
@pytest.fixture
def folders(tmp_path):
    generated, references = tmp_path / "generated", tmp_path / "references"
    generated.mkdir()
    references.mkdir()
    for name in (OSU, TAIKO):
        shutil.copy(need(BEATMAPS / name), references / name)
    shutil.copy(need(BEATMAPS / OSU), generated / OSU)
    # A "generated" taiko map that is the reference with every other time missing.
    damaged = drop_every_other_time(load(TAIKO))
    (generated / TAIKO).write_text(damaged.to_text(), encoding="utf-8")
    return generated, references


def test_folders_pair_by_file_name_and_average(folders):
    generated, references = folders
    report = evaluate_all(generated, references)
    assert [(p.generated, p.reference) for p in report.pairs] == [(OSU, OSU), (TAIKO, TAIKO)]
    osu, taiko = report.pairs
    assert osu.active_rhythm.f1 == 1.0 and taiko.active_rhythm.recall == pytest.approx(0.5, abs=1e-3)
    assert report.mean["active_rhythm_f1"] == pytest.approx((1.0 + taiko.active_rhythm.f1) / 2)
    assert report.mean["star_rating_diff"] == pytest.approx(taiko.star_rating_diff / 2)
    assert report.to_dict()["count"] == 2


def test_a_folder_against_one_reference_file(folders):
    generated, references = folders
    pairs = pair_paths(generated, references / OSU)
    assert [(g.name, r.name) for g, r in pairs] == [(OSU, OSU), (TAIKO, OSU)]
    assert pair_paths(generated / TAIKO, references) == [(generated / TAIKO, references / TAIKO)]


def test_pairing_errors_name_the_problem(folders, tmp_path):
    generated, references = folders
    (references / TAIKO).unlink()
    with pytest.raises(engine.BeatmapError, match="no reference of the same file name for .*Oni"):
        pair_paths(generated, references)
    with pytest.raises(engine.BeatmapError, match="no such file or folder"):
        pair_paths(tmp_path / "nowhere", references)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(engine.BeatmapError, match="holds no .osu files"):
        pair_paths(empty, references)


# ------------------------------------------------------------------------------------ command
HEADLINE = ("active_rhythm_f1", "passive_rhythm_f1", "bpm_error", "offset_error_ms", "star_rating_diff",
            "drain_time_diff_s")


@pytest.fixture
def log_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "log_dir", lambda: tmp_path / "logs")


def mapperator_command() -> list[str]:
    """The installed ``mapperator`` script beside this Python, else the module it runs."""
    script = Path(sys.executable).parent / "mapperator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mapperator_app.cli"]


def test_command_prints_one_json_object_for_a_pair(tmp_path):
    reference = need(BEATMAPS / "sample-beatmap-osu.osu")
    late = tmp_path / "late.osu"
    late.write_text(edit_red_lines(load("sample-beatmap-osu.osu"),
                                   lambda tp: dataclasses.replace(tp, time=tp.time + 7)).to_text(), encoding="utf-8")
    out = subprocess.run([*mapperator_command(), "evaluate", str(late), str(reference), "--json"], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, XDG_STATE_HOME=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(HEADLINE) <= set(result) and result["count"] == 1
    assert result["active_rhythm_f1"] == 1.0 and result["offset_error_ms"] == pytest.approx(7)
    assert result["pairs"][0]["generated"] == "late.osu"
    assert result["pairs"][0]["reference"] == "sample-beatmap-osu.osu"


def test_command_json_for_folders_holds_the_means_and_every_pair(folders, capsys, log_folder):
    generated, references = folders
    assert cli.main(["evaluate", str(generated), str(references), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    report = evaluate_all(generated, references)
    assert result == json.loads(json.dumps(report.to_dict()))
    assert [p["generated"] for p in result["pairs"]] == [OSU, TAIKO]
    assert 0.5 < result["active_rhythm_f1"] < 1.0


def test_command_table_has_a_row_per_pair_and_the_mean(folders, capsys, log_folder):
    generated, references = folders
    assert cli.main(["evaluate", str(generated), str(references / OSU)]) == 0
    out = capsys.readouterr().out
    assert f"against {OSU}" in " ".join(out.split())
    lines = out.splitlines()
    rows = [line.split() for line in lines if line.strip().startswith(("Soleily", "mean of"))]
    assert [row[:2] for row in rows] == [["Soleily", "-"], ["Soleily", "-"], ["mean", "of"]]
    assert rows[0][-6:] == ["1.000", "1.000", "0.00", "0.0", "+0.00", "+0.0"]  # the map against itself
    assert rows[2][2] == "2"


@pytest.mark.parametrize("make_args, message", [
    (lambda d: ["missing.osu", str(d / OSU)], "no such file or folder"),
    (lambda d: [str(REPO / "README.md"), str(d / OSU)], "not an osu! beatmap"),
])
def test_command_errors_are_one_line(make_args, message, folders, capsys, log_folder):
    _, references = folders
    assert cli.main(["evaluate", *make_args(references)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err and "Traceback" not in err
