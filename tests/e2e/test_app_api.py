"""Every event of the app through its api_name with gradio_client, against a running ``mapperator app``."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from engine.beatmap import read_beatmap
from engine.beatmap_stats import star_rating
from tests.conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
JOB_TIMEOUT = 600  # upper bound only: jobs take seconds on a free machine, much longer on a loaded one

API_NAMES = {
    "/generate", "/cancel_generate", "/checkpoint_lists", "/open_output_folder", "/open_in_osu", "/restore_generate",
    "/preview_reference", "/preview_mod",
    "/mod", "/cancel_mod", "/mod_filter", "/copy_timestamp", "/restore_mod",
    "/timing", "/cancel_timing", "/restore_timing",
    "/models_list", "/download_model", "/cancel_download",
    "/save_settings", "/detect_songs_folder", "/restore_settings", "/jobs",
}


def fixture_song() -> Path:
    return need(TRAINED / "audio" / "synth150.wav")


def v32() -> str:
    return str(need(TRAINED / "v32" / "checkpoint"))


def wait_for_output(job, predicate, timeout: float = JOB_TIMEOUT):
    """The first streamed output for which ``predicate`` holds (None when the job ended without one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for output in job.outputs():
            if predicate(output):
                return output
        if job.done():
            return next((o for o in job.outputs() if predicate(o)), None)
        time.sleep(0.1)
    raise AssertionError(f"no matching output within {timeout} s: {job.outputs()[-1:]}")


def test_every_event_has_an_api_name(client):
    named = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert API_NAMES <= named, API_NAMES - named


def test_the_running_app_answers_only_with_its_key(app_server):
    import httpx

    with httpx.Client(trust_env=False, timeout=60) as plain:
        assert plain.get(app_server.url).status_code == 401
        assert plain.post(app_server.url + "gradio_api/run/jobs", json={"data": []}).status_code == 401
        foreign = {**app_server.headers, "Host": f"evil.example:{app_server.port}"}
        assert plain.get(app_server.url + "config", headers=foreign).status_code == 403
        assert plain.get(app_server.url + "config", headers=app_server.headers).status_code == 200


@pytest.mark.slow
def test_generate_streams_progress_and_returns_the_map(client, app_server, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    job = client.submit(audio_path=str(fixture_song()), model_path=v32(), gamemode="osu!", difficulty="3.2",
                        do_sample=False, seed="7", output_path=str(out), api_name="/generate")
    status, path, summary, timeline, thumbnail, player = job.result(timeout=JOB_TIMEOUT)
    streamed = [o[0] for o in job.outputs()]
    assert any("mp-running" in s and "window" in s and "tokens/s" in s for s in streamed), streamed
    assert "mp-done" in status
    written = Path(path)
    assert written.parent == out and written.suffix == ".osu" and written.is_file()
    stars = star_rating(written)
    assert f"**{stars:.2f}★** (asked for 3.20★)" in summary
    beatmap = read_beatmap(written)
    assert f"| Objects | {len(beatmap.hit_objects)} (" in summary and "seed 7" in summary
    assert Image.open(timeline).size == (960, 96) and Image.open(thumbnail).size == (384, 288)
    assert 'data-player-id="generate"' in player and 'data-audio="/gradio_api/file=' in player
    # the tab remembers what was used, for the next start
    restored = client.predict(api_name="/restore_generate")
    assert restored[0] == str(fixture_song()) and restored[4] == "3.2" and restored[10] == "7"
    # open in osu!: copies the mapset into the configured Songs folder
    songs = tmp_path / "Songs"
    songs.mkdir()
    assert client.predict(str(songs), "", api_name="/save_settings").startswith("Saved")
    message = client.predict(str(written), api_name="/open_in_osu")
    assert "F5" in message
    copied = [p for p in songs.rglob("*") if p.is_file()]
    assert sorted(p.name for p in copied) == sorted([written.name, fixture_song().name])
    assert client.predict("", api_name="/open_output_folder") == "Generate a map first."
    assert "is not a map this app wrote" in client.predict(str(tmp_path / "gone" / "x.osu"),
                                                           api_name="/open_output_folder")


@pytest.mark.slow
def test_cancel_stops_a_running_generation(client, tmp_path, asc_songs):
    out = tmp_path / "out"
    out.mkdir()
    job = client.submit(audio_path=str(asc_songs[0]), model_path=v32(), gamemode="osu!", difficulty="4",
                        do_sample=False, output_path=str(out), api_name="/generate")
    assert wait_for_output(job, lambda o: "window" in o[0]) is not None, job.outputs()[-1:]
    assert "Cancelling" in client.predict(api_name="/cancel_generate")
    status, path, summary, timeline, thumbnail, player = job.result(timeout=JOB_TIMEOUT)
    assert "mp-cancelled" in status and "cancel" in status.lower()
    assert path == "" and summary == "" and timeline is None
    assert list(out.iterdir()) == []
    assert "No jobs running" in client.predict(api_name="/jobs")
    assert "Nothing to cancel" in client.predict(api_name="/cancel_generate")


def test_generate_bad_input_is_reported_in_words(client, tmp_path):
    status, path, *_ = client.predict(audio_path=str(tmp_path / "missing.mp3"), model_path=v32(),
                                      difficulty="hard", api_name="/generate")
    assert "mp-error" in status and "difficulty" in status and path == ""
    status, path, *_ = client.predict(audio_path=str(tmp_path / "missing.mp3"), model_path=v32(),
                                      api_name="/generate")
    assert "mp-error" in status and "not found" in status and "missing.mp3" in status


def test_generate_with_a_model_that_is_not_downloaded_explains_offline(client, tmp_path):
    status, *_ = client.predict(audio_path=str(fixture_song()), model_path="v32", output_path=str(tmp_path),
                                api_name="/generate")
    assert "mp-error" in status and "cannot be reached" in status and "not downloaded yet" in status


def test_checkpoint_lists_come_from_the_checkpoint(client):
    from engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_file(Path(v32()) / "tokenizer.json")
    descriptors, negative, mapper, note = client.predict(v32(), "osu!", [], [], "", api_name="/checkpoint_lists")
    assert f"{len(tokenizer.descriptor_names())} descriptors, {len(tokenizer.mapper_idx)} mappers" in note
    *_, note = client.predict("v32", "taiko", [], [], "", api_name="/checkpoint_lists")
    assert "not downloaded yet" in note


@pytest.mark.slow
def test_mod_table_filter(client):
    damaged = need(TRAINED / "v30" / "maimod" / "std_damaged" / "synth150_std_damaged.osu")
    status, table, summary, categories, player = client.predict(
        beatmap_path=str(damaged), audio_path=str(fixture_song()), model=str(need(TRAINED / "v30" / "checkpoint")),
        api_name="/mod")
    assert "mp-done" in status
    assert table["headers"] == ["Time", "Timestamp", "Category", "Severity", "Message", "Source"]
    rows = table["data"]
    sources = {r[5] for r in rows}
    assert sources == {"AI", "rule"}
    ai = [r for r in rows if r[5] == "AI"]
    assert any(r[1].startswith("00:03:430") and r[2] == "Rhythm" for r in ai), ai  # the circle moved by +30 ms
    assert any(r[1].startswith("00:06:400") and r[2] == "Hit Sounds" for r in ai), ai  # the added clap
    assert f"**Suggestions: {len(rows)}**" in summary
    styling = table["metadata"]["styling"]
    colours = {r[3]: styling[i][3] for i, r in enumerate(rows)}
    assert all("background-color" in css for css in colours.values())
    problems, summary = client.predict(["problem"], ["AI", "rule"], [], "", api_name="/mod_filter")
    assert problems["data"] and all(r[3] == "problem" for r in problems["data"])
    assert f"Showing {len(problems['data'])} after filtering" in summary
    rhythm, _ = client.predict(["problem", "warning", "minor"], ["AI"], ["Rhythm"], "", api_name="/mod_filter")
    assert rhythm["data"] and all(r[2] == "Rhythm" and r[5] == "AI" for r in rhythm["data"])
    assert client.predict(api_name="/restore_mod")[0] == str(damaged)


def test_mod_without_a_beatmap_says_so(client):
    status, *_ = client.predict(beatmap_path="", api_name="/mod")
    assert "mp-error" in status and "choose the beatmap" in status


def test_mod_rules_only_work_without_a_model_and_ai_explains_offline(client):
    damaged = need(TRAINED / "v30" / "maimod" / "std_damaged" / "synth150_std_damaged.osu")
    status, table, summary, _, _ = client.predict(beatmap_path=str(damaged), model="v30", ai=False, rules=True,
                                               api_name="/mod")
    assert "mp-done" in status and table["data"] and {r[5] for r in table["data"]} == {"rule"}
    status, *_ = client.predict(beatmap_path=str(damaged), model="v30", ai=True, api_name="/mod")
    assert "mp-error" in status and "cannot be reached" in status and "not downloaded yet" in status


@pytest.mark.slow
def test_timing_table_and_save(client, tmp_path):
    target = tmp_path / "timing.osu"
    status, table, summary, saved = client.predict(audio_path=str(fixture_song()), model=v32(), seed="1",
                                                   output_path=str(target), api_name="/timing")
    assert "mp-done" in status
    rows = table["data"]
    red = [r for r in rows if r[2] == "red line"]
    assert red and red[0][3] == pytest.approx(150, abs=1)  # synth150 is a 150 BPM song
    assert "150 BPM" in summary
    assert str(target) in saved and sorted(p.name for p in tmp_path.iterdir()) == ["timing.osu"]
    written = read_beatmap(target)
    assert [round(p.time, 2) for p in written.timing_points] == [r[0] for r in rows]
    target.write_text(target.read_text(encoding="utf-8") + "// edited by hand\n", encoding="utf-8")
    client.predict(audio_path=str(fixture_song()), model=v32(), seed="1", output_path=str(tmp_path),
                   api_name="/timing")  # a folder: the .osu gets a map's name there, beside the copied song
    assert len(list(tmp_path.glob("*.osu"))) == 2 and "edited by hand" in target.read_text(encoding="utf-8")
    assert client.predict(api_name="/restore_timing")[0] == str(fixture_song())


def test_timing_v30_needs_super_timing(client):
    status, *_ = client.predict(audio_path=str(fixture_song()), model="v30", api_name="/timing")
    assert "mp-error" in status and "super timing" in status


def test_models_offline(client):
    listing = client.predict(api_name="/models_list")
    assert [r[0] for r in listing["data"]] == ["v29", "v30", "v31", "v32", "v32-mini"]
    assert {r[2] for r in listing["data"]} == {"no"}
    status, listing = client.predict("v32", ["osu!"], api_name="/download_model")
    assert "mp-error" in status and "cannot be reached" in status and "not downloaded yet" in status
    assert "Nothing to cancel" in client.predict(api_name="/cancel_download")


def test_settings_are_checked_and_kept(client, app_server, tmp_path):
    message = client.predict(str(tmp_path / "nope"), "", api_name="/save_settings")
    assert message.startswith("**Not saved:**")
    out = tmp_path / "maps"
    out.mkdir()
    assert client.predict("", str(out), api_name="/save_settings").startswith("Saved")
    assert client.predict(api_name="/restore_settings")[:2] == ("", str(out))
    assert str(out) in app_server.settings_file.read_text(encoding="utf-8")
    found, message = client.predict(api_name="/detect_songs_folder")
    assert "not found" in message  # the app's HOME here has no osu! install


@pytest.mark.slow
def test_jobs_queue_is_visible_and_cancellable(app_server, asc_songs, tmp_path):
    from gradio_client import Client

    first, second = (Client(app_server.url, headers=app_server.headers, verbose=False, analytics_enabled=False)
                     for _ in range(2))
    common = dict(model_path=v32(), gamemode="osu!", do_sample=False, output_path=str(tmp_path), api_name="/generate")
    running = first.submit(audio_path=str(asc_songs[0]), **common)
    assert wait_for_output(running, lambda o: "mp-running" in o[0]) is not None
    waiting = second.submit(audio_path=str(asc_songs[1]), **common)
    assert wait_for_output(waiting, lambda o: "Queued: 1 ahead of this one" in o[0]) is not None
    listing = first.predict(api_name="/jobs")
    assert listing.index("Running") < listing.index("Queued") and asc_songs[1].name in listing
    results = {}

    def finish(name, job):
        results[name] = job.result(timeout=JOB_TIMEOUT)

    threads = [threading.Thread(target=finish, args=(n, j)) for n, j in (("first", running), ("second", waiting))]
    for t in threads:
        t.start()
    assert "Cancelling" in second.predict(api_name="/cancel_generate")  # its own, queued job
    assert "Cancelling" in first.predict(api_name="/cancel_generate")
    for t in threads:
        t.join(JOB_TIMEOUT)
    assert "Cancelled before it started" in results["second"][0]
    assert "mp-cancelled" in results["first"][0]
    assert list(tmp_path.iterdir()) == []
