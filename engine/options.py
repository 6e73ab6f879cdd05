"""Options of the engine's jobs as frozen dataclasses, and ``key=value`` / YAML parsing for them.

Option names follow upstream's inference config so that its documented commands carry over:

    mapperator generate audio_path="C:\\Songs\\My Song [TV Size].mp3" gamemode=3 keycount=7 difficulty=4.5

Values are parsed with OmegaConf's grammar (numbers, booleans, ``null``, ``[a,b]`` lists), except for paths and
metadata texts, which are taken as they are: spaces, brackets and backslashes in Windows paths need no quoting,
and ``title=true`` is the title "true".
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence, TypeVar

from .errors import OptionError
from .messages import Message

T = TypeVar("T")

PATH_OPTIONS = frozenset({
    "audio_path", "output_path", "beatmap_path", "model_path", "lora_path", "background", "config",
    "pretrained_path", "checkpoint_path", "dataset_path", "songs_folder", "output_dir", "diff_ckpt",
})
TEXT_OPTIONS = frozenset({"title", "title_unicode", "artist", "artist_unicode", "creator", "version", "source", "tags"})
VERBATIM_OPTIONS = PATH_OPTIONS | TEXT_OPTIONS
MAX_PATH_CHARS = 4096  # Linux's PATH_MAX; Windows' long paths stop near 32,767 but no real path comes close
MAX_NAME_BYTES = 255  # one file or folder name, on every common file system
PRECISIONS = ("fp32", "bf16", "amp", "int8")  # how a model's weights and arithmetic run (engine.runtime)
PRECISION_CHOICES = ("auto", *PRECISIONS)  # auto: see runtime.default_precision


# --- value rules ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The numbers an option accepts (each item, for a list option); NaN and infinities never."""

    low: float
    high: float
    low_open: bool = False  # the bound itself is not allowed
    high_open: bool = False
    hint: str = ""  # said after the range, e.g. how to get a random seed

    def allows(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        lo, hi = _number(self.low), _number(self.high)
        if not (self.low_open or self.high_open):
            return Message("range.between", "between {low} and {high}", low=lo, high=hi)
        low = Message("range.above", "above {n}", n=lo) if self.low_open else \
            Message("range.at_least", "at least {n}", n=lo)
        high = Message("range.below", "below {n}", n=hi) if self.high_open else \
            Message("range.at_most", "at most {n}", n=hi)
        return Message("range.both", "{low} and {high}", low=low, high=high)


def ranged(default: Any, low: float | Range, high: float | None = None, **rule: Any) -> Any:
    """A dataclass field whose values :func:`check_options` keeps in ``[low, high]`` (see :class:`Range`)."""
    limits = low if isinstance(low, Range) else Range(low, high, **rule)
    return dataclasses.field(default=default, metadata={"range": limits})


# NumPy's and torch's common range
SEED = Range(0, 2 ** 32 - 1, hint=Message("range.seed_hint", "; leave it unset (null) for a random seed"))
MAX_MS = 24 * 3600 * 1000  # times in a song, in milliseconds: a day is far beyond any song
MAX_COUNT = 10 ** 9  # steps, items and similar counts
TEMPERATURE = Range(0.001, 100)  # far below 0.001, logits / temperature overflow to inf and sampling breaks


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        value = int(value)
    return str(value) if isinstance(value, int) else f"{value:g}"


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if len(text) <= 60:
        return text
    return f"{text[:40]}... ({len(value) if isinstance(value, str) else len(text)} characters)"


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    return {name: _strip_optional(tp) for name, tp in typing.get_type_hints(cls).items()}


def check_options(options: Any, paths: frozenset[str] = PATH_OPTIONS) -> None:
    """Refuse NaN, infinities, numbers outside a field's :class:`Range`, and unusable paths, with an
    OptionError naming the option, its value and what it accepts. Options dataclasses call it in
    ``__post_init__``, so no job ever starts with such a value."""
    types_ = _field_types(type(options))
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if value is None:
            continue
        limits = f.metadata.get("range")
        if limits is not None:
            whole = types_[f.name] is int or typing.get_args(types_[f.name]) == (int, ...)
            for item in value if isinstance(value, tuple) else (value,):
                _check_number(f.name, item, limits, whole)
        elif isinstance(value, str):
            _check_text(f.name, value, is_path=f.name in paths)


def check_precision_name(precision: str) -> None:
    """A precision the engine knows (whether the device runs it is checked when the model loads)."""
    if (precision or "auto").lower() not in PRECISION_CHOICES:
        raise OptionError(Message("error.options.precision_choice", "option precision={precision} is not one of "
                                  "{choices}{suggestion}", precision=repr(precision),
                                  choices=", ".join(PRECISION_CHOICES),
                                  suggestion=suggest(str(precision).lower(), PRECISION_CHOICES)))


def _check_number(name: str, value: Any, limits: Range, whole: bool) -> None:
    kind = _WHOLE if whole else _NUMBER
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise OptionError(_not_valid(name, value, kind, limits))
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionError(Message("option.not_finite", "option {name}={value} is not a finite number: {name} must be "
                                  "{range}{hint}", name=name, value=str(value), range=limits.describe(),
                                  hint=limits.hint))
    if not limits.allows(value):
        raise OptionError(Message("option.out_of_range", "option {name}={value} is out of range: {name} must be "
                                  "{range}{hint}", name=name, value=_shown(value), range=limits.describe(),
                                  hint=limits.hint))


_WHOLE = Message("option.kind_whole", "a whole number")
_NUMBER = Message("option.kind_number", "a number")


def _not_valid(name: str, value: Any, kind: str, limits: "Range | None") -> Message:
    if limits is None:
        return Message("option.not_valid_plain", "option {name}={value} is not valid: expected {kind}", name=name,
                       value=_shown(value), kind=kind)
    return Message("option.not_valid", "option {name}={value} is not valid: expected {kind} {range}{hint}",
                   name=name, value=_shown(value), kind=kind, range=limits.describe(), hint=limits.hint)


def _check_text(name: str, value: str, is_path: bool) -> None:
    if "\0" in value:
        raise OptionError(Message("error.options.nul_character", "option {name} contains a NUL character (\\0), which "
                                  "no file name or text may hold", name=name))
    if not is_path:
        return
    if len(value) > MAX_PATH_CHARS:
        raise OptionError(Message("error.options.path_too_long", "option {name} is {length} characters long; a path "
                                  "can have at most {limit}: {value}", name=name, length=len(value),
                                  limit=MAX_PATH_CHARS, value=_shown(value)))
    for part in Path(value).parts:
        size = len(part) if os.name == "nt" else len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            too_long = Message("error.options.name_too_long_chars", "option {name} has a file or folder name of "
                               "{size} characters ({part}); file systems allow at most {limit}") if os.name == "nt" \
                else Message("error.options.name_too_long_bytes", "option {name} has a file or folder name of {size} "
                             "bytes ({part}); file systems allow at most {limit}")
            raise OptionError(too_long.fill(name=name, size=size, part=_shown(part), limit=MAX_NAME_BYTES))


@dataclass(frozen=True)
class GenerateOptions:
    """Everything a generation can be asked for. ``None`` means: the model version's default, the
    reference beatmap's value, or unknown to the model, in that order."""

    # paths
    audio_path: str | None = None
    output_path: str | None = None
    beatmap_path: str | None = None
    model_path: str = "v32"  # a version (v29, v30, v31, v32, v32-mini), a checkpoint folder or a Hugging Face repo id
    lora_path: str | None = None
    auto_select_gamemode_model: bool = True
    revision: str | None = None
    # what to map
    gamemode: int | None = ranged(None, 0, 3)
    beatmap_id: int | None = ranged(None, 0, 2 ** 31 - 1)
    difficulty: float | None = ranged(None, 0, 50)  # stars; each model's own range is checked with its vocabulary
    mapper_id: int | None = ranged(None, 0, 2 ** 31 - 1)
    year: int | None = ranged(None, 2000, 2100)  # each model's own years are checked with its vocabulary
    hitsounded: bool | None = None
    hp_drain_rate: float | None = ranged(None, 0, 10)
    circle_size: float | None = ranged(None, 0, 10)
    overall_difficulty: float | None = ranged(None, 0, 10)
    approach_rate: float | None = ranged(None, 0, 10)
    slider_multiplier: float | None = ranged(None, 0.4, 3.6)  # osu!'s editor limits
    slider_tick_rate: float | None = ranged(None, 0.5, 8)
    keycount: int | None = ranged(None, 1, 18)
    hold_note_ratio: float | None = ranged(None, 0, 1)
    scroll_speed_ratio: float | None = ranged(None, 0, 1)
    descriptors: tuple[str, ...] | None = None
    negative_descriptors: tuple[str, ...] | None = None
    # how
    seed: int | None = ranged(None, SEED)
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    precision: str = "auto"  # auto (int8 on a CPU, bf16 on a recent NVIDIA GPU, else fp32), fp32, bf16, amp, int8 (CPU only)
    # NVIDIA GPU: the decoder step compiled by torch.compile (H200: v32 990 -> 1,400 steps/s) after ~10-20 s of
    # compiling per model and batch shape, kept on disk for later runs; needs Triton and a C compiler (Linux)
    compiled_step: bool = False
    add_to_beatmap: bool = False
    overwrite_reference_beatmap: bool = False
    export_osz: bool = False
    start_time: int | None = ranged(None, 0, MAX_MS)
    end_time: int | None = ranged(None, 0, MAX_MS)
    lookback: float | None = ranged(None, 0, 1, high_open=True)
    lookahead: float | None = ranged(None, 0, 1, high_open=True)
    timing_leniency: int | None = ranged(None, 0, 1000)  # ms; None: the model's default (20; v29: 3)
    in_context: tuple[str, ...] = ()
    output_type: tuple[str, ...] | None = None
    cfg_scale: float = ranged(1.0, 1, 100)  # 1: no guidance
    temperature: float | None = ranged(None, TEMPERATURE)
    timing_temperature: float | None = ranged(None, TEMPERATURE)
    mania_column_temperature: float | None = ranged(None, TEMPERATURE)
    taiko_hit_temperature: float | None = ranged(None, TEMPERATURE)
    timeshift_bias: float = ranged(0.0, -100, 100)  # a logit bias
    top_p: float | None = ranged(None, 0, 1, low_open=True)
    top_k: int | None = ranged(None, 0, 1_000_000)  # 0: off
    do_sample: bool = True
    num_beams: int = ranged(1, 1, 64)
    super_timing: bool | None = None  # None: the model's default (on for v29, as upstream's v29.yaml)
    timer_bpm_threshold: float = ranged(0.1, 0, 1)
    timer_cfg_scale: float = ranged(1.0, 1, 100)
    timer_iterations: int = ranged(20, 1, 1000)
    max_batch_size: int | None = ranged(None, 1, 1024)
    resnap_events: bool = True
    snap_near_perfect_overlaps: bool | None = None
    # osu-diffusion refinement of the map's positions (osu! and catch maps with MAP in output_type); None: the
    # model's default (on for v29, as upstream's default.yaml; v30 and newer place objects precisely themselves)
    generate_positions: bool | None = None
    diff_ckpt: str = "OliBomby/osu-diffusion-v2"  # a Hugging Face repo id, or a folder with its model_ema.pkl and tokenizer.pkl
    diff_cfg_scale: float = ranged(1.0, 1, 100)  # the diffusion's classifier-free guidance; 1: no guidance
    # metadata
    bpm: float | None = ranged(None, 0, 10_000, low_open=True)
    offset: float | None = ranged(None, -MAX_MS, MAX_MS)
    title: str | None = None
    title_unicode: str | None = None
    artist: str | None = None
    artist_unicode: str | None = None
    creator: str | None = None
    version: str | None = None
    source: str | None = None
    tags: str | None = None
    background: str | None = None
    preview_time: int | None = ranged(None, -1, MAX_MS)  # -1: osu!'s 'none'

    # Upstream options nothing here reads: accepted (and dropped) at the values that match what runs here (see
    # :func:`retired_value_accepted`), so upstream's configs keep working; any other value is refused with this
    # message instead of silently doing nothing.
    RETIRED: ClassVar[dict[str, tuple[Any, str]]] = {
        "parallel": (False, Message("error.options.retired_parallel", "parallel=true (windows side by side) is not "
                                    "supported: windows are generated in order; leave parallel out or set it to "
                                    "false")),
        "timer_num_beams": (1, Message("error.options.retired_timer_num_beams", "timer_num_beams (beam search in "
                                       "super timing) is not supported: super timing samples one sequence per pass; "
                                       "leave timer_num_beams out or set it to 1")),
        "attn_implementation": (("auto", "sdpa", "flash_attention_2"),
                                Message("error.options.retired_attn_implementation", "attn_implementation=eager is "
                                        "not supported: attention always runs through PyTorch's SDPA (its flash "
                                        "kernel on CUDA where it applies), which is what upstream's auto, sdpa and "
                                        "flash_attention_2 choose; leave attn_implementation out")),
        "use_server": (False, Message("error.options.retired_use_server", "use_server=true (upstream's separate "
                                      "inference server process) is not supported: the model runs in this process; "
                                      "leave use_server out or set it to false")),
    }

    def __post_init__(self):
        check_options(self)
        check_precision_name(self.precision)
        if self.start_time is not None and self.end_time is not None and self.start_time >= self.end_time:
            raise OptionError(Message("option.start_after_end", "start_time ({start}) must be before end_time ({end})",
                                      start=self.start_time, end=self.end_time))


# --- parsing ------------------------------------------------------------------------------------------


def _strip_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _parse_text(text: str) -> Any:
    """A value written on a command line, read with OmegaConf's grammar (YAML scalars and lists)."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"v={text}"]), resolve=True)["v"]
    except Exception:  # OmegaConf's grammar errors have no common base; the text is then taken as it is
        return text


def _coerce(name: str, value: Any, tp: Any, limits: Range | None = None) -> Any:
    """Convert a parsed value to the field's type, or raise OptionError naming the option (and the range of
    numbers it takes)."""
    tp = _strip_optional(tp)
    if value is None:
        return None
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
                return value.lower() in ("true", "yes", "1", "on")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if origin is tuple:
            item = typing.get_args(tp)[0]
            if isinstance(value, str):
                value = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                value = [value]
            return tuple(_coerce(name, v, item, limits) for v in value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of an int with hundreds of digits
        pass
    kind = {bool: Message("option.kind_bool", "true or false"), int: _WHOLE, float: _NUMBER,
            str: Message("option.kind_text", "text")}.get(tp, str(tp))
    raise OptionError(_not_valid(name, value, kind, limits))


def suggest(name: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return Message("option.did_you_mean", " (did you mean {names}?)", names=", ".join(close)) if close else ""


def build_options(cls: type[T], values: dict[str, Any]) -> T:
    """An options dataclass from a mapping; unknown names and bad values raise OptionError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    retired: dict[str, tuple[Any, str]] = getattr(cls, "RETIRED", {})
    kwargs = {}
    for name, value in values.items():
        if name in retired and name not in fields:
            accepted, refusal = retired[name]
            if not retired_value_accepted(name, value, accepted):
                raise OptionError(refusal)
            continue
        if name not in fields:
            raise OptionError(Message("option.unknown", "unknown option {name}{suggestion}", name=repr(name),
                                      suggestion=suggest(name, sorted(fields))))
        kwargs[name] = _coerce(name, value, hints[name], fields[name].metadata.get("range"))
    return cls(**kwargs)


