"""Plain functions between the UI's values and the engine's: form values -> options, results -> tables and HTML.

Nothing here imports Gradio, so every conversion is testable on its own.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable, Sequence

import engine
from engine import OptionError

from . import i18n
from .i18n import K, render, t
from .worker import Job, JobState

GAMEMODES = list(engine.GAMEMODE_NAMES.values())  # the Radio choices, by mode number
CONTEXTS = ["TIMING", "KIAI", "MAP", "SV", "GD", "NO_HS"]
OUTPUT_CONTEXTS = ["TIMING", "KIAI", "MAP", "SV"]
#: The contexts as the page names them; the values stay upstream's names (``in_context=[TIMING]``).
CONTEXT_KEYS = {"TIMING": K("context.timing"), "KIAI": K("context.kiai"), "MAP": K("context.map"),
                "SV": K("context.sv"), "GD": K("context.gd"), "NO_HS": K("context.no_hs")}
PRECISIONS = list(engine.PRECISION_CHOICES)  # the Precision menus; the first, auto, is the engine's default
SEVERITY_COLOURS = {"problem": "#ffd6d6", "warning": "#fff0c2", "minor": "#e6f0ff"}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or (
        isinstance(value, (list, tuple)) and len(value) == 0)


def gamemode_index(value: Any) -> int | None:
    """0-3 from an index, a digit or a mode name (osu!, taiko, catch/fruits/ctb, mania)."""
    return engine.gamemode_index(value)


def mapper_id(value: Any) -> int | None:
    """A mapper's user id from ``12345`` or a choice label like ``12345 (name)``."""
    if _blank(value):
        return None
    text = str(value).strip().split()[0]
    if not text.isdigit():
        raise OptionError(engine.Message("error.mapper_not_id", "mapper {value} is not an osu! user id (a number)",
                                         value=repr(value)))
    return int(text)


def model_label(model: str) -> str:
    """How the model picker shows a choice: a version by its name; a checkpoint folder by the version its own
    files say it is (config.json and tokenizer.json) and its last two folder names; a cached repo by its id."""
    model = (model or "").strip()
    if model in engine.PRESETS:
        return model
    version = engine.model_vocabulary(model).version
    path = Path(model).expanduser()
    if path.is_dir():  # no words: the label is not translated
        where = f"…/{'/'.join(path.parts[-2:])}"
        return f"{version} ({where})" if version else where
    return f"{version} ({model})" if version else model


def model_choices(versions: Iterable[str], current: str | None) -> list[tuple[str, str]]:
    """The model picker's (label, value) choices: the versions, and the current choice when it is a folder or
    repo. Values stay what the user chose (a version name or the full path), so saved values restore unchanged
    and only the label shows the version."""
    choices = [(v, v) for v in versions]
    current = (current or "").strip()
    if current and current not in [v for _, v in choices]:
        choices.append((model_label(current), current))
    return choices


# Versions whose decoding takes about three times v32-mini's on a CPU (README, Speed: v32 75.8 s against 22.2 s
# a minute of audio; v30 and v31 are of v32's size).
FULL_SIZE_VERSIONS = ("v30", "v31", "v32")


def cpu_speed_hint(version: str | None, lang: str = i18n.DEFAULT) -> str:
    """For a full-size version on a computer without a GPU, a line saying that v32-mini takes about a third of
    its time; otherwise empty."""
    if version not in FULL_SIZE_VERSIONS or engine.auto_device_type() != "cpu":
        return ""
    return t("generate.cpu_speed_hint", lang, version=version)


def clean_values(values: dict[str, Any]) -> dict[str, Any]:
    """Blank text and empty selections mean 'not set' (the model's default); text is stripped."""
    out = {}
    for key, value in values.items():
        if _blank(value):
            continue
        if isinstance(value, str):
            value = value.strip()
        if isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def generate_options(values: dict[str, Any]):
    """GenerateOptions from the Generate tab's values, named after the options themselves."""
    data = clean_values(values)
    if "gamemode" in data:
        data["gamemode"] = gamemode_index(data["gamemode"])
    if "mapper_id" in data:
        data["mapper_id"] = mapper_id(data["mapper_id"])
    for key in ("in_context", "output_type"):
        if key in data:
            data[key] = tuple(str(v).lower() for v in data[key])
    for key in ("descriptors", "negative_descriptors"):
        if key in data:
            data[key] = tuple(str(v) for v in data[key])
    return engine.build_options(engine.GenerateOptions, data)


