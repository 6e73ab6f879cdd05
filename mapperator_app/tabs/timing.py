"""Timing tab: a song's timing points (offset, BPM, meter, changes) from the model, in a table, written as .osu.

API: ``/timing`` (audio_path, model, super_timing, output_path, device, precision, seed, timer_iterations,
timer_bpm_threshold; yields progress, returns the table and writes the .osu), ``/cancel_timing``,
``/restore_timing``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from engine import PRESETS, MapperatorError, Message, OptionError

from .. import forms, models, path_checks
from ..i18n import t
from ..ui import AppContext, L, cancel_button, follow, on_page_load, path_field, session_of, with_signature
from ..worker import Job, JobState

TIMING_VERSIONS = ["v32", "v32-mini", "v31", "v30", "v29"]


def timing_target(value: str | None, audio_path: str) -> str:
    """Where the timing .osu goes: an .osu path (``.osu`` added to another name), or a folder (the song's
    when blank), where it gets a map's usual name; the folder must be one of yours that you can write in."""
    text = (value or "").strip()
    folder = Path(text).expanduser() if text else Path(audio_path).expanduser().parent
    if not text or folder.is_dir():
        return str(path_checks.check_writable_folder(folder, Message("path.field_save", "save path")))
    return str(path_checks.check_save_path(text, None, "timing.osu"))


def _timing_job(values: dict[str, Any], download_first: bool, on_written):
    import engine

    options = forms.clean_values({k: values.get(k) for k in ("seed", "timer_iterations", "timer_bpm_threshold")})
    for key, kind in (("seed", int), ("timer_iterations", int), ("timer_bpm_threshold", float)):
        if key in options:
            try:
                options[key] = kind(options[key])
            except (TypeError, ValueError):
                raise OptionError(Message("error.not_a_number", "{key}={value} is not a number", key=key,
                                          value=repr(options[key]))) from None
    request = engine.TimingOptions(
        audio_path=values["audio_path"], model_path=values["model"], super_timing=bool(values.get("super_timing")),
        output_path=values["output_path"], device=values.get("device") or "auto",
        precision=values.get("precision") or "auto", **options)

    def run(progress, cancel: threading.Event):
        if download_first:
            models.download_version(values["model"], [], progress=progress, cancel=cancel)
        result = engine.timing(request, progress=progress, cancel=cancel)
        on_written(result.path)
        return result

    return run


