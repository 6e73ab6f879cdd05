"""Entry point of the bundled app (PyInstaller's script, see app.spec) and of ``python -m mapperator_app``.

No arguments, as when the executable is double-clicked, opens the app (``mapperator app``); any arguments
are the ``mapperator`` command line (``Mapperator generate ...``, ``Mapperator --selftest``).

A windowed build (Windows' ``Mapperator.exe``, the macOS app) has no console: ``sys.stdout`` and
``sys.stderr`` are None, and anything printed (a warning, a progress bar, an uncaught traceback) would be
lost or crash the app. Then both are sent to the log file in the user's log folder instead.
"""
from __future__ import annotations

import io
import logging
import multiprocessing
import sys
import threading


class _LogStream(io.TextIOBase):
    """A text stream whose lines go to a logger (carriage returns, as progress bars use, end lines too)."""

    def __init__(self, name: str, level: int):
        super().__init__()
        self._logger = logging.getLogger(name)
        self._level = level
        self._pending = ""
        self._inside = threading.local()  # a failing log handler reports to stderr: never loop

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if getattr(self._inside, "busy", False):
            return len(text)
        self._inside.busy = True
        try:
            *lines, self._pending = (self._pending + text).replace("\r", "\n").split("\n")
            for line in lines:
                if line.strip() and "%|" not in line:  # progress bar redraws (tqdm) are no use in a log
                    self._logger.log(self._level, "%s", line.rstrip())
        finally:
            self._inside.busy = False
        return len(text)

    def flush(self) -> None:
        pass


def _without_console() -> None:
    """Send stdout/stderr to the log file when the process has none (first use creates the log folder)."""
    if sys.stdout is not None and sys.stderr is not None:
        return
    from mapperator_app import logs

    logs.setup(console=False)  # configures the file handler once; later setup() calls keep it
    if sys.stdout is None:
        sys.stdout = _LogStream("mapperator.stdout", logging.INFO)
    if sys.stderr is None:
        sys.stderr = _LogStream("mapperator.stderr", logging.WARNING)


def main() -> int:
    multiprocessing.freeze_support()  # a frozen child process (e.g. a DataLoader worker) runs its task and exits
    _without_console()
    from mapperator_app.cli import main as cli_main

    return cli_main(sys.argv[1:] or ["app"])


if __name__ == "__main__":
    sys.exit(main())
