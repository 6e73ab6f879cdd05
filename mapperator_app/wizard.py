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

import engine
from engine import (GAMEMODE_NAMES, PATH_OPTIONS, PRESETS, ContextType, GenerateOptions, MapperatorError, ModelError,
                    Tokenizer, VersionPreset, build_options, options_to_words, parse_overrides)

MODES = {m: name if name.startswith("osu") else f"osu!{name}" for m, name in GAMEMODE_NAMES.items()}
VERSION_NOTES = {
    "v32": "the newest model, all four modes",
    "v32-mini": "a smaller, faster v32",
    "v31": "all four modes",
    "v30": "osu! standard only",
    "v29": "all four modes, positions on a 32-px grid; super timing by default (slow)",
}
OTHER_MODEL = "<other>"
CONTEXT_NOTES = {
    ContextType.TIMING: "timing points (red lines)",
    ContextType.KIAI: "kiai sections",
    ContextType.MAP: "hit objects",
    ContextType.SV: "slider velocity changes (green lines)",
    ContextType.GD: "another difficulty of the set (guest difficulty style)",
    ContextType.NO_HS: "hit objects without hit sounds",
}
ADVANCED_GROUPS = {
    "difficulty": "Difficulty settings: HP, CS, OD, AR, slider velocity and tick rate",
    "mania": "osu!mania: key count, hold notes, scroll speed",
    "sampling": "Sampling: seed, guidance (cfg_scale), temperature, top-p, top-k",
    "range": "Part of the song: start and end time",
    "extras": "Extras: hit sounds, super timing, LoRA adapter",
    "metadata": "Metadata: title, artist, creator, difficulty name, source, tags, background, preview time",
    "output": "Output and hardware: .osz export, device, precision",
    "windows": "Windows and snapping: lookback, lookahead, timing leniency, batch size, resnap",
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
        self.console.print(
            "[bold magenta]Mapperator[/] [bold]guided generation[/]\n"
            "[dim]Enter accepts the default shown; ↑/↓ move, space ticks a box; Ctrl-C quits without writing "
            "anything.[/]"
        )
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
            return str(e)
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
                return "tick at least one (space), then Enter"
            return self.problem(**{key: tuple(selected)}) or True

        return questionary.checkbox(
            message, choices=choices, validate=check, style=STYLE, instruction=f"({hint})" if hint else None,
            use_search_filter=True, use_jk_keys=False,
        ).unsafe_ask()

    # sections

    def files(self) -> None:
        self.section("Files")
        audio = self.ask_path("Song (audio file):", _check_audio)
        self.set("audio_path", audio)
        beatmap = self.ask_path("Reference beatmap", _check_beatmap, hint="an .osu to learn from; Enter: none")
        self.set("beatmap_path", beatmap or None)
        default_out = str(Path(beatmap or audio).expanduser().parent)
        out = self.ask_path("Output folder:", _check_output, default=default_out, only_directories=True)
        self.set("output_path", None if out == default_out else out)
        if beatmap:
            self.reference = engine.read_beatmap(Path(beatmap).expanduser())

    def model(self) -> None:
        self.section("Model")
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
            state = ("downloaded" if row is not None and row.installed else
                     "partly downloaded" if row is not None and row.partial else "not downloaded yet")
            choices.append(Choice(f"{name:<9}{note} ({state})", value=name))
        choices.append(Choice("another checkpoint: a folder or a Hugging Face repo id…", value=OTHER_MODEL))
        current = self.answers.get("model_path", GenerateOptions.model_path)
        picked = questionary.select("Model:", choices=choices, style=STYLE,
                                    default=current if current in VERSION_NOTES else OTHER_MODEL).unsafe_ask()
        if picked != OTHER_MODEL:
            return picked
        return self.ask_path("Checkpoint folder or Hugging Face repo id:", _check_model_source,
                             default="" if current in VERSION_NOTES else current, only_directories=True)

    def ask_gamemode(self, source: str) -> None:
        modes = PRESETS[source].data.gamemodes if source in PRESETS else tuple(MODES)
        default = self.reference.mode if self.reference is not None else 0
        current = self.answers.get("gamemode", default)
        if len(modes) == 1:
            self.console.print(f"[dim]{escape(source)} maps {MODES[modes[0]]} only.[/]")
            self.answers["gamemode"] = modes[0]
            return
        mode = questionary.select("Game mode:", choices=[Choice(MODES[m], value=m) for m in modes], style=STYLE,
                                  default=next((c for c in modes if c == current), modes[0])).unsafe_ask()
        self.answers["gamemode"] = mode

    def load_model(self, source: str) -> bool:
        """Find the checkpoint's small files (downloading them if asked); False to choose the model again."""
        self.model_root = self.tokenizer = self.preset = None
        where, local = engine.resolve_source(source)
        root = Path(where) if local else engine.model_folder(source)
        if root is None:
            self.console.print(f"[yellow]{escape(source)} ({escape(where)}) is not downloaded yet.[/]")
            what = questionary.select("What now?", style=STYLE, choices=[
                Choice("Download it now", value="download"),
                Choice("Skip the questions that need the model (descriptors, mapper)", value="skip"),
                Choice("Choose another model", value="again"),
            ]).unsafe_ask()
            if what == "again":
                return False
            if what == "download":
                root = self.download(source)
                if root is None:
                    what = questionary.select("The model could not be downloaded. What now?", style=STYLE, choices=[
                        Choice("Skip the questions that need the model (descriptors, mapper)", value="skip"),
                        Choice("Choose another model", value="again"),
                    ]).unsafe_ask()
                    if what == "again":
                        return False
            if root is None:
                self.preset = PRESETS.get(source)
                self.console.print("[dim]Descriptors and mapper are skipped; other answers are checked only for "
                                   "their type until `mapperator generate` runs.[/]")
                return True
        try:
            opts = build_options(GenerateOptions, self.answers)
            plan = engine.check_generate_options(dataclasses.replace(opts, model_path=str(root), output_path=self.scratch))
        except MapperatorError as e:
            self.console.print(f"[bold red]{escape(str(e))}[/]")
            return False
        self.model_root, self.tokenizer, self.preset = root, plan.tokenizer, plan.preset
        return True

    def download(self, source: str) -> Path | None:
        import logging

        from tqdm import tqdm

        self.console.print(f"Downloading {escape(source)}…")
        try:
            folder, subfolder = engine.fetch_model(source, gamemode=self.answers.get("gamemode"),
                                       revision=self.answers.get("revision"), progress=tqdm)
        except Exception as e:  # noqa: BLE001 - network libraries raise many kinds; all mean "not now"
            logging.getLogger("mapperator").info("wizard: download of %s failed", source, exc_info=True)
            reason = str(e) if isinstance(e, MapperatorError) else f"download failed: {e}"
            self.console.print(f"[bold red]{escape(reason)}[/]")
            return None
        return folder.parent if subfolder else folder

    def style(self) -> None:
        self.section("What to map")
        tok, preset = self.tokenizer, self.preset
        self.ask_value("difficulty", "Star rating:", hint="e.g. 5.5; Enter: the model decides")
        if preset is None or preset.data.add_year_token:
            self.ask_value("year", "Year of the mapping style:", hint="e.g. 2023; Enter: none")
        if tok is not None and tok.mapper_idx:
            self.ask_mapper()
        if tok is not None and tok.descriptor_idx and (preset is None or preset.data.add_descriptors):
            picked = self.ask_list("descriptors", "Descriptors (what the map should be like):",
                                   descriptor_choices(tok), hint="space ticks, type to filter, Enter: done")
            self.set("descriptors", tuple(picked) or None)
            negative = self.ask_list("negative_descriptors", "Negative descriptors (what to avoid):",
                                     descriptor_choices(tok, exclude=picked),
                                     hint="space ticks, type to filter, Enter: none")
            self.set("negative_descriptors", tuple(negative) or None)
            if negative and self.answers.get("cfg_scale", 1.0) <= 1:
                self.console.print("[dim]Negative descriptors only act with guidance above 1 (cfg_scale).[/]")
                self.ask_value("cfg_scale", "Guidance (cfg_scale):", hint="1 is off; e.g. 3", default=1.0)

    def ask_mapper(self) -> None:
        def check(text: str) -> bool | str:
            return self.problem(mapper_id=text.strip() or None) or True

        known = sorted(str(m) for m in self.tokenizer.mapper_idx)
        current = self.answers.get("mapper_id")
        text = questionary.autocomplete(
            f"Mapper (osu! user id; {len(known)} known, Tab lists them; Enter: none):", choices=known,
            default="" if current is None else str(current), validate=check, style=STYLE,
            validate_while_typing=False,
        ).unsafe_ask().strip()
        self.set("mapper_id", int(text) if text else None)

    def contexts(self) -> None:
        preset = self.preset
        inputs, outputs = _known_contexts(preset)
        self.section("Contexts")
        if self.answers.get("beatmap_path"):
            picked = self.ask_list(
                "in_context", "Take from the reference beatmap:",
                [Choice(f"{c.value:<7}{CONTEXT_NOTES[c]}", value=c.value) for c in inputs],
                hint="space ticks; Enter: nothing",
            )
            self.set("in_context", tuple(picked) or None)
            if self.ask_bool("add_to_beatmap", "Add the generated objects to the reference beatmap?"):
                self.ask_bool("overwrite_reference_beatmap", "Overwrite the reference .osu (a .bak copy is kept)?")
        default = [c.value for c in preset.inference.output_type] if preset else ["map"]
        current = list(self.answers.get("output_type") or default)
        picked = self.ask_list(
            "output_type", "Generate:",
            [Choice(f"{c.value:<7}{CONTEXT_NOTES[c]}", value=c.value, checked=c.value in current) for c in outputs],
            hint="the model's usual set is ticked; Enter keeps it", required=True,
        )
        self.set("output_type", None if sorted(picked) == sorted(default) else tuple(picked))

    def advanced(self) -> None:
        self.section("Advanced")
        groups = [k for k in ADVANCED_GROUPS if k != "mania" or self.answers.get("gamemode") == 3]
        picked = questionary.checkbox(
            "Change any advanced settings?", style=STYLE, instruction="(space ticks a group; Enter: none)",
            choices=[Choice(ADVANCED_GROUPS[k], value=k) for k in groups],
        ).unsafe_ask()
        for group in picked:
            getattr(self, f"advanced_{group}")()

    def advanced_difficulty(self) -> None:
        for key, label in (("hp_drain_rate", "HP drain rate"), ("circle_size", "Circle size"),
                           ("overall_difficulty", "Overall difficulty"), ("approach_rate", "Approach rate")):
            self.ask_value(key, f"{label}:", hint="0–10; Enter: the model decides")
        self.ask_value("slider_multiplier", "Slider velocity multiplier:", hint="e.g. 1.4; Enter: the model decides")
        self.ask_value("slider_tick_rate", "Slider tick rate:", hint="e.g. 1; Enter: the model decides")

    def advanced_mania(self) -> None:
        self.ask_value("keycount", "Key count:", hint="1–18; Enter: the model decides")
        self.ask_value("hold_note_ratio", "Share of hold notes:", hint="0–1; Enter: the model decides")
        self.ask_value("scroll_speed_ratio", "Share of scroll speed changes:", hint="0–1; Enter: the model decides")

    def advanced_sampling(self) -> None:
        self.ask_value("seed", "Seed:", hint="a whole number for a repeatable map; Enter: random")
        self.ask_value("cfg_scale", "Guidance (cfg_scale):", hint="1 is off; higher follows mapper and "
                       "descriptors more", default=GenerateOptions.cfg_scale)
        if self.ask_bool("do_sample", "Sample (vary the map from run to run)? No: always the likeliest token"):
            self.ask_value("temperature", "Temperature:", hint="above 0; Enter: the model's default")
            self.ask_value("top_p", "Top-p:", hint="0–1; Enter: the model's default")
            self.ask_value("top_k", "Top-k:", hint="0 is off; Enter: the model's default")
            self.ask_value("timing_temperature", "Timing temperature:", hint="above 0; Enter: the model's default")
            mode = self.answers.get("gamemode")
            if mode == 3:
                self.ask_value("mania_column_temperature", "Mania column temperature:",
                               hint="above 0; Enter: the model's default")
            if mode == 1:
                self.ask_value("taiko_hit_temperature", "Taiko hit temperature:",
                               hint="above 0; Enter: the model's default")
        self.ask_value("timeshift_bias", "Time-shift bias:", hint="negative: earlier, positive: later; Enter: 0",
                       default=GenerateOptions.timeshift_bias)

    def advanced_range(self) -> None:
        self.ask_value("start_time", "Start time (ms):", hint="Enter: the song's start")
        self.ask_value("end_time", "End time (ms):", hint="Enter: the song's end")

    def advanced_extras(self) -> None:
        current = self.answers.get("hitsounded")
        value = questionary.select("Hit sounds:", style=STYLE, choices=[
            Choice("the model decides", value="auto"), Choice("yes", value="yes"), Choice("no", value="no"),
        ], default={None: "auto", True: "yes", False: "no"}[current]).unsafe_ask()
        self.set("hitsounded", {"auto": None, "yes": True, "no": False}[value])
        if self.ask_bool("super_timing", "Super timing (slower, for songs with changing tempo)?"):
            self.ask_value("timer_iterations", "Super timing passes:", default=GenerateOptions.timer_iterations)
            self.ask_value("timer_cfg_scale", "Super timing guidance:", default=GenerateOptions.timer_cfg_scale)
            self.ask_value("timer_bpm_threshold", "Super timing BPM threshold:",
                           default=GenerateOptions.timer_bpm_threshold)
        lora = questionary.text("LoRA adapter (folder or Hugging Face repo id):", style=STYLE,
                                default=self.answers.get("lora_path", ""), instruction="(Enter: none)").unsafe_ask()
        self.set("lora_path", clean_path(lora) or None)

    def advanced_metadata(self) -> None:
        for key, label in (("title", "Title"), ("title_unicode", "Title (unicode)"), ("artist", "Artist"),
                           ("artist_unicode", "Artist (unicode)"), ("creator", "Creator"),
                           ("version", "Difficulty name"), ("source", "Source"), ("tags", "Tags")):
            self.ask_value(key, f"{label}:", hint="Enter: from the song or the model")
        background = self.ask_path("Background image", _check_optional_file, hint="Enter: none",
                                   default=self.answers.get("background", ""))
        self.set("background", background or None)
        self.ask_value("preview_time", "Preview time (ms):", hint="Enter: none")

    def advanced_output(self) -> None:
        self.ask_bool("export_osz", "Export an .osz (song, background and beatmap in one file)?")
        self.ask_value("device", "Device:", hint="auto, cpu, cuda, cuda:N or mps", default=GenerateOptions.device)
        precision = questionary.select("Precision (auto: int8 on a CPU, fp32 on a GPU; int8 is CPU only):",
                                       style=STYLE, choices=list(engine.PRECISION_CHOICES),
                                       default=self.answers.get("precision", GenerateOptions.precision)).unsafe_ask()
        self.set("precision", precision)


    def advanced_windows(self) -> None:
        self.ask_value("lookback", "Lookback (share of a window):", hint="0–1; Enter: the model's default")
        self.ask_value("lookahead", "Lookahead (share of a window):", hint="0–1; Enter: the model's default")
        self.ask_value("timing_leniency", "Timing leniency (ms):", hint="Enter: the model's default (20; v29: 3)")
        self.ask_value("max_batch_size", "Largest batch:", hint="Enter: the model's default")
        self.ask_bool("resnap_events", "Resnap objects to the timing?")


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return str(value)


# --- checks for the questions before the model is known ----------------------------------------------------


def _check_audio(path: str) -> bool | str:
    if not path:
        return "a song is needed: type its path (Tab completes)"
    try:
        engine.audio_duration_ms(Path(path).expanduser())
    except MapperatorError as e:
        return str(e)
    return True


def _check_beatmap(path: str) -> bool | str:
    if not path:
        return True
    p = Path(path).expanduser()
    if p.suffix.lower() != ".osu":
        return f"the reference must be an .osu file, not {p.name}"
    try:
        engine.read_beatmap(p)
    except MapperatorError as e:
        return str(e)
    return True


def _check_output(path: str) -> bool | str:
    p = Path(path).expanduser()
    if not path:
        return "an output folder is needed"
    if p.exists() and not p.is_dir():
        return f"{p} is a file, not a folder"
    existing = next((q for q in (p, *p.parents) if q.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK):
        return f"cannot write to {existing}: choose another folder"
    return True


def _check_model_source(text: str) -> bool | str:
    if not text:
        return "type a checkpoint folder or a Hugging Face repo id (user/name)"
    try:
        engine.resolve_source(text)
    except ModelError as e:
        return str(e)
    return True


def _check_optional_file(path: str) -> bool | str:
    if path and not Path(path).expanduser().is_file():
        return f"{path} not found"
    return True


# --- entry point --------------------------------------------------------------------------------------------


def run_wizard() -> int:
    """Ask, print the equivalent command, and run it when asked. Returns the process exit code."""
    from .cli import _error, cmd_generate

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return _error("the wizard needs an interactive terminal; in scripts use `mapperator generate key=value ...`")
    console = Console(highlight=False)
    wizard = Wizard(console)
    try:
        options = wizard.run()
        words = command_words(options)
        wizard.section("Command")
        console.print("[bold]The same generation as one command:[/]")
        print(shell_command(words), flush=True)  # plain print: no markup, no wrapping, copyable
        console.print()
        run_now = questionary.confirm("Generate the beatmap now?", default=True, style=STYLE).unsafe_ask()
    except (KeyboardInterrupt, EOFError):
        console.print("\n[yellow]Cancelled; nothing was written.[/]")
        return 130
    if not run_now:
        console.print("[dim]Copy the command above to run it later.[/]")
        return 0
    return cmd_generate(words)
