"""Settings tab: the language, the osu! Songs folder and the default output folder, kept between runs.

API: ``/save_settings`` (songs_folder, output_folder), ``/detect_songs_folder``, ``/restore_settings``,
``/set_language`` (``auto`` or a language code).

The language applies at once: Gradio picks a page's language only when the page loads, so choosing one
stores it, hands every page that catalogue (:meth:`~mapperator_app.ui.PageTexts.apply`) and reloads this
page in place; the server keeps running.
"""
from __future__ import annotations

import gradio as gr

from engine import MapperatorError, Message

from .. import forms, i18n, osu, path_checks
from ..i18n import render, t
from ..ui import AppContext, L, on_page_load, path_field

# One reload a page: a second choice within the 50 ms would abort the first reload's navigation
RELOAD_JS = ("(language) => { if (!window.mapperatorReloading) { window.mapperatorReloading = true; "
             "setTimeout(() => window.location.reload(), 50); } return language; }")


def language_choices() -> list[tuple[str, str]]:
    """The picker's (label, value) pairs: each language in its own words (a catalogue not written yet shows
    English)."""
    return [(i18n.LANGUAGE_NAMES[code], code) for code in i18n.LANGUAGES]


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    language = gr.Dropdown([(L("settings.language_auto"), i18n.AUTO), *language_choices()], value=i18n.AUTO,
                           label=L("settings.language"), info=L("settings.language_info"), elem_id="set-language")
    songs = path_field(L("settings.songs_folder"), "folder", elem_id="set-songs",
                       placeholder=L("settings.songs_placeholder"), info=L("settings.songs_info"))
    detect = gr.Button(L("settings.detect"), size="sm", elem_id="set-detect")
    output = path_field(L("settings.output_folder"), "folder", elem_id="set-output",
                        placeholder=L("common.next_to_song"))
    save = gr.Button(L("settings.save"), variant="primary", elem_id="set-save")
    message = gr.Markdown("", elem_id="set-message")
    files = gr.Markdown("", elem_id="set-files")

    def save_settings(songs_folder: str, output_folder: str, request: gr.Request):
        """Store the Songs and output folders: existing folders of yours, not system folders; the output
        folder writable. Empty means "find it" (Songs) or "next to the song" (output)."""
        lang = ctx.lang(request)
        problems = []
        for value, field, writable in ((songs_folder, Message("settings.field_songs", "Songs folder"), False),
                                       (output_folder, Message("settings.field_output", "output folder"), True)):
            if value and value.strip():
                try:
                    path_checks.check_settings_folder(value, field, writable)
                except MapperatorError as e:
                    problems.append(render(forms.error_message(e), lang))
        if problems:
            return t("settings.not_saved", lang, problems="; ".join(problems))
        ctx.settings.set_folders(songs_folder or "", output_folder or "")
        return t("settings.saved", lang, path=f"`{ctx.settings.path}`")

    def detect_songs_folder(request: gr.Request):
        """Look for osu!stable's Songs folder in its usual places."""
        lang = ctx.lang(request)
        found = osu.detect_songs_folder()
        if found is None:
            return gr.update(), t("settings.songs_not_found", lang)
        return str(found), t("settings.songs_found", lang, path=f"`{found}`")

    def set_language(value: str):
        """Choose the app's language (``auto``: the system's or browser's); pages show it from their next load."""
        value = (value or i18n.AUTO).strip()
        if value != i18n.AUTO and i18n.match(value) is None:
            value = i18n.AUTO
        ctx.settings.set_language(value)
        ctx.texts.apply(value)
        return value

    save.click(save_settings, [songs, output], message, api_name="save_settings")
    detect.click(detect_songs_folder, None, [songs, message], api_name="detect_songs_folder")
    language.input(set_language, language, language, api_name="set_language", show_progress="hidden").then(
        None, language, language, js=RELOAD_JS, api_visibility="private")

    def restore_settings(request: gr.Request):
        """The saved Songs and output folders, the language, and where the files are."""
        lang = ctx.lang(request)
        where = t("settings.settings_file", lang, path=f"`{ctx.settings.path}`")
        if ctx.log_file:
            where += "  \n" + t("settings.log_file", lang, path=f"`{ctx.log_file}`")
        return ctx.settings.songs_folder, ctx.settings.output_folder, ctx.settings.language, where

    on_page_load(ctx, restore_settings, [songs, output, language, files], api_name="restore_settings")
