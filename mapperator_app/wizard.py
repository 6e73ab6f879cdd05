"""``mapperator wizard``: ask for every generation setting in the terminal, then print (and optionally run)
the equivalent ``mapperator generate key=value ...`` command.

Questions are questionary prompts (prompt_toolkit underneath), so arrow keys, space-to-select and path
completion work the same in Windows consoles and Unix terminals. Answers are checked by the engine itself:
``build_options`` for types, and once the model's small files are at hand, ``engine.check_generate_options`` with
the answers so far (the checks ``mapperator generate`` runs before any heavy work). The model's weights are
never loaded here; its ``tokenizer.json`` gives the descriptor and mapper lists.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import questionary
from questionary import Choice, Separator
from rich.console import Console
from rich.markup import escape

from . import i18n
from .i18n import K, t

import engine
from engine import (GAMEMODE_NAMES, PATH_OPTIONS, PRESETS, ContextType, GenerateOptions, MapperatorError, ModelError,
                    Tokenizer, VersionPreset, build_options, options_to_words, parse_overrides)

MODES = {m: name if name.startswith("osu") else f"osu!{name}" for m, name in GAMEMODE_NAMES.items()}
VERSION_NOTES = {
    "v32": K("wizard.note_v32"),
    "v32-mini": K("wizard.note_v32_mini"),
    "v31": K("wizard.note_v31"),
    "v30": K("wizard.note_v30"),
    "v29": K("wizard.note_v29"),
}
OTHER_MODEL = "<other>"
CONTEXT_NOTES = {
    ContextType.TIMING: K("wizard.context_timing"),
    ContextType.KIAI: K("wizard.context_kiai"),
    ContextType.MAP: K("wizard.context_map"),
    ContextType.SV: K("wizard.context_sv"),
    ContextType.GD: K("wizard.context_gd"),
    ContextType.NO_HS: K("wizard.context_no_hs"),
}
ADVANCED_GROUPS = {
    "difficulty": K("wizard.group_difficulty"),
    "mania": K("wizard.group_mania"),
    "sampling": K("wizard.group_sampling"),
    "range": K("wizard.group_range"),
    "extras": K("wizard.group_extras"),
    "metadata": K("wizard.group_metadata"),
    "output": K("wizard.group_output"),
    "windows": K("wizard.group_windows"),
}

STYLE = questionary.Style([
    ("qmark", "fg:#ff66aa bold"),
    ("question", "bold"),
    ("answer", "fg:#44ccff bold"),
    ("pointer", "fg:#ff66aa bold"),
    ("highlighted", "fg:#ff66aa bold"),
    ("selected", "fg:#44ccff"),
    ("separator", "fg:#7f7f7f"),
    ("instruction", "fg:#7f7f7f italic"),
    ("text", ""),
])

Check = Callable[[str], "bool | str"]
LANG = i18n.DEFAULT  # the language the questions are asked in (run_wizard sets it)


# --- the command it ends with ------------------------------------------------------------------------------


def command_words(options: GenerateOptions) -> list[str]:
    """``key=value`` words rebuilding ``options``, as a shell hands them to ``mapperator generate`` (unquoted).

    Words come from ``options_to_words``; each is checked by parsing it back with ``parse_overrides``. Path
    values are taken verbatim (``options_to_words`` quotes them for a shell), and texts or list items that
    OmegaConf would read differently (``true``, ``[Remix]``, edge spaces, commas) get OmegaConf's double quotes.
    """
    words = []
    for word in options_to_words(options):
        key = word.partition("=")[0]
        value = getattr(options, key)
        candidates = [word]
        if key in PATH_OPTIONS and isinstance(value, str):
            candidates.insert(0, f"{key}={value}")
        elif isinstance(value, str):
            candidates.append(f"{key}={_omegaconf_quote(value)}")
        elif isinstance(value, tuple):
            candidates.append(f"{key}=[{','.join(_omegaconf_quote(str(v)) for v in value)}]")
        words.append(next((w for w in candidates if _round_trips(w, key, value)), candidates[-1]))
    return words


def _omegaconf_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _round_trips(word: str, key: str, value: Any) -> bool:
    try:
        return getattr(parse_overrides(GenerateOptions, [word]), key) == value
    except MapperatorError:
        return False


def shell_command(words: Sequence[str], program: str = "mapperator generate", windows: bool | None = None) -> str:
    """One line to paste into a shell: each word's value quoted where the shell would otherwise split or
    expand it (POSIX sh quoting; on Windows double quotes that cmd.exe and PowerShell both accept)."""
    windows = os.name == "nt" if windows is None else windows
    out = [program]
    for word in words:
        key, sep, value = word.partition("=")
        out.append(key + sep + (_windows_quote(value) if windows else shlex.quote(value)))
    return " ".join(out)


def _windows_quote(text: str) -> str:
    if text and not any(c in text for c in " \t\"&|<>^()%!;,$'`[]{}"):
        return text
    # the C runtime's rules: backslashes are literal unless they precede a double quote
    out, slashes = [], 0
    for c in text:
        if c == "\\":
            slashes += 1
            continue
        out.append("\\" * (slashes * 2 + 1) + '"' if c == '"' else "\\" * slashes + c)
        slashes = 0
    return '"' + "".join(out) + "\\" * (slashes * 2) + '"'


# --- helpers -------------------------------------------------------------------------------------------------


def clean_path(text: str) -> str:
    """A typed or pasted path without surrounding space or the quotes a file manager's drag and drop adds."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text