# --- HTML fragments -------------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text))


def progress_html(job: Job | None, ahead: int = 0, lang: str = i18n.DEFAULT) -> str:
    """A progress bar with the job's stage, speed and time; queued jobs say how many wait before them."""
    if job is None:
        return f"<div class='mp-status mp-idle'>{_e(t('progress.ready', lang))}</div>"
    label = render(job.label, lang)
    if job.state is JobState.QUEUED and ahead == 0:
        return f"<div class='mp-status mp-queued'>{_e(t('progress.starting', lang, label=label))}</div>"
    if job.state is JobState.QUEUED:
        return f"<div class='mp-status mp-queued'>{_e(t('progress.queued', lang, count=ahead, label=label))}</div>"
    if job.state is JobState.FAILED:
        return error_html(render(job.error, lang), lang)
    if job.state is JobState.CANCELLED:
        return f"<div class='mp-status mp-cancelled'>{_e(render(job.stage, lang))}</div>"
    percent = job.fraction * 100
    bits = [_e(render(job.stage, lang))]
    if job.rate:
        bits.append(_e(render(job.rate, lang)))
    bits.append(_e(t("progress.seconds", lang, seconds=round(job.elapsed))))
    if job.eta and job.state is JobState.RUNNING:
        bits.append(_e(render(job.eta, lang)))
    state = "mp-done" if job.state is JobState.DONE else "mp-running"
    return (f"<div class='mp-status {state}'><div class='mp-bar'><div class='mp-fill' style='width:{percent:.1f}%'>"
            f"</div></div><div class='mp-stage'>{percent:.0f}% · {' · '.join(bits)}</div></div>")


def error_html(message: str, lang: str = i18n.DEFAULT) -> str:
    """An error box; ``message`` may be an engine Message (shown in ``lang``)."""
    return f"<div class='mp-status mp-error'><b>{_e(t('common.error', lang))}</b> {_e(render(message, lang))}</div>"


def error_message(error: BaseException) -> str:
    """What an error says, keeping its message id (an engine Message) when it has one."""
    first = error.args[0] if len(error.args) == 1 else None
    return first if isinstance(first, engine.Message) else str(error)


def note_html(message: str, lang: str = i18n.DEFAULT) -> str:
    return f"<div class='mp-status mp-note'>{_e(render(message, lang))}</div>"


def jobs_html(jobs: Sequence[Job], lang: str = i18n.DEFAULT) -> str:
    """The job list: the running job and the queue behind it."""
    if not jobs:
        return f"<div class='mp-jobs mp-idle'>{_e(t('jobs.none', lang))}</div>"
    items = []
    for job in jobs:
        label = _e(render(job.label, lang))
        if job.state is JobState.RUNNING:
            items.append(f"<li class='mp-job-running'><b>{_e(t('jobs.running', lang))}</b> #{job.id} {label} — "
                         f"{job.fraction * 100:.0f}% {_e(render(job.stage, lang))}</li>")
        else:
            items.append(f"<li class='mp-job-queued'><b>{_e(t('jobs.queued', lang))}</b> #{job.id} {label}</li>")
    return f"<ul class='mp-jobs'>{''.join(items)}</ul>"


# --- tables -------------------------------------------------------------------------------------------------

SUGGESTION_COLUMNS = [K("table.time"), K("table.timestamp"), K("table.category"), K("table.severity"),
                      K("table.message"), K("table.source")]
