"""Models tab: which versions are in the Hugging Face cache, and downloading one with byte progress.

API: ``/models_list``, ``/download_model`` (version, gamemodes; yields progress), ``/cancel_download``.
"""
from __future__ import annotations

import threading
from typing import Any

import gradio as gr
import pandas as pd

import engine
from engine import PRESETS, Message

from .. import forms, models
from ..i18n import K, render, t
from ..ui import AppContext, L, cancel_button, follow, on_page_load, session_of, with_signature
from ..worker import Job, JobState

COLUMNS = [K("models.col_version"), K("models.col_repo"), K("models.col_installed"), K("models.col_modes"),
           K("models.col_size"), K("models.col_folder")]


def model_rows(lang: str = "en") -> list[list[Any]]:
    rows = []
    for m in models.scan_models():
        state = t("models.installed_yes", lang) if m.installed else (
            t("models.installed_partly", lang) if m.partial or m.size_bytes else t("models.installed_no", lang))
        modes = ", ".join(engine.GAMEMODE_NAMES[g] for g in m.gamemodes) or "—"
        size = models.format_bytes(m.size_bytes, lang) if m.size_bytes else "—"
        rows.append([m.version, m.repo_id, state, modes, size, str(m.snapshot) if m.snapshot else ""])
    return rows


def model_table(lang: str = "en") -> pd.DataFrame:
    return pd.DataFrame(model_rows(lang), columns=[t(key, lang) for key in COLUMNS])


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    gr.Markdown(L("models.intro"))
    table = gr.Dataframe(headers=[t(key) for key in COLUMNS], value=[], interactive=False, label=L("tab.models"),
                         elem_id="models-table")
    refresh = gr.Button(L("models.refresh"), size="sm", elem_id="models-refresh")
    with gr.Row():
        version = gr.Dropdown(list(PRESETS), value="v32", allow_custom_value=True, label=L("models.version"),
                              elem_id="models-version")
        gamemodes = gr.CheckboxGroup(forms.GAMEMODES, value=forms.GAMEMODES, label=L("models.gamemodes"),
                                     elem_id="models-modes")
    with gr.Row():
        download = gr.Button(L("models.download"), variant="primary", elem_id="models-download")
        cancel = gr.Button(L("common.cancel"), variant="stop", elem_id="models-cancel")
    status = gr.HTML(forms.progress_html(None), label=L("common.progress"), elem_id="models-status")

    def models_list(request: gr.Request):
        """One row per published version (installed or not) and other Mapperatorinator repos in the cache."""
        return model_table(ctx.lang(request))

    def models_page(request: gr.Request):
        lang = ctx.lang(request)
        return model_table(lang), forms.progress_html(None, 0, lang)

    refresh.click(models_list, None, table, api_name="models_list")
    on_page_load(ctx, models_page, [table, status], api_visibility="private")

    def download_model(values: dict[str, Any], request: gr.Request | None):
        """Download a version (and its game mode models) into the Hugging Face cache; yields byte progress."""
        lang = ctx.lang(request)

        def show(job: Job, ahead: int):
            return forms.progress_html(job, ahead, lang), gr.update()

        def finish(job: Job):
            if job.state is JobState.DONE:
                m = job.result
                text = t("models.installed", lang, version=m.version, size=models.format_bytes(m.size_bytes, lang),
                         folder=str(m.snapshot))
                return forms.note_html(text, lang), model_table(lang)
            return forms.progress_html(job, 0, lang), model_table(lang)

        name = (values.get("version") or "").strip()
        if not name:
            yield forms.error_html(t("models.choose_version", lang), lang), gr.update()
            return
        modes = [forms.gamemode_index(m) for m in values.get("gamemodes") or []]

        def run(progress, cancel: threading.Event):
            return models.download_version(name, modes, progress=progress, cancel=cancel)

        job = ctx.worker.submit("download", Message("job.download", "Download {name}", name=name), run,
                                session_of(request))
        yield forms.progress_html(job, ctx.worker.position(job), lang), gr.update()
        yield from follow(ctx.worker, job, show, finish)

    download.click(with_signature(download_model, ["version", "gamemodes"]), [version, gamemodes], [status, table],
                   api_name="download_model", concurrency_limit=None, show_progress="hidden")

    cancel_button(ctx, cancel, status, "download", "cancel_download",
                  "Stop this page's download (what arrived stays; Download fetches the rest).")