def descriptor_choices(tokenizer: Tokenizer, exclude: Sequence[str] = ()) -> list[Choice | Separator]:
    """The checkpoint's descriptors grouped by their ``group/`` prefix, in the tokenizer's order within a group."""
    groups: dict[str, list[str]] = {}
    for name in tokenizer.descriptor_names():  # group order from the full list: the same in both questions
        names = groups.setdefault(name.partition("/")[0] if "/" in name else "other", [])
        if name not in exclude:
            names.append(name)
    out: list[Choice | Separator] = []
    for group, names in groups.items():
        if names:
            out.append(Separator(f"── {group} "))
            out.extend(Choice(name, value=name) for name in names)
    return out


def _known_contexts(preset: VersionPreset | None) -> tuple[list[ContextType], list[ContextType]]:
    """(contexts a reference beatmap can give, contexts the model can write) for ``preset``."""
    every = [c for c in ContextType if c != ContextType.NONE]
    if preset is None:
        return every, every
    known = {c for t in preset.data.context_templates for c in t.inputs + t.outputs}
    outputs = {c for t in preset.data.context_templates for c in t.outputs}
    return [c for c in every if c in known], [c for c in every if c in outputs]


# --- the questions -----------------------------------------------------------------------------------------


class Wizard:
    """Asks the questions; ``answers`` holds the chosen option values (only those differing from defaults)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False)
        self.answers: dict[str, Any] = {}
        self.model_root: Path | None = None  # local folder of the checkpoint's small files, when available
        self.tokenizer: Tokenizer | None = None
        self.preset: VersionPreset | None = None
        self.scratch = tempfile.gettempdir()  # where validation's write test goes: never the real output folder
        self.reference = None  # the reference Beatmap, when one is given

    # the sequence

    def run(self) -> GenerateOptions:
        self.console.print(f"[bold magenta]Mapperator[/] [bold]{escape(t('wizard.title', LANG))}[/]\n"
                           f"[dim]{escape(t('wizard.keys', LANG))}[/]")
        self.files()
        self.model()
        self.style()
        self.contexts()
        self.advanced()
        return self.options()

    def options(self) -> GenerateOptions:
        return build_options(GenerateOptions, self.answers)

    def section(self, title: str) -> None:
        self.console.print()
        self.console.rule(f"[bold cyan]{title}[/]", align="left", style="cyan")

    # checking answers with the engine

    def problem(self, **changes: Any) -> str | None:
        """Why the answers with ``changes`` (None: back to the default) would be refused by ``mapperator
        generate``, or None."""
        values = {**self.answers, **changes}
        values = {k: v for k, v in values.items() if v is not None}
        try:
            opts = build_options(GenerateOptions, values)
            if self.model_root is not None and opts.audio_path:
                engine.check_generate_options(dataclasses.replace(opts, model_path=str(self.model_root),
                                                                  output_path=self.scratch))
        except MapperatorError as e:
            return i18n.error_text(e, LANG)
        return None

    def set(self, key: str, value: Any) -> None:
        if value == getattr(GenerateOptions, key, None) or value is None:
            self.answers.pop(key, None)
        else:
            self.answers[key] = value

    # question primitives (all raise KeyboardInterrupt on Ctrl-C)

    def ask_value(self, key: str, message: str, hint: str = "", default: Any = None) -> Any:
        """A typed option value; Enter on an empty line means the option's default (None: the model decides)."""
        current = self.answers.get(key, default)
        shown = "" if current is None else _text(current)

        def check(text: str) -> bool | str:
            text = text.strip()
            return self.problem(**{key: text or None}) or True

        text = questionary.text(
            message, default=shown, instruction=f"({hint})" if hint else None, validate=check, style=STYLE,
            validate_while_typing=False,
        ).unsafe_ask()
        text = text.strip()
        value = getattr(build_options(GenerateOptions, {key: text}), key) if text else None
        self.set(key, value)
        return value

    def ask_path(self, message: str, check: Check, default: str = "", only_directories: bool = False,
                 hint: str = "") -> str:
        def validate(text: str) -> bool | str:
            return check(clean_path(text))

        text = questionary.path(
            message + (f" ({hint})" if hint else ""),
            default=default, validate=validate, only_directories=only_directories, style=STYLE,
            validate_while_typing=False,
        ).unsafe_ask()
        return clean_path(text)

    def ask_bool(self, key: str, message: str) -> bool:
        value = questionary.confirm(message, default=bool(self.answers.get(key, getattr(GenerateOptions, key))),
                                    style=STYLE).unsafe_ask()
        self.set(key, value)
        return value

    def ask_list(self, key: str, message: str, choices: list, hint: str = "", required: bool = False) -> list[str]:
        def check(selected: list[str]) -> bool | str:
            if required and not selected:
                return t("wizard.tick_one", LANG)
            return self.problem(**{key: tuple(selected)}) or True

        return questionary.checkbox(
            message, choices=choices, validate=check, style=STYLE, instruction=f"({hint})" if hint else None,
            use_search_filter=True, use_jk_keys=False,
        ).unsafe_ask()

    # sections

    def files(self) -> None:
        self.section(t("wizard.section_files", LANG))
        audio = self.ask_path(t("wizard.song", LANG), _check_audio)
        self.set("audio_path", audio)
        beatmap = self.ask_path(t("wizard.reference", LANG), _check_beatmap, hint=t("wizard.reference_hint", LANG))
        self.set("beatmap_path", beatmap or None)
        default_out = str(Path(beatmap or audio).expanduser().parent)
        out = self.ask_path(t("wizard.output", LANG), _check_output, default=default_out, only_directories=True)
        self.set("output_path", None if out == default_out else out)
        if beatmap:
            self.reference = engine.read_beatmap(Path(beatmap).expanduser())

    def model(self) -> None:
        self.section(t("wizard.section_model", LANG))
        while True:
            source = self.ask_model()
            self.set("model_path", source)
            self.ask_gamemode(source)
            if self.load_model(source):
                return

    def ask_model(self) -> str:
        choices = []
        found = {m.version: m for m in engine.find_models()}
        for name, note in VERSION_NOTES.items():
            row = found.get(name)
            state = (t("wizard.downloaded", LANG) if row is not None and row.installed else
                     t("wizard.partly_downloaded", LANG) if row is not None and row.partial else
                     t("wizard.not_downloaded", LANG))
            choices.append(Choice(f"{name:<9}{t(note, LANG)} ({state})", value=name))
        choices.append(Choice(t("wizard.other_model", LANG), value=OTHER_MODEL))
        current = self.answers.get("model_path", GenerateOptions.model_path)
        picked = questionary.select(t("wizard.model", LANG), choices=choices, style=STYLE,
                                    default=current if current in VERSION_NOTES else OTHER_MODEL).unsafe_ask()
        if picked != OTHER_MODEL:
            return picked
        return self.ask_path(t("wizard.checkpoint", LANG), _check_model_source,
                             default="" if current in VERSION_NOTES else current, only_directories=True)

    def ask_gamemode(self, source: str) -> None:
        modes = PRESETS[source].data.gamemodes if source in PRESETS else tuple(MODES)
        default = self.reference.mode if self.reference is not None else 0
        current = self.answers.get("gamemode", default)
        if len(modes) == 1:
            self.console.print(f"[dim]{escape(t('wizard.one_mode', LANG, model=source, mode=MODES[modes[0]]))}[/]")
            self.answers["gamemode"] = modes[0]
            return
        mode = questionary.select(t("wizard.gamemode", LANG), choices=[Choice(MODES[m], value=m) for m in modes],
                                  style=STYLE,
                                  default=next((c for c in modes if c == current), modes[0])).unsafe_ask()
        self.answers["gamemode"] = mode

    def load_model(self, source: str) -> bool:
        """Find the checkpoint's small files (downloading them if asked); False to choose the model again."""
        self.model_root = self.tokenizer = self.preset = None
        where, local = engine.resolve_source(source)
        root = Path(where) if local else engine.model_folder(source)
        if root is None:
            self.console.print(f"[yellow]{escape(t('wizard.not_here', LANG, model=source, where=where))}[/]")
            what = questionary.select(t("wizard.what_now", LANG), style=STYLE, choices=[
                Choice(t("wizard.download_now", LANG), value="download"),
                Choice(t("wizard.skip_model", LANG), value="skip"),
                Choice(t("wizard.choose_again", LANG), value="again"),
            ]).unsafe_ask()
            if what == "again":
                return False
            if what == "download":
                root = self.download(source)
                if root is None:
                    what = questionary.select(t("wizard.download_failed", LANG), style=STYLE, choices=[
                        Choice(t("wizard.skip_model", LANG), value="skip"),
                        Choice(t("wizard.choose_again", LANG), value="again"),
                    ]).unsafe_ask()
                    if what == "again":
                        return False
            if root is None:
                self.preset = PRESETS.get(source)
                self.console.print(f"[dim]{escape(t('wizard.skipped', LANG))}[/]")
                return True
        try:
            opts = build_options(GenerateOptions, self.answers)
            plan = engine.check_generate_options(dataclasses.replace(opts, model_path=str(root), output_path=self.scratch))
        except MapperatorError as e:
            self.console.print(f"[bold red]{escape(i18n.error_text(e, LANG))}[/]")
            return False
        self.model_root, self.tokenizer, self.preset = root, plan.tokenizer, plan.preset
        return True

    def download(self, source: str) -> Path | None:
        import logging

        from tqdm import tqdm

        self.console.print(escape(t("wizard.downloading", LANG, model=source)))
        try:
            folder, subfolder = engine.fetch_model(source, gamemode=self.answers.get("gamemode"),
                                       revision=self.answers.get("revision"), progress=tqdm)
        except Exception as e:  # noqa: BLE001 - network libraries raise many kinds; all mean "not now"
            logging.getLogger("mapperator").info("wizard: download of %s failed", source, exc_info=True)
            reason = i18n.error_text(e, LANG) if isinstance(e, MapperatorError) else \
                t("wizard.download_error", LANG, error=str(e))
            self.console.print(f"[bold red]{escape(reason)}[/]")
            return None
        return folder.parent if subfolder else folder

    def style(self) -> None:
        self.section(t("wizard.section_style", LANG))
        tok, preset = self.tokenizer, self.preset
        self.ask_value("difficulty", t("wizard.difficulty", LANG), hint=t("wizard.difficulty_hint", LANG))
        if preset is None or preset.data.add_year_token:
            self.ask_value("year", t("wizard.year", LANG), hint=t("wizard.year_hint", LANG))
        if tok is not None and tok.mapper_idx:
            self.ask_mapper()
        if tok is not None and tok.descriptor_idx and (preset is None or preset.data.add_descriptors):
            picked = self.ask_list("descriptors", t("wizard.descriptors", LANG),
                                   descriptor_choices(tok), hint=t("wizard.descriptors_hint", LANG))
            self.set("descriptors", tuple(picked) or None)
            negative = self.ask_list("negative_descriptors", t("wizard.negative", LANG),
                                     descriptor_choices(tok, exclude=picked), hint=t("wizard.negative_hint", LANG))
            self.set("negative_descriptors", tuple(negative) or None)
            if negative and self.answers.get("cfg_scale", 1.0) <= 1:
                self.console.print(f"[dim]{escape(t('wizard.negative_needs_cfg', LANG))}[/]")
                self.ask_value("cfg_scale", t("wizard.cfg_scale", LANG), hint=t("wizard.cfg_scale_hint", LANG),
                               default=1.0)

    def ask_mapper(self) -> None:
        def check(text: str) -> bool | str:
            return self.problem(mapper_id=text.strip() or None) or True

        known = sorted(str(m) for m in self.tokenizer.mapper_idx)
        current = self.answers.get("mapper_id")
        text = questionary.autocomplete(
            t("wizard.mapper", LANG, count=len(known)), choices=known,
            default="" if current is None else str(current), validate=check, style=STYLE,
            validate_while_typing=False,
        ).unsafe_ask().strip()
        self.set("mapper_id", int(text) if text else None)

    def contexts(self) -> None:
        preset = self.preset
        inputs, outputs = _known_contexts(preset)
        self.section(t("wizard.section_contexts", LANG))
        if self.answers.get("beatmap_path"):
            picked = self.ask_list(
                "in_context", t("wizard.in_context", LANG),
                [Choice(f"{c.value:<7}{t(CONTEXT_NOTES[c], LANG)}", value=c.value) for c in inputs],
                hint=t("wizard.in_context_hint", LANG),
            )
            self.set("in_context", tuple(picked) or None)
            if self.ask_bool("add_to_beatmap", t("wizard.add_to_beatmap", LANG)):
                self.ask_bool("overwrite_reference_beatmap", t("wizard.overwrite_reference", LANG))
        default = [c.value for c in preset.inference.output_type] if preset else ["map"]
        current = list(self.answers.get("output_type") or default)
        picked = self.ask_list(
            "output_type", t("wizard.output_type", LANG),
            [Choice(f"{c.value:<7}{t(CONTEXT_NOTES[c], LANG)}", value=c.value, checked=c.value in current)
             for c in outputs],
            hint=t("wizard.output_type_hint", LANG), required=True,
        )
        self.set("output_type", None if sorted(picked) == sorted(default) else tuple(picked))

    def advanced(self) -> None:
        self.section(t("wizard.section_advanced", LANG))
        groups = [k for k in ADVANCED_GROUPS if k != "mania" or self.answers.get("gamemode") == 3]
        picked = questionary.checkbox(
            t("wizard.advanced", LANG), style=STYLE, instruction=f"({t('wizard.advanced_hint', LANG)})",
            choices=[Choice(t(ADVANCED_GROUPS[k], LANG), value=k) for k in groups],
        ).unsafe_ask()
        for group in picked:
            getattr(self, f"advanced_{group}")()

    def advanced_difficulty(self) -> None:
        for key, label in (("hp_drain_rate", K("wizard.hp_drain_rate")), ("circle_size", K("wizard.circle_size")),
                           ("overall_difficulty", K("wizard.overall_difficulty")),
                           ("approach_rate", K("wizard.approach_rate"))):
            self.ask_value(key, t(label, LANG), hint=t("wizard.hint_0_10", LANG))
        self.ask_value("slider_multiplier", t("wizard.slider_multiplier", LANG), hint=t("wizard.hint_sv", LANG))
        self.ask_value("slider_tick_rate", t("wizard.slider_tick_rate", LANG), hint=t("wizard.hint_tick_rate", LANG))

    def advanced_mania(self) -> None:
        self.ask_value("keycount", t("wizard.keycount", LANG), hint=t("wizard.hint_keycount", LANG))
        self.ask_value("hold_note_ratio", t("wizard.hold_note_ratio", LANG), hint=t("wizard.hint_0_1", LANG))
        self.ask_value("scroll_speed_ratio", t("wizard.scroll_speed_ratio", LANG), hint=t("wizard.hint_0_1", LANG))

    def advanced_sampling(self) -> None:
        self.ask_value("seed", t("wizard.seed", LANG), hint=t("wizard.hint_seed", LANG))
        self.ask_value("cfg_scale", t("wizard.cfg_scale", LANG), hint=t("wizard.hint_cfg_scale", LANG),
                       default=GenerateOptions.cfg_scale)
        if self.ask_bool("do_sample", t("wizard.do_sample", LANG)):
            self.ask_value("temperature", t("wizard.temperature", LANG), hint=t("wizard.hint_above_0", LANG))
            self.ask_value("top_p", t("wizard.top_p", LANG), hint=t("wizard.hint_0_1_default", LANG))
            self.ask_value("top_k", t("wizard.top_k", LANG), hint=t("wizard.hint_top_k", LANG))
            self.ask_value("timing_temperature", t("wizard.timing_temperature", LANG),
                           hint=t("wizard.hint_above_0", LANG))
            mode = self.answers.get("gamemode")
            if mode == 3:
                self.ask_value("mania_column_temperature", t("wizard.mania_column_temperature", LANG),
                               hint=t("wizard.hint_above_0", LANG))
            if mode == 1:
                self.ask_value("taiko_hit_temperature", t("wizard.taiko_hit_temperature", LANG),
                               hint=t("wizard.hint_above_0", LANG))
        self.ask_value("timeshift_bias", t("wizard.timeshift_bias", LANG), hint=t("wizard.hint_timeshift", LANG),
                       default=GenerateOptions.timeshift_bias)

    def advanced_range(self) -> None:
        self.ask_value("start_time", t("wizard.start_time", LANG), hint=t("wizard.hint_start", LANG))
        self.ask_value("end_time", t("wizard.end_time", LANG), hint=t("wizard.hint_end", LANG))

    def advanced_extras(self) -> None:
        current = self.answers.get("hitsounded")
        value = questionary.select(t("wizard.hitsounds", LANG), style=STYLE, choices=[
            Choice(t("wizard.model_decides", LANG), value="auto"), Choice(t("wizard.yes", LANG), value="yes"),
            Choice(t("wizard.no", LANG), value="no"),
        ], default={None: "auto", True: "yes", False: "no"}[current]).unsafe_ask()
        self.set("hitsounded", {"auto": None, "yes": True, "no": False}[value])
        if self.ask_bool("super_timing", t("wizard.super_timing", LANG)):
            self.ask_value("timer_iterations", t("wizard.timer_iterations", LANG),
                           default=GenerateOptions.timer_iterations)
            self.ask_value("timer_cfg_scale", t("wizard.timer_cfg_scale", LANG),
                           default=GenerateOptions.timer_cfg_scale)
            self.ask_value("timer_bpm_threshold", t("wizard.timer_bpm_threshold", LANG),
                           default=GenerateOptions.timer_bpm_threshold)
        lora = questionary.text(t("wizard.lora", LANG), style=STYLE, default=self.answers.get("lora_path", ""),
                                instruction=f"({t('wizard.hint_none', LANG)})").unsafe_ask()
        self.set("lora_path", clean_path(lora) or None)

    def advanced_metadata(self) -> None:
        for key, label in (("title", K("wizard.title_field")), ("title_unicode", K("wizard.title_unicode")),
                           ("artist", K("wizard.artist")), ("artist_unicode", K("wizard.artist_unicode")),
                           ("creator", K("wizard.creator")), ("version", K("wizard.version")),
                           ("source", K("wizard.source")), ("tags", K("wizard.tags"))):
            self.ask_value(key, t(label, LANG), hint=t("wizard.hint_metadata", LANG))
        background = self.ask_path(t("wizard.background", LANG), _check_optional_file,
                                   hint=t("wizard.hint_none", LANG), default=self.answers.get("background", ""))
        self.set("background", background or None)
        self.ask_value("preview_time", t("wizard.preview_time", LANG), hint=t("wizard.hint_none", LANG))

    def advanced_output(self) -> None:
        self.ask_bool("export_osz", t("wizard.export_osz", LANG))
        self.ask_value("device", t("wizard.device", LANG), hint=t("wizard.hint_device", LANG),
                       default=GenerateOptions.device)
        precision = questionary.select(t("wizard.precision", LANG),
                                       style=STYLE, choices=list(engine.PRECISION_CHOICES),
                                       default=self.answers.get("precision", GenerateOptions.precision)).unsafe_ask()
        self.set("precision", precision)


    def advanced_windows(self) -> None:
        self.ask_value("lookback", t("wizard.lookback", LANG), hint=t("wizard.hint_0_1_default", LANG))
        self.ask_value("lookahead", t("wizard.lookahead", LANG), hint=t("wizard.hint_0_1_default", LANG))
        self.ask_value("timing_leniency", t("wizard.timing_leniency", LANG), hint=t("wizard.hint_leniency", LANG))
        self.ask_value("max_batch_size", t("wizard.max_batch_size", LANG), hint=t("wizard.hint_default", LANG))
        self.ask_bool("resnap_events", t("wizard.resnap", LANG))


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return str(value)