SUGGESTION_HEADERS = [i18n.text(key) for key in SUGGESTION_COLUMNS]  # English, for the CLI and tests
SEVERITY_KEYS = {"problem": K("severity.problem"), "warning": K("severity.warning"), "minor": K("severity.minor")}
SOURCE_KEYS = {"AI": K("source.ai"), "rule": K("source.rule")}
#: The categories MaiMod and the rule checks use (engine names -> catalogue keys).
CATEGORY_KEYS = {
    "Timing": K("category.timing"), "Rhythm": K("category.rhythm"), "Compose": K("category.compose"),
    "Hit Sounds": K("category.hit_sounds"), "Sliders": K("category.sliders"),
    "New Combos": K("category.new_combos"), "Files": K("category.files"), "Kiai": K("category.kiai"),
    "Scroll Speeds": K("category.scroll_speeds"), "Misc": K("category.misc"),
}


def category_label(category: str, lang: str = i18n.DEFAULT) -> str:
    key = CATEGORY_KEYS.get(category)
    return t(key, lang) if key else category


def severity_label(severity: str, lang: str = i18n.DEFAULT) -> str:
    key = SEVERITY_KEYS.get(severity)
    return t(key, lang) if key else severity


def source_label(source: str, lang: str = i18n.DEFAULT) -> str:
    key = SOURCE_KEYS.get(source)
    return t(key, lang) if key else source


def suggestion_records(suggestions: Iterable[Any], lang: str = i18n.DEFAULT) -> list[dict[str, Any]]:
    """Suggestions as plain dicts (JSON-able, kept in the page's state for filtering); the message in ``lang``,
    category, severity and source as the engine names them (the table shows them in ``lang``)."""
    rows = []
    for s in suggestions:
        d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        message = s.message if hasattr(s, "message") else d.get("message")
        rows.append({
            "time_ms": d.get("time_ms"),
            "timestamp": d.get("timestamp") or "",
            "category": d.get("category") or "",
            "severity": str(d.get("severity") or ""),
            "message": str(render(message, lang) or ""),
            "source": {"ai": "AI", "rule": "rule"}.get(str(d.get("source")), str(d.get("source") or "")),
        })
    return rows


def format_time(ms: float | None) -> str:
    if ms is None:
        return ""
    total = max(int(round(ms)), 0)
    return f"{total // 60000}:{(total // 1000) % 60:02}.{total % 1000:03}"


def filter_suggestions(records: Sequence[dict[str, Any]], severities: Sequence[str] | None = None,
                       sources: Sequence[str] | None = None, categories: Sequence[str] | None = None,
                       text: str = "", lang: str = i18n.DEFAULT) -> list[dict[str, Any]]:
    """The records that pass the filters; ``text`` is looked for in the message, timestamp and category (as
    the engine names it and as ``lang`` shows it)."""
    needle = (text or "").strip().lower()
    out = []
    for r in records:
        if severities and r["severity"] not in severities:
            continue
        if sources and r["source"] not in sources:
            continue
        if categories and r["category"] not in categories:
            continue
        haystack = " ".join((r["message"], r["category"], category_label(r["category"], lang), r["timestamp"]))
        if needle and needle not in haystack.lower():
            continue
        out.append(r)
    return out


def suggestion_table(records: Sequence[dict[str, Any]], lang: str = i18n.DEFAULT):
    """A pandas Styler: one row per suggestion, the severity cell coloured, headers and words in ``lang``."""
    import pandas as pd

    headers = [t(key, lang) for key in SUGGESTION_COLUMNS]
    frame = pd.DataFrame([[format_time(r["time_ms"]), r["timestamp"], category_label(r["category"], lang),
                           severity_label(r["severity"], lang), r["message"], source_label(r["source"], lang)]
                          for r in records], columns=headers)
    colours = {severity_label(k, lang): c for k, c in SEVERITY_COLOURS.items()}

    def colour(value: str) -> str:
        c = colours.get(value)
        return f"background-color: {c}; color: #222; font-weight: 600" if c else ""

    return frame.style.map(colour, subset=[headers[3]])


TIMING_COLUMNS = [K("timing.col_time"), K("timing.col_timestamp"), K("timing.col_kind"), K("timing.col_bpm"),
                  K("timing.col_meter"), K("timing.col_sv"), K("timing.col_kiai")]
