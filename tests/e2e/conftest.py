"""A running ``mapperator app`` for the end-to-end tests, isolated from the user's files and the network.

The app runs as a child process exactly as a user starts it (``mapperator app --browser --no-open``) with its
own HOME, config, log, runtime and Hugging Face cache folders, and an HF endpoint nothing listens on, so a
test can never download a real model, and the "hub cannot be reached" paths are the real ones. Tests reach it
as the user's programs do: with the launch's key from its key file (``AppProcess.headers``), or, for a
browser, at ``AppProcess.page_url``, which carries the key.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx
import pytest

from tests.conftest import REPO

START_TIMEOUT = 600  # an upper bound: importing gradio and torch on a busy two-core machine takes seconds to minutes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppProcess:
    process: subprocess.Popen
    url: str
    root: Path
    env: dict
    output: Path

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    @property
    def key(self) -> str:
        key = read_key(self.env, self.port)
        if key is None:
            raise AssertionError(f"the app on port {self.port} has no key file")
        return key

    @property
    def headers(self) -> dict[str, str]:
        """What a program sends: the key from the key file."""
        from mapperator_app.access import KEY_HEADER

        return {KEY_HEADER: self.key}

    @property
    def page_url(self) -> str:
        """The address the app opens in its window or browser (the key becomes a cookie there)."""
        from mapperator_app.access import page_url

        return page_url(self.port, self.key)

    @property
    def settings_file(self) -> Path:
        return self.root / "config" / "Mapperator" / "settings.json"

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def stop(self, timeout: float = 60) -> int:
        """Ctrl+C/SIGTERM as a user would; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(f"the app did not stop within {timeout} s:\n{self.text()[-3000:]}")
        return self.process.returncode


def read_key(env: dict, port: int) -> str | None:
    """The key of the app started with ``env`` on ``port``, through the app's own key file lookup."""
    from mapperator_app.access import key_file

    with mock.patch.dict(os.environ, {k: env[k] for k in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME") if k in env}):
        path = key_file(port)
    return path.read_text(encoding="ascii").strip() if path is not None else None


def app_environment(root: Path) -> dict:
    for name in ("home", "config", "state", "data", "cache", "hf", "gradio"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "runtime").mkdir(mode=0o700, exist_ok=True)  # XDG_RUNTIME_DIR must be private (platformdirs checks)
    env = dict(os.environ)
    env.update(XDG_RUNTIME_DIR=str(root / "runtime"),
               HOME=str(root / "home"), XDG_CONFIG_HOME=str(root / "config"), XDG_STATE_HOME=str(root / "state"),
               XDG_DATA_HOME=str(root / "data"), XDG_CACHE_HOME=str(root / "cache"), HF_HOME=str(root / "hf"),
               HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", GRADIO_TEMP_DIR=str(root / "gradio"),
               PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), WINEPREFIX=str(root / "home" / ".wine"))
    env.pop("GRADIO_SERVER_PORT", None)
    return env


def start_app(root: Path, args: list[str], env: dict | None = None, port: int | None = None,
              wait: bool = True, port_flag: bool = True) -> AppProcess:
    """``mapperator app ARGS --port PORT`` (without ``--port`` when ``port_flag`` is false: then ``port`` is where
    the app is expected, e.g. from GRADIO_SERVER_PORT)."""
    port = port or free_port()
    env = env or app_environment(root)
    output = root / f"app-{port}.log"
    handle = output.open("w")
    command = [sys.executable, "-m", "mapperator_app.cli", "app", *args] + (["--port", str(port)] if port_flag else [])
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    app = AppProcess(process, f"http://127.0.0.1:{port}/", root, env, output)
    if wait:
        wait_until_up(app)
    return app


def wait_until_up(app: AppProcess, timeout: float = START_TIMEOUT) -> None:
    """Until the key file is written and the page answers with the key (polling; the limit is generous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise AssertionError(f"the app exited with {app.process.returncode}:\n{app.text()[-3000:]}")
        key = read_key(app.env, app.port)
        try:
            if key is not None and httpx.get(app.page_url, timeout=10, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    app.process.kill()
    raise AssertionError(f"the app did not answer at {app.url} within {timeout} s:\n{app.text()[-3000:]}")


class OutboundRecorder:
    """An HTTP proxy that refuses everything and remembers who asked: set as the app's proxy, it catches any
    request the app would make to the internet (analytics, version checks, fonts, model downloads)."""

    def __init__(self):
        import http.server
        import threading

        self.requests: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _refuse(self):
                recorder.requests.append(f"{self.command} {self.path}")
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_CONNECT = do_GET = do_POST = do_HEAD = do_PUT = _refuse

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """One app for all API and browser tests (starting it costs seconds). Everything it would send beyond
    127.0.0.1 goes to a recording proxy, which must stay unused."""
    root = tmp_path_factory.mktemp("app")
    env = app_environment(root)
    outbound = OutboundRecorder()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = outbound.url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    app = start_app(root, ["--browser", "--no-open"], env=env)
    try:
        yield app
        status = app.stop()
        assert status == 0, app.text()[-3000:]
        assert outbound.requests == [], f"the app tried to reach the internet: {outbound.requests}"
    finally:
        outbound.close()


@pytest.fixture
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, headers=app_server.headers, verbose=False,
                  download_files=str(app_server.root / "downloads"), analytics_enabled=False)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots and other evidence kept after the run (test-artifacts/ is git-ignored)."""
    folder = REPO / "test-artifacts" / "app"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