def retired_value_accepted(name: str, value: Any, accepted: Any) -> bool:
    """Whether a retired option's ``value`` is one it may keep: ``accepted`` is that value, or a tuple of them
    (``None`` accepts only ``null``)."""
    choices = accepted if isinstance(accepted, tuple) else (accepted,)
    if value is None or None in choices:
        return value in choices
    kind = type(choices[0])
    try:
        value = _coerce(name, value, kind)
    except OptionError:
        return False
    return value in choices


def parse_overrides(cls: type[T], args: Sequence[str], base: dict[str, Any] | None = None) -> T:
    """Options from ``key=value`` words (and ``config=FILE.yaml``, applied first, then the other words)."""
    values: dict[str, str] = {}
    config_file = None
    for word in args:
        key, sep, value = word.partition("=")
        key = key.strip().lstrip("+").replace("-", "_")
        if not sep or not key:
            raise OptionError(Message("error.options.expected_key_value", "expected key=value, got {word}",
                                      word=repr(word)))
        if key == "config":
            config_file = value
        else:
            values[key] = value
    merged: dict[str, Any] = dict(base or {})
    if config_file:
        merged.update(load_config_file(config_file))
    for key, text in values.items():
        merged[key] = text if key in VERBATIM_OPTIONS else _parse_text(text)
    return build_options(cls, merged)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The ``key: value`` mapping of a YAML file (unresolved), or an OptionError saying what is wrong."""
    from omegaconf import OmegaConf

    p = Path(path).expanduser()
    if not p.is_file():
        raise OptionError(Message("error.options.config_not_found", "config file {path} not found", path=str(p)))
    try:
        data = OmegaConf.to_container(OmegaConf.load(p), resolve=False)
    except Exception as e:  # omegaconf raises several yaml/grammar errors
        raise OptionError(Message("error.options.config_not_yaml", "config file {path} is not valid YAML: {reason}",
                                  path=str(p), reason=str(e))) from None
    if not isinstance(data, dict):
        raise OptionError(Message("error.options.config_not_mapping", "config file {path} must hold key: value pairs",
                                  path=str(p)))
    return data


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML options file (upstream-style; Hydra's ``defaults:`` list and nested groups are ignored)."""
    data = read_yaml_mapping(path)
    return {k: v for k, v in data.items() if k not in ("defaults", "hydra", "train", "diffusion") and not isinstance(v, dict)}


def options_to_words(options: Any, defaults: Any | None = None) -> list[str]:
    """``key=value`` words (as a program receives them, unquoted for any shell) that rebuild ``options`` through
    :func:`parse_overrides`; only the options differing from ``defaults``."""
    defaults = defaults if defaults is not None else type(options)()
    words = []
    for f in dataclasses.fields(options):
        value, default = getattr(options, f.name), getattr(defaults, f.name)
        if value == default:
            continue
        if isinstance(value, tuple):
            text = "[" + ",".join(_list_item(v) for v in value) + "]"
        elif value is None:
            text = "null"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        words.append(f"{f.name}={text}")
    return words


def _list_item(value: Any) -> str:
    """A list element in OmegaConf's grammar; quoted when it has spaces at its ends or separators."""
    text = str(value)
    if text != text.strip() or any(c in text for c in ",[]'\"="):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return text
