"""MaiMod tab: AI and rule-based suggestions for a beatmap in a table that sorts, filters and copies timestamps.

API: ``/mod`` (beatmap_path, audio_path, model, ai, rules, device, precision; yields progress, returns the
table), ``/cancel_mod``, ``/mod_filter``, ``/copy_timestamp``, ``/preview_mod``, ``/restore_mod``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gradio as gr

from engine import PRESETS, MapperatorError, OptionError

from .. import forms, models, path_checks
from ..player import preview_file
from ..ui import AppContext, cancel_button, follow, on_page_load, path_field, session_of, with_signature
from ..worker import Job, JobState

SEVERITIES = ["problem", "warning", "minor"]
SOURCES = ["AI", "rule"]
DEFAULT_MODEL = "v30"
MAIMOD_VERSIONS = [name for name, p in PRESETS.items() if p.supports_maimod] or [DEFAULT_MODEL]


def _mod_job(values: dict[str, Any], download_first: bool):
    import engine

    def run(progress, cancel: threading.Event):
        if download_first:
            models.download_version(values["model"], [], progress=progress, cancel=cancel)
        options = engine.ModOptions(
            beatmap_path=values["beatmap_path"], audio_path=values.get("audio_path") or None,
            model_path=values.get("model") or DEFAULT_MODEL, ai=bool(values.get("ai", True)),
            rules=bool(values.get("rules", True)), device=values.get("device") or "auto",
            precision=values.get("precision") or "fp32")
        found = engine.mod(options, progress=progress, cancel=cancel)
        progress((1.0, "Loading the map into the player", None))
        return found, preview_file(values["beatmap_path"], values.get("audio_path") or None, "maimod")

    return run


def summary_text(records: list[dict], shown: int | None = None) -> str:
    if not records:
        return "No suggestions: nothing to fix that MaiMod or the checks can see."
    counts = {s: sum(1 for r in records if r["severity"] == s) for s in SEVERITIES}
    parts = [f"{n} {s}{'s' if n != 1 and s != 'minor' else ''}" for s, n in counts.items() if n]
    text = f"**{len(records)} suggestions**: {', '.join(parts)}."
    if shown is not None and shown != len(records):
        text += f" Showing {shown} after filtering."
    return text + " Click a row to copy its osu! timestamp."


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    fields: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=2):
            fields["beatmap_path"] = path_field("Beatmap (.osu)", "beatmap", elem_id="mm-beatmap",
                                                placeholder="path to the .osu to check")
            fields["audio_path"] = path_field("Song (optional)", "audio", elem_id="mm-audio",
                                              placeholder="found in the beatmap's folder when left empty")
            with gr.Row():
                fields["model"] = gr.Dropdown(forms.model_choices(MAIMOD_VERSIONS, None), value=DEFAULT_MODEL, allow_custom_value=True,
                                              label="Model", info="upstream's MaiMod uses v30", elem_id="mm-model")
                fields["ai"] = gr.Checkbox(True, label="AI suggestions")
                fields["rules"] = gr.Checkbox(True, label="Rule checks")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    fields["device"] = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value="auto",
                                                   allow_custom_value=True, label="Device")
                    fields["precision"] = gr.Dropdown(["fp32", "bf16", "amp"], value="fp32", label="Precision")
        with gr.Column(scale=1):
            with gr.Row():
                run = gr.Button("Check the map", variant="primary", elem_id="mm-start")
                cancel = gr.Button("Cancel", variant="stop", elem_id="mm-cancel")
            status = gr.HTML(forms.progress_html(None), label="Progress", elem_id="mm-status")
            summary = gr.Markdown("", label="Summary", elem_id="mm-summary")
            copied = gr.Textbox(value="", label="Copied timestamp", interactive=False, elem_id="mm-copied", buttons=["copy"])
            copied_ms = gr.Number(None, visible="hidden", elem_id="mm-copied-ms")  # where the player seeks
    with gr.Row():
        preview = gr.Button("Preview the map", size="sm", elem_id="mm-preview", scale=0)
    player = gr.HTML("", elem_id="mm-player")
    with gr.Row():
        severity = gr.CheckboxGroup(SEVERITIES, value=SEVERITIES, label="Severity", elem_id="mm-severity")
        source = gr.CheckboxGroup(SOURCES, value=SOURCES, label="Source", elem_id="mm-source")
        category = gr.Dropdown([], value=[], multiselect=True, label="Category (none: all)", elem_id="mm-category")
        search = gr.Textbox(value="", label="Search", placeholder="words in the message", elem_id="mm-search")
    table = gr.Dataframe(forms.suggestion_table([]), interactive=False, wrap=True, elem_id="mm-table",
                         column_widths=["8%", "14%", "12%", "9%", "49%", "8%"], max_height=640)
    records = gr.State([])

    names = list(fields)
    components = [fields[n] for n in names]
    filters = [severity, source, category, search]

    def render(job: Job, ahead: int):
        return forms.progress_html(job, ahead), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()

    def finish_with(filter_values):
        def finish(job: Job):
            if job.state is not JobState.DONE:
                return forms.progress_html(job), gr.update(), "", [], gr.update(choices=[], value=[]), gr.update()
            found, markup = job.result
            rows = forms.suggestion_records(found)
            shown = forms.filter_suggestions(rows, *filter_values)
            categories = sorted({r["category"] for r in rows if r["category"]})
            return (forms.progress_html(job), forms.suggestion_table(shown), summary_text(rows, len(shown)), rows,
                    gr.update(choices=categories, value=[c for c in filter_values[2] or [] if c in categories]),
                    markup)
        return finish

    outputs = [status, table, summary, records, category, player]

    def mod(values: dict[str, Any], request: gr.Request | None):
        """Check a beatmap with MaiMod (AI) and the rule checks; yields progress, returns the suggestion table."""
        filter_values = [values.pop(k) for k in ("severity", "source", "category", "search")]
        path = (values.get("beatmap_path") or "").strip()
        try:
            if not path:
                raise OptionError("choose the beatmap (.osu) to check")
            if not (values.get("ai") or values.get("rules")):
                raise OptionError("tick AI suggestions, rule checks or both")
            path_checks.check_beatmap(path)
            if (values.get("audio_path") or "").strip():
                path_checks.check_audio(values["audio_path"])
        except MapperatorError as e:
            yield forms.error_html(str(e)), gr.update(), "", [], gr.update(), gr.update()
            return
        values["beatmap_path"] = path
        ctx.settings.remember("mod", values)
        values["model"] = (values.get("model") or DEFAULT_MODEL).strip()
        download_first = bool(values.get("ai")) and values["model"] in PRESETS and \
            values["model"] not in models.installed_versions()
        job = ctx.worker.submit("mod", f"MaiMod {Path(path).name}", _mod_job(values, download_first),
                                session_of(request))
        yield (forms.progress_html(job, ctx.worker.position(job)), forms.suggestion_table([]), "", [], gr.update(),
               gr.update())
        yield from follow(ctx.worker, job, render, finish_with(filter_values))

    run.click(with_signature(mod, names + ["severity", "source", "category", "search"]), components + filters,
              outputs, api_name="mod", concurrency_limit=None, show_progress="hidden")

    cancel_button(ctx, cancel, status, "mod", "cancel_mod",
                  "Cancel this page's MaiMod check (or, when it has none, every check).")

    def mod_filter(rows: list[dict], severities: list[str], sources: list[str], categories: list[str], text: str):
        """Filter the last check's suggestions by severity, source, category and words."""
        shown = forms.filter_suggestions(rows or [], severities, sources, categories, text)
        return forms.suggestion_table(shown), summary_text(rows or [], len(shown)) if rows else ""

    gr.on([severity.change, source.change, category.change, search.submit], mod_filter, [records, *filters],
          [table, summary], api_name="mod_filter", show_progress="hidden")

    def copy_timestamp(rows: list[dict], evt: gr.SelectData):
        """The osu! timestamp of the clicked row (the page copies it to the clipboard) and its time in ms (the
        player seeks there)."""
        row = getattr(evt, "row_value", None) or []
        stamp = row[1] if len(row) > 1 else ""
        time_ms = next((r["time_ms"] for r in rows or [] if r["timestamp"] == stamp and stamp), None)
        return stamp, time_ms

    table.select(copy_timestamp, records, [copied, copied_ms], api_name="copy_timestamp",
                 show_progress="hidden").then(
        None, [copied, copied_ms], None, api_visibility="private",
        js="(text, ms) => { window.mapperator.copy(text); "
           "if (ms !== null && ms !== undefined && window.MapperatorPlayer) "
           "MapperatorPlayer.get('maimod')?.focus(ms, text || undefined); }")

    def preview_map(beatmap_path: str, audio_path: str):
        """The beatmap in the preview player, before (or without) checking it."""
        try:
            checked, _ = path_checks.check_beatmap(beatmap_path)
            song = path_checks.check_audio(audio_path) if (audio_path or "").strip() else None
            return preview_file(checked, song, "maimod")
        except MapperatorError as e:
            return forms.error_html(str(e))

    preview.click(preview_map, [fields["beatmap_path"], fields["audio_path"]], player, api_name="preview_mod",
                  show_progress="hidden")

    def restore_mod():
        """The last values used on this tab."""
        saved = ctx.settings.tab("mod")
        values = [saved.get(n, fields[n].value) for n in names]
        values[names.index("model")] = gr.update(value=values[names.index("model")],
                                                 choices=forms.model_choices(MAIMOD_VERSIONS, saved.get("model")))
        return tuple(values)

    on_page_load(ctx, restore_mod, components, api_name="restore_mod")
    fields["model"].change(lambda model: gr.update(choices=forms.model_choices(MAIMOD_VERSIONS, model)),
                           fields["model"], fields["model"], api_visibility="private", show_progress="hidden")
