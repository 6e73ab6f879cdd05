"""MaiMod tab: AI and rule-based suggestions for a beatmap in a table that sorts, filters and copies timestamps.

API: ``/mod`` (beatmap_path, audio_path, model, ai, rules, device, precision; yields progress, returns the
table), ``/cancel_mod``, ``/mod_filter``, ``/copy_timestamp``, ``/preview_mod``, ``/restore_mod``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gradio as gr

from engine import PRESETS, MapperatorError, Message, OptionError

from .. import forms, models, path_checks
from ..player import preview_file, preview_picked
from ..i18n import t
from ..ui import AppContext, L, cancel_button, follow, on_page_load, path_field, session_of, with_signature
from ..worker import Job, JobState

SEVERITIES = ["problem", "warning", "minor"]
SOURCES = ["AI", "rule"]
DEFAULT_MODEL = "v30"
MAIMOD_VERSIONS = [name for name, p in PRESETS.items() if p.supports_maimod] or [DEFAULT_MODEL]


def _mod_job(values: dict[str, Any], download_first: bool, lang: str = "en"):
    import engine

    def run(progress, cancel: threading.Event):
        if download_first:
            models.download_version(values["model"], [], progress=progress, cancel=cancel)
        options = engine.ModOptions(
            beatmap_path=values["beatmap_path"], audio_path=values.get("audio_path") or None,
            model_path=values.get("model") or DEFAULT_MODEL, ai=bool(values.get("ai", True)),
            rules=bool(values.get("rules", True)), device=values.get("device") or "auto",
            precision=values.get("precision") or "auto")
        found = engine.mod(options, progress=progress, cancel=cancel)
        progress((1.0, Message("stage.loading_player", "Loading the map into the player"), None))
        return found, preview_file(values["beatmap_path"], values.get("audio_path") or None, "maimod", lang)

    return run


def summary_text(records: list[dict], shown: int | None = None, lang: str = "en") -> str:
    if not records:
        return t("maimod.no_suggestions", lang)
    counts = {s: sum(1 for r in records if r["severity"] == s) for s in SEVERITIES}
    parts = [f"{forms.severity_label(s, lang)}: {n}" for s, n in counts.items() if n]
    text = t("maimod.summary", lang, count=len(records), severities=", ".join(parts))
    if shown is not None and shown != len(records):
        text += " " + t("maimod.shown", lang, shown=shown)
    return text + " " + t("maimod.click_row", lang)


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    fields: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=2):
            fields["beatmap_path"] = path_field(L("maimod.beatmap"), "beatmap", elem_id="mm-beatmap",
                                                placeholder=L("maimod.beatmap_placeholder"))
            fields["audio_path"] = path_field(L("maimod.song"), "audio", elem_id="mm-audio",
                                              placeholder=L("maimod.song_placeholder"))
            with gr.Row():
                fields["model"] = gr.Dropdown(forms.model_choices(MAIMOD_VERSIONS, None), value=DEFAULT_MODEL, allow_custom_value=True,
                                              label=L("common.model"), info=L("maimod.model_info"), elem_id="mm-model")
                fields["ai"] = gr.Checkbox(True, label=L("maimod.ai"))
                fields["rules"] = gr.Checkbox(True, label=L("maimod.rules"))
            with gr.Accordion(L("common.advanced"), open=False):
                with gr.Row():
                    fields["device"] = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value="auto",
                                                   allow_custom_value=True, label=L("common.device"))
                    fields["precision"] = gr.Dropdown(forms.PRECISIONS, value="auto", label=L("common.precision"),
                                                      info=L("common.precision_info"))
        with gr.Column(scale=1):
            with gr.Row():
                run = gr.Button(L("maimod.start"), variant="primary", elem_id="mm-start")
                cancel = gr.Button(L("common.cancel"), variant="stop", elem_id="mm-cancel")
            status = gr.HTML(forms.progress_html(None), label=L("common.progress"), elem_id="mm-status")
            summary = gr.Markdown("", label=L("common.summary"), elem_id="mm-summary")
            copied = gr.Textbox(value="", label=L("maimod.copied"), interactive=False, elem_id="mm-copied", buttons=["copy"])
            copied_ms = gr.Number(None, visible="hidden", elem_id="mm-copied-ms")  # where the player seeks
    with gr.Row():
        preview = gr.Button(L("maimod.preview"), size="sm", elem_id="mm-preview", scale=0)
    player = gr.HTML("", elem_id="mm-player")
    with gr.Row():
        severity = gr.CheckboxGroup([(L(forms.SEVERITY_KEYS[s]), s) for s in SEVERITIES], value=SEVERITIES, label=L("table.severity"), elem_id="mm-severity")
        source = gr.CheckboxGroup([(L(forms.SOURCE_KEYS[s]), s) for s in SOURCES], value=SOURCES, label=L("table.source"), elem_id="mm-source")
        category = gr.Dropdown([], value=[], multiselect=True, label=L("maimod.category"), elem_id="mm-category")
        search = gr.Textbox(value="", label=L("maimod.search"), placeholder=L("maimod.search_placeholder"), elem_id="mm-search")
    table = gr.Dataframe(forms.suggestion_table([]), interactive=False, wrap=True, elem_id="mm-table",
                         column_widths=["8%", "14%", "12%", "9%", "49%", "8%"], max_height=640)
    records = gr.State([])

    names = list(fields)
    components = [fields[n] for n in names]
    filters = [severity, source, category, search]

    def render_with(lang: str):
        def render(job: Job, ahead: int):
            return forms.progress_html(job, ahead, lang), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        return render

    def finish_with(filter_values, lang: str):
        def finish(job: Job):
            if job.state is not JobState.DONE:
                return (forms.progress_html(job, 0, lang), gr.update(), "", [], gr.update(choices=[], value=[]),
                        gr.update())
            found, markup = job.result
            rows = forms.suggestion_records(found, lang)
            shown = forms.filter_suggestions(rows, *filter_values, lang=lang)
            categories = sorted({r["category"] for r in rows if r["category"]})
            choices = [(forms.category_label(c, lang), c) for c in categories]
            return (forms.progress_html(job, 0, lang), forms.suggestion_table(shown, lang),
                    summary_text(rows, len(shown), lang), rows,
                    gr.update(choices=choices, value=[c for c in filter_values[2] or [] if c in categories]),
                    markup)
        return finish

    outputs = [status, table, summary, records, category, player]

    def mod(values: dict[str, Any], request: gr.Request | None):
        """Check a beatmap with MaiMod (AI) and the rule checks; yields progress, returns the suggestion table."""
        filter_values = [values.pop(k) for k in ("severity", "source", "category", "search")]
        lang = ctx.lang(request)
        path = (values.get("beatmap_path") or "").strip()
        try:
            if not path:
                raise OptionError(Message("maimod.choose_beatmap", "choose the beatmap (.osu) to check"))
            if not (values.get("ai") or values.get("rules")):
                raise OptionError(Message("maimod.tick_something", "tick AI suggestions, rule checks or both"))
            path_checks.check_beatmap(path)
            if (values.get("audio_path") or "").strip():
                path_checks.check_audio(values["audio_path"])
        except MapperatorError as e:
            yield forms.error_html(forms.error_message(e), lang), gr.update(), "", [], gr.update(), gr.update()
            return
        values["beatmap_path"] = path
        ctx.settings.remember("mod", values)
        values["model"] = (values.get("model") or DEFAULT_MODEL).strip()
        download_first = bool(values.get("ai")) and values["model"] in PRESETS and \
            values["model"] not in models.installed_versions()
        job = ctx.worker.submit("mod", Message("job.maimod", "MaiMod {name}", name=Path(path).name),
                                _mod_job(values, download_first, lang), session_of(request))
        yield (forms.progress_html(job, ctx.worker.position(job), lang), forms.suggestion_table([], lang), "", [],
               gr.update(), gr.update())
        yield from follow(ctx.worker, job, render_with(lang), finish_with(filter_values, lang))

    run.click(with_signature(mod, names + ["severity", "source", "category", "search"]), components + filters,
              outputs, api_name="mod", concurrency_limit=None, show_progress="hidden")

    cancel_button(ctx, cancel, status, "mod", "cancel_mod",
                  "Cancel this page's MaiMod check (or, when it has none, every check).")

    def mod_filter(rows: list[dict], severities: list[str], sources: list[str], categories: list[str], text: str,
                   request: gr.Request):
        """Filter the last check's suggestions by severity, source, category and words."""
        lang = ctx.lang(request)
        shown = forms.filter_suggestions(rows or [], severities, sources, categories, text, lang)
        return forms.suggestion_table(shown, lang), summary_text(rows or [], len(shown), lang) if rows else ""

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

    def preview_map(beatmap_path: str, audio_path: str, request: gr.Request):
        """The beatmap in the preview player, before (or without) checking it."""
        return preview_picked(beatmap_path, audio_path, "maimod", ctx.lang(request))

    preview.click(preview_map, [fields["beatmap_path"], fields["audio_path"]], player, api_name="preview_mod",
                  show_progress="hidden")

    def restore_mod(request: gr.Request):
        """The last values used on this tab, and the empty table in the page's language."""
        saved = ctx.settings.tab("mod")
        values = [saved.get(n, fields[n].value) for n in names]
        values[names.index("model")] = gr.update(value=values[names.index("model")],
                                                 choices=forms.model_choices(MAIMOD_VERSIONS, saved.get("model")))
        lang = ctx.lang(request)
        return (*values, forms.suggestion_table([], lang), forms.progress_html(None, 0, lang))

    on_page_load(ctx, restore_mod, [*components, table, status], api_name="restore_mod")
    fields["model"].change(lambda model: gr.update(choices=forms.model_choices(MAIMOD_VERSIONS, model)),
                           fields["model"], fields["model"], api_visibility="private", show_progress="hidden")
