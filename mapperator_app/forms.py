"""Plain functions between the UI's values and the engine's: form values -> options, results -> tables and HTML.

Nothing here imports Gradio, so every conversion is testable on its own.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable, Sequence

import engine
from engine import OptionError

from .worker import Job, JobState

GAMEMODES = list(engine.GAMEMODE_NAMES.values())  # the Radio choices, by mode number
CONTEXTS = ["TIMING", "KIAI", "MAP", "SV", "GD", "NO_HS"]
OUTPUT_CONTEXTS = ["TIMING", "KIAI", "MAP", "SV"]
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
        raise OptionError(f"mapper {value!r} is not an osu! user id (a number)")
    return int(text)


def model_label(model: str) -> str:
    """How the model picker shows a choice: a version by its name; a checkpoint folder by the version its own
    files say it is (config.json and tokenizer.json) and its last two folder names; a cached repo by its id."""
    model = (model or "").strip()
    if model in engine.PRESETS:
        return model
    version = engine.model_vocabulary(model).version
    path = Path(model).expanduser()
    if path.is_dir():
        return f"{version or 'checkpoint'} (folder …/{'/'.join(path.parts[-2:])})"
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


def progress_html(job: Job | None, ahead: int = 0) -> str:
    """A progress bar with the job's stage, speed and time; queued jobs say how many wait before them."""
    if job is None:
        return "<div class='mp-status mp-idle'>Ready.</div>"
    if job.state is JobState.QUEUED and ahead == 0:
        return f"<div class='mp-status mp-queued'>Starting {_e(job.label)}…</div>"
    if job.state is JobState.QUEUED:
        return (f"<div class='mp-status mp-queued'>Queued: {ahead} job{'s' if ahead != 1 else ''} before this one "
                f"({_e(job.label)}).</div>")
    if job.state is JobState.FAILED:
        return error_html(job.error)
    if job.state is JobState.CANCELLED:
        return f"<div class='mp-status mp-cancelled'>{_e(job.stage)}</div>"
    percent = job.fraction * 100
    bits = [_e(job.stage)]
    if job.rate:
        bits.append(_e(job.rate))
    bits.append(f"{job.elapsed:.0f} s")
    state = "mp-done" if job.state is JobState.DONE else "mp-running"
    return (f"<div class='mp-status {state}'><div class='mp-bar'><div class='mp-fill' style='width:{percent:.1f}%'>"
            f"</div></div><div class='mp-stage'>{percent:.0f}% · {' · '.join(bits)}</div></div>")


def error_html(message: str) -> str:
    return f"<div class='mp-status mp-error'><b>Error:</b> {_e(message)}</div>"


def note_html(message: str) -> str:
    return f"<div class='mp-status mp-note'>{_e(message)}</div>"


def jobs_html(jobs: Sequence[Job]) -> str:
    """The job list: the running job and the queue behind it."""
    if not jobs:
        return "<div class='mp-jobs mp-idle'>No jobs running.</div>"
    items = []
    for i, job in enumerate(jobs):
        if job.state is JobState.RUNNING:
            items.append(f"<li class='mp-job-running'><b>Running</b> #{job.id} {_e(job.label)} — "
                         f"{job.fraction * 100:.0f}% {_e(job.stage)}</li>")
        else:
            items.append(f"<li class='mp-job-queued'><b>Queued</b> #{job.id} {_e(job.label)}</li>")
    return f"<ul class='mp-jobs'>{''.join(items)}</ul>"


# --- tables -------------------------------------------------------------------------------------------------

SUGGESTION_HEADERS = ["Time", "Timestamp", "Category", "Severity", "Message", "Source"]


def suggestion_records(suggestions: Iterable[Any]) -> list[dict[str, Any]]:
    """Suggestions as plain dicts (JSON-able, kept in the page's state for filtering)."""
    rows = []
    for s in suggestions:
        d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        rows.append({
            "time_ms": d.get("time_ms"),
            "timestamp": d.get("timestamp") or "",
            "category": d.get("category") or "",
            "severity": str(d.get("severity") or ""),
            "message": d.get("message") or "",
            "source": {"ai": "AI", "rule": "rule"}.get(str(d.get("source")), str(d.get("source") or "")),
        })
    return rows


