"""The preview player in the page: markup that static/player.js mounts, fed with the engine's map JSON and the
song served from Gradio's file cache (so it goes through the app's access guard like every other request)."""
from __future__ import annotations

import html
import json
from pathlib import Path

import gradio as gr
from gradio import processing_utils

import engine

from . import forms, i18n, path_checks
from .i18n import K

#: The texts static/player.js shows, handed to it in the page's language as ``data-texts``.
PLAYER_KEYS = (K("player.play"), K("player.pause"), K("player.speed"), K("player.ticks"), K("player.seek"),
               K("player.song_failed"), K("player.song_blocked"), K("player.not_shown"), K("player.not_loaded"))


def player_texts(lang: str = i18n.DEFAULT) -> str:
    return json.dumps({key: i18n.t(key, lang) for key in PLAYER_KEYS}, ensure_ascii=False, separators=(",", ":"))


def player_html(beatmap: "engine.Beatmap", audio_path: str | Path | None, player_id: str,
                lang: str = i18n.DEFAULT) -> str:
    """A ``.mapperator-player`` element playing ``beatmap`` with its song (silent without one), its controls in
    ``lang``."""
    data = html.escape(json.dumps(engine.preview_json(beatmap), separators=(",", ":")))
    audio = ""
    if audio_path is not None and Path(audio_path).is_file():
        cached = processing_utils.save_file_to_cache(str(audio_path), gr.utils.get_upload_folder())
        audio = "/gradio_api/file=" + cached
    return (f'<div class="mapperator-player" data-player-id="{html.escape(player_id)}" '
            f'data-audio="{html.escape(audio)}" data-texts="{html.escape(player_texts(lang))}" '
            f'data-map="{data}"></div>')


def beatmap_song(osu_path: str | Path) -> Path | None:
    """The song an .osu names, when it is a file inside the beatmap's folder."""
    beatmap, files, _ = engine.set_files(Path(osu_path).expanduser())
    name = (beatmap.general.audio_filename or "").replace("\\", "/").lower()
    return next((p for key, p in files.items() if name and key.lower() == name), None)


def preview_file(osu_path: str | Path, audio_path: str | Path | None, player_id: str,
                 lang: str = i18n.DEFAULT) -> str:
    """The player for an .osu on disk, with ``audio_path`` or else the song in the beatmap's folder."""
    path = Path(osu_path).expanduser()
    beatmap = engine.read_beatmap(path)
    song = Path(audio_path).expanduser() if audio_path else beatmap_song(path)
    return player_html(beatmap, song, player_id, lang)


def preview_picked(beatmap_path: str, audio_path: str, player_id: str, lang: str) -> str:
    """The player for a beatmap picked on a tab, its paths checked as a job's would be (with the picked song, else
    the one in the beatmap's folder), or the reason it cannot be shown."""
    try:
        checked, _ = path_checks.check_beatmap(beatmap_path)
        song = path_checks.check_audio(audio_path) if (audio_path or "").strip() else None
        return preview_file(checked, song, player_id, lang)
    except engine.MapperatorError as e:
        return forms.error_html(forms.error_message(e), lang)
