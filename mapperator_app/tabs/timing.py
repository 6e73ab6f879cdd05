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

from engine import PRESETS, MapperatorError, OptionError

from .. import forms, models, path_checks
from ..ui import AppContext, cancel_button, follow, on_page_load, path_field, session_of, with_signature
from ..worker import Job, JobState

TIMING_VERSIONS = ["v32", "v32-mini", "v31", "v30"]


def timing_target(value: str | None, audio_path: str) -> str:
    """Where the timing .osu goes: an .osu path (``.osu`` added to another name), or a folder (the song's
    when blank), where it gets a map's usual name; the folder must be one of yours that you can write in."""
    text = (value or "").strip()
    folder = Path(text).expanduser() if text else Path(audio_path).expanduser().parent
    if not text or folder.is_dir():
        return str(path_checks.check_writable_folder(folder, "save path"))
    return str(path_checks.check_save_path(text, None, "timing.osu"))


def _timing_job(values: dict[str, Any], download_first: bool, on_written):
    import engine

    options = forms.clean_values({k: values.get(k) for k in ("seed", "timer_iterations", "timer_bpm_threshold")})
    for key, kind in (("seed", int), ("timer_iterations", int), ("timer_bpm_threshold", float)):
        if key in options:
            try:
                options[key] = kind(options[key])
            except (TypeError, ValueError):
                raise OptionError(f"{key}={options[key]!r} is not a number") from None
    request = engine.TimingOptions(
        audio_path=values["audio_path"], model_path=values["model"], super_timing=bool(values.get("super_timing")),
        output_path=values["output_path"], device=values.get("device") or "auto",
        precision=values.get("precision") or "fp32", **options)

    def run(progress, cancel: threading.Event):
        if download_first:
            models.download_version(values["model"], [], progress=progress, cancel=cancel)
        result = engine.timing(request, progress=progress, cancel=cancel)
        on_written(result.path)
        return result

    return run


def summary_text(result) -> str:
    red = [p for p in result.timing_points if p.uninherited]
    if not red:
        return "No timing points found: is the song silent, or very short?"
    first = red[0]
    bpms = sorted({round(60000 / p.beat_length, 2) for p in red if p.beat_length > 0})
    bpm_text = f"{bpms[0]:g} BPM" if len(bpms) == 1 else f"{bpms[0]:g}–{bpms[-1]:g} BPM"
    return (f"**{len(red)} red line{'s' if len(red) != 1 else ''}**, offset {first.time:.0f} ms, {bpm_text} "
            f"(found in {result.seconds:.1f} s with {result.version}).")


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    fields: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=2):
            fields["audio_path"] = path_field("Song (audio file)", "audio", elem_id="tm-audio",
                                              placeholder="path to an .mp3/.ogg/.wav file")
            with gr.Row():
                fields["model"] = gr.Dropdown(forms.model_choices(TIMING_VERSIONS, None), value="v32", allow_custom_value=True, label="Model",
                                              elem_id="tm-model")
                fields["super_timing"] = gr.Checkbox(False, label="Super timing (many passes; for tempo changes)",
                                                     elem_id="tm-super")
            fields["output_path"] = path_field("Save as", "save", elem_id="tm-save-path", save_name="timing.osu",
                                               placeholder="an .osu next to the song when left empty",
                                               info="an .osu file, or a folder to write it in")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    fields["device"] = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value="auto",
                                                   allow_custom_value=True, label="Device")
                    fields["precision"] = gr.Dropdown(["fp32", "bf16", "amp"], value="fp32", label="Precision")
                    fields["seed"] = gr.Textbox(value="", label="Seed", placeholder="random")
                with gr.Row():
                    fields["timer_iterations"] = gr.Textbox(value="", label="Super timing passes", placeholder="20")
                    fields["timer_bpm_threshold"] = gr.Textbox(value="", label="BPM change threshold", placeholder="0.1")
        with gr.Column(scale=1):
            with gr.Row():
                run = gr.Button("Find the timing", variant="primary", elem_id="tm-start")
                cancel = gr.Button("Cancel", variant="stop", elem_id="tm-cancel")
            status = gr.HTML(forms.progress_html(None), label="Progress", elem_id="tm-status")
            summary = gr.Markdown("", label="Summary", elem_id="tm-summary")
            saved_message = gr.Markdown("", elem_id="tm-saved")
    table = gr.Dataframe(headers=forms.TIMING_HEADERS, value=[], interactive=False, elem_id="tm-table",
                         max_height=480)

    names = list(fields)
    components = [fields[n] for n in names]
    outputs = [status, table, summary, saved_message]

    def render(job: Job, ahead: int):
        return forms.progress_html(job, ahead), gr.update(), gr.update(), gr.update()

    def finish(job: Job):
        if job.state is not JobState.DONE:
            return forms.progress_html(job), [], "", ""
        result = job.result
        return (forms.progress_html(job), forms.timing_rows(result.timing_points), summary_text(result),
                f"Wrote `{result.path}`.")

    def timing(values: dict[str, Any], request: gr.Request | None):
        """Find the song's timing points; yields progress, returns the table."""
        audio = (values.get("audio_path") or "").strip()
        model = (values.get("model") or "v32").strip()
        try:
            if not audio:
                raise OptionError("choose the song (audio file) to time")
            if model == "v30" and not values.get("super_timing"):
                raise OptionError("v30 has no timing pass of its own: tick super timing or choose v31/v32")
            path_checks.check_audio(audio)
            target = timing_target(values.get("output_path"), audio)
        except MapperatorError as e:
            yield forms.error_html(str(e)), [], "", ""
            return
        values.update(audio_path=audio, model=model)
        ctx.settings.remember("timing", values)
        download_first = model in PRESETS and model not in models.installed_versions()
        try:
            function = _timing_job({**values, "output_path": target}, download_first, ctx.written.add)
        except MapperatorError as e:
            yield forms.error_html(str(e)), [], "", ""
            return
        job = ctx.worker.submit("timing", f"Timing {Path(audio).name} ({model})", function, session_of(request))
        yield forms.progress_html(job, ctx.worker.position(job)), [], "", ""
        yield from follow(ctx.worker, job, render, finish)

    run.click(with_signature(timing, names), components, outputs, api_name="timing", concurrency_limit=None,
              show_progress="hidden")

    cancel_button(ctx, cancel, status, "timing", "cancel_timing",
                  "Cancel this page's timing job (or, when it has none, every timing job).")

    def restore_timing():
        """The last values used on this tab."""
        saved = ctx.settings.tab("timing")
        values = [saved.get(n, fields[n].value) for n in names]
        values[names.index("model")] = gr.update(value=values[names.index("model")],
                                                 choices=forms.model_choices(TIMING_VERSIONS, saved.get("model")))
        return tuple(values)

    on_page_load(ctx, restore_timing, components, api_name="restore_timing")
    fields["model"].change(lambda model: gr.update(choices=forms.model_choices(TIMING_VERSIONS, model)),
                           fields["model"], fields["model"], api_visibility="private", show_progress="hidden")
