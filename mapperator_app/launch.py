"""``mapperator app``: serve the page on 127.0.0.1 and show it in a native window (or a browser).

    launch()                                  # native window; falls back to the browser when none can open
    launch(browser=True)                      # serve for a browser and open it
    launch(browser=True, open_browser=False)  # only print the address

The page is served on the loopback interface only, without a share link, analytics, version checks or
remote fonts. Closing the window (or Ctrl+C in browser mode) cancels the running job and stops the server.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from . import logs

log = logging.getLogger(__name__)


def configure_environment() -> None:
    """No telemetry of any kind, set before Gradio or huggingface_hub read it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("GRADIO_SSR_MODE", "False")
    os.environ.pop("GRADIO_SHARE", None)
    from .window import prepare_environment

    prepare_environment()


def _say(text: str) -> None:
    """Print for the user when there is a console (a windowed build has none)."""
    stream = sys.stdout
    if stream is not None:
        try:
            print(text, file=stream, flush=True)
        except (OSError, ValueError):
            pass
    log.info(text)


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


def _serve_in_browser(url: str, open_browser: bool) -> None:
    _say(f"Mapperator is running at {url}  (press Ctrl+C to stop)")
    if open_browser:
        import webbrowser

        try:
            opened = webbrowser.open(url)
        except Exception:  # no browser registered, or it failed to start
            opened = False
        if not opened:
            _say(f"Could not open a web browser by itself: open {url} in yours.")
    _wait_for_interrupt()


def start_server(port: int | None = None):
    """Build the page, start the worker and the server; returns (demo, worker, url)."""
    from .settings import Settings
    from .ui import AppContext, build_app, launch_kwargs
    from .worker import Worker

    log_file = logs.setup(console=False)
    worker = Worker(log_file=str(log_file))
    try:
        demo = build_app(AppContext(worker, Settings(), str(log_file)))
        demo.queue(default_concurrency_limit=None)
        _, url, _ = demo.launch(server_port=port, prevent_thread_lock=True, **launch_kwargs())
    except BaseException:
        worker.shutdown(timeout=1)
        raise
    url = url or f"http://127.0.0.1:{demo.server_port}/"
    return demo, worker, url


def stop_server(demo, worker) -> None:
    if worker.active():
        _say("Cancelling the running job…")
    worker.shutdown(timeout=10)
    try:
        demo.close()
    except Exception:  # the server may already be down
        log.exception("closing the server")
    log.info("server and worker stopped")


def launch(browser: bool = False, open_browser: bool = True, port: int | None = None) -> int:
    configure_environment()
    from engine.errors import OptionError

    try:
        demo, worker, url = start_server(port)
    except OSError as e:
        log.warning("server start failed: %s", e)
        where = f"port {port} of 127.0.0.1" if port else "127.0.0.1 (GRADIO_SERVER_PORT, or ports 7860 and up)"
        raise OptionError(f"could not start the app's server on {where}: it is in use or not allowed. "
                          f"Choose another port with --port N (or GRADIO_SERVER_PORT).") from None
    try:
        if browser:
            _serve_in_browser(url, open_browser)
            return 0
        from . import window

        problem = window.native_problem()
        if problem is None:
            try:
                _say(f"Mapperator is running at {url} (in its own window)")
                window.run_window(url, "Mapperator", _icon_path())
                return 0
            except Exception as e:  # pywebview raises many kinds (WebViewException, AttributeError on macOS, ...)
                log.exception("the native window failed")
                problem = f"{type(e).__name__}: {e}"
        _say(f"The app window cannot open here: {problem}.\nUsing your web browser instead (details in "
             f"{logs.log_dir() / 'mapperator.log'}).")
        _serve_in_browser(url, open_browser)
        return 0
    finally:
        stop_server(demo, worker)


def _icon_path() -> str | None:
    from importlib.resources import files

    icon = files("mapperator_app") / "static" / "icon.png"
    return str(icon) if icon.is_file() else None


def main() -> int:  # ``python -m mapperator_app.launch [--browser] [--no-open] [--port N]``
    import argparse

    ap = argparse.ArgumentParser(prog="mapperator app")
    ap.add_argument("--browser", action="store_true")
    ap.add_argument("--no-open", action="store_true")
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args()
    logs.setup()
    return launch(browser=args.browser, open_browser=not args.no_open, port=args.port)


if __name__ == "__main__":
    sys.exit(main())
