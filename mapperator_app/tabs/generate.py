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

from engine import PRESETS, MapperatorError

from .. import forms, models, osu, path_checks
from ..player import preview_file
from ..ui import AppContext, cancel_button, follow, on_page_load, path_field, session_of, with_signature
from ..worker import Job, JobState

log = logging.getLogger(__name__)

VERSIONS = list(PRESETS)
DEVICES = ["auto", "cpu", "cuda", "mps"]
PRECISIONS = ["fp32", "bf16", "amp"]


@dataclass
class Outcome:
    result: Any  # engine GenerationResult
    stars: float | None
    timeline: Any
    thumbnail: Any
    player: str = ""  # the preview player's markup
    check: Any = None  # engine.check_result of the map (ResultCheck)


def _generation_job(options, download_first: bool, on_written: Callable[[Path], None]):
    """The function the worker runs: fetch the model when needed, generate, rate and draw the map;
    ``on_written`` gets the path of the file written."""
    import engine

    from ..pictures import playfield_thumbnail, timeline_strip
    from ..player import beatmap_song, player_html

    def run(progress, cancel: threading.Event) -> Outcome:
        if download_first:
            gamemodes = [options.gamemode] if options.gamemode is not None else [0]
            models.download_version(options.model_path, gamemodes, progress=progress, cancel=cancel)
        result = engine.generate(options, progress=progress, cancel=cancel)
        on_written(result.path)
        progress((1.0, "Rating and drawing the map", None))
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
                       player_html(result.beatmap, song, "generate"), forms.result_check(result))

    return run


