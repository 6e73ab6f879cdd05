"""Who may use the app's server: its own page and the user's own programs, nobody else.

The server has no accounts, yet it reads and writes files for whoever calls it. So each launch makes a
random key:

- the window (or the browser) opens ``http://127.0.0.1:PORT/?key=KEY``; that first answer sets the key as
  an HttpOnly, SameSite=Strict cookie, which the page then sends with every request it makes;
- programs (``gradio_client``) send it as the ``X-Mapperator-Key`` header, read from a file only the user
  can read (:func:`key_file`, removed when the server stops): ``Client(url, headers=client_headers(port))``.

:class:`AccessGuard`, an ASGI middleware on Gradio's app, answers 401 to every request (page, API, files,
uploads, the event stream, websockets) without the key, and 403 to every request whose ``Host`` or
``Origin`` is not this server on the loopback interface, key or not: that stops DNS rebinding and other
web pages.
"""
from __future__ import annotations

import http.cookies
import logging
import os
import secrets
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import platformdirs

from .logs import APP_NAME

log = logging.getLogger(__name__)

KEY_HEADER = "x-mapperator-key"
KEY_PARAM = "key"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
# Gradio's launch() calls this route on its own server, without our key, before it returns; it only starts
# the queue (once). It is open until :meth:`AccessKey.started` is called, right after launch() returns.
STARTUP_PATH = "/gradio_api/startup-events"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class AccessKey:
    """One launch's secret."""

    def __init__(self, value: str | None = None):
        self.value = value or secrets.token_urlsafe(32)
        self.starting = True

    def started(self) -> None:
        self.starting = False

    def matches(self, candidate: str | None) -> bool:
        return bool(candidate) and secrets.compare_digest(candidate.encode(), self.value.encode())


def cookie_name(port: int) -> str:
    """Cookies are shared by every port of a host, so each server's cookie carries its port."""
    return f"mapperator-key-{port}"


def page_url(port: int, key: str) -> str:
    return f"http://127.0.0.1:{port}/?{KEY_PARAM}={key}"


def _name_and_port(value: str | None, scheme: str | None) -> tuple[str, int] | None:
    """(host name, port) of a Host header (scheme None) or an Origin (scheme required); None when malformed."""
    if not value:
        return None
    try:
        parts = urlsplit(value if scheme else "//" + value)
        if scheme and parts.scheme != scheme:
            return None
        name, port = (parts.hostname or "").lower(), parts.port or 80
    except ValueError:  # a port that is not a number, brackets that do not close
        return None
    return (name, port) if name else None


def foreign_problem(headers: dict[str, str], server_port: int | None) -> str | None:
    """Why a request's Host or Origin is not this server on the loopback interface (None when it is)."""
    host = _name_and_port(headers.get("host"), None)
    if host is None or host[0] not in LOOPBACK_NAMES or host[1] != server_port:
        return f"the Host {headers.get('host')!r} is not this app's address (127.0.0.1:{server_port})"
    if "origin" in headers:
        origin = _name_and_port(headers["origin"], "http")
        if origin is None or origin[0] not in LOOPBACK_NAMES or origin[1] != server_port:
            return f"requests from {headers['origin']!r} are not accepted"
    return None


class AccessGuard:
    """The ASGI middleware; see the module docstring. Lifespan events pass through untouched."""

    def __init__(self, app, key: AccessKey):
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        port = (scope.get("server") or (None, None))[1]
        problem = foreign_problem(headers, port)
        if problem is not None:
            log.warning("refused %s %s: %s", scope.get("method", "WEBSOCKET"), scope.get("path"), problem)
            await _refuse(scope, receive, send, 403, f"Mapperator refuses this request: {problem}.")
            return
        if self.key.matches(headers.get(KEY_HEADER)) or self.key.matches(_cookie(headers, cookie_name(port))):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and self.key.matches(_query_key(scope)):
            await self.app(scope, receive, _setting_cookie(send, cookie_name(port), self.key.value))
            return
        if self.key.starting and scope["type"] == "http" and scope.get("path") == STARTUP_PATH:
            await self.app(scope, receive, send)
            return
        await _refuse(scope, receive, send, 401,
                      "This is Mapperator's local server. Open the address `mapperator app` printed (it carries a "
                      "key), or use the app's window. Programs: send the key from the key file as the "
                      f"{KEY_HEADER} header (mapperator_app.launch.client_headers).")


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names to values: the first of a repeated header counts; repeated Cookie headers are joined."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        found[key] = f"{found[key]}; {text}" if key == "cookie" and key in found else found.get(key, text)
    return found


