"""The Generate tab's Mapset section: several difficulties (a mapset) or several tries (variants) in one job,
shown as a gallery — each map's name, star rating, object count, picture and check — with the preview player for
the chosen map and, for variants, Keep (the other variants' files are removed; a reference map never is).

API: ``/generate_mapset`` (the Generate tab's values plus ``mapset_kind``, ``difficulties``, ``gamemodes``,
``difficulty_names``, ``num_variants``), ``/preview_mapset_map``, ``/keep_variant``.
"""
from __future__ import annotations

import base64
import html
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from engine import MapperatorError, Message, OptionError

from .. import forms, i18n, path_checks
from ..i18n import K, t
from ..ui import AppContext, L, follow, session_of, with_signature
from ..worker import Job, JobState

KINDS = ["Mapset", "Variants"]


@dataclass
class Card:
    name: str
    seed: int
    stars: float | None
    objects: int
    picture: str  # a data: URL of the playfield picture
    check: Any  # engine ResultCheck


@dataclass
class Gallery:
    result: Any  # engine MapsetResult
    cards: list[Card] = field(default_factory=list)
    kept: int | None = None


def mapset_options(values: dict[str, Any]):
    """MapsetOptions from the Generate tab's values and this section's."""
    import dataclasses

    import engine

    kind = values.pop("mapset_kind", KINDS[0]) or KINDS[0]
    extra = {k: values.pop(k, None) for k in ("difficulties", "gamemodes", "difficulty_names", "num_variants")}
    base = dataclasses.asdict(forms.generate_options(values))
    words: dict[str, Any] = {}
    if kind == "Variants":
        words["num_variants"] = extra["num_variants"] or 2
    else:
        stars = _list(extra["difficulties"])
        if stars:
            words["difficulties"] = stars  # build_options reads the numbers (and names a bad one)
            base["difficulty"] = None
        modes = [forms.gamemode_index(m) for m in extra["gamemodes"] or []]
        if modes:
            words["gamemodes"] = modes
            base["gamemode"] = None
        words["difficulty_names"] = _list(extra["difficulty_names"])
    return engine.build_options(engine.MapsetOptions, {**base, **words})


def _list(text: Any) -> list[str]:
    return [part.strip() for part in str(text or "").strip("[]").split(",") if part.strip()]