# --- checks for the questions before the model is known ----------------------------------------------------


def _check_audio(path: str) -> bool | str:
    if not path:
        return t("wizard.need_song", LANG)
    try:
        engine.audio_duration_ms(Path(path).expanduser())
    except MapperatorError as e:
        return i18n.error_text(e, LANG)
    return True


def _check_beatmap(path: str) -> bool | str:
    if not path:
        return True
    p = Path(path).expanduser()
    if p.suffix.lower() != ".osu":
        return t("wizard.reference_not_osu", LANG, name=p.name)
    try:
        engine.read_beatmap(p)
    except MapperatorError as e:
        return i18n.error_text(e, LANG)
    return True


def _check_output(path: str) -> bool | str:
    if not path:
        return t("wizard.need_output", LANG)
    try:
        engine.check_output_writable(Path(path).expanduser())
    except MapperatorError as e:
        return i18n.error_text(e, LANG)
    return True


def _check_model_source(text: str) -> bool | str:
    if not text:
        return t("wizard.need_checkpoint", LANG)
    try:
        engine.resolve_source(text)
    except ModelError as e:
        return i18n.error_text(e, LANG)
    return True


def _check_optional_file(path: str) -> bool | str:
    if path and not Path(path).expanduser().is_file():
        return t("wizard.not_found", LANG, path=path)
    return True


