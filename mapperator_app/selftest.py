"""``Mapperator --selftest``: prove that an installation (above all a frozen bundle) works, headless.

It starts the app's engine and UI server as ``mapperator app`` does, but without a window or a browser and
with settings in a temporary folder, checks that the page refuses requests without the launch's key, then
drives the page's own API with ``gradio_client`` (with the key from its key file): it generates
a map of the short song in ``assets/selftest/`` with the tiny checkpoint there (made by
``build/make_selftest_assets.py``), reads the result back with :func:`engine.read_beatmap` and asks the
job list. Before that it imports the modules the app only loads when a feature needs them, so a bundle
that left one out fails here rather than in a user's hands. Nothing is downloaded and nothing is written
outside a temporary folder, except the log and, while it runs, the server's key file.

Each step prints one line; the exit status is 0 when all pass, 1 with the reason otherwise (printed and
logged).
"""
from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from . import logs

log = logging.getLogger(__name__)

JOB_TIMEOUT = 600.0  # upper bound only; a free machine takes ~10 s, a loaded one much longer

# Imported only when a feature is used: (module, what needs it)
LAZY_MODULES = [
    ("scipy.ndimage", "super timing"),
    ("scipy.signal", "super timing"),
    ("rosu_pp_py", "star ratings"),
    ("mutagen", "song tags"),
    ("PIL.Image", "map pictures"),
    ("pandas", "the MaiMod table"),
    ("huggingface_hub", "model downloads"),
]
# The window's modules: they must be there, but may fail to load on a machine without a desktop (Qt needs
# X11/Wayland libraries); the app then uses the browser.
WINDOW_MODULES = [("webview", "the app window")]
if sys.platform.startswith("linux"):
    WINDOW_MODULES.append(("qtpy.QtWebEngineWidgets", "the app window (Qt WebEngine)"))


class SelftestError(Exception):
    """A step failed; the message says which and why."""


def assets_dir() -> Path:
    """``assets/selftest``: inside the bundle when frozen, else in the source tree (or MAPPERATOR_SELFTEST_ASSETS)."""
    if os.environ.get("MAPPERATOR_SELFTEST_ASSETS"):
        return Path(os.environ["MAPPERATOR_SELFTEST_ASSETS"])
    if getattr(sys, "frozen", False):
        return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "assets" / "selftest"
    return Path(__file__).resolve().parent.parent / "assets" / "selftest"