def _cookie(headers: dict[str, str], name: str) -> str | None:
    jar = http.cookies.SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except http.cookies.CookieError:
        return None
    return jar[name].value if name in jar else None


def _query_key(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(KEY_PARAM)
    return values[0] if values else None


def _setting_cookie(send: Send, name: str, value: str) -> Send:
    cookie = f"{name}={value}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", cookie)])
        await send(message)

    return wrapped


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403
        return
    body = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""})


def middleware(key: AccessKey):
    """The guard as Starlette middleware, for ``launch(app_kwargs={"middleware": [...]})``."""
    from starlette.middleware import Middleware

    return Middleware(AccessGuard, key=key)


# --- the key file ----------------------------------------------------------------------------------------------


def _key_folders(create: bool = False) -> list[Path]:
    """Where key files go: the runtime folder (e.g. /run/user/UID/Mapperator), else the state folder."""
    dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False, ensure_exists=create)
    folders = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset and uses /tmp
        try:
            folders.append(Path(dirs.user_runtime_dir))
        except OSError as e:  # its fallback in /tmp belongs to someone else
            log.warning("no runtime folder: %s", e)
    return folders + [Path(platformdirs.user_state_dir(APP_NAME, appauthor=False)) / "run"]


def _private_folder(folder: Path, create: bool) -> bool:
    """Whether ``folder`` is (or, with ``create``, now is) a folder of this user that others cannot enter."""
    try:
        if create:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not folder.is_dir() or folder.is_symlink():
            return False
        if sys.platform == "win32":
            return True  # per-user profile folders; POSIX modes do not apply
        info = folder.stat()
        if info.st_uid != os.getuid():
            return False  # e.g. /tmp/runtime-UID made by someone else
        if info.st_mode & 0o077:
            if not create:
                return False
            folder.chmod(0o700)
        return True
    except OSError:
        return False


def key_file(port: int) -> Path | None:
    """The key file of the server on ``port`` (None when this user has none)."""
    for folder in _key_folders():
        path = folder / f"server-{port}.key"
        if path.is_file() and _private_folder(folder, create=False):
            return path
    return None


def write_key_file(port: int, key: str) -> Path | None:
    """Write the key where only this user can read it; None (logged) when no private folder can be made."""
    for folder in _key_folders(create=True):
        if not _private_folder(folder, create=True):
            continue
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".key-")  # mode 0600
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(key)
            path = folder / f"server-{port}.key"
            os.replace(tmp, path)
            return path
        except OSError as e:
            log.warning("could not write the key file in %s: %s", folder, e)
    log.warning("no private folder for the key file: programs cannot connect to this server")
    return None


def remove_key_file(path: Path | None, key: str) -> None:
    """Remove our key file (not one a later server on the same port wrote)."""
    if path is None:
        return
    try:
        if path.read_text(encoding="ascii") == key:
            path.unlink()
    except OSError:
        pass


def read_key(port: int) -> str:
    """The key of this user's Mapperator server on ``port``; OptionError when there is none."""
    from engine import OptionError

    path = key_file(port)
    if path is None:
        raise OptionError(f"no Mapperator app of yours is running on port {port} (no key file "
                          f"server-{port}.key in {' or '.join(map(str, _key_folders()))}); start it with `mapperator app`")
    return path.read_text(encoding="ascii").strip()


def client_headers(port: int) -> dict[str, str]:
    """Headers that let a program (``gradio_client.Client(url, headers=...)``) use the app on ``port``."""
    return {KEY_HEADER: read_key(port)}
