"""The native window: pywebview showing the app's local page, with a JavaScript bridge to file dialogs.

Backends: Qt (PySide6 + QtWebEngine) on Linux, WebView2 on Windows, Cocoa/WebKit on macOS. Starting a
window fails on many real computers (no display, Qt's xcb libraries missing, no WebView2 runtime, no main
screen on macOS), and on Linux Qt *aborts the process* for some of these instead of raising. So
:func:`native_problem` checks first, in a child process where an abort is harmless, and the caller falls
back to the browser with the reason.
"""
from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

FILE_TYPES = {
    "audio": ("Audio files (*.mp3;*.ogg;*.wav;*.flac;*.m4a;*.opus)", "All files (*.*)"),
    "beatmap": ("osu! beatmaps (*.osu)", "All files (*.*)"),
    "image": ("Images (*.jpg;*.jpeg;*.png)", "All files (*.*)"),
    "any": ("All files (*.*)",),
}

# Run in a child process before the real window: creating the QApplication is what aborts without a
# usable display or xcb plugin; importing QtWebEngine is what fails without the pyside6-webengine wheel.
_QT_PROBE = (
    "import sys\n"
    "from qtpy import QtWebEngineWidgets\n"
    "from qtpy.QtWidgets import QApplication\n"
    "app = QApplication(['mapperator-probe'])\n"
    "sys.exit(0 if app.primaryScreen() is not None else 3)\n"
)


def prepare_environment() -> None:
    """Qt for pywebview on Linux, and the Chromium flags QtWebEngine needs: no sandbox as root (Chromium
    refuses to start otherwise)."""
    if sys.platform.startswith("linux"):
        os.environ.setdefault("PYWEBVIEW_GUI", "qt")  # else pywebview tries GTK first and logs a traceback
        flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "").split()
        if hasattr(os, "geteuid") and os.geteuid() == 0 and "--no-sandbox" not in flags:
            flags.append("--no-sandbox")
        if flags:
            os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = " ".join(flags)


