"""Generate tab: a song (and optionally a reference map) in, a beatmap out, with live progress.

API: ``/generate`` (all options by their GenerateOptions names; yields progress, returns the result),
``/cancel_generate``, ``/checkpoint_lists``, ``/open_output_folder``, ``/open_in_osu``, ``/restore_generate``.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from engine import PRESETS, MapperatorError, Message

from .. import forms, models, osu, path_checks
from ..player import preview_picked
from ..i18n import K, render, t
from ..ui import AppContext, L, cancel_button, follow, on_page_load, path_field, session_of, with_signature
from ..worker import Job, JobState

log = logging.getLogger(__name__)

VERSIONS = list(PRESETS)
DEVICES = ["auto", "cpu", "cuda", "mps"]


@dataclass
class Outcome:
    result: Any  # engine GenerationResult
    stars: float | None
    timeline: Any
    thumbnail: Any
    player: str = ""  # the preview player's markup
    check: Any = None  # engine.check_result of the map (ResultCheck)


def _generation_job(options, download_first: bool, on_written: Callable[[Path], None], lang: str = "en"):
    """The function the worker runs: fetch the model when needed, generate, rate and draw the map;
    ``on_written`` gets the path of the file written; the player speaks ``lang``."""
    import engine

    from ..pictures import playfield_thumbnail, timeline_strip
    from ..player import beatmap_song, player_html

    def run(progress, cancel: threading.Event) -> Outcome:
        if download_first:
            gamemodes = [options.gamemode] if options.gamemode is not None else [0]
            models.download_version(options.model_path, gamemodes, progress=progress, cancel=cancel)
        result = engine.generate(options, progress=progress, cancel=cancel)
        on_written(result.path)
        progress((1.0, Message("stage.rating_and_drawing", "Rating and drawing the map"), None))
        rated = result.osu_path if result.osu_path is not None else result.beatmap
        stars = engine.star_rating(rated)
        length = None
        try:
            length = engine.audio_duration_ms(result.options.audio_path) if result.options.audio_path else None
        except MapperatorError:
            pass
        song = beatmap_song(result.osu_path) if result.osu_path is not None else None
        song = song or (Path(result.options.audio_path).expanduser() if result.options.audio_path else None)
        return Outcome(result, stars, timeline_strip(result.beatmap, length), playfield_thumbnail(result.beatmap),
                       player_html(result.beatmap, song, "generate", lang), forms.result_check(result))

    return run


OBJECT_KEYS = {"HitCircle": K("result.circles"), "Slider": K("result.sliders"), "Spinner": K("result.spinners"),
               "HoldNote": K("result.hold_notes")}


def result_markdown(outcome: Outcome, lang: str = "en") -> str:
    r = outcome.result
    asked = r.options.difficulty
    objects = r.beatmap.hit_objects
    kinds: dict[str, int] = {}
    for o in objects:
        kinds[type(o).__name__] = kinds.get(type(o).__name__, 0) + 1
    counts = ", ".join(t(OBJECT_KEYS[k], lang, count=n) if k in OBJECT_KEYS else f"{n} {k}" for k, n in kinds.items())
    stars = (t("result.stars", lang, stars=float(outcome.stars)) if outcome.stars is not None
             else t("result.stars_unknown", lang))
    asked_text = (t("result.asked", lang, asked=float(asked)) if asked is not None
                  else t("result.asked_model", lang))
    lines = [  # the first row is the table's header: Markdown tables have no header-less form
        f"| {t('check.star_rating', lang)} | {stars} {asked_text} |",
        "|---|---|",
        f"| {t('result.objects', lang)} | {len(objects)} ({counts or t('check.none', lang)}) |",
        f"| {t('common.model', lang)} | {t('result.model_seed', lang, version=r.version, seed=r.seed)} |",
        f"| {t('result.tokens', lang)} | " + t("result.tokens_value", lang, tokens=r.tokens, seconds=float(r.seconds),
                                               rate=float(r.tokens_per_second)) + " |",
    ]
    for warning in r.warnings:
        lines.append(f"\n⚠ {render(warning, lang)}")
    if outcome.check is not None:
        lines += ["", forms.check_markdown(outcome.check, lang)]
    return "\n".join(lines)


def context_choices(names: list[str]) -> list[tuple[Any, str]]:
    """Checkbox choices for contexts: shown in the page's language, valued by upstream's names."""
    return [(L(forms.CONTEXT_KEYS[name]), name) for name in names]


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    fields: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=3):
            fields["audio_path"] = path_field(L("common.song"), "audio", elem_id="gen-audio",
                                              placeholder=L("common.audio_placeholder"))
            fields["beatmap_path"] = path_field(
                L("generate.reference"), "beatmap", elem_id="gen-beatmap", placeholder=L("generate.reference_placeholder"),
                info=L("generate.reference_info"))
            reference_preview = gr.Button(L("generate.preview_reference"), size="sm", elem_id="gen-beatmap-preview")
            reference_player = gr.HTML("", elem_id="gen-reference-player")
            with gr.Row(equal_height=True):
                fields["model_path"] = gr.Dropdown(forms.model_choices(VERSIONS, None), value="v32", allow_custom_value=True, label=L("common.model"),
                                                   info=L("generate.model_info"), elem_id="gen-model",
                                                   scale=3)
                model_browse = gr.Button(L("generate.model_folder"), elem_classes=["native-only", "mp-browse"], size="sm", scale=0)
                fields["gamemode"] = gr.Radio(forms.GAMEMODES, value="osu!", label=L("generate.gamemode"), elem_id="gen-mode",
                                              scale=4)
            model_note = gr.Markdown("", label=L("generate.model_note"), elem_id="gen-model-note")
            with gr.Row():
                fields["difficulty"] = gr.Textbox(value="", label=L("generate.difficulty"), placeholder=L("generate.auto"), elem_id="gen-diff")
                fields["year"] = gr.Textbox(value="", label=L("generate.year"), placeholder=L("generate.auto"), elem_id="gen-year")
                fields["mapper_id"] = gr.Dropdown([], value="", allow_custom_value=True, label=L("generate.mapper"),
                                                  elem_id="gen-mapper")
            fields["descriptors"] = gr.Dropdown([], value=[], multiselect=True, label=L("generate.descriptors"),
                                                elem_id="gen-descriptors")
            fields["negative_descriptors"] = gr.Dropdown([], value=[], multiselect=True, label=L("generate.negative_descriptors"),
                                                         elem_id="gen-negative")
            with gr.Row():
                fields["cfg_scale"] = gr.Slider(1.0, 15.0, value=1.0, step=0.1, label=L("generate.cfg_scale"),
                                                info=L("generate.cfg_scale_info"))
                fields["seed"] = gr.Textbox(value="", label=L("common.seed"), placeholder=L("common.random"), elem_id="gen-seed")
            with gr.Row():
                fields["hitsounded"] = gr.Checkbox(True, label=L("generate.hitsounds"))
                fields["super_timing"] = gr.Checkbox(False, label=L("generate.super_timing"))
                fields["export_osz"] = gr.Checkbox(False, label=L("generate.export_osz"))
            with gr.Row():
                fields["in_context"] = gr.CheckboxGroup(context_choices(forms.CONTEXTS), value=[],
                                                        label=L("generate.in_context"))
                fields["output_type"] = gr.CheckboxGroup(context_choices(forms.OUTPUT_CONTEXTS), value=[],
                                                         label=L("generate.output_type"))
            with gr.Row():
                fields["start_time"] = gr.Textbox(value="", label=L("generate.start_time"), placeholder=L("generate.song_start"))
                fields["end_time"] = gr.Textbox(value="", label=L("generate.end_time"), placeholder=L("generate.song_end"))
            fields["output_path"] = path_field(L("generate.output_folder"), "folder", elem_id="gen-output-folder",
                                               placeholder=L("common.next_to_song"))
            with gr.Accordion(L("generate.metadata"), open=False):
                with gr.Row():
                    fields["title"] = gr.Textbox(value="", label=L("generate.title"), placeholder=L("generate.from_tags"))
                    fields["artist"] = gr.Textbox(value="", label=L("generate.artist"), placeholder=L("generate.from_tags"))
                with gr.Row():
                    fields["title_unicode"] = gr.Textbox(value="", label=L("generate.title_unicode"))
                    fields["artist_unicode"] = gr.Textbox(value="", label=L("generate.artist_unicode"))
                with gr.Row():
                    fields["creator"] = gr.Textbox(value="", label=L("generate.creator"), placeholder="Mapperator")
                    fields["version"] = gr.Textbox(value="", label=L("generate.version"), placeholder=L("generate.version_placeholder"))
                with gr.Row():
                    fields["source"] = gr.Textbox(value="", label=L("generate.source"))
                    fields["tags"] = gr.Textbox(value="", label=L("generate.tags"))
                    fields["preview_time"] = gr.Textbox(value="", label=L("generate.preview_time"))
                fields["background"] = path_field(L("generate.background"), "image")
            with gr.Accordion(L("common.advanced"), open=False):
                with gr.Row():
                    fields["device"] = gr.Dropdown(DEVICES, value="auto", allow_custom_value=True, label=L("common.device"))
                    fields["precision"] = gr.Dropdown(forms.PRECISIONS, value="auto", label=L("common.precision"),
                                                      info=L("common.precision_info"))
                    fields["do_sample"] = gr.Checkbox(True, label=L("generate.do_sample"))
                with gr.Row():
                    fields["temperature"] = gr.Textbox(value="", label=L("generate.temperature"), placeholder=L("common.model_default"))
                    fields["timing_temperature"] = gr.Textbox(value="", label=L("generate.timing_temperature"), placeholder=L("common.model_default"))
                    fields["top_p"] = gr.Textbox(value="", label=L("generate.top_p"), placeholder=L("common.model_default"))
                    fields["top_k"] = gr.Textbox(value="", label=L("generate.top_k"), placeholder=L("common.model_default"))
                with gr.Row():
                    fields["mania_column_temperature"] = gr.Textbox(value="", label=L("generate.mania_column_temperature"))
                    fields["taiko_hit_temperature"] = gr.Textbox(value="", label=L("generate.taiko_hit_temperature"))
                    fields["timeshift_bias"] = gr.Textbox(value="", label=L("generate.timeshift_bias"), placeholder="0")
                with gr.Row():
                    fields["hp_drain_rate"] = gr.Textbox(value="", label=L("generate.hp"))
                    fields["circle_size"] = gr.Textbox(value="", label=L("generate.cs"))
                    fields["overall_difficulty"] = gr.Textbox(value="", label=L("generate.od"))
                    fields["approach_rate"] = gr.Textbox(value="", label=L("generate.ar"))
                with gr.Row():
                    fields["slider_multiplier"] = gr.Textbox(value="", label=L("generate.slider_multiplier"))
                    fields["slider_tick_rate"] = gr.Textbox(value="", label=L("generate.slider_tick_rate"))
                    fields["keycount"] = gr.Textbox(value="", label=L("generate.keycount"))
                    fields["hold_note_ratio"] = gr.Textbox(value="", label=L("generate.hold_note_ratio"))
                    fields["scroll_speed_ratio"] = gr.Textbox(value="", label=L("generate.scroll_speed_ratio"))
                with gr.Row():
                    fields["lookback"] = gr.Textbox(value="", label=L("generate.lookback"), placeholder=L("common.model_default"))
                    fields["lookahead"] = gr.Textbox(value="", label=L("generate.lookahead"), placeholder=L("common.model_default"))
                    fields["timing_leniency"] = gr.Textbox(value="", label=L("generate.timing_leniency"), placeholder="20")
                    fields["max_batch_size"] = gr.Textbox(value="", label=L("generate.max_batch_size"), placeholder=L("common.model_default"))
                with gr.Row():
                    fields["timer_iterations"] = gr.Textbox(value="", label=L("generate.timer_iterations"), placeholder="20")
                    fields["timer_cfg_scale"] = gr.Textbox(value="", label=L("generate.timer_cfg_scale"), placeholder="1.0")
                    fields["timer_bpm_threshold"] = gr.Textbox(value="", label=L("generate.timer_bpm_threshold"), placeholder="0.1")
                with gr.Row():
                    fields["resnap_events"] = gr.Checkbox(True, label=L("generate.resnap_events"))
                    fields["add_to_beatmap"] = gr.Checkbox(False, label=L("generate.add_to_beatmap"))
                fields["lora_path"] = path_field(L("generate.lora_path"), "folder")
        with gr.Column(scale=2):
            with gr.Row():
                start = gr.Button(L("generate.start"), variant="primary", elem_id="gen-start")
                cancel = gr.Button(L("common.cancel"), variant="stop", elem_id="gen-cancel")
            status = gr.HTML(forms.progress_html(None), label=L("common.progress"), elem_id="gen-status")
            output = gr.Textbox(value="", label=L("generate.written_to"), interactive=False, elem_id="gen-output", buttons=["copy"])
            summary = gr.Markdown("", label=L("generate.result"), elem_id="gen-result")
            player = gr.HTML("", elem_id="gen-player")
            gr.Markdown(L("generate.caption"), elem_classes=["mp-caption"])
            timeline = gr.Image(label=L("generate.timeline"), show_label=False, type="pil", interactive=False,
                                elem_id="gen-timeline", height=110, buttons=["download"])
            thumbnail = gr.Image(label=L("generate.playfield"), show_label=False, type="pil", interactive=False,
                                 elem_id="gen-thumbnail", height=300, buttons=["download"])
            with gr.Row():
                open_folder = gr.Button(L("generate.open_folder"), elem_id="gen-open-folder")
                open_osu = gr.Button(L("generate.open_osu"), elem_id="gen-open-osu")
            action = gr.Markdown("", label=L("generate.message"), elem_id="gen-action")

    from .mapset_gallery import build as build_mapset_section

    build_mapset_section(ctx, dict(fields))  # the Mapset choice: same form, a gallery of maps beneath

    names = list(fields)
    components = [fields[n] for n in names]

    model_browse.click(None, fields["model_path"], fields["model_path"],
                       js="(current) => window.mapperator.pickFolder(current)", api_visibility="private")
    # a chosen folder is labelled with its version; only the choices change, so this fires no second change
    fields["model_path"].change(lambda model: gr.update(choices=forms.model_choices(VERSIONS, model)),
                                fields["model_path"], fields["model_path"], api_visibility="private",
                                show_progress="hidden")
    def super_timing_default(model: str):
        """Super timing follows the chosen version's default (on for v29); the user can still change it."""
        return gr.update(value=PRESETS[model].inference.super_timing) if model in PRESETS else gr.update()

    fields["model_path"].change(super_timing_default, fields["model_path"], fields["super_timing"],
                                api_visibility="private", show_progress="hidden")

    def lists_for(model_path: str, gamemode: Any, descriptors: list, negative_descriptors: list, mapper_id: Any,
                  lang: str):
        try:
            mode = forms.gamemode_index(gamemode)
        except MapperatorError:
            mode = None
        vocab = models.checkpoint_vocabulary(model_path or "v32", mode)
        keep = lambda chosen: [d for d in (chosen or []) if d in vocab.descriptors]  # noqa: E731
        mapper_choices = [str(m) for m in vocab.mapper_ids]
        return (gr.update(choices=vocab.descriptors, value=keep(descriptors)),
                gr.update(choices=vocab.descriptors, value=keep(negative_descriptors)),
                gr.update(choices=mapper_choices, value=mapper_id if mapper_id not in (None, "") else ""),
                "\n\n".join(filter(None, [render(vocab.note, lang),
                                           forms.cpu_speed_hint(vocab.version or model_path, lang)])))

    def checkpoint_lists(model_path: str, gamemode: Any, descriptors: list, negative_descriptors: list,
                         mapper_id: Any, request: gr.Request):
        """The checkpoint's descriptor names and mapper ids, for the pickers."""
        return lists_for(model_path, gamemode, descriptors, negative_descriptors, mapper_id, ctx.lang(request))

    lists_inputs = [fields["model_path"], fields["gamemode"], fields["descriptors"], fields["negative_descriptors"],
                    fields["mapper_id"]]
    lists_outputs = [fields["descriptors"], fields["negative_descriptors"], fields["mapper_id"], model_note]
    gr.on([fields["model_path"].change, fields["gamemode"].change], checkpoint_lists, lists_inputs, lists_outputs,
          api_name="checkpoint_lists", show_progress="hidden")

    outputs = [status, output, summary, timeline, thumbnail, player]

    def generate(values: dict[str, Any], request: gr.Request | None):
        """Generate a beatmap; yields progress while it runs. Values are GenerateOptions fields."""
        lang = ctx.lang(request)

        def show(job: Job, ahead: int):
            return forms.progress_html(job, ahead, lang), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()

        def finish(job: Job):
            if job.state is JobState.DONE:
                o: Outcome = job.result
                return (forms.progress_html(job, 0, lang), str(o.result.path), result_markdown(o, lang), o.timeline,
                        o.thumbnail, o.player)
            return forms.progress_html(job, 0, lang), "", "", None, None, ""

        try:
            options = forms.generate_options(values)
            path_checks.check_generate(options)
        except MapperatorError as e:
            yield forms.error_html(forms.error_message(e), lang), "", "", None, None, ""
            return
        ctx.settings.remember("generate", values)
        download_first = options.model_path in PRESETS and options.model_path not in models.installed_versions()
        song = Path(options.audio_path).name if options.audio_path else Path(options.beatmap_path or "?").name
        label = Message("job.generate", "Generate {song} ({model}, {mode})", song=song, model=options.model_path,
                        mode=forms.GAMEMODES[options.gamemode or 0])
        job = ctx.worker.submit("generate", label, _generation_job(options, download_first, ctx.written.add, lang),
                                session_of(request))
        yield forms.progress_html(job, ctx.worker.position(job), lang), "", "", None, None, ""
        yield from follow(ctx.worker, job, show, finish)

    start.click(with_signature(generate, names), components, outputs, api_name="generate", concurrency_limit=None,
                show_progress="hidden")

    def preview_reference(beatmap_path: str, audio_path: str, request: gr.Request):
        """The reference beatmap in the preview player (with the chosen song, else the one beside it)."""
        return preview_picked(beatmap_path, audio_path, "reference", ctx.lang(request))

    reference_preview.click(preview_reference, [fields["beatmap_path"], fields["audio_path"]], reference_player,
                            api_name="preview_reference", show_progress="hidden")

    cancel_button(ctx, cancel, status, "generate", "cancel_generate",
                  "Cancel this page's generation (or, when it has none, every generation).")

    def open_output_folder(path: str, request: gr.Request):
        """Show the folder of a map generated in this run (no other folder)."""
        lang = ctx.lang(request)
        if not path:
            return t("generate.first", lang)
        folder = ctx.written.folder_of(path)
        if folder is None:
            return f"**{t('common.error', lang)}** {t('generate.not_written_folder', lang, path=f'`{path}`')}"
        try:
            return render(osu.open_path(folder), lang)
        except MapperatorError as e:
            return f"**{t('common.error', lang)}** {render(forms.error_message(e), lang)}"

    def open_in_osu(path: str, request: gr.Request):
        """Copy a map generated in this run into osu!'s Songs folder, or open its .osz."""
        lang = ctx.lang(request)
        if not path:
            return t("generate.first", lang)
        if path not in ctx.written:
            return f"**{t('common.error', lang)}** {t('generate.not_written_osu', lang, path=f'`{path}`')}"
        try:
            return render(osu.open_in_osu(path, ctx.settings.songs_folder or None), lang)
        except MapperatorError as e:
            return f"**{t('common.error', lang)}** {render(forms.error_message(e), lang)}"

    open_folder.click(open_output_folder, output, action, api_name="open_output_folder")
    open_osu.click(open_in_osu, output, action, api_name="open_in_osu")

    def restore_generate(request: gr.Request):
        """The last values used on this tab (kept between runs), with the checkpoint's lists."""
        saved = ctx.settings.tab("generate")
        if not saved.get("output_path") and ctx.settings.output_folder:
            saved["output_path"] = ctx.settings.output_folder
        updates = [saved.get(name, fields[name].value) for name in names]
        updates[names.index("model_path")] = gr.update(value=updates[names.index("model_path")],
                                                       choices=forms.model_choices(VERSIONS, saved.get("model_path")))
        lists = lists_for(saved.get("model_path") or "v32", saved.get("gamemode", "osu!"), saved.get("descriptors"),
                          saved.get("negative_descriptors"), saved.get("mapper_id"), ctx.lang(request))
        for component, update in zip(lists_outputs, lists):
            if component in components:
                updates[components.index(component)] = update
        return (*updates, lists[-1], forms.progress_html(None, 0, ctx.lang(request)))

    on_page_load(ctx, restore_generate, [*components, model_note, status], api_name="restore_generate")