def summary_text(result, lang: str = "en") -> str:
    red = [p for p in result.timing_points if p.uninherited]
    if not red:
        return t("timing.none_found", lang)
    first = red[0]
    bpms = sorted({round(60000 / p.beat_length, 2) for p in red if p.beat_length > 0})
    bpm_text = (t("timing.bpm", lang, bpm=float(bpms[0])) if len(bpms) == 1
                else t("timing.bpm_range", lang, low=float(bpms[0]), high=float(bpms[-1])))
    return t("timing.summary", lang, count=len(red), offset=float(first.time), bpm=bpm_text,
             seconds=float(result.seconds), version=result.version)


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    fields: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=2):
            fields["audio_path"] = path_field(L("common.song"), "audio", elem_id="tm-audio",
                                              placeholder=L("common.audio_placeholder"))
            with gr.Row():
                fields["model"] = gr.Dropdown(forms.model_choices(TIMING_VERSIONS, None), value="v32", allow_custom_value=True, label=L("common.model"),
                                              elem_id="tm-model")
                fields["super_timing"] = gr.Checkbox(False, label=L("timing.super_timing"),
                                                     elem_id="tm-super")
            fields["output_path"] = path_field(L("timing.save_as"), "save", elem_id="tm-save-path", save_name="timing.osu",
                                               placeholder=L("timing.save_placeholder"),
                                               info=L("timing.save_info"))
            with gr.Accordion(L("common.advanced"), open=False):
                with gr.Row():
                    fields["device"] = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value="auto",
                                                   allow_custom_value=True, label=L("common.device"))
                    fields["precision"] = gr.Dropdown(forms.PRECISIONS, value="auto", label=L("common.precision"),
                                                      info=L("common.precision_info"))
                    fields["seed"] = gr.Textbox(value="", label=L("common.seed"), placeholder=L("common.random"))
                with gr.Row():
                    fields["timer_iterations"] = gr.Textbox(value="", label=L("timing.timer_iterations"), placeholder="20")
                    fields["timer_bpm_threshold"] = gr.Textbox(value="", label=L("timing.timer_bpm_threshold"), placeholder="0.1")
        with gr.Column(scale=1):
            with gr.Row():
                run = gr.Button(L("timing.start"), variant="primary", elem_id="tm-start")
                cancel = gr.Button(L("common.cancel"), variant="stop", elem_id="tm-cancel")
            status = gr.HTML(forms.progress_html(None), label=L("common.progress"), elem_id="tm-status")
            summary = gr.Markdown("", label=L("common.summary"), elem_id="tm-summary")
            saved_message = gr.Markdown("", elem_id="tm-saved")
    table = gr.Dataframe(headers=forms.TIMING_HEADERS, value=[], interactive=False, elem_id="tm-table",
                         max_height=480)

    names = list(fields)
    components = [fields[n] for n in names]
    outputs = [status, table, summary, saved_message]

    def timing(values: dict[str, Any], request: gr.Request | None):
        """Find the song's timing points; yields progress, returns the table."""
        lang = ctx.lang(request)

        def show(job: Job, ahead: int):
            return forms.progress_html(job, ahead, lang), gr.update(), gr.update(), gr.update()

        def finish(job: Job):
            if job.state is not JobState.DONE:
                return forms.progress_html(job, 0, lang), [], "", ""
            result = job.result
            table = pd.DataFrame(forms.timing_rows(result.timing_points, lang), columns=forms.timing_headers(lang))
            return (forms.progress_html(job, 0, lang), table, summary_text(result, lang),
                    t("timing.wrote", lang, path=f"`{result.path}`"))

        audio = (values.get("audio_path") or "").strip()
        model = (values.get("model") or "v32").strip()
        try:
            if not audio:
                raise OptionError(Message("timing.choose_song", "choose the song (audio file) to time"))
            if model == "v30" and not values.get("super_timing"):
                raise OptionError(Message("timing.v30_needs_super",
                                          "v30 has no timing pass of its own: tick super timing or choose v31/v32"))
            path_checks.check_audio(audio)
            target = timing_target(values.get("output_path"), audio)
        except MapperatorError as e:
            yield forms.error_html(forms.error_message(e), lang), [], "", ""
            return
        values.update(audio_path=audio, model=model)
        ctx.settings.remember("timing", values)
        download_first = model in PRESETS and model not in models.installed_versions()
        try:
            function = _timing_job({**values, "output_path": target}, download_first, ctx.written.add)
        except MapperatorError as e:
            yield forms.error_html(forms.error_message(e), lang), [], "", ""
            return
        job = ctx.worker.submit("timing", Message("job.timing", "Timing {name} ({model})", name=Path(audio).name,
                                                  model=model), function, session_of(request))
        yield forms.progress_html(job, ctx.worker.position(job), lang), [], "", ""
        yield from follow(ctx.worker, job, show, finish)

    run.click(with_signature(timing, names), components, outputs, api_name="timing", concurrency_limit=None,
              show_progress="hidden")

    cancel_button(ctx, cancel, status, "timing", "cancel_timing",
                  "Cancel this page's timing job (or, when it has none, every timing job).")

    def restore_timing(request: gr.Request):
        """The last values used on this tab, and the empty table in the page's language."""
        saved = ctx.settings.tab("timing")
        values = [saved.get(n, fields[n].value) for n in names]
        values[names.index("model")] = gr.update(value=values[names.index("model")],
                                                 choices=forms.model_choices(TIMING_VERSIONS, saved.get("model")))
        lang = ctx.lang(request)
        return (*values, pd.DataFrame([], columns=forms.timing_headers(lang)), forms.progress_html(None, 0, lang))

    on_page_load(ctx, restore_timing, [*components, table, status], api_name="restore_timing")
    fields["model"].change(lambda model: gr.update(choices=forms.model_choices(TIMING_VERSIONS, model)),
                           fields["model"], fields["model"], api_visibility="private", show_progress="hidden")
