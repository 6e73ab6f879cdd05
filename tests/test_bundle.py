"""The double-click bundle's pieces, run from source: the entry point (no arguments opens the app, no console
sends output to the log), ``--selftest`` (passing, and failing with a reason), and the self-test files
``build/make_selftest_assets.py`` makes. ``test_bundle_build.py`` builds the bundle and runs the same
checks frozen."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import START_TIMEOUT, app_environment, free_port, read_key

ASSETS = REPO / "assets" / "selftest"


def _load_maker():
    """build/make_selftest_assets.py as a module (build/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_selftest_assets", REPO / "build" / "make_selftest_assets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


maker = _load_maker()


def log_text(env: dict) -> str:
    path = Path(env["XDG_STATE_HOME"]) / "Mapperator" / "log" / "mapperator.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def run_entry(args: list[str], env: dict, without_console: bool = False, timeout: float = 600):
    """``python -m mapperator_app ARGS``; ``without_console`` starts it with stdout and stderr closed, as a
    windowed app starts (Python then has ``sys.stdout is None``)."""
    preexec = (lambda: (os.close(1), os.close(2))) if without_console else None
    return subprocess.run([sys.executable, "-m", "mapperator_app", *args], env=env, cwd=REPO, timeout=timeout,
                          stdin=subprocess.DEVNULL, capture_output=not without_console, text=True,
                          preexec_fn=preexec)


# --- the entry point ----------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="closing the standard streams of a child is POSIX-only here")
def test_without_a_console_output_and_errors_go_to_the_log_folder_it_creates(tmp_path):
    env = app_environment(tmp_path)
    log_folder = Path(env["XDG_STATE_HOME"]) / "Mapperator" / "log"
    assert not log_folder.exists()
    done = run_entry(["--version"], env, without_console=True)
    assert done.returncode == 0
    assert "mapperator.stdout: mapperator 0.1.0" in log_text(env)
    done = run_entry(["generate", "no_such_option=1"], env, without_console=True)
    assert done.returncode == 2
    text = log_text(env)
    assert "mapperator.stderr: error: unknown option 'no_such_option'" in text
    assert "Traceback" not in text


def test_log_stream_keeps_whole_lines_and_drops_progress_bars(caplog):
    import logging

    from tqdm import tqdm

    from mapperator_app.__main__ import _LogStream

    stream = _LogStream("mapperator.stderr", logging.WARNING)
    for _ in tqdm(range(30), file=stream, mininterval=0):
        pass
    stream.write("first half, ")
    stream.write("second half\nnext\r\n")
    print("from print", file=stream)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("mapperator.stderr", logging.WARNING, "first half, second half"),
        ("mapperator.stderr", logging.WARNING, "next"),
        ("mapperator.stderr", logging.WARNING, "from print"),
    ]


