"""Settings tab: the osu! Songs folder and the default output folder, kept between runs.

API: ``/save_settings`` (songs_folder, output_folder), ``/detect_songs_folder``, ``/restore_settings``.
"""
from __future__ import annotations

import gradio as gr

from engine import MapperatorError

from .. import osu, path_checks
from ..ui import AppContext, on_page_load, path_field


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    songs = path_field("osu! Songs folder", "folder", elem_id="set-songs",
                       placeholder="detected automatically when empty",
                       info="\"Open in osu!\" copies generated maps here (osu!stable; press F5 in song select).")
    detect = gr.Button("Detect", size="sm", elem_id="set-detect")
    output = path_field("Default output folder", "folder", elem_id="set-output",
                        placeholder="next to the song (or the reference beatmap)")
    save = gr.Button("Save settings", variant="primary", elem_id="set-save")
    message = gr.Markdown("", elem_id="set-message")
    gr.Markdown(f"Settings file: `{ctx.settings.path}`" + (f"  \nLog file: `{ctx.log_file}`" if ctx.log_file else ""))

    def save_settings(songs_folder: str, output_folder: str):
        """Store the Songs and output folders: existing folders of yours, not system folders; the output
        folder writable. Empty means "find it" (Songs) or "next to the song" (output)."""
        problems = []
        for value, field, writable in ((songs_folder, "Songs folder", False), (output_folder, "output folder", True)):
            if value and value.strip():
                try:
                    path_checks.check_settings_folder(value, field, writable)
                except MapperatorError as e:
                    problems.append(str(e))
        if problems:
            return "**Not saved:** " + "; ".join(problems) + "."
        ctx.settings.set_folders(songs_folder or "", output_folder or "")
        return f"Saved to `{ctx.settings.path}`."

    def detect_songs_folder():
        """Look for osu!stable's Songs folder in its usual places."""
        found = osu.detect_songs_folder()
        if found is None:
            return gr.update(), ("osu!stable's Songs folder was not found in the usual places; choose it yourself. "
                                 "(osu!lazer has none: \"Open in osu!\" then writes an .osz, which lazer imports.)")
        return str(found), f"Found `{found}`; press Save settings to keep it."

    save.click(save_settings, [songs, output], message, api_name="save_settings")
    detect.click(detect_songs_folder, None, [songs, message], api_name="detect_songs_folder")
    def restore_settings():
        """The saved Songs and output folders."""
        return ctx.settings.songs_folder, ctx.settings.output_folder

    on_page_load(ctx, restore_settings, [songs, output], api_name="restore_settings")
