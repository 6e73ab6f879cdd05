"""Resumable downloads of checkpoint weights into the Hugging Face cache.

huggingface_hub (2.x) writes every download to a temporary file of its own process and deletes it when the
download fails or is cancelled, so weights cut off at 90 % start again from zero. For the weight files we
fetch the blob ourselves, appending to ``blobs/<etag>.mapperator-partial`` with HTTP range requests, and
move it into place once its size and checksum are right. huggingface_hub then links the finished blob into
the snapshot as usual: it never fetches a blob that is already in the cache.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".mapperator-partial"
CHUNK_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def partial_path(blob: Path) -> Path:
    return blob.with_name(blob.name + PARTIAL_SUFFIX)


def fetch_blob(repo_id: str, filename: str, revision: str | None = None, progress: type | None = None) -> Path:
    """Bring one file's blob into the cache, continuing the partial file an earlier attempt left; returns
    the blob path. ``progress`` is a tqdm-compatible class (bytes); an exception it raises (a cancel) stops
    the download and keeps what has arrived."""
    import httpx
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo_id, filename, revision=revision)
    meta = get_hf_file_metadata(url)
    if not meta.etag or meta.size is None:
        raise OSError(f"the hub gave no checksum or size for {filename}")
    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    blob = storage / "blobs" / meta.etag
    if blob.exists():
        return blob
    blob.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(blob)
    done = partial.stat().st_size if partial.exists() else 0
    if done > meta.size:
        done = 0
    bar = progress(total=meta.size, initial=done, unit="B", unit_scale=True, desc=filename) if progress else None
    headers = build_hf_headers()
    if done:
        headers["Range"] = f"bytes={done}-"
        log.info("resuming %s/%s at byte %d of %d", repo_id, filename, done, meta.size)
    try:
        with httpx.stream("GET", url, headers=headers, follow_redirects=True,
                          timeout=httpx.Timeout(30.0, connect=10.0)) as response:
            response.raise_for_status()
            if done and response.status_code != 206:  # the server sent the whole file after all
                done = 0
                if bar is not None:
                    bar.reset(total=meta.size)
            with open(partial, "ab" if done else "wb") as f:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    f.write(chunk)
                    done += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    if done != meta.size:
        raise OSError(f"{filename}: the connection closed after {done} of {meta.size} bytes")
    if _SHA256.match(meta.etag) and _sha256(partial) != meta.etag:
        partial.unlink()
        raise OSError(f"{filename} arrived damaged (checksum mismatch); it will be fetched again")
    os.replace(partial, blob)
    return blob


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