def _picture(beatmap) -> str:
    from ..pictures import playfield_thumbnail

    buffer = io.BytesIO()
    playfield_thumbnail(beatmap, (192, 144)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _mapset_job(options, on_written: Callable[[Path], None]):
    import engine

    def run(progress, cancel: threading.Event) -> Gallery:
        result = engine.generate_mapset(options, progress=progress, cancel=cancel)
        gallery = Gallery(result)
        for row in result.maps:
            on_written(row.path)
            check = forms.result_check(row)
            gallery.cards.append(Card(row.beatmap.metadata.version, row.seed, check.star_rating,
                                      len(row.beatmap.hit_objects), _picture(row.beatmap), check))
        return gallery

    return run


# the check's flags (engine.ResultCheck.flags) as the check table names them
_FLAGS = {"offscreen": K("check.offscreen"), "stacked": K("check.stacked"), "doubled": K("check.doubled"),
          "unsnapped": K("check.unsnapped"), "no objects": K("mapset.flag_no_objects"),
          "no red line": K("mapset.flag_no_red_line")}


def _flags(check: Any, lang: str) -> str:
    flags = [t(_FLAGS[flag], lang) if flag in _FLAGS else flag for flag in check.flags]
    return ", ".join(flags) or t("mapset.check_clean", lang)


def gallery_html(gallery: Gallery, lang: str = i18n.DEFAULT) -> str:
    """One card per map: picture, name, stars (asked), objects, seed and the check's flags, in ``lang``."""
    cards = []
    for i, card in enumerate(gallery.cards):
        stars = "?" if card.stars is None else f"{i18n.number(card.stars, lang)}★"
        asked = card.check.asked_difficulty
        if asked is not None:
            stars += " " + t("check.asked", lang, asked=float(asked))
        removed = gallery.kept is not None and i != gallery.kept
        state = (" " + t("mapset.removed", lang)) if removed else (" " + t("mapset.kept", lang)) \
            if gallery.kept == i else ""
        details = " · ".join([stars, t("mapset.card_objects", lang, count=card.objects),
                              t("mapset.card_seed", lang, seed=card.seed)])
        cards.append(
            f"<div class='mp-card{' mp-removed' if removed else ''}' data-index='{i}' "
            f"title='{html.escape(card.check.summary_line(), quote=True)}' "
            f"style='display:inline-block;width:200px;margin:4px;vertical-align:top;opacity:{0.4 if removed else 1}'>"
            f"<img src='{card.picture}' alt='' style='width:192px;height:144px'>"
            f"<div><b>{i + 1}. {html.escape(card.name)}</b>{html.escape(state)}</div>"
            f"<div>{html.escape(details)}</div>"
            f"<div style='font-size:smaller'>{html.escape(_flags(card.check, lang))}</div></div>")
    where = f"<code>{html.escape(str(gallery.result.path))}</code>"
    written = html.escape(t("mapset.written_to", lang, path="\0")).replace("\0", where)
    return f"<div id='mapset-cards'><div>{written}</div>{''.join(cards)}</div>"


def choices(gallery: Gallery) -> list[str]:
    return [f"{i + 1}. {card.name}" for i, card in enumerate(gallery.cards)]


def _index(choice: str, gallery: Gallery) -> int:
    try:
        return choices(gallery).index(choice)
    except ValueError:
        raise OptionError(Message("mapset.no_such_map", "no map {choice} in the last mapset; generate one first",
                                  choice=repr(choice))) from None


def build(ctx: AppContext, fields: dict[str, gr.components.Component]) -> None:
    """The section, under the Generate tab's form; it reads the same fields as Generate."""
    galleries: dict[str, Gallery] = {}  # the last gallery of each page
    with gr.Accordion(L("mapset.section"), open=False, elem_id="mapset-section"):
        with gr.Row():
            kind = gr.Radio([(L("mapset.kind_mapset"), KINDS[0]), (L("mapset.kind_variants"), KINDS[1])],
                            value=KINDS[0], label=L("mapset.kind"), elem_id="mapset-kind", info=L("mapset.kind_info"))
            difficulties = gr.Textbox(value="2, 3.5, 5, 6.5", label=L("mapset.difficulties"), elem_id="mapset-diffs")
            num_variants = gr.Slider(2, 8, value=4, step=1, label=L("mapset.variants"), elem_id="mapset-variants")
        with gr.Row():
            gamemodes = gr.CheckboxGroup(forms.GAMEMODES, value=[], label=L("mapset.gamemodes"),
                                         elem_id="mapset-modes")
            names = gr.Textbox(value="", label=L("mapset.names"), elem_id="mapset-names")
        start = gr.Button(L("mapset.start"), variant="primary", elem_id="mapset-start")
        status = gr.HTML(forms.progress_html(None), elem_id="mapset-status")
        cards = gr.HTML("", elem_id="mapset-gallery")
        with gr.Row():
            chosen = gr.Radio([], label=L("mapset.map"), elem_id="mapset-chosen")
            keep = gr.Button(L("mapset.keep"), elem_id="mapset-keep")
        message = gr.Markdown("", elem_id="mapset-message")
        player = gr.HTML("", elem_id="mapset-player")

    names_in = list(fields) + ["mapset_kind", "difficulties", "gamemodes", "difficulty_names", "num_variants"]
    inputs = [*fields.values(), kind, difficulties, gamemodes, names, num_variants]
    outputs = [status, cards, chosen, player]

    def generate_mapset(values: dict[str, Any], request: gr.Request | None):
        """Generate a mapset or variants; yields progress, then the gallery."""
        lang = ctx.lang(request)
        session = session_of(request)

        def show(job: Job, ahead: int):
            return forms.progress_html(job, ahead, lang), gr.update(), gr.update(), gr.update()

        def finish(job: Job):
            if job.state is not JobState.DONE:
                return forms.progress_html(job, 0, lang), "", gr.update(choices=[], value=None), ""
            gallery: Gallery = job.result
            galleries[session] = gallery
            first = choices(gallery)[0]
            return (forms.progress_html(job, 0, lang), gallery_html(gallery, lang),
                    gr.update(choices=choices(gallery), value=first), _player(gallery, 0))

        try:
            options = mapset_options(dict(values))
            path_checks.check_generate(options)
        except (MapperatorError, ValueError) as e:
            yield forms.error_html(forms.error_message(e), lang), "", gr.update(choices=[], value=None), ""
            return
        song = Path(options.audio_path).name if options.audio_path else Path(options.beatmap_path or "?").name
        label = Message("job.generate", "Generate {song} ({model}, {mode})", song=song, model=options.model_path,
                        mode=values.get("mapset_kind") or KINDS[0])
        job = ctx.worker.submit("generate", label, _mapset_job(options, ctx.written.add), session)
        yield forms.progress_html(job, ctx.worker.position(job), lang), "", gr.update(), ""
        yield from follow(ctx.worker, job, show, finish)

    start.click(with_signature(generate_mapset, names_in), inputs, outputs, api_name="generate_mapset",
                concurrency_limit=None, show_progress="hidden")

    def preview_mapset_map(choice: str, request: gr.Request):
        """The chosen map of this page's last mapset in the preview player."""
        gallery = galleries.get(session_of(request))
        if gallery is None or not choice:
            return ""
        try:
            return _player(gallery, _index(choice, gallery))
        except MapperatorError:
            return ""

    chosen.change(preview_mapset_map, chosen, player, api_name="preview_mapset_map", show_progress="hidden")

    def keep_variant(choice: str, request: gr.Request):
        """Keep the chosen variant of this page's last variants; the others' files are removed."""
        import engine

        lang = ctx.lang(request)
        gallery = galleries.get(session_of(request))
        if gallery is None:
            return t("mapset.keep_first", lang), gr.update()
        try:
            index = _index(choice, gallery)
            removed = engine.discard_variants(gallery.result, keep=index)
        except MapperatorError as e:
            return f"**{t('common.error', lang)}** {html.escape(i18n.error_text(e, lang))}", gr.update()
        gallery.kept = index
        kept = gallery.result.maps[index].path
        return (t("mapset.kept_message", lang, name=f"`{kept.name}`", count=len(removed)),
                gallery_html(gallery, lang))

    keep.click(keep_variant, chosen, [message, cards], api_name="keep_variant")


def _player(gallery: Gallery, index: int) -> str:
    from ..player import player_html

    row = gallery.result.maps[index]
    song = Path(row.options.audio_path).expanduser() if row.options.audio_path else None
    return player_html(row.beatmap, song, "mapset")
