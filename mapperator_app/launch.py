"""``mapperator app``: serve the page on 127.0.0.1 and show it in a native window (or a browser).

    launch()                                  # native window; falls back to the browser when none can open
    launch(browser=True)                      # serve for a browser and open it
    launch(browser=True, open_browser=False)  # only print the address

The page is served on the loopback interface only, without a share link, analytics, version checks or
remote fonts, and only to the app's own page and the user's programs (a per-launch key, see
:mod:`.access`; programs use ``Client(url, headers=client_headers(port))``). Closing the window (or Ctrl+C
in browser mode) cancels the running job and stops the server.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import logs
from .access import AccessKey, client_headers, page_url, remove_key_file, write_key_file

__all__ = ["launch", "start_server", "Server", "client_headers", "check_port"]

log = logging.getLogger(__name__)

PORTS = range(1, 65536)


def configure_environment() -> None:
    """No telemetry of any kind, set before Gradio or huggingface_hub read it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("GRADIO_SSR_MODE", "False")
    os.environ.pop("GRADIO_SHARE", None)
    from .window import prepare_environment

    prepare_environment()


def check_port(port: int | None) -> int | None:
    """``port`` when it is a TCP port, or None (then GRADIO_SERVER_PORT, when set, must be one); OptionError
    otherwise, before anything starts."""
    from engine import OptionError

    if port is not None:
        if port not in PORTS:
            raise OptionError(f"--port {port} is not a port: choose one from 1 to 65535")
        return port
    text = os.environ.get("GRADIO_SERVER_PORT")
    if text is not None and not (text.strip().isdigit() and int(text) in PORTS):
        raise OptionError(f"GRADIO_SERVER_PORT={text!r} is not a port: set it to a number from 1 to 65535 "
                          "(or unset it)")
    return None


def _say(text: str, logged: str | None = None) -> None:
    """Print for the user when there is a console (a windowed build has none); log ``logged`` or the text."""
    stream = sys.stdout
    if stream is not None:
        try:
            print(text, file=stream, flush=True)
        except (OSError, ValueError):
            pass
    log.info(logged if logged is not None else text)


def _wait_for_interrupt() -> None:
    """Block the main thread until Ctrl+C or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@dataclass
class Server:
    """A running page and worker. ``url`` is the plain address; ``page_url`` carries the key and is what a
    window or browser opens."""

    demo: Any
    worker: Any
    context: Any  # the page's AppContext
    url: str
    port: int
    key: AccessKey
    key_path: Path | None

    @property
    def page_url(self) -> str:
        return page_url(self.port, self.key.value)

    def stop(self) -> None:
        if self.worker.active():
            _say("Cancelling the running job…")
        self.worker.shutdown(timeout=10)
        try:
            self.demo.close()
        except Exception:  # the server may already be down
            log.exception("closing the server")
        remove_key_file(self.key_path, self.key.value)
        log.info("server and worker stopped")


def start_server(port: int | None = None, settings=None) -> Server:
    """Build the page, start the worker and the server (behind :mod:`.access`'s guard) and write the key
    file. ``settings`` (a :class:`~.settings.Settings`) defaults to the user's settings file."""
    from .settings import Settings
    from .ui import AppContext, build_app, launch_kwargs
    from .worker import Worker

    log_file = logs.setup(console=False)
    worker = Worker(log_file=str(log_file))
    key = AccessKey()
    context = AppContext(worker, settings if settings is not None else Settings(), str(log_file))
    try:
        demo = build_app(context)
        demo.queue(default_concurrency_limit=None)
        demo.launch(server_port=port, prevent_thread_lock=True, **launch_kwargs(key, context.texts))
    except BaseException:
        worker.shutdown(timeout=1)
        raise
    key.started()
    port = int(demo.server_port)
    return Server(demo, worker, context, f"http://127.0.0.1:{port}/", port, key, write_key_file(port, key.value))


def _serve_in_browser(server: Server, open_browser: bool) -> None:
    url = server.page_url
    _say(f"Mapperator is running at {url}  (press Ctrl+C to stop)", f"Mapperator is running at {server.url}")
    if open_browser:
        import webbrowser

        try:
            opened = webbrowser.open(url)
        except Exception:  # no browser registered, or it failed to start
            opened = False
        if not opened:
            _say(f"Could not open a web browser by itself: open {url} in yours.", "no web browser opened")
    _wait_for_interrupt()


def launch(browser: bool = False, open_browser: bool = True, port: int | None = None) -> int:
    port = check_port(port)
    configure_environment()
    from engine import OptionError

    try:
        server = start_server(port)
    except OSError as e:
        log.warning("server start failed: %s", e)
        where = f"port {port} of 127.0.0.1" if port else "127.0.0.1 (GRADIO_SERVER_PORT, or ports 7860 and up)"
        raise OptionError(f"could not start the app's server on {where}: it is in use or not allowed. "
                          f"Choose another port with --port N (or GRADIO_SERVER_PORT).") from None
    try:
        if browser:
            _serve_in_browser(server, open_browser)
            return 0
        from . import window

        problem = window.native_problem()
        if problem is None:
            try:
                _say(f"Mapperator is running at {server.url} (in its own window)")
                window.run_window(server.page_url, "Mapperator", _icon_path())
                return 0
            except Exception as e:  # pywebview raises many kinds (WebViewException, AttributeError on macOS, ...)
                log.exception("the native window failed")
                problem = f"{type(e).__name__}: {e}"
        _say(f"The app window cannot open here: {problem}.\nUsing your web browser instead (details in "
             f"{logs.log_dir() / 'mapperator.log'}).")
        _serve_in_browser(server, open_browser)
        return 0
    finally:
        server.stop()


def _icon_path() -> str | None:
    from importlib.resources import files

    icon = files("mapperator_app") / "static" / "icon.png"
    return str(icon) if icon.is_file() else None


def main() -> int:  # ``python -m mapperator_app.launch [--browser] [--no-open] [--port N]``
    import argparse

    from engine import MapperatorError

    ap = argparse.ArgumentParser(prog="mapperator app")
    ap.add_argument("--browser", action="store_true")
    ap.add_argument("--no-open", action="store_true")
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args()
    logs.setup()
    try:
        return launch(browser=args.browser, open_browser=not args.no_open, port=args.port)
    except MapperatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
