"""Options of the engine's jobs as frozen dataclasses, and ``key=value`` / YAML parsing for them.

Option names follow upstream's inference config so that its documented commands carry over:

    mapperator generate audio_path="C:\\Songs\\My Song [TV Size].mp3" gamemode=3 keycount=7 difficulty=4.5

Values are parsed with OmegaConf's grammar (numbers, booleans, ``null``, ``[a,b]`` lists), except for paths and
metadata texts, which are taken as they are: spaces, brackets and backslashes in Windows paths need no quoting,
and ``title=true`` is the title "true".
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TypeVar

from .errors import OptionError

T = TypeVar("T")

PATH_OPTIONS = frozenset({
    "audio_path", "output_path", "beatmap_path", "model_path", "lora_path", "background", "config",
    "pretrained_path", "checkpoint_path", "dataset_path", "songs_folder", "output_dir",
})
TEXT_OPTIONS = frozenset({"title", "title_unicode", "artist", "artist_unicode", "creator", "version", "source", "tags"})
VERBATIM_OPTIONS = PATH_OPTIONS | TEXT_OPTIONS


@dataclass(frozen=True)
class GenerateOptions:
    """Everything a generation can be asked for. ``None`` means: the model version's default, the
    reference beatmap's value, or unknown to the model, in that order."""

    # paths
    audio_path: str | None = None
    output_path: str | None = None
    beatmap_path: str | None = None
    model_path: str = "v32"  # a version (v30, v31, v32, v32-mini), a checkpoint folder or a Hugging Face repo id
    lora_path: str | None = None
    auto_select_gamemode_model: bool = True
    revision: str | None = None
    # what to map
    gamemode: int | None = None
    beatmap_id: int | None = None
    difficulty: float | None = None
    mapper_id: int | None = None
    year: int | None = None
    hitsounded: bool | None = None
    hp_drain_rate: float | None = None
    circle_size: float | None = None
    overall_difficulty: float | None = None
    approach_rate: float | None = None
    slider_multiplier: float | None = None
    slider_tick_rate: float | None = None
    keycount: int | None = None
    hold_note_ratio: float | None = None
    scroll_speed_ratio: float | None = None
    descriptors: tuple[str, ...] | None = None
    negative_descriptors: tuple[str, ...] | None = None
    # how
    seed: int | None = None
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    precision: str = "fp32"  # fp32, bf16, amp
    attn_implementation: str = "auto"  # accepted for compatibility; attention always runs through SDPA
    add_to_beatmap: bool = False
    overwrite_reference_beatmap: bool = False
    export_osz: bool = False
    start_time: int | None = None
    end_time: int | None = None
    lookback: float | None = None
    lookahead: float | None = None
    timing_leniency: int = 20
    in_context: tuple[str, ...] = ()
    output_type: tuple[str, ...] | None = None
    cfg_scale: float = 1.0
    temperature: float | None = None
    timing_temperature: float | None = None
    mania_column_temperature: float | None = None
    taiko_hit_temperature: float | None = None
    timeshift_bias: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    parallel: bool = False
    do_sample: bool = True
    num_beams: int = 1
    super_timing: bool = False
    timer_num_beams: int = 1
    timer_bpm_threshold: float = 0.1
    timer_cfg_scale: float = 1.0
    timer_iterations: int = 20
    max_batch_size: int | None = None
    resnap_events: bool = True
    snap_near_perfect_overlaps: bool | None = None
    use_server: bool = False  # accepted for compatibility; there is no separate inference server
    generate_positions: bool = False  # upstream's diffusion refinement: not part of v30+ defaults
    # metadata
    bpm: float | None = None
    offset: float | None = None
    title: str | None = None
    title_unicode: str | None = None
    artist: str | None = None
    artist_unicode: str | None = None
    creator: str | None = None
    version: str | None = None
    source: str | None = None
    tags: str | None = None
    background: str | None = None
    preview_time: int | None = None


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


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert a parsed value to the field's type, or raise OptionError naming the option."""
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
            return tuple(_coerce(name, v, item) for v in value)
    except (TypeError, ValueError):
        pass
    kind = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(tp, str(tp))
    raise OptionError(f"option {name}={value!r} is not valid: expected {kind}")


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def suggest(name: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def build_options(cls: type[T], values: dict[str, Any]) -> T:
    """An options dataclass from a mapping; unknown names and bad values raise OptionError."""
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if name not in fields:
            raise OptionError(f"unknown option {name!r}{suggest(name, sorted(fields))}")
        kwargs[name] = _coerce(name, value, hints[name])
    return cls(**kwargs)


def parse_overrides(cls: type[T], args: Sequence[str], base: dict[str, Any] | None = None) -> T:
    """Options from ``key=value`` words (and ``config=FILE.yaml``, applied first, then the other words)."""
    values: dict[str, str] = {}
    config_file = None
    for word in args:
        key, sep, value = word.partition("=")
        key = key.strip().lstrip("+").replace("-", "_")
        if not sep or not key:
            raise OptionError(f"expected key=value, got {word!r}")
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
        raise OptionError(f"config file {p} not found")
    try:
        data = OmegaConf.to_container(OmegaConf.load(p), resolve=False)
    except Exception as e:  # omegaconf raises several yaml/grammar errors
        raise OptionError(f"config file {p} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise OptionError(f"config file {p} must hold key: value pairs")
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