@pytest.mark.slow  # starts the app's server
def test_no_arguments_opens_the_app(tmp_path):
    """What a double-click does: ``mapperator app``. Without a display that is the browser fallback."""
    env = app_environment(tmp_path)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    port = free_port()
    env.update(GRADIO_SERVER_PORT=str(port), BROWSER="true")  # the "browser" is /bin/true: nothing opens
    output = tmp_path / "app.txt"
    with output.open("w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "mapperator_app"], env=env, cwd=REPO, text=True,
                                   stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT  # an upper bound; polled, it ends when the app is up
        while not ("Using your web browser instead" in output.read_text() and read_key(env, port)):
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, f"no browser fallback in {START_TIMEOUT} s: {output.read_text()}"
            time.sleep(0.25)
        text = output.read_text()
        assert "The app window cannot open here: there is no graphical display" in text
        key = read_key(env, port)
        assert f"http://127.0.0.1:{port}/?key={key}" in text  # the address to open carries the key
        assert httpx.get(f"http://127.0.0.1:{port}/?key={key}", timeout=60, trust_env=False).status_code == 200
    finally:
        process.terminate()
        assert process.wait(60) == 0, output.read_text()


# --- --selftest ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # starts the app's server and generates
def test_selftest_passes_and_touches_no_user_settings(tmp_path):
    env = app_environment(tmp_path)
    done = run_entry(["--selftest"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    steps = [line.split(":")[0] for line in lines if line.startswith("ok  ")]
    assert steps == ["ok  imports", "ok  server", "ok  page", "ok  api", "ok  generate", "ok  jobs"], lines
    generated = next(line for line in lines if line.startswith("ok  generate"))
    assert "Mapperator - Selftest (Mapperatorinator)" in generated and "17 objects" in generated
    assert "150 BPM" in generated
    assert lines[-1].startswith("Self-test passed")
    assert not (Path(env["XDG_CONFIG_HOME"]) / "Mapperator" / "settings.json").exists()
    assert "Self-test passed" in log_text(env)


def test_selftest_without_its_files_fails_with_the_reason(tmp_path):
    env = app_environment(tmp_path)
    env["MAPPERATOR_SELFTEST_ASSETS"] = str(tmp_path / "nothing")
    done = run_entry(["--selftest"], env)
    assert done.returncode == 1
    assert f"FAILED files: {tmp_path / 'nothing' / 'selftest.mp3'} is missing" in done.stderr
    assert "build/make_selftest_assets.py" in done.stderr and "Traceback" not in done.stderr
    assert "selftest failed at files" in log_text(env)


@pytest.mark.slow  # starts the app's server
def test_selftest_with_a_broken_model_fails_at_generate_with_the_reason(tmp_path):
    env = app_environment(tmp_path)
    broken = tmp_path / "assets"
    shutil.copytree(ASSETS, broken)
    (broken / "checkpoint" / "model.safetensors").write_bytes(b"not a safetensors file")
    env["MAPPERATOR_SELFTEST_ASSETS"] = str(broken)
    done = run_entry(["--selftest"], env)
    assert done.returncode == 1
    assert "ok  api" in done.stdout
    failure = done.stderr.strip().splitlines()[-1]
    assert failure.startswith("FAILED generate: generation did not finish:") and "model.safetensors" in failure


# --- the self-test files ------------------------------------------------------------------------------------


def test_selftest_files_are_the_scripts_song_map_and_a_small_v32_model():
    from engine.audio import load_audio, read_tags
    from engine.beatmap import read_beatmap
    from engine.checkpoint import load_checkpoint

    assert (ASSETS / "selftest.osu").read_text(encoding="utf-8") == maker.beatmap_text()
    beatmap = read_beatmap(ASSETS / "selftest.osu")
    assert len(beatmap.hit_objects) == 17 and not beatmap.warnings
    assert [(tp.time, tp.beat_length) for tp in beatmap.timing_points if tp.uninherited] == [(400.0, 400.0)]

    # the MP3 is the synthesized song (lossy: compare loudness envelopes, 10 ms frames)
    song = load_audio(ASSETS / "selftest.mp3", maker.SAMPLE_RATE)
    want = maker.synthesize()
    assert abs(len(song) - len(want)) < 0.01 * maker.SAMPLE_RATE

    def envelope(x):
        n = len(x) // 220
        return np.sqrt((x[: n * 220].reshape(n, 220) ** 2).mean(axis=1))

    a, b = envelope(song), envelope(want / np.abs(want).max())
    m = min(len(a), len(b))
    assert np.corrcoef(a[:m], b[:m])[0, 1] > 0.98
    assert read_tags(ASSETS / "selftest.mp3").title == "Selftest"

    ck = load_checkpoint(str(ASSETS / "checkpoint"), device="cpu")
    assert ck.preset.name == "v32" and ck.config.backbone.d_model == maker.MODEL["d_model"]
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file() and p.name != "made.json")
    assert total < 3_000_000
    made = json.loads((ASSETS / "made.json").read_text())
    assert made["seed"] == maker.SEED and made["model"] == maker.MODEL and made["bytes"] == total


@pytest.mark.slow  # trains a tiny model (~20 s on a free CPU)
def test_the_script_remakes_files_that_generate_the_map(tmp_path):
    out = tmp_path / "selftest"
    done = subprocess.run([sys.executable, str(REPO / "build" / "make_selftest_assets.py"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (out / "selftest.osu").read_bytes() == (ASSETS / "selftest.osu").read_bytes()
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        assert (out / "checkpoint" / name).read_bytes() == (ASSETS / "checkpoint" / name).read_bytes(), name
    check = subprocess.run([sys.executable, str(REPO / "build" / "make_selftest_assets.py"), "--out", str(out),
                            "--check"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0 and check.stdout.startswith("ok: 17 objects (17/17"), check.stdout + check.stderr