def native_problem(timeout: float = 30.0) -> str | None:
    """Why a native window cannot open here (in words), or None when it should."""
    try:
        import webview  # noqa: F401
    except Exception as e:  # a broken install raises anything from ImportError to OSError
        return f"pywebview is not usable ({type(e).__name__}: {e}); reinstall with `pip install pywebview`"
    if sys.platform.startswith("linux"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return "there is no graphical display (DISPLAY and WAYLAND_DISPLAY are not set)"
        try:
            import qtpy  # noqa: F401
            from qtpy import QtWebEngineWidgets  # noqa: F401
        except Exception as e:
            return (f"Qt WebEngine is not available ({type(e).__name__}: {e}); install the PySide6-Essentials "
                    f"and PySide6-WebEngine packages")
        if getattr(sys, "frozen", False):
            return None  # a bundled app ships its Qt libraries and has no Python to run the probe with
        return _probe_qt(timeout)
    if sys.platform == "win32" and not _webview2_installed():
        # pywebview would fall back to Internet Explorer's engine, which cannot run the page
        return ("the Microsoft Edge WebView2 Runtime is not installed (get it from "
                "https://developer.microsoft.com/microsoft-edge/webview2/)")
    return None


_WEBVIEW2_CLIENT = r"Microsoft\EdgeUpdate\Clients\{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"


def _webview2_installed() -> bool:
    """Whether Windows lists an Evergreen WebView2 Runtime (per machine or per user)."""
    try:
        import winreg  # type: ignore[import-not-found]
    except ImportError:
        return True
    places = [(winreg.HKEY_LOCAL_MACHINE, "SOFTWARE\\WOW6432Node\\" + _WEBVIEW2_CLIENT),
              (winreg.HKEY_LOCAL_MACHINE, "SOFTWARE\\" + _WEBVIEW2_CLIENT),
              (winreg.HKEY_CURRENT_USER, "SOFTWARE\\" + _WEBVIEW2_CLIENT)]
    for hive, key in places:
        try:
            with winreg.OpenKey(hive, key) as handle:
                version, _ = winreg.QueryValueEx(handle, "pv")
                if version and version != "0.0.0.0":
                    return True
        except OSError:
            continue
    return False


def _probe_qt(timeout: float) -> str | None:
    env = dict(os.environ, QT_DEBUG_PLUGINS="0")
    try:
        done = subprocess.run([sys.executable, "-c", _QT_PROBE], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "Qt did not start within {:.0f} s".format(timeout)
    except OSError as e:
        return f"could not test Qt: {e}"
    if done.returncode == 0:
        return None
    if done.returncode == 3:
        return "Qt found no screen to show the window on"
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    hint = next((line for line in lines if "xcb-cursor" in line or "libxcb" in line), None)
    reason = hint or next((line for line in lines if "could not" in line.lower() or "error" in line.lower()),
                          lines[-1] if lines else f"exit status {done.returncode}")
    if hint or "xcb" in done.stderr:
        reason += " (on Debian/Ubuntu: apt install libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 " \
                  "libxcb-keysyms1 libxcb-shape0)"
    return f"Qt cannot open a window: {reason}"


class Bridge:
    """Methods the page calls as ``window.pywebview.api.<name>(...)``; each returns a path or ''.

    pywebview runs these on its own threads, so the dialogs never block the UI's event loop.
    """

    def __init__(self) -> None:
        self._window = None  # private: pywebview exposes public attributes to JavaScript

    def attach(self, window) -> None:
        self._window = window

    def _dialog(self, kind, start: str, **kwargs) -> str:
        if self._window is None:
            return ""
        directory = ""
        if start:
            p = Path(start).expanduser()
            directory = str(p if p.is_dir() else p.parent) if (p.is_dir() or p.parent.is_dir()) else ""
        try:
            chosen = self._window.create_file_dialog(kind, directory=directory, **kwargs)
        except Exception:  # a dialog that fails must leave the field as it was
            log.exception("file dialog failed")
            return ""
        if not chosen:
            return ""
        return str(chosen[0] if isinstance(chosen, (list, tuple)) else chosen)

    def pick_file(self, kind: str = "any", current: str = "") -> str:
        import webview

        return self._dialog(webview.FileDialog.OPEN, current, file_types=FILE_TYPES.get(kind, FILE_TYPES["any"]))

    def pick_folder(self, current: str = "") -> str:
        import webview

        return self._dialog(webview.FileDialog.FOLDER, current)

    def save_file(self, suggested_name: str = "", current: str = "") -> str:
        import webview

        name = suggested_name or (Path(current).name if current else "")
        return self._dialog(webview.FileDialog.SAVE, current, save_filename=name)

    def ping(self) -> str:
        return "mapperator"


def _window_size() -> tuple[int, int]:
    try:
        import webview

        screen = webview.screens[0]
        return min(int(screen.width * 0.8), 1500), min(int(screen.height * 0.9), 1050)
    except Exception:  # screens needs a GUI backend; any failure just means the default size
        return 1280, 900


def run_window(url: str, title: str, icon: str | None = None, on_started: Callable[[], None] | None = None) -> None:
    """Show ``url`` in a native window and return when the user closes it; raises when no window can start."""
    import webview

    bridge = Bridge()
    width, height = _window_size()
    window = webview.create_window(title, url, js_api=bridge, width=width, height=height, min_size=(900, 600),
                                   text_select=True)
    bridge.attach(window)
    # Closing the window turns its Qt objects into garbage. If Python's cycle collector then ran in another
    # thread (a job importing torch, the server), Qt would abort the whole process ("Cannot make
    # QOpenGLContext current in a different thread"). So from the moment the window starts closing (this
    # handler runs on the GUI thread) cycles are collected only here, on the GUI thread; the app is exiting.
    window.events.closing += _collect_on_this_thread_only
    gui = "qt" if sys.platform.startswith("linux") else None
    kwargs = {"gui": gui, "private_mode": True}
    if icon and sys.platform.startswith("linux"):
        kwargs["icon"] = icon  # Windows and macOS take the icon from the bundled executable
    webview.start(on_started, **kwargs)
    gc.collect()


def _collect_on_this_thread_only() -> None:
    gc.disable()
