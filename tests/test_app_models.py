"""The model manager against a local stand-in for the Hugging Face hub: install state, byte progress, cancel and
finishing later, the checkpoint's own descriptor/mapper lists, and what it says when the hub cannot be reached."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from engine.errors import Cancelled, ModelError
from engine.tokenizer import Tokenizer
from mapperator_app import models
from tests.conftest import REPO as REPO_ROOT
from tests.conftest import UPSTREAM, need
from tests.e2e.fake_hub import FakeHub

REPO = "OliBomby/Mapperatorinator-v32"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub_env(tmp_path):
    """Environment for a child process: its own Hugging Face cache, and an endpoint nothing listens on.

    huggingface_hub reads HF_HOME and HF_ENDPOINT once, at import, so each scenario runs in a fresh process.
    """
    return dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
                HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO_ROOT))


def manager(env: dict, body: str, endpoint: str | None = None) -> dict:
    """Run ``body`` (Python using ``models``, setting ``out``) in a child process; returns ``out``."""
    code = "import json, threading\nfrom pathlib import Path\nfrom mapperator_app import models\n" \
           "from engine.errors import Cancelled, ModelError\nout = {}\n" + textwrap.dedent(body) + \
           "\nprint('RESULT' + json.dumps(out, default=str))\n"
    if endpoint:
        env = dict(env, HF_ENDPOINT=endpoint)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)  # an upper bound: seconds on a free machine
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def fixture_checkpoints():
    root = need(UPSTREAM / "trained" / "v32" / "checkpoint")
    taiko = need(UPSTREAM / "trained" / "v31" / "checkpoint")
    return root, taiko


def test_empty_cache_lists_every_version_as_missing(hub_env):
    out = manager(hub_env, """
        out["rows"] = [(r.version, r.installed) for r in models.scan_models()]
        out["installed"] = sorted(models.installed_versions())
        vocab = models.checkpoint_vocabulary("v32", 0)
        out["descriptors"], out["note"] = vocab.descriptors, vocab.note
    """)
    assert out["rows"] == [["v29", False], ["v30", False], ["v31", False], ["v32", False], ["v32-mini", False]]
    assert out["installed"] == [] and out["descriptors"] == [] and "not downloaded" in out["note"]


@pytest.mark.slow
def test_download_reports_bytes_and_installs_into_the_cache(hub_env):
    root, taiko = fixture_checkpoints()
    with FakeHub(REPO, root, {"gamemode=1": taiko}) as hub:
        out = manager(hub_env, """
            updates = []
            state = models.download_version("v32", [1, 3], progress=updates.append)
            out["updates"] = updates
            out["installed"], out["gamemodes"], out["snapshot"] = state.installed, state.gamemodes, str(state.snapshot)
            out["versions"] = sorted(models.installed_versions())
            taiko, std = models.checkpoint_vocabulary("v32", 1), models.checkpoint_vocabulary("v32", 0)
            out["taiko"] = [str(taiko.folder), taiko.descriptors]
            out["std"] = [str(std.folder), std.mapper_ids]
        """, endpoint=hub.url)
    # the repo has no gamemode=3 folder: nothing to fetch for it
    assert out["installed"] and out["gamemodes"] == [1] and out["versions"] == ["v32"]
    snapshot = Path(out["snapshot"])
    assert str(snapshot).startswith(hub_env["HF_HOME"])
    assert (snapshot / "model.safetensors").read_bytes() == (root / "model.safetensors").read_bytes()
    total = sum(p.stat().st_size for p in root.iterdir())
    updates = out["updates"]
    assert any(f"of {models.format_bytes(total)}" in u[1] for u in updates)
    fractions = [u[0] for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    root_bytes = [u[0] for u in updates if u[1].startswith("Downloading v32: ")]  # the root part: first half
    assert root_bytes and max(root_bytes) == pytest.approx(1 / 2)  # then gamemode=1 (the repo has no 3)
    assert all(u[2] is None or u[2].endswith("/s") for u in updates)
    # the pickers read the chosen mode's own tokenizer: gamemode=1 is a different checkpoint here
    assert out["taiko"] == [str(snapshot / "gamemode=1"), Tokenizer.from_file(taiko / "tokenizer.json").descriptor_names()]
    assert out["std"] == [str(snapshot), sorted(Tokenizer.from_file(root / "tokenizer.json").mapper_idx)]


@pytest.mark.slow
def test_cancelled_download_resumes_where_it_stopped(hub_env, tmp_path):
    """A cancelled download keeps the bytes that arrived; the next one asks the hub only for the rest."""
    root, _ = fixture_checkpoints()
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("config.json", "tokenizer.json", "generation_config.json"):
        shutil.copy(root / name, repo / name)
    (repo / "model.safetensors").write_bytes(os.urandom(24 * 1024 * 1024))
    with FakeHub(REPO, repo, bytes_per_second=6_000_000) as hub:
        out = manager(hub_env, """
            cancel = threading.Event()
            def progress(update):
                if " MB of " in update[1] and float(update[1].split(": ", 1)[1].split()[0]) >= 10:
                    cancel.set()  # stop once the first 10 MiB chunk has arrived
            try:
                models.download_version("v32", [], progress=progress, cancel=cancel)
            except Cancelled as e:
                out["cancelled"] = str(e)
            row = next(m for m in models.scan_models() if m.version == "v32")
            out["after_cancel"] = [row.installed, row.partial]
        """, endpoint=hub.url)
        hub.bytes_per_second = None
        again = manager(hub_env, """
            state = models.download_version("v32", [])
            out["state"] = [state.installed, state.partial, str(state.snapshot)]
        """, endpoint=hub.url)
    assert "already downloaded is kept" in out["cancelled"] and out["after_cancel"] == [False, True]
    installed, partial, snapshot = again["state"]
    assert installed and not partial
    fetched = [name for name, _ in hub.ranges]
    assert sorted(fetched) == ["config.json", "generation_config.json", "model.safetensors", "model.safetensors",
                               "tokenizer.json"]  # the small files once; only the cut-off weights twice ...
    first, second = [start for name, start in hub.ranges if name == "model.safetensors"]
    assert first == 0 and second >= 10 * 1024 * 1024  # ... the second time from where the first stopped
    assert (Path(snapshot) / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    leftovers = [p.name for p in Path(snapshot).parents[1].joinpath("blobs").iterdir() if "partial" in p.name]
    assert leftovers == []


def test_a_damaged_partial_download_is_thrown_away_and_fetched_again(hub_env, tmp_path):
    """Bytes left by an earlier attempt that do not match the file fail the checksum: the partial file is
    removed, so the next download starts clean instead of appending to garbage."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "model.safetensors").write_bytes(os.urandom(3 * 1024 * 1024))
    with FakeHub(REPO, repo) as hub:
        out = manager(hub_env, """
            import hashlib
            from huggingface_hub import constants
            from engine.hub_resume import fetch_blob, partial_path
            weights = Path(%r).read_bytes()
            blobs = Path(constants.HF_HUB_CACHE) / "models--OliBomby--Mapperatorinator-v32" / "blobs"
            blobs.mkdir(parents=True)
            partial = partial_path(blobs / hashlib.sha256(weights).hexdigest())
            partial.write_bytes(b"not the start of that file" * 1000)
            try:
                fetch_blob("OliBomby/Mapperatorinator-v32", "model.safetensors")
            except OSError as e:
                out["error"] = str(e)
            out["partial_left"] = partial.exists()
            blob = fetch_blob("OliBomby/Mapperatorinator-v32", "model.safetensors")
            out["same"] = blob.read_bytes() == weights
        """ % str(repo / "model.safetensors"), endpoint=hub.url)
    assert "checksum mismatch" in out["error"] and out["partial_left"] is False and out["same"] is True
    assert [start for _, start in hub.ranges] == [26000, 0]  # resumed after the stale bytes, then from scratch


