"""Build the double-click bundle with PyInstaller (``app.spec``, as the README says) and run it frozen: the
self-test, the command line, no console, and on Linux the native window a double-click opens.

The build takes minutes and ~1.3 GB of disk; its time and size are printed (also without ``-s``) and
written to ``test-artifacts/bundle/report.json``. It uses a private PyInstaller cache, so the time is that
of a fresh CI machine.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.e2e import desktop
from tests.e2e.conftest import app_environment, free_port

pytestmark = pytest.mark.slow

BUILD_TIMEOUT = 3600  # an upper bound for a slow shared machine; it takes ~3 minutes on 2 free cores
RUN_TIMEOUT = 600  # an upper bound for each run and wait (all wait on conditions): the machine may be loaded
WINDOWS = sys.platform == "win32"


def wait_for(condition, timeout: float = RUN_TIMEOUT, what: str = "condition"):
    return desktop.wait_for(condition, timeout, what)


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        total += sum(os.lstat(os.path.join(root, name)).st_size for name in files)
    return total


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """(the built folder, a report dict); the folder is deleted after the module's tests."""
    root = tmp_path_factory.mktemp("bundle")
    env = dict(os.environ, PYINSTALLER_CONFIG_DIR=str(root / "pyinstaller-cache"))
    command = [sys.executable, "-m", "PyInstaller", "app.spec", "--noconfirm", "--workpath", str(root / "work"),
               "--distpath", str(root / "dist")]
    log = root / "build.log"
    started = time.monotonic()
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                              timeout=BUILD_TIMEOUT)
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    assert done.returncode == 0, text[-5000:]
    folder = root / "dist" / "Mapperator"
    report = {"platform": platform.platform(), "cpus": os.cpu_count(), "build_seconds": round(seconds, 1),
              "bundle_bytes": folder_bytes(folder), "files": sum(len(f) for _, _, f in os.walk(folder)),
              "executable_bytes": (folder / ("Mapperator.exe" if WINDOWS else "Mapperator")).stat().st_size}
    artifacts = REPO / "test-artifacts" / "bundle"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.copyfile(log, artifacts / "build.log")
    yield folder, report
    shutil.rmtree(root / "dist", ignore_errors=True)
    shutil.rmtree(root / "work", ignore_errors=True)


def executable(folder: Path, cli: bool = False) -> Path:
    if WINDOWS:
        return folder / ("mapperator-cli.exe" if cli else "Mapperator.exe")
    return folder / "Mapperator"


def run(folder: Path, args: list[str], env: dict, cli: bool = True, **kwargs):
    return subprocess.run([str(executable(folder, cli)), *args], env=env, cwd=env["HOME"], timeout=RUN_TIMEOUT,
                          stdin=subprocess.DEVNULL, **kwargs)


def frozen_environment(root: Path) -> dict:
    env = app_environment(root)
    env.pop("PYTHONPATH", None)  # the bundle must not need the source tree
    return env


def test_build_time_and_size_are_reported(bundle, capsys):
    folder, report = bundle
    with capsys.disabled():
        print(f"\nbundle: {report['bundle_bytes'] / 2**20:.0f} MiB in {report['files']} files, built in "
              f"{report['build_seconds']:.0f} s on {report['cpus']} CPUs ({folder})")
    assert report["bundle_bytes"] > 100 * 2**20


def test_the_bundle_holds_what_the_app_needs_and_not_what_tests_or_training_need(bundle):
    folder, _ = bundle
    inside = folder / "_internal"
    for needed in ["assets/selftest/checkpoint/model.safetensors", "assets/selftest/selftest.mp3",
                   "gradio/blocks.py", "gradio/templates/frontend", "gradio_client/types.json",
                   "safehttpx/version.txt", "groovy/version.txt", "webview/js/api.js",
                   "mapperator_app/static/icon.png", "_soundfile_data", "torch/bin/torch_shm_manager"]:
        assert (inside / needed).exists(), needed
    for absent in ["pytest", "_pytest", "hypothesis", "playwright", "pexpect", "accelerate", "pyarrow", "peft",
                   "transformers", "tensorboard", "torch/test", "torch/include", "gradio/templates/node"]:
        assert not (inside / absent).exists(), absent
    if sys.platform.startswith("linux"):
        qt = inside / "PySide6" / "Qt"
        assert (qt / "libexec" / "QtWebEngineProcess").exists()
        assert (qt / "resources" / "qtwebengine_resources.pak").exists()
        assert not (qt / "qml").exists()
        assert not list(qt.glob("lib/libQt63D*")) and not list(inside.glob("libgtk-3*"))