def result_markdown(outcome: Outcome) -> str:
    r = outcome.result
    asked = r.options.difficulty
    objects = r.beatmap.hit_objects
    kinds: dict[str, int] = {}
    for o in objects:
        kinds[type(o).__name__] = kinds.get(type(o).__name__, 0) + 1
    names = {"HitCircle": "circle", "Slider": "slider", "Spinner": "spinner", "HoldNote": "hold note"}
    counts = ", ".join(f"{n} {names.get(k, k)}{'s' if n != 1 else ''}" for k, n in kinds.items())
    stars = f"**{outcome.stars:.2f}★**" if outcome.stars is not None else "unknown (rosu-pp could not rate it)"
    asked_text = f" (asked for {asked:.2f}★)" if asked is not None else " (difficulty left to the model)"
    lines = [  # the first row is the table's header: Markdown tables have no header-less form
        f"| Star rating | {stars}{asked_text} |",
        "|---|---|",
        f"| Objects | {len(objects)} ({counts or 'none'}) |",
        f"| Model | {r.version}, seed {r.seed} |",
        f"| Tokens | {r.tokens} in {r.seconds:.1f} s ({r.tokens_per_second:.0f} tokens/s) |",
    ]
    for warning in r.warnings:
        lines.append(f"\n⚠ {warning}")
    if outcome.check is not None:
        lines += ["", forms.check_markdown(outcome.check)]
    return "\n".join(lines)


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    fields: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=3):
            fields["audio_path"] = path_field("Song (audio file)", "audio", elem_id="gen-audio",
                                              placeholder="path to an .mp3/.ogg/.wav file")
            fields["beatmap_path"] = path_field(
                "Reference beatmap (optional)", "beatmap", elem_id="gen-beatmap", placeholder="path to an .osu file",
                info="Its song, timing and metadata are reused; in-context types below take more from it.")
            reference_preview = gr.Button("Preview the reference", size="sm", elem_id="gen-beatmap-preview")
            reference_player = gr.HTML("", elem_id="gen-reference-player")
            with gr.Row(equal_height=True):
                fields["model_path"] = gr.Dropdown(forms.model_choices(VERSIONS, None), value="v32", allow_custom_value=True, label="Model",
                                                   info="a version, or a checkpoint folder", elem_id="gen-model",
                                                   scale=3)
                model_browse = gr.Button("Folder…", elem_classes=["native-only", "mp-browse"], size="sm", scale=0)
                fields["gamemode"] = gr.Radio(forms.GAMEMODES, value="osu!", label="Game mode", elem_id="gen-mode",
                                              scale=4)
            model_note = gr.Markdown("", label="Model info", elem_id="gen-model-note")
            with gr.Row():
                fields["difficulty"] = gr.Textbox(value="", label="Difficulty (stars)", placeholder="auto", elem_id="gen-diff")
                fields["year"] = gr.Textbox(value="", label="Year", placeholder="auto", elem_id="gen-year")
                fields["mapper_id"] = gr.Dropdown([], value="", allow_custom_value=True, label="Mapper (user id)",
                                                  elem_id="gen-mapper")
            fields["descriptors"] = gr.Dropdown([], value=[], multiselect=True, label="Descriptors",
                                                elem_id="gen-descriptors")
            fields["negative_descriptors"] = gr.Dropdown([], value=[], multiselect=True, label="Negative descriptors",
                                                         elem_id="gen-negative")
            with gr.Row():
                fields["cfg_scale"] = gr.Slider(1.0, 15.0, value=1.0, step=0.1, label="CFG scale",
                                                info="above 1 follows the descriptors and mapper more strongly")
                fields["seed"] = gr.Textbox(value="", label="Seed", placeholder="random", elem_id="gen-seed")
            with gr.Row():
                fields["hitsounded"] = gr.Checkbox(True, label="Hitsounds")
                fields["super_timing"] = gr.Checkbox(False, label="Super timing (slower, for variable BPM)")
                fields["export_osz"] = gr.Checkbox(False, label="Write an .osz")
            with gr.Row():
                fields["in_context"] = gr.CheckboxGroup(forms.CONTEXTS, value=[], label="In-context (from the reference)")
                fields["output_type"] = gr.CheckboxGroup(forms.OUTPUT_CONTEXTS, value=[],
                                                         label="Output types (none ticked: the model's default)")
            with gr.Row():
                fields["start_time"] = gr.Textbox(value="", label="Start time (ms)", placeholder="song start")
                fields["end_time"] = gr.Textbox(value="", label="End time (ms)", placeholder="song end")
            fields["output_path"] = path_field("Output folder", "folder", elem_id="gen-output-folder",
                                               placeholder="next to the song (or the reference beatmap)")
            with gr.Accordion("Metadata", open=False):
                with gr.Row():
                    fields["title"] = gr.Textbox(value="", label="Title", placeholder="from the song's tags")
                    fields["artist"] = gr.Textbox(value="", label="Artist", placeholder="from the song's tags")
                with gr.Row():
                    fields["title_unicode"] = gr.Textbox(value="", label="Title (unicode)")
                    fields["artist_unicode"] = gr.Textbox(value="", label="Artist (unicode)")
                with gr.Row():
                    fields["creator"] = gr.Textbox(value="", label="Creator", placeholder="Mapperator")
                    fields["version"] = gr.Textbox(value="", label="Difficulty name", placeholder="the model's name")
                with gr.Row():
                    fields["source"] = gr.Textbox(value="", label="Source")
                    fields["tags"] = gr.Textbox(value="", label="Tags")
                    fields["preview_time"] = gr.Textbox(value="", label="Preview time (ms)")
                fields["background"] = path_field("Background image", "image")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    fields["device"] = gr.Dropdown(DEVICES, value="auto", allow_custom_value=True, label="Device")
                    fields["precision"] = gr.Dropdown(PRECISIONS, value="fp32", label="Precision")
                    fields["do_sample"] = gr.Checkbox(True, label="Sample (off: greedy)")
                with gr.Row():
                    fields["temperature"] = gr.Textbox(value="", label="Temperature", placeholder="model default")
                    fields["timing_temperature"] = gr.Textbox(value="", label="Timing temperature", placeholder="model default")
                    fields["top_p"] = gr.Textbox(value="", label="Top-p", placeholder="model default")
                    fields["top_k"] = gr.Textbox(value="", label="Top-k", placeholder="model default")
                with gr.Row():
                    fields["mania_column_temperature"] = gr.Textbox(value="", label="Mania column temperature")
                    fields["taiko_hit_temperature"] = gr.Textbox(value="", label="Taiko hit temperature")
                    fields["timeshift_bias"] = gr.Textbox(value="", label="Time-shift bias", placeholder="0")
                with gr.Row():
                    fields["hp_drain_rate"] = gr.Textbox(value="", label="HP")
                    fields["circle_size"] = gr.Textbox(value="", label="CS (mania: keys)")
                    fields["overall_difficulty"] = gr.Textbox(value="", label="OD")
                    fields["approach_rate"] = gr.Textbox(value="", label="AR")
                with gr.Row():
                    fields["slider_multiplier"] = gr.Textbox(value="", label="Slider velocity")
                    fields["slider_tick_rate"] = gr.Textbox(value="", label="Slider tick rate")
                    fields["keycount"] = gr.Textbox(value="", label="Mania keys")
                    fields["hold_note_ratio"] = gr.Textbox(value="", label="Hold note ratio")
                    fields["scroll_speed_ratio"] = gr.Textbox(value="", label="Scroll speed ratio")
                with gr.Row():
                    fields["lookback"] = gr.Textbox(value="", label="Lookback", placeholder="model default")
                    fields["lookahead"] = gr.Textbox(value="", label="Lookahead", placeholder="model default")
                    fields["timing_leniency"] = gr.Textbox(value="", label="Timing leniency (ms)", placeholder="20")
                    fields["max_batch_size"] = gr.Textbox(value="", label="Max batch size", placeholder="model default")
                with gr.Row():
                    fields["timer_iterations"] = gr.Textbox(value="", label="Super timing iterations", placeholder="20")
                    fields["timer_cfg_scale"] = gr.Textbox(value="", label="Super timing CFG", placeholder="1.0")
                    fields["timer_bpm_threshold"] = gr.Textbox(value="", label="Super timing BPM threshold", placeholder="0.1")
                with gr.Row():
                    fields["resnap_events"] = gr.Checkbox(True, label="Resnap to the timing")
                    fields["add_to_beatmap"] = gr.Checkbox(False, label="Add to the reference beatmap")
                fields["lora_path"] = path_field("LoRA adapter folder", "folder")
        with gr.Column(scale=2):
            with gr.Row():
                start = gr.Button("Generate", variant="primary", elem_id="gen-start")
                cancel = gr.Button("Cancel", variant="stop", elem_id="gen-cancel")
            status = gr.HTML(forms.progress_html(None), label="Progress", elem_id="gen-status")
            output = gr.Textbox(value="", label="Written to", interactive=False, elem_id="gen-output", buttons=["copy"])
            summary = gr.Markdown("", label="Result", elem_id="gen-result")
            player = gr.HTML("", elem_id="gen-player")
            gr.Markdown("Objects over time (blue circles, pink sliders, yellow spinners and holds; shaded kiai; "
                        "red ticks: timing points), and where they are:", elem_classes=["mp-caption"])
            timeline = gr.Image(label="Timeline", show_label=False, type="pil", interactive=False,
                                elem_id="gen-timeline", height=110, buttons=["download"])
            thumbnail = gr.Image(label="Playfield", show_label=False, type="pil", interactive=False,
                                 elem_id="gen-thumbnail", height=300, buttons=["download"])
            with gr.Row():
                open_folder = gr.Button("Open output folder", elem_id="gen-open-folder")
                open_osu = gr.Button("Open in osu!", elem_id="gen-open-osu")
            action = gr.Markdown("", label="Message", elem_id="gen-action")

    names = list(fields)
    components = [fields[n] for n in names]

    model_browse.click(None, fields["model_path"], fields["model_path"],
                       js="(current) => window.mapperator.pickFolder(current)", api_visibility="private")
    # a chosen folder is labelled with its version; only the choices change, so this fires no second change
    fields["model_path"].change(lambda model: gr.update(choices=forms.model_choices(VERSIONS, model)),
                                fields["model_path"], fields["model_path"], api_visibility="private",
                                show_progress="hidden")

    def checkpoint_lists(model_path: str, gamemode: Any, descriptors: list, negative_descriptors: list,
                         mapper_id: Any):
        """The checkpoint's descriptor names and mapper ids, for the pickers."""
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
                vocab.note)

    lists_inputs = [fields["model_path"], fields["gamemode"], fields["descriptors"], fields["negative_descriptors"],
                    fields["mapper_id"]]
    lists_outputs = [fields["descriptors"], fields["negative_descriptors"], fields["mapper_id"], model_note]
    gr.on([fields["model_path"].change, fields["gamemode"].change], checkpoint_lists, lists_inputs, lists_outputs,
          api_name="checkpoint_lists", show_progress="hidden")

    outputs = [status, output, summary, timeline, thumbnail, player]

    def render(job: Job, ahead: int):
        return forms.progress_html(job, ahead), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()

    def finish(job: Job):
        if job.state is JobState.DONE:
            o: Outcome = job.result
            return (forms.progress_html(job), str(o.result.path), result_markdown(o), o.timeline, o.thumbnail,
                    o.player)
        return forms.progress_html(job), "", "", None, None, ""

    def generate(values: dict[str, Any], request: gr.Request | None):
        """Generate a beatmap; yields progress while it runs. Values are GenerateOptions fields."""
        try:
            options = forms.generate_options(values)
            path_checks.check_generate(options)
        except MapperatorError as e:
            yield forms.error_html(str(e)), "", "", None, None, ""
            return
        ctx.settings.remember("generate", values)
        download_first = options.model_path in PRESETS and options.model_path not in models.installed_versions()
        song = Path(options.audio_path).name if options.audio_path else Path(options.beatmap_path or "?").name
        label = f"Generate {song} ({options.model_path}, {forms.GAMEMODES[options.gamemode or 0]})"
        job = ctx.worker.submit("generate", label, _generation_job(options, download_first, ctx.written.add),
                                session_of(request))
        yield forms.progress_html(job, ctx.worker.position(job)), "", "", None, None, ""
        yield from follow(ctx.worker, job, render, finish)

    start.click(with_signature(generate, names), components, outputs, api_name="generate", concurrency_limit=None,
                show_progress="hidden")

    def preview_reference(beatmap_path: str, audio_path: str):
        """The reference beatmap in the preview player (with the chosen song, else the one beside it)."""
        try:
            checked, _ = path_checks.check_beatmap(beatmap_path)
            song = path_checks.check_audio(audio_path) if (audio_path or "").strip() else None
            return preview_file(checked, song, "reference")
        except MapperatorError as e:
            return forms.error_html(str(e))

    reference_preview.click(preview_reference, [fields["beatmap_path"], fields["audio_path"]], reference_player,
                            api_name="preview_reference", show_progress="hidden")

    cancel_button(ctx, cancel, status, "generate", "cancel_generate",
                  "Cancel this page's generation (or, when it has none, every generation).")

    def open_output_folder(path: str):
        """Show the folder of a map generated in this run (no other folder)."""
        if not path:
            return "Generate a map first."
        folder = ctx.written.folder_of(path)
        if folder is None:
            return (f"**Error:** `{path}` is not a map this app wrote since it started; only the folders of "
                    "those can be opened.")
        try:
            return osu.open_path(folder)
        except MapperatorError as e:
            return f"**Error:** {e}"

    def open_in_osu(path: str):
        """Copy a map generated in this run into osu!'s Songs folder, or open its .osz."""
        if not path:
            return "Generate a map first."
        if path not in ctx.written:
            return f"**Error:** `{path}` is not a map this app wrote since it started; generate it here first."
        try:
            return osu.open_in_osu(path, ctx.settings.songs_folder or None)
        except MapperatorError as e:
            return f"**Error:** {e}"

    open_folder.click(open_output_folder, output, action, api_name="open_output_folder")
    open_osu.click(open_in_osu, output, action, api_name="open_in_osu")

    def restore_generate():
        """The last values used on this tab (kept between runs), with the checkpoint's lists."""
        saved = ctx.settings.tab("generate")
        if not saved.get("output_path") and ctx.settings.output_folder:
            saved["output_path"] = ctx.settings.output_folder
        updates = [saved.get(name, fields[name].value) for name in names]
        updates[names.index("model_path")] = gr.update(value=updates[names.index("model_path")],
                                                       choices=forms.model_choices(VERSIONS, saved.get("model_path")))
        lists = checkpoint_lists(saved.get("model_path") or "v32", saved.get("gamemode", "osu!"),
                                 saved.get("descriptors"), saved.get("negative_descriptors"), saved.get("mapper_id"))
        for component, update in zip(lists_outputs, lists):
            if component in components:
                updates[components.index(component)] = update
        return (*updates, lists[-1])

    on_page_load(ctx, restore_generate, [*components, model_note], api_name="restore_generate")