def test_unreachable_hub_says_what_to_do(hub_env):
    out = manager(hub_env, """
        try:
            models.download_version("v32", [0])
        except ModelError as e:
            out["error"] = str(e)
        out["problem"] = models.hub_problem("OliBomby/Mapperatorinator-v32")
    """)
    text = out["error"]
    assert "cannot be reached" in text and "not downloaded yet" in text and "mapperator download v32" in text
    assert out["problem"] and "cannot be reached" in out["problem"]


@pytest.mark.slow
def test_unreachable_hub_with_the_model_installed(hub_env):
    root, _ = fixture_checkpoints()
    with FakeHub(REPO, root) as hub:
        manager(hub_env, "models.download_version('v32', [])", endpoint=hub.url)
    out = manager(hub_env, """
        try:
            models.download_version("v32", [])
        except ModelError as e:
            out["error"] = str(e)
        out["installed"] = sorted(models.installed_versions())
    """)
    assert "keeps working offline" in out["error"] and out["installed"] == ["v32"]


def test_a_folder_is_not_downloaded():
    root, _ = fixture_checkpoints()
    with pytest.raises(ModelError, match="nothing to download"):
        models.download_version(str(root), [])
    vocab = models.checkpoint_vocabulary(str(root), 0)
    assert len(vocab.descriptors) == len(Tokenizer.from_file(root / "tokenizer.json").descriptor_names()) > 0


def test_byte_progress_follows_the_largest_byte_bar():
    seen = []
    progress = models.ByteProgress(lambda done, total, rate: seen.append((done, total)), interval=0)
    files = progress.tqdm_class(total=4, unit="it", name="huggingface_hub.snapshot_download")
    data = progress.tqdm_class(total=1000, unit="B", unit_scale=True)
    data.update(250)
    files.update(1)
    data.update(750)
    assert seen[0] == (250, 1000) and seen[-1] == (1000, 1000)
    cancel = threading.Event()
    stopping = models.ByteProgress(lambda *a: None, cancel)
    bar = stopping.tqdm_class(total=10, unit="B")
    cancel.set()
    with pytest.raises(Cancelled):
        bar.update(1)


@pytest.mark.parametrize("lang, shown", [("en", "1.5 GB"), ("fr", "1,5 GB"), ("de", "1,5 GB"), ("ja", "1.5 GB")])
def test_sizes_use_the_languages_decimal_mark(lang, shown):
    assert models.format_bytes(1_500_000_000, lang) == shown
    assert models.format_bytes(512, lang) == "512 B"
