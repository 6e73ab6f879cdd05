"""The app's server serves only its own page and the user's programs, and its API takes paths only in their
role: the per-launch key, the Host/Origin check, the key file, the path checks and the port check.

The server runs in this process (as ``mapperator app`` starts it, with private settings, state and runtime
folders); nothing here runs a model.
"""
from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from engine.errors import OptionError
from mapperator_app import access, path_checks
from tests.conftest import REPO

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot really one\n-----END OPENSSH PRIVATE KEY-----\n"


def isolated_environment(root: Path) -> dict[str, str]:
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    return {"XDG_RUNTIME_DIR": str(runtime), "XDG_STATE_HOME": str(root / "state"),
            "XDG_CONFIG_HOME": str(root / "config"), "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(root / "gradio")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app's server in this process; os.environ and the root logger are restored afterwards."""
    import logging

    from mapperator_app.launch import configure_environment, start_server
    from mapperator_app.settings import Settings

    root = tmp_path_factory.mktemp("secure-app")
    saved_env, logger = dict(os.environ), logging.getLogger()
    saved_handlers, saved_level = list(logger.handlers), logger.level
    os.environ.update(isolated_environment(root))
    configure_environment()
    running = start_server(None, Settings(root / "settings.json"))
    try:
        yield running
    finally:
        running.stop()
        for handler in set(logger.handlers) - set(saved_handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(saved_level)
        if hasattr(logger, "_mapperator_configured"):
            del logger._mapperator_configured
        os.environ.clear()
        os.environ.update(saved_env)


def http(**kwargs) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=60, **kwargs)


def keyed(server) -> dict[str, str]:
    return {access.KEY_HEADER: server.key.value}


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    from mapperator_app.launch import client_headers

    return Client(server.url, headers=client_headers(server.port), verbose=False, download_files=False)


def song(folder: Path) -> Path:
    path = folder / "song.wav"
    sf.write(path, np.zeros(22050, dtype=np.float32), 22050)
    return path


def private_file(folder: Path, name: str = "id_rsa") -> Path:
    path = folder / name
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def files_holding_the_secret(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and SECRET.strip() in p.read_bytes()]


# --- the key ---------------------------------------------------------------------------------------------------


ROUTES = [("GET", ""), ("HEAD", ""), ("GET", "config"), ("GET", "gradio_api/info"), ("GET", "theme.css"),
          ("POST", "gradio_api/queue/join"), ("GET", "gradio_api/queue/data?session_hash=abc"),
          ("POST", "gradio_api/upload"), ("GET", "gradio_api/file=/etc/passwd"), ("POST", "gradio_api/run/jobs"),
          ("GET", "gradio_api/startup-events")]


@pytest.mark.parametrize("method,route", ROUTES)
def test_every_route_refuses_a_request_without_the_key(server, method, route):
    with http() as plain:
        assert plain.request(method, server.url + route).status_code == 401
    with http(headers={access.KEY_HEADER: "wrong"}) as wrong:
        assert wrong.request(method, server.url + route).status_code == 401
    with http(cookies={access.cookie_name(server.port): "wrong"}) as wrong:
        assert wrong.request(method, server.url + route).status_code == 401


def test_the_refusal_says_how_to_get_in(server):
    with http() as plain:
        answer = plain.get(server.url)
    assert answer.status_code == 401 and "mapperator app" in answer.text and server.key.value not in answer.text


@pytest.mark.parametrize("host,origin", [
    ("evil.example:{port}", "http://evil.example:{port}"),  # DNS rebinding: the page's own origin
    ("evil.example:{port}", None),
    ("127.0.0.1:{port}", "http://evil.example"),  # another web page
    ("127.0.0.1:{port}", "null"),
    ("127.0.0.1:{port}", "http://127.0.0.1:{other}"),  # another local server's page
    ("127.0.0.1:{other}", None),
    ("127.0.0.1:{port}", "https://127.0.0.1:{port}"),
])
def test_a_foreign_host_or_origin_is_refused_even_with_the_key(server, host, origin):
    values = {"port": server.port, "other": server.port + 1}
    headers = {**keyed(server), "Host": host.format(**values)}
    if origin is not None:
        headers["Origin"] = origin.format(**values)
    with http(headers=headers) as foreign:
        assert foreign.get(server.url + "config").status_code == 403
        assert foreign.post(server.url + "gradio_api/run/jobs", json={"data": []}).status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST"])
def test_loopback_names_of_the_own_port_are_accepted(server, host):
    headers = {**keyed(server), "Host": f"{host}:{server.port}", "Origin": f"http://{host}:{server.port}"}
    with http(headers=headers) as local:
        assert local.get(server.url + "config").status_code == 200


def test_the_page_loads_with_the_key_in_the_address_then_works_by_cookie(server):
    with http() as browser:
        page = browser.get(server.page_url)
        assert page.status_code == 200 and "Mapperator" in page.text
        cookie = page.headers["set-cookie"]
        assert cookie.startswith(f"{access.cookie_name(server.port)}={server.key.value};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert browser.get(server.url).status_code == 200  # the page after the first visit
        assert browser.get(server.url + "config").status_code == 200
        assert browser.get(server.url + "gradio_api/info").status_code == 200
        joined = browser.post(server.url + "gradio_api/run/jobs", json={"data": []},
                              headers={"Origin": server.url.rstrip("/")})
        assert joined.status_code == 200 and "No jobs running" in joined.text
    with http() as stranger:  # the key travels in the cookie, not in the connection
        assert stranger.get(server.url + "config").status_code == 401


def test_the_page_drops_the_key_from_its_address(server):
    from mapperator_app.ui import HEAD

    assert 'searchParams.delete("key")' in HEAD and "history.replaceState" in HEAD


def test_gradio_client_reads_the_key_from_a_private_file(server, client):
    path = access.key_file(server.port)
    assert path is not None and path == server.key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert str(server.port) in path.name and path.parent.is_relative_to(os.environ["XDG_RUNTIME_DIR"])
    assert "No jobs running" in client.predict(api_name="/jobs")
    from gradio_client import Client

    with pytest.raises(Exception, match="credentials"):
        Client(server.url, verbose=False, download_files=False)


def test_the_key_file_is_removed_when_the_server_stops(server, tmp_path):
    from mapperator_app.launch import client_headers, start_server
    from mapperator_app.settings import Settings

    second = start_server(None, Settings(tmp_path / "settings.json"))
    try:
        assert second.key.value != server.key.value  # a new key per launch
        assert client_headers(second.port) == {access.KEY_HEADER: second.key.value}
    finally:
        second.stop()
    assert access.key_file(second.port) is None
    with pytest.raises(OptionError, match=f"no Mapperator app of yours is running on port {second.port}"):
        client_headers(second.port)


def _asgi_call(guard, scope):
    sent, inner = [], []

    async def app(scope, receive, send):
        inner.append(scope)

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    asyncio.run(access.AccessGuard(app, guard)(scope, receive, send))
    return inner, sent


def test_websockets_are_guarded_too():
    key = access.AccessKey()
    scope = {"type": "websocket", "path": "/ws", "query_string": b"", "server": ("127.0.0.1", 7000),
             "headers": [(b"host", b"127.0.0.1:7000")]}
    inner, sent = _asgi_call(key, scope)
    assert inner == [] and sent == [{"type": "websocket.close", "code": 1008}]
    inner, sent = _asgi_call(key, dict(scope, headers=[(b"host", b"127.0.0.1:7000"),
                                                       (access.KEY_HEADER.encode(), key.value.encode())]))
    assert len(inner) == 1 and sent == []
    inner, sent = _asgi_call(key, dict(scope, headers=[(b"host", b"evil.example:7000"),
                                                       (access.KEY_HEADER.encode(), key.value.encode())]))
    assert inner == [] and sent == [{"type": "websocket.close", "code": 1008}]


def test_host_and_origin_parsing():
    assert access.foreign_problem({"host": "[::1]:80"}, 80) is None
    assert access.foreign_problem({"host": "127.0.0.1"}, 80) is None
    assert access.foreign_problem({"host": "127.0.0.1:80", "origin": "http://[::1]"}, 80) is None
    for host in ("", "127.0.0.1:x", "127.0.0.1.evil.example:80", "localhost.:80", "[::1:80"):
        assert access.foreign_problem({"host": host}, 80) is not None, host


# --- paths in their role -------------------------------------------------------------------------------------


def test_a_private_file_as_background_is_refused_and_nothing_is_written(client, tmp_path):
    """The exfiltration call of the issue: a private file packed into a world-readable .osz."""
    folder = tmp_path / "music"
    folder.mkdir()
    secret = private_file(tmp_path)
    out = tmp_path / "x"  # not there yet: the engine would create it
    status, path, *_ = client.predict(audio_path=str(song(folder)), background=str(secret), export_osz=True,
                                      output_path=str(out), api_name="/generate")
    assert "mp-error" in status and "background" in status and "not a PNG or JPEG image" in status and path == ""
    assert not out.exists() and sorted(p.name for p in folder.iterdir()) == ["song.wav"]
    assert files_holding_the_secret(tmp_path) == [secret]
    assert "No jobs running" in client.predict(api_name="/jobs")  # refused before any job was queued


def test_a_private_file_as_song_or_beatmap_is_refused(client, tmp_path):
    secret = private_file(tmp_path)
    status, *_ = client.predict(audio_path=str(secret), output_path=str(tmp_path), api_name="/generate")
    assert "mp-error" in status and "not a readable audio file" in status
    named_like_a_map = private_file(tmp_path, "secret.osu")
    status, *_ = client.predict(audio_path=str(song(tmp_path)), beatmap_path=str(named_like_a_map),
                                output_path=str(tmp_path), api_name="/generate")
    assert "mp-error" in status and "not an osu! beatmap" in status
    status, *_ = client.predict(beatmap_path=str(named_like_a_map), ai=False, api_name="/mod")
    assert "mp-error" in status and "not an osu! beatmap" in status
    status, *_ = client.predict(beatmap_path="/etc/passwd", ai=False, api_name="/mod")
    assert "mp-error" in status and "must be an .osu file" in status
    status, *_ = client.predict(audio_path=str(secret), model="v32", api_name="/timing")
    assert "mp-error" in status and "not a readable audio file" in status
    assert sorted(files_holding_the_secret(tmp_path)) == sorted([secret, named_like_a_map])


@pytest.mark.parametrize("output", ["/", "/etc", "/usr/share"])
def test_generate_refuses_to_write_into_system_folders(client, tmp_path, output):
    status, path, *_ = client.predict(audio_path=str(song(tmp_path)), output_path=output, api_name="/generate")
    assert "mp-error" in status and "system folder" in status and path == ""


def test_generate_refuses_an_output_folder_in_a_missing_folder(client, tmp_path):
    status, *_ = client.predict(audio_path=str(song(tmp_path)), output_path=str(tmp_path / "a" / "b"),
                                api_name="/generate")
    assert "mp-error" in status and "does not exist" in status


def test_open_output_folder_opens_only_folders_of_maps_this_run_wrote(server, client, tmp_path, monkeypatch):
    from mapperator_app import osu

    opened = []
    monkeypatch.setattr(osu, "open_path", lambda p: opened.append(Path(p)) or f"Opened {p}")
    for path in (tmp_path, tmp_path / "map.osu", "/etc", "/"):
        message = client.predict(str(path), api_name="/open_output_folder")
        assert "is not a map this app wrote" in message, message
    assert "is not a map this app wrote" in client.predict(str(tmp_path / "map.osu"), api_name="/open_in_osu")
    assert opened == []
    written = tmp_path / "map.osu"
    written.write_text("osu file format v14\n")
    server.context.written.add(written)
    assert client.predict(str(written), api_name="/open_output_folder") == f"Opened {tmp_path}"
    assert opened == [tmp_path]


@pytest.mark.parametrize("songs,output", [("/etc", ""), ("/", ""), ("", "/"), ("", "/etc"), ("", "/usr/lib")])
def test_save_settings_refuses_system_folders(server, client, songs, output):
    before = (server.context.settings.songs_folder, server.context.settings.output_folder)
    message = client.predict(songs, output, api_name="/save_settings")
    assert message.startswith("**Not saved:**") and "system folder" in message
    assert (server.context.settings.songs_folder, server.context.settings.output_folder) == before


def test_save_settings_keeps_folders_of_the_user(server, client, tmp_path):
    songs, out = tmp_path / "Songs", tmp_path / "maps"
    songs.mkdir()
    out.mkdir()
    assert client.predict(str(songs), str(out), api_name="/save_settings").startswith("Saved")
    assert (server.context.settings.songs_folder, server.context.settings.output_folder) == (str(songs), str(out))


def test_image_check_reads_the_first_bytes(tmp_path):
    Image.new("RGB", (8, 8), "pink").save(tmp_path / "bg.png")
    Image.new("RGB", (8, 8), "pink").save(tmp_path / "bg.jpg")
    (tmp_path / "bg.png").rename(tmp_path / "really-a-png.jpg")  # the name does not matter, the bytes do
    assert path_checks.check_image(tmp_path / "really-a-png.jpg").name == "really-a-png.jpg"
    assert path_checks.check_image(str(tmp_path / "bg.jpg")) == tmp_path / "bg.jpg"
    with pytest.raises(OptionError, match="not a PNG or JPEG image"):
        path_checks.check_image(private_file(tmp_path, "bg2.png"))
    with pytest.raises(OptionError, match="image file not found"):
        path_checks.check_image(tmp_path / "missing.png")


def test_save_path_rules(tmp_path):
    assert path_checks.check_save_path("", tmp_path, "t.osu") == tmp_path / "t.osu"
    assert path_checks.check_save_path(str(tmp_path), None, "t.osu") == tmp_path / "t.osu"
    assert path_checks.check_save_path(str(tmp_path / "timing"), None, "t.osu") == tmp_path / "timing.osu"
    assert path_checks.check_save_path(str(tmp_path / "a.OSU"), None, "t.osu") == tmp_path / "a.OSU"
    for bad, words in (("/etc/x.osu", "system folder"), ("/x.osu", "system folder"),
                       (str(tmp_path / "no" / "x.osu"), "does not exist"), ("", "choose where")):
        with pytest.raises(OptionError, match=words):
            path_checks.check_save_path(bad, None, "t.osu")
    (tmp_path / "dir.osu").mkdir()
    with pytest.raises(OptionError, match="exists and is not a file"):
        path_checks.check_save_path(str(tmp_path / "dir"), None, "t.osu")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX system folders")
def test_system_folders(tmp_path):
    for folder in ("/", "/etc", "/etc/ssh", "/usr/share", "/home", "/var", "/proc/self", "/etc/../usr/lib"):
        assert path_checks.is_system_folder(folder), folder
    (tmp_path / "link").symlink_to("/etc")
    for folder in ("/tmp", "/var/tmp", tmp_path, "~"):
        assert not path_checks.is_system_folder(folder), folder
    assert path_checks.is_system_folder(tmp_path / "link")  # links are followed


# --- the port ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_ports_outside_1_to_65535_are_refused(port):
    from mapperator_app.launch import check_port

    with pytest.raises(OptionError, match=f"--port {port} is not a port: choose one from 1 to 65535"):
        check_port(port)


def test_mapperator_app_with_port_99999_says_so_before_starting(tmp_path):
    env = dict(os.environ, **isolated_environment(tmp_path), PYTHONPATH=str(REPO))
    env.pop("GRADIO_SERVER_PORT", None)
    done = subprocess.run([sys.executable, "-m", "mapperator_app.cli", "app", "--browser", "--no-open", "--port",
                           "99999"], env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --port 99999 is not a port: choose one from 1 to 65535"
    assert done.stdout == ""
    env["GRADIO_SERVER_PORT"] = "70000"
    done = subprocess.run([sys.executable, "-m", "mapperator_app.cli", "app", "--browser", "--no-open"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 2 and "GRADIO_SERVER_PORT='70000' is not a port" in done.stderr
    assert "unexpected" not in done.stderr