def format_time(ms: float | None) -> str:
    if ms is None:
        return ""
    t = max(int(round(ms)), 0)
    return f"{t // 60000}:{(t // 1000) % 60:02}.{t % 1000:03}"


def filter_suggestions(records: Sequence[dict[str, Any]], severities: Sequence[str] | None = None,
                       sources: Sequence[str] | None = None, categories: Sequence[str] | None = None,
                       text: str = "") -> list[dict[str, Any]]:
    needle = (text or "").strip().lower()
    out = []
    for r in records:
        if severities and r["severity"] not in severities:
            continue
        if sources and r["source"] not in sources:
            continue
        if categories and r["category"] not in categories:
            continue
        if needle and needle not in (r["message"] + " " + r["category"] + " " + r["timestamp"]).lower():
            continue
        out.append(r)
    return out


def suggestion_table(records: Sequence[dict[str, Any]]):
    """A pandas Styler: one row per suggestion, the severity cell coloured."""
    import pandas as pd

    frame = pd.DataFrame([[format_time(r["time_ms"]), r["timestamp"], r["category"], r["severity"], r["message"],
                           r["source"]] for r in records], columns=SUGGESTION_HEADERS)

    def colour(value: str) -> str:
        c = SEVERITY_COLOURS.get(value)
        return f"background-color: {c}; color: #222; font-weight: 600" if c else ""

    return frame.style.map(colour, subset=["Severity"])


TIMING_HEADERS = ["Time (ms)", "Timestamp", "Kind", "BPM", "Meter", "Slider velocity", "Kiai"]


def timing_rows(points: Iterable[Any]) -> list[list[Any]]:
    rows = []
    for p in points:
        red = bool(p.uninherited)
        bpm = round(60000.0 / p.beat_length, 3) if red and p.beat_length > 0 else None
        sv = round(-100.0 / p.beat_length, 3) if not red and p.beat_length < 0 else None
        rows.append([round(float(p.time), 2), engine.editor_timestamp(p.time).rstrip(" -"), "red line" if red else "green line",
                     bpm, p.meter if red else None, sv, bool(p.kiai)])
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


def check_markdown(check) -> str:
    """The check as a compact Markdown table, one row per measure, ⚠ where something looks wrong."""
    data = check.to_json()

    def row(name: str, value: Any, bad: bool = False) -> str:
        return f"| {name} | {'⚠ ' if bad else ''}{value} |"

    stars = "unknown" if data["star_rating"] is None else f"{data['star_rating']:.2f}★"
    if data["asked_difficulty"] is not None:
        stars += f" (asked {data['asked_difficulty']:g}★, {data['star_difference']:+.2f})" \
            if data["star_difference"] is not None else f" (asked {data['asked_difficulty']:g}★)"
    reds = data["red_lines"]
    red_text = "; ".join(f"{r['bpm']:g} BPM @ {r['offset_ms']:g} ms" for r in reds[:3]) or "none"
    if len(reds) > 3:
        red_text += f"; … {len(reds) - 3} more"
    empty = data["empty_sections"]
    empty_text = ", ".join(f"{format_time(s['start_ms'])}–{format_time(s['end_ms'])} ({s['bars']:g} bars)"
                           for s in empty[:3]) or "none"
    if len(empty) > 3:
        empty_text += f", … {len(empty) - 3} more"
    lines = ["| Check | Result |", "|---|---|", row("Star rating", stars),
             row(f"Red lines ({len(reds)})", red_text, not reds)]
    if data["mode"] == 0:
        lines.append(row("Offscreen", data["offscreen"], data["offscreen"] > 0))
    if data["mode"] in (0, 2):
        lines.append(row("Stacked on one spot", data["stacked"], data["stacked"] > 0))
    lines += [row("Doubled", data["doubled"], data["doubled"] > 0),
              row("Unsnapped (≥ 2 ms)", data["unsnapped"], data["unsnapped"] > 0),
              row("Empty sections (4+ bars)", empty_text)]
    ev = data["evaluation"]
    if ev is not None:
        lines.append(row(f"Against {ev['reference'].replace('|', '/')}",
                         f"rhythm F1 {ev['active_rhythm_f1']:.2f}, BPM error {ev['bpm_error']:.2f}"))
    return "\n".join(lines)