def _say(text: str) -> None:
    if sys.stdout is not None:
        print(text, flush=True)
    log.info("selftest: %s", text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plain(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", markup or "")).split("\n")[0].strip()


def check_imports() -> str:
    missing, broken, no_window = [], [], []
    for module, purpose in LAZY_MODULES + WINDOW_MODULES:
        try:
            __import__(module)
        except ModuleNotFoundError as e:
            missing.append(f"{e.name} ({purpose})")
        except Exception as e:  # present, but a library it loads is not
            problem = f"{module}: {type(e).__name__}: {e}"
            (no_window if (module, purpose) in WINDOW_MODULES else broken).append(problem)
    if missing:
        raise SelftestError(f"modules missing from this installation: {', '.join(missing)}")
    if broken:
        raise SelftestError(f"modules that do not load: {'; '.join(broken)}")
    note = f"; the window cannot open here (the app uses the browser): {'; '.join(no_window)}" if no_window else ""
    return f"{len(LAZY_MODULES) + len(WINDOW_MODULES)} feature modules import{note}"


def check_assets(folder: Path) -> tuple[Path, Path]:
    song, checkpoint = folder / "selftest.mp3", folder / "checkpoint"
    for needed in (song, checkpoint / "model.safetensors", checkpoint / "config.json", checkpoint / "tokenizer.json"):
        if not needed.is_file():
            raise SelftestError(f"{needed} is missing (the self-test files are made by build/make_selftest_assets.py)")
    return song, checkpoint


def check_page(server) -> str:
    """The page answers with its key in the address (with the preview player's script inlined), and refuses a
    request without it."""
    import httpx

    with httpx.Client(trust_env=False, timeout=60) as http:  # never through a proxy: the server is local
        page = http.get(server.page_url)
    with httpx.Client(trust_env=False, timeout=60) as http:  # no key, no cookie
        refused = http.get(server.url)
    if page.status_code != 200 or "Mapperator" not in page.text:
        raise SelftestError(f"GET {server.url} with its key answered {page.status_code} without the app's page")
    if "MapperatorPlayer" not in page.text:
        raise SelftestError(f"GET {server.url}: the page lacks the preview player's script (static/player.js)")
    if refused.status_code != 401:
        raise SelftestError(f"GET {server.url} without the key answered {refused.status_code}, not 401")
    return (f"GET {server.url}: {page.status_code}, {len(page.content)} bytes, player script included; "
            f"without the key: 401")


def check_generate(client, song: Path, checkpoint: Path, out: Path) -> str:
    from engine import read_beatmap

    job = client.submit(audio_path=str(song), model_path=str(checkpoint), gamemode="osu!", do_sample=False,
                        seed="1", output_path=str(out), api_name="/generate")
    status, path, summary, *_ = job.result(timeout=JOB_TIMEOUT)
    if "mp-done" not in (status or "") or not path:
        raise SelftestError(f"generation did not finish: {_plain(status) or 'no status'}")
    written = Path(path)
    if written.parent != out or not written.is_file():
        raise SelftestError(f"generation reported {path}, which is not a file in {out}")
    beatmap = read_beatmap(written)
    red = [tp for tp in beatmap.timing_points if tp.uninherited]
    if not beatmap.hit_objects or not red:
        raise SelftestError(f"{written.name} has {len(beatmap.hit_objects)} objects and {len(red)} red lines; "
                            "the self-test model should map its song")
    return (f"generated {written.name}: {len(beatmap.hit_objects)} objects, red line at {red[0].time:.0f} ms "
            f"({60000 / red[0].beat_length:.0f} BPM)")


def check_jobs(client) -> str:
    jobs = client.predict(api_name="/jobs")
    if "No jobs running" not in (jobs or ""):
        raise SelftestError(f"the job list should be empty after the generation: {_plain(jobs)}")
    return "job list: empty again"


def run_selftest(assets: Path | None = None) -> int:
    """Run every check; 0 when all pass, 1 (with the reason printed and logged) otherwise."""
    from .launch import configure_environment

    started = time.monotonic()
    log_file = logs.setup(console=False)
    configure_environment()
    os.environ["HF_HUB_OFFLINE"] = "1"  # a self-test never downloads
    where = "bundled app " + sys.executable if getattr(sys, "frozen", False) else f"Python {sys.executable}"
    _say(f"Mapperator self-test ({where}); log: {log_file}")
    step = "files"

    def run(name: str, check: Callable[[], str]) -> None:
        nonlocal step
        step = name
        t = time.monotonic()
        _say(f"ok  {name}: {check()} [{time.monotonic() - t:.1f} s]")

    try:
        with contextlib.ExitStack() as stack:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mapperator-selftest-")))
            song, checkpoint = check_assets(assets or assets_dir())
            run("imports", check_imports)
            server = None
            client = None

            def start() -> str:
                nonlocal server
                from .launch import start_server
                from .settings import Settings

                server = start_server(_free_port(), Settings(root / "settings.json"))
                stack.callback(server.stop)  # runs before the folder is removed
                return f"page and worker at {server.url}"

            def connect() -> str:
                nonlocal client
                from gradio_client import Client

                from .launch import client_headers

                # as a user's program connects: with the key from the key file
                client = Client(server.url, headers=client_headers(server.port), verbose=False, download_files=False)
                stack.callback(client.close)
                named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
                if "/generate" not in named or "/jobs" not in named:
                    raise SelftestError(f"the API lacks /generate or /jobs: {sorted(named)}")
                return f"gradio_client sees {len(named)} endpoints"

            out = root / "out"
            out.mkdir()
            run("server", start)
            run("page", lambda: check_page(server))
            run("api", connect)
            run("generate", lambda: check_generate(client, song, checkpoint, out))
            run("jobs", lambda: check_jobs(client))
            step = "shutdown"
    except Exception as e:  # every failure becomes one line naming the step; the traceback goes to the log
        reason = str(e) if isinstance(e, SelftestError) else f"{type(e).__name__}: {e}"
        log.error("selftest failed at %s: %s", step, reason, exc_info=not isinstance(e, SelftestError))
        if sys.stderr is not None:
            where = "" if "details in" in reason else f" (details in {log_file})"
            print(f"FAILED {step}: {reason}{where}", file=sys.stderr, flush=True)
        return 1
    _say(f"Self-test passed in {time.monotonic() - started:.1f} s")
    return 0
