"""``mapperator app`` in its native window (pywebview + Qt WebEngine) on a virtual X display, and its fallback
to the browser when no window can open.

The page inside the window is inspected through QtWebEngine's DevTools port; the window is closed the way a
window manager's close button does it, while a generation runs: the app must cancel the job, stop the
server and exit cleanly.
"""
from __future__ import annotations

import shutil
import sys

import httpx
import pytest

from tests.conftest import UPSTREAM, need
from tests.e2e import desktop
from tests.e2e.conftest import app_environment, free_port, read_key, start_app, wait_until_up

TIMEOUT = 600  # an upper bound for each wait (all wait on conditions): the machine may be loaded


def wait_for(condition, timeout: float = TIMEOUT, what: str = "condition"):
    return desktop.wait_for(condition, timeout, what)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the virtual display is Linux-only")
def test_native_window_loads_the_page_with_the_bridge_and_closing_it_stops_everything(
        tmp_path, artifacts, asc_songs):
    from gradio_client import Client

    from tests.e2e.desktop import DevTools, close_window, start_xvfb

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb xauth; .ci/run does this)")
    pytest.importorskip("webview")
    pytest.importorskip("qtpy.QtWebEngineWidgets")
    xvfb, display = start_xvfb()
    try:
        env = app_environment(tmp_path)
        devtools_port = free_port()
        env.update(DISPLAY=display, QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox --disable-gpu",
                   QTWEBENGINE_REMOTE_DEBUGGING=f"127.0.0.1:{devtools_port}", PYWEBVIEW_LOG="debug")
        env.pop("WAYLAND_DISPLAY", None)
        app = start_app(tmp_path, [], env=env)
        try:
            pages = wait_for(lambda: [p for p in httpx.get(f"http://127.0.0.1:{devtools_port}/json", timeout=2)
                                      .json() if p.get("url", "").startswith(app.url)], what="the window's page")
            page = DevTools(pages[0]["webSocketDebuggerUrl"])
            try:
                wait_for(lambda: page.evaluate("document.querySelector('#gen-start') !== null"), what="the UI")
                # opened with the key in its address, the page now works by cookie and shows no key
                assert wait_for(lambda: page.evaluate("window.location.href") == app.url, what="the plain address")
                assert wait_for(lambda: page.evaluate(
                    "document.documentElement.classList.contains('mapperator-native')"), what="the bridge")
                # the preview player plays the song in this engine: Qt WebEngine's Chromium must decode MP3 and OGG
                assert page.evaluate("document.createElement('audio').canPlayType('audio/mpeg')") == "probably"
                assert page.evaluate(
                    "document.createElement('audio').canPlayType('audio/ogg; codecs=vorbis')") == "probably"
                assert page.evaluate("typeof window.MapperatorPlayer") == "function"
                for name in ("pick_file", "pick_folder", "save_file"):
                    assert page.evaluate(f"typeof window.pywebview.api.{name}") == "function"
                assert page.evaluate("window.pywebview.api.ping()") == "mapperator"  # a round trip to Python
                assert page.evaluate("getComputedStyle(document.querySelector('#gen-audio-browse')).display") \
                    != "none"
                assert page.evaluate("getComputedStyle(document.querySelector('#gen-audio-upload')).display") \
                    == "none"
                page.screenshot(artifacts / "window-page.png")
            finally:
                page.close()
            try:
                from PIL import ImageGrab

                ImageGrab.grab(xdisplay=display).save(artifacts / "window-display.png")
            except OSError:
                pass  # Pillow built without XCB: the page screenshot above still shows the UI
            # a long generation keeps the worker busy while the window closes
            out = tmp_path / "out"
            out.mkdir()
            client = Client(app.url, headers=app.headers, verbose=False, analytics_enabled=False)
            job = client.submit(audio_path=str(asc_songs[0]), model_path=str(need(UPSTREAM / "trained" / "v32" /
                                                                                   "checkpoint")),
                                do_sample=False, output_path=str(out), api_name="/generate")
            wait_for(lambda: any("mp-running" in o[0] for o in job.outputs()), what="the generation to run")
            assert close_window(display, "Mapperator") >= 1
            status = app.process.wait(TIMEOUT)
        finally:
            if app.process.poll() is None:
                app.process.kill()
        log = app.text()
        assert status == 0, log[-3000:]
        assert "in its own window" in log and "Cancelling the running job" in log
        assert list(out.iterdir()) == []
        assert read_key(app.env, app.port) is None  # the key file went with the server
        with pytest.raises(httpx.ConnectError):
            httpx.get(app.url, timeout=5)
    finally:
        xvfb.terminate()
        xvfb.wait(30)


@pytest.mark.slow  # starts the app (seconds)
def test_without_a_display_the_app_falls_back_to_the_browser(tmp_path):
    env = app_environment(tmp_path)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    app = start_app(tmp_path, ["--no-open"], env=env, wait=False)
    try:
        wait_until_up(app)
        log = wait_for(lambda: app.text() if "Using your web browser" in app.text() else None, what="the message")
        assert "The app window cannot open here: there is no graphical display" in log
        assert "Using your web browser instead" in log and app.page_url in log  # the address to open has the key
        assert httpx.get(app.url, headers=app.headers, timeout=60, trust_env=False).status_code == 200
    finally:
        assert app.stop() == 0, app.text()[-3000:]


@pytest.mark.slow  # starts the app (seconds)
def test_port_follows_gradio_server_port(tmp_path):
    env = app_environment(tmp_path)
    port = free_port()
    env["GRADIO_SERVER_PORT"] = str(port)
    app = start_app(tmp_path, ["--browser", "--no-open"], env=env, port=port, port_flag=False)
    try:
        # the page answers a moment before the address is printed
        wait_for(lambda: f"running at http://127.0.0.1:{port}/" in app.text(), what="the address")
    finally:
        assert app.stop() == 0, app.text()[-3000:]


@pytest.mark.slow  # starts the app (seconds)
def test_a_busy_port_is_a_clear_error(tmp_path):
    import socket
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "mapperator_app.cli", "app", "--browser", "--no-open", "--port",
                               str(port)], env=app_environment(tmp_path), capture_output=True, text=True,
                              timeout=TIMEOUT)
    assert done.returncode == 2
    assert f"could not start the app's server on port {port} of 127.0.0.1: it is in use" in done.stderr
    assert "Traceback" not in done.stderr