def test_frozen_selftest_passes(bundle, tmp_path):
    folder, _ = bundle
    env = frozen_environment(tmp_path)
    done = run(folder, ["--selftest"], env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bundled app" in done.stdout and "ok  generate: generated Mapperator - Selftest" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("Self-test passed")
    log = Path(env["XDG_STATE_HOME"]) / "Mapperator" / "log" / "mapperator.log"
    assert "Self-test passed" in log.read_text()


def test_frozen_command_line_generates_and_reports_errors_in_words(bundle, tmp_path):
    folder, _ = bundle
    env = frozen_environment(tmp_path)
    done = run(folder, ["--version"], env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "mapperator 0.1.0", done.stdout + done.stderr
    out = tmp_path / "out"
    out.mkdir()
    assets = folder / "_internal" / "assets" / "selftest"
    done = run(folder, ["generate", f"audio_path={assets / 'selftest.mp3'}", f"model_path={assets / 'checkpoint'}",
                        f"output_path={out}", "do_sample=false"], env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    from engine.beatmap import read_beatmap

    written = next(out.glob("*.osu"))
    assert len(read_beatmap(written).hit_objects) > 0 and (out / "selftest.mp3").exists()
    done = run(folder, ["generate", f"audio_path={tmp_path / 'missing.mp3'}"], env, capture_output=True, text=True)
    assert done.returncode == 2 and "error:" in done.stderr and "missing.mp3" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(WINDOWS, reason="closing the standard streams of a child is POSIX-only here")
def test_frozen_app_without_a_console_logs_its_output(bundle, tmp_path):
    folder, _ = bundle
    env = frozen_environment(tmp_path)
    done = run(folder, ["--version"], env, preexec_fn=lambda: (os.close(1), os.close(2)))
    assert done.returncode == 0
    log = Path(env["XDG_STATE_HOME"]) / "Mapperator" / "log" / "mapperator.log"
    assert "mapperator.stdout: mapperator 0.1.0" in log.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the virtual display is Linux-only")
def test_frozen_app_opens_its_window_without_arguments_and_exits_when_it_closes(bundle, tmp_path):
    """The double-click: no arguments, a native Qt WebEngine window showing the page, with the file-dialog
    bridge; closing the window ends the process cleanly."""
    from tests.e2e.desktop import DevTools, close_window, start_xvfb

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb xauth; .ci/run does this)")
    folder, _ = bundle
    xvfb, display = start_xvfb()
    try:
        env = frozen_environment(tmp_path)
        devtools, port = free_port(), free_port()
        env.update(DISPLAY=display, GRADIO_SERVER_PORT=str(port), QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox "
                   "--disable-gpu", QTWEBENGINE_REMOTE_DEBUGGING=f"127.0.0.1:{devtools}")
        env.pop("WAYLAND_DISPLAY", None)
        output = tmp_path / "app.txt"
        with output.open("w") as handle:
            app = subprocess.Popen([str(executable(folder))], env=env, cwd=env["HOME"], stdout=handle,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/"
            pages = wait_for(lambda: [p for p in httpx.get(f"http://127.0.0.1:{devtools}/json", timeout=2).json()
                                      if p.get("url", "").startswith(url)], what="the window's page")
            page = DevTools(pages[0]["webSocketDebuggerUrl"])
            try:
                wait_for(lambda: page.evaluate("document.querySelector('#gen-start') !== null"), what="the UI")
                assert wait_for(lambda: page.evaluate(
                    "document.documentElement.classList.contains('mapperator-native')"), what="the bridge")
                assert page.evaluate("window.pywebview.api.ping()") == "mapperator"
                # opened with the launch's key, which became a cookie and left the address
                assert wait_for(lambda: page.evaluate("window.location.href") == url, what="the plain address")
                artifacts = REPO / "test-artifacts" / "bundle"
                artifacts.mkdir(parents=True, exist_ok=True)
                page.screenshot(artifacts / "frozen-window-page.png")
            finally:
                page.close()
            assert close_window(display, "Mapperator") >= 1
            status = app.wait(RUN_TIMEOUT)
        finally:
            if app.poll() is None:
                app.kill()
                app.wait(30)
        text = output.read_text(errors="replace")
        assert status == 0, text[-3000:]
        assert f"Mapperator is running at {url} (in its own window)" in text
    finally:
        xvfb.terminate()
        xvfb.wait(30)