TIMING_HEADERS = [i18n.text(key) for key in TIMING_COLUMNS]


def timing_headers(lang: str = i18n.DEFAULT) -> list[str]:
    return [t(key, lang) for key in TIMING_COLUMNS]


def timing_rows(points: Iterable[Any], lang: str = i18n.DEFAULT) -> list[list[Any]]:
    red_text, green_text = t("timing.red_line", lang), t("timing.green_line", lang)
    rows = []
    for p in points:
        red = bool(p.uninherited)
        bpm = round(60000.0 / p.beat_length, 3) if red and p.beat_length > 0 else None
        sv = round(-100.0 / p.beat_length, 3) if not red and p.beat_length < 0 else None
        rows.append([round(float(p.time), 2), engine.editor_timestamp(p.time).rstrip(" -"),
                     red_text if red else green_text, bpm, p.meter if red else None, sv, bool(p.kiai)])
    return rows


# --- the check of a generated map ---------------------------------------------------------------------------


def result_check(result):
    """engine.check_result for a GenerationResult: the stars asked for, and the reference map
    (``beatmap_path``) unless the result was written over it."""
    from pathlib import Path

    reference = result.options.beatmap_path
    if reference and result.osu_path is not None and \
            Path(reference).expanduser().resolve() == Path(result.osu_path).resolve():
        reference = None
    return engine.check_result(result.beatmap, asked_difficulty=result.options.difficulty, reference=reference)


def check_markdown(check, lang: str = i18n.DEFAULT) -> str:
    """The check as a compact Markdown table, one row per measure, ⚠ where something looks wrong."""
    data = check.to_json()

    def row(name: str, value: Any, bad: bool = False) -> str:
        return f"| {name} | {'⚠ ' if bad else ''}{value} |"

    def num(value: float, spec: str = ".2f") -> str:
        return i18n.number(value, lang, spec)

    stars = t("check.unknown", lang) if data["star_rating"] is None else f"{num(data['star_rating'])}★"
    if data["asked_difficulty"] is not None:
        if data["star_difference"] is not None:
            stars += " " + t("check.asked_difference", lang, asked=float(data["asked_difficulty"]),
                             difference=float(data["star_difference"]))
        else:
            stars += " " + t("check.asked", lang, asked=float(data["asked_difficulty"]))
    reds = data["red_lines"]
    red_text = "; ".join(t("check.red_line", lang, bpm=float(r["bpm"]), offset=float(r["offset_ms"]))
                         for r in reds[:3]) or t("check.none", lang)
    if len(reds) > 3:
        red_text += "; " + t("check.more", lang, count=len(reds) - 3)
    empty = data["empty_sections"]
    empty_text = ", ".join(t("check.empty_section", lang, start=format_time(s["start_ms"]),
                             end=format_time(s["end_ms"]), bars=float(s["bars"]))
                           for s in empty[:3]) or t("check.none", lang)
    if len(empty) > 3:
        empty_text += ", " + t("check.more", lang, count=len(empty) - 3)
    lines = [f"| {t('check.header_check', lang)} | {t('check.header_result', lang)} |", "|---|---|",
             row(t("check.star_rating", lang), stars),
             row(t("check.red_lines", lang, count=len(reds)), red_text, not reds)]
    if data["mode"] == 0:
        lines.append(row(t("check.offscreen", lang), data["offscreen"], data["offscreen"] > 0))
    if data["mode"] in (0, 2):
        lines.append(row(t("check.stacked", lang), data["stacked"], data["stacked"] > 0))
    lines += [row(t("check.doubled", lang), data["doubled"], data["doubled"] > 0),
              row(t("check.unsnapped", lang), data["unsnapped"], data["unsnapped"] > 0),
              row(t("check.empty_sections", lang), empty_text)]
    ev = data["evaluation"]
    if ev is not None:
        lines.append(row(t("check.against", lang, reference=ev["reference"].replace("|", "/")),
                         t("check.evaluation", lang, f1=float(ev["active_rhythm_f1"]),
                           bpm_error=float(ev["bpm_error"]))))
    return "\n".join(lines)