# --- entry point --------------------------------------------------------------------------------------------


def run_wizard(lang: str | None = None) -> int:
    """Ask, print the equivalent command, and run it when asked. Returns the process exit code.

    ``lang`` (``--lang``) picks the language of the questions; by default the system's (the locale)."""
    global LANG
    from .cli import _error, cmd_generate

    LANG = i18n.match(lang) if lang else None
    if lang and LANG is None:
        return _error(f"--lang {lang}: not a language of Mapperator; choose one of {', '.join(i18n.LANGUAGES)}")
    LANG = LANG or i18n.system_language()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return _error(t("wizard.needs_terminal", LANG))
    console = Console(highlight=False)
    wizard = Wizard(console)
    try:
        options = wizard.run()
        words = command_words(options)
        wizard.section(t("wizard.section_command", LANG))
        console.print(f"[bold]{escape(t('wizard.same_command', LANG))}[/]")
        print(shell_command(words), flush=True)  # plain print: no markup, no wrapping, copyable
        console.print()
        run_now = questionary.confirm(t("wizard.run_now", LANG), default=True, style=STYLE).unsafe_ask()
    except (KeyboardInterrupt, EOFError):
        console.print(f"\n[yellow]{escape(t('wizard.cancelled', LANG))}[/]")
        return 130
    if not run_now:
        console.print(f"[dim]{escape(t('wizard.copy_later', LANG))}[/]")
        return 0
    return cmd_generate(words)
