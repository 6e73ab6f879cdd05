"""A tiny stand-in for the Hugging Face hub on 127.0.0.1, serving one folder as a model repo.

It answers the few requests huggingface_hub's ``snapshot_download`` makes (repo info, file tree, file
HEAD/GET with byte ranges), optionally slowly, and records the byte ranges asked for, so tests can watch a
real download's byte progress, cancel it half way and see what is fetched again (and from which byte).
"""
from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repo_id: str, folder: Path, subfolders: dict[str, Path] | None = None,
                 bytes_per_second: float | None = None):
        self.repo_id = repo_id
        self.files: dict[str, Path] = {p.name: p for p in sorted(Path(folder).iterdir()) if p.is_file()}
        for prefix, sub in (subfolders or {}).items():
            self.files.update({f"{prefix}/{p.name}": p for p in sorted(Path(sub).iterdir()) if p.is_file()})
        self.bytes_per_second = bytes_per_second
        self.ranges: list[tuple[str, int]] = []  # (file, first byte) of every GET
        self.requests: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def _json(self, handler, data, body: bool) -> None:
        raw = json.dumps(data).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        if body:
            handler.wfile.write(raw)

    def _missing(self, handler) -> None:
        handler.send_response(404)
        handler.send_header("Content-Length", "0")
        handler.send_header("X-Error-Code", "EntryNotFound")
        handler.end_headers()

    def _answer(self, handler, body: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        repo = re.escape(self.repo_id)
        if re.fullmatch(rf"/api/models/{repo}/revision/[^/]+", path):
            return self._json(handler, {"id": self.repo_id, "sha": COMMIT,
                                        "siblings": [{"rfilename": f} for f in self.files]}, body)
        if re.fullmatch(rf"/api/models/{repo}(/tree/[^/]+)?(/.*)?", path) and "/tree/" in path:
            entries = [{"type": "file", "path": name, "size": p.stat().st_size, "oid": self._sha(p)[:40],
                        "lfs": {"oid": self._sha(p), "size": p.stat().st_size, "pointerSize": 134}}
                       for name, p in self.files.items()]
            return self._json(handler, entries, body)
        if re.fullmatch(rf"/api/models/{repo}", path):
            return self._json(handler, {"id": self.repo_id, "sha": COMMIT,
                                        "siblings": [{"rfilename": f} for f in self.files]}, body)
        match = re.fullmatch(rf"/{repo}/resolve/[^/]+/(.+)", path)
        if not match or match.group(1) not in self.files:
            return self._missing(handler)
        name = match.group(1)
        file = self.files[name]
        data = file.read_bytes()
        start = 0
        ranged = handler.headers.get("Range")
        if ranged and body:
            start = int(re.match(r"bytes=(\d+)-", ranged).group(1))
        handler.send_response(206 if start else 200)
        etag = f'"{self._sha(file)}"'
        handler.send_header("ETag", etag)
        handler.send_header("X-Linked-Etag", etag)
        handler.send_header("X-Linked-Size", str(len(data)))
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if not body:
            return
        self.ranges.append((name, start))
        chunk = 64 * 1024
        try:
            for i in range(start, len(data), chunk):
                handler.wfile.write(data[i:i + chunk])
                handler.wfile.flush()
                if self.bytes_per_second:
                    time.sleep(chunk / self.bytes_per_second)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (a cancelled download)
