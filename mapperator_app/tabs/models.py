"""Models tab: which versions are in the Hugging Face cache, and downloading one with byte progress.

API: ``/models_list``, ``/download_model`` (version, gamemodes; yields progress), ``/cancel_download``.
"""
from __future__ import annotations

import threading
from typing import Any

import gradio as gr

import engine
from engine import PRESETS

from .. import forms, models
from ..ui import AppContext, cancel_button, follow, on_page_load, session_of, with_signature
from ..worker import Job, JobState

HEADERS = ["Version", "Repository", "Installed", "Game mode models", "Size", "Folder"]


def model_rows() -> list[list[Any]]:
    rows = []
    for m in models.scan_models():
        state = "yes" if m.installed else ("partly (Download finishes it)" if m.partial or m.size_bytes else "no")
        modes = ", ".join(engine.GAMEMODE_NAMES[g] for g in m.gamemodes) or "—"
        rows.append([m.version, m.repo_id, state, modes, models.format_bytes(m.size_bytes) if m.size_bytes else "—",
                     str(m.snapshot) if m.snapshot else ""])
    return rows


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    gr.Markdown("Models live in the Hugging Face cache (`~/.cache/huggingface/hub`, or `HF_HOME`), shared with "
                "the `mapperator download` command. Installed models work offline; an interrupted download "
                "continues where it stopped.")
    table = gr.Dataframe(headers=HEADERS, value=[], interactive=False, label="Models", elem_id="models-table")
    refresh = gr.Button("Refresh", size="sm", elem_id="models-refresh")
    with gr.Row():
        version = gr.Dropdown(list(PRESETS), value="v32", allow_custom_value=True, label="Version or repo id",
                              elem_id="models-version")
        gamemodes = gr.CheckboxGroup(forms.GAMEMODES, value=forms.GAMEMODES, label="Also the game mode models "
                                     "(used when the repo has them)", elem_id="models-modes")
    with gr.Row():
        download = gr.Button("Download", variant="primary", elem_id="models-download")
        cancel = gr.Button("Cancel", variant="stop", elem_id="models-cancel")
    status = gr.HTML(forms.progress_html(None), label="Progress", elem_id="models-status")

    refresh.click(model_rows, None, table, api_name="models_list")
    on_page_load(ctx, model_rows, table, api_visibility="private")

    def render(job: Job, ahead: int):
        return forms.progress_html(job, ahead), gr.update()

    def finish(job: Job):
        if job.state is JobState.DONE:
            m = job.result
            text = f"{m.version} is installed ({models.format_bytes(m.size_bytes)}) in {m.snapshot}."
            return forms.note_html(text), model_rows()
        return forms.progress_html(job), model_rows()

    def download_model(values: dict[str, Any], request: gr.Request | None):
        """Download a version (and its game mode models) into the Hugging Face cache; yields byte progress."""
        name = (values.get("version") or "").strip()
        if not name:
            yield forms.error_html("choose a version to download"), gr.update()
            return
        modes = [forms.gamemode_index(m) for m in values.get("gamemodes") or []]

        def run(progress, cancel: threading.Event):
            return models.download_version(name, modes, progress=progress, cancel=cancel)

        job = ctx.worker.submit("download", f"Download {name}", run, session_of(request))
        yield forms.progress_html(job, ctx.worker.position(job)), gr.update()
        yield from follow(ctx.worker, job, render, finish)

    download.click(with_signature(download_model, ["version", "gamemodes"]), [version, gamemodes], [status, table],
                   api_name="download_model", concurrency_limit=None, show_progress="hidden")

    cancel_button(ctx, cancel, status, "download", "cancel_download",
                  "Stop this page's download (what arrived stays; Download fetches the rest).")
