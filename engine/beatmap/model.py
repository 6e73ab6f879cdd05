"""The in-memory beatmap: one typed dataclass per ``.osu`` section.

Units and conventions (shared by every module that builds on this one):

- Times are milliseconds as ``float`` (osu! parses them as doubles; maps written by osu! hold
  whole numbers). Times of format v3/v4 files are already shifted by the +24 ms osu! applies, so
  the model always holds v14 semantics.
- Positions are osu! pixels on the 512x384 playfield. Files before the lazer format (v128) store
  integers and osu! truncates any fraction, so those are ``int``; v128 files keep ``float``.
- Values are kept as written wherever osu! would throw information away (hit-object and
  timing-point order, duplicate timing points, missing edge sounds, NaN slider velocities, slider
  control points); clamping and defaulting happen in the helpers (:mod:`.timing_lookup`, :mod:`.slider_timing`,
  :mod:`.gameplay`), except for [Difficulty] values which are clamped at read time as osu! does.

Hit objects, timing points and the small value types are frozen, so ``dataclasses.replace``
makes edited copies and a :class:`~engine.beatmap.beatmap.Beatmap` can share them between copies.
Sections are mutable. The :class:`Beatmap` holding them all is in :mod:`.beatmap`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

# Hit object type bits.
CIRCLE, SLIDER, NEW_COMBO, SPINNER, HOLD = 1, 2, 4, 8, 128
COMBO_SKIP_SHIFT, COMBO_SKIP_MASK = 4, 0b0111_0000

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".flv", ".mpg", ".wmv", ".m4v")  # [Events] media that is a video

# Hitsound bits.
HITSOUND_NORMAL, HITSOUND_WHISTLE, HITSOUND_FINISH, HITSOUND_CLAP = 1, 2, 4, 8

# Sample sets as numbers (timing points, hit samples) and names ([General] SampleSet).
SAMPLE_SET_NAMES = {0: "None", 1: "Normal", 2: "Soft", 3: "Drum"}

def sample_set_number(name: str) -> int:
    """The number of a [General] SampleSet value ("Soft" or "2" -> 2); unknown names give 0."""
    numbers = {v: k for k, v in SAMPLE_SET_NAMES.items()}
    if name in numbers:
        return numbers[name]
    return int(name) if name.isdigit() and name.isascii() and len(name) < 10 else 0


# Timing point effect bits.
EFFECT_KIAI, EFFECT_OMIT_FIRST_BARLINE = 1, 8
MIN_BEAT_LENGTH, MAX_BEAT_LENGTH = 6.0, 60000.0  # osu! clamps beat lengths to these ms

# The comment skeleton osu!stable writes into [Events]; new beatmaps start with it.
STORYBOARD_SKELETON = (
    "//Storyboard Layer 0 (Background)",
    "//Storyboard Layer 1 (Fail)",
    "//Storyboard Layer 2 (Pass)",
    "//Storyboard Layer 3 (Foreground)",
    "//Storyboard Layer 4 (Overlay)",
    "//Storyboard Sound Samples",
)


@dataclass(frozen=True)
class ParseWarning:
    """Something the reader tolerated: the 1-based line and what it did about it."""

    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line is not None else self.reason


# ---------------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class HitSample:
    """The ``normalSet:additionSet:index:volume:filename`` field of a hit object.

    Sets are 0 (inherit from the timing point), 1 normal, 2 soft, 3 drum; other numbers are kept as
    written (osu! plays them as normal). ``volume`` 0 means the timing point's volume.
    ``str()`` gives the text osu! writes, e.g. ``"0:0:0:0:"``.
    """

    normal_set: int = 0
    addition_set: int = 0
    index: int = 0
    volume: int = 0
    filename: str = ""

    def __str__(self) -> str:
        return f"{self.normal_set}:{self.addition_set}:{self.index}:{self.volume}:{self.filename}"


@dataclass(frozen=True)
class EdgeSet:
    """The ``normalSet:additionSet`` of one slider node (head, repeats, tail)."""

    normal_set: int = 0
    addition_set: int = 0

    def __str__(self) -> str:
        return f"{self.normal_set}:{self.addition_set}"


# ------------------------------------------------------------------------------ hit objects
@dataclass(frozen=True)
class CurvePoint:
    """A slider control point as written (absolute playfield position).

    ``type`` is a segment type letter written just before this point (lazer's v128 syntax
    ``B|1:1|P|2:2|...``); stable files never have one.
    """

    x: float
    y: float
    type: str | None = None


@dataclass(frozen=True, kw_only=True)
class HitObject:
    """Fields shared by every hit object line ``x,y,time,type,hitSound,...``.

    ``new_combo`` and ``combo_skip`` are the type bits as written; the combo osu! shows (forced
    new combos after spinners and breaks) comes from :meth:`Beatmap.combo_info`.
    ``hit_sample`` is ``None`` when the line has no hit-sample field (osu! then uses
    ``0:0:0:0:``).
    """

    x: float
    y: float
    time: float
    hitsound: int = 0
    new_combo: bool = False
    combo_skip: int = 0
    hit_sample: HitSample | None = field(default_factory=HitSample)

    TYPE_BIT = 0

    @property
    def position(self) -> tuple[float, float]:
        return (self.x, self.y)

    @property
    def type_bits(self) -> int:
        """The type field osu! writes for this object."""
        bits = self.TYPE_BIT | (NEW_COMBO if self.new_combo else 0)
        return bits | ((self.combo_skip << COMBO_SKIP_SHIFT) & COMBO_SKIP_MASK)


@dataclass(frozen=True, kw_only=True)
class HitCircle(HitObject):
    """A circle (osu!), don/kat (taiko), fruit (catch) or note (mania)."""

    TYPE_BIT = CIRCLE


@dataclass(frozen=True, kw_only=True)
class Slider(HitObject):
    """A slider ``...,curveType|points,slides,length,edgeSounds,edgeSets,hitSample``.

    ``slides`` is the span count as written (osu! treats anything below 1 as 1); ``length`` is the
    pixel length as written (``None`` when absent). ``edge_sounds``/``edge_sets`` hold only the
    entries the file has (osu! fills missing ones from ``hitsound``/``hit_sample``). Geometry and
    timing: :meth:`Beatmap.slider_info`.
    """

    curve_type: str = "B"
    curve_points: tuple[CurvePoint, ...] = ()
    slides: int = 1
    length: float | None = None
    edge_sounds: tuple[int, ...] = ()
    edge_sets: tuple[EdgeSet, ...] = ()

    TYPE_BIT = SLIDER

    @property
    def points(self) -> list[tuple[float, float]]:
        """Head position followed by every control point, as written."""
        return [(self.x, self.y)] + [(p.x, p.y) for p in self.curve_points]


@dataclass(frozen=True, kw_only=True)
class Spinner(HitObject):
    """A spinner (osu!), denden (taiko) or banana shower (catch); ``end_time`` as written."""

    end_time: float

    TYPE_BIT = SPINNER


@dataclass(frozen=True, kw_only=True)
class HoldNote(HitObject):
    """A mania hold note ``x,y,time,128,hitSound,endTime:hitSample``; ``end_time`` as written."""

    end_time: float

    TYPE_BIT = HOLD


AnyHitObject = Union[HitCircle, Slider, Spinner, HoldNote]


# ---------------------------------------------------------------------------- timing points
@dataclass(frozen=True, kw_only=True)
class TimingPoint:
    """One ``time,beatLength,meter,sampleSet,sampleIndex,volume,uninherited,effects`` line.

    ``beat_length`` is raw: ms per beat for uninherited points, ``-100 / SV`` for inherited ones,
    possibly NaN. ``fields`` is how many fields the source line had (osu! fills the rest with
    defaults; kept for tools that must mimic other readers, ignored by equality).
    """

    time: float
    beat_length: float
    meter: int = 4
    sample_set: int = 0
    sample_index: int = 0
    volume: int = 100
    uninherited: bool = True
    effects: int = 0
    fields: int = field(default=8, compare=False, repr=False)

    @property
    def kiai(self) -> bool:
        return bool(self.effects & EFFECT_KIAI)

    @property
    def omit_first_barline(self) -> bool:
        return bool(self.effects & EFFECT_OMIT_FIRST_BARLINE)

    @property
    def bpm(self) -> float | None:
        """Beats per minute of an uninherited point (``None`` for inherited ones), from the beat
        length osu! plays: clamped to 6..60000 ms, so 1..10000 BPM even for ``1e-320``."""
        if not self.uninherited or not self.beat_length > 0:
            return None
        return 60000.0 / min(max(self.beat_length, MIN_BEAT_LENGTH), MAX_BEAT_LENGTH)


# --------------------------------------------------------------------------------- sections
@dataclass
class General:
    """[General]. Unknown keys are kept in ``extra`` (in file order) and written back."""

    audio_filename: str = ""
    audio_lead_in: int = 0
    preview_time: int = -1
    countdown: int = 0
    sample_set: str = "Normal"
    sample_volume: int = 100
    stack_leniency: float = 0.7
    mode: int = 0
    letterbox_in_breaks: bool = False
    epilepsy_warning: bool = False
    countdown_offset: int = 0
    special_style: bool = False
    widescreen_storyboard: bool = False
    samples_match_playback_rate: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Editor:
    """[Editor]."""

    bookmarks: list[int] = field(default_factory=list)
    distance_spacing: float = 1.0
    beat_divisor: int = 4
    grid_size: int = 4
    timeline_zoom: float = 1.0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Metadata:
    """[Metadata]. IDs are ``None`` when the file has none (unsubmitted or old maps)."""

    title: str = ""
    title_unicode: str = ""
    artist: str = ""
    artist_unicode: str = ""
    creator: str = ""
    version: str = ""
    source: str = ""
    tags: str = ""
    beatmap_id: int | None = None
    beatmap_set_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Difficulty:
    """[Difficulty], clamped to osu!'s ranges at read time."""

    hp_drain_rate: float = 5.0
    circle_size: float = 5.0
    overall_difficulty: float = 5.0
    approach_rate: float = 5.0
    slider_multiplier: float = 1.4
    slider_tick_rate: float = 1.0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Background:
    """``0,0,"file",x,y``."""

    filename: str
    x: int = 0
    y: int = 0


@dataclass(frozen=True)
class Video:
    """``Video,startTime,"file",x,y`` (also written ``1,...`` in old maps)."""

    filename: str
    start_time: float = 0
    x: int = 0
    y: int = 0


@dataclass(frozen=True)
class Break:
    """``2,startTime,endTime``."""

    start_time: float
    end_time: float


@dataclass
class Events:
    """[Events]: background and videos in file order, breaks, and every other line verbatim.

    ``storyboard`` keeps storyboard objects, their indented commands, sound samples, comments
    and lines osu! ignores, exactly as written and in order. The two comments osu! writes above
    the media and break lines are regenerated by the writer instead.
    """

    media: list[Background | Video] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    storyboard: list[str] = field(default_factory=lambda: list(STORYBOARD_SKELETON))

    @property
    def background(self) -> Background | None:
        return next((m for m in self.media if isinstance(m, Background)), None)

    @property
    def videos(self) -> list[Video]:
        return [m for m in self.media if isinstance(m, Video)]


@dataclass(frozen=True)
class Colour:
    """An RGB colour; ``a`` only when the file wrote an alpha component (osu! ignores it)."""

    r: int
    g: int
    b: int
    a: int | None = None

    def __str__(self) -> str:
        return f"{self.r},{self.g},{self.b}" + (f",{self.a}" if self.a is not None else "")


def _is_combo_key(key: str) -> bool:
    return key.startswith("Combo") and key[5:].isdigit() and key[5:].isascii() and 1 <= int(key[5:]) <= 8


@dataclass
class Colours:
    """[Colours] entries ``(key, colour)`` in file order, keys as written."""

    entries: list[tuple[str, Colour]] = field(default_factory=list)

    @classmethod
    def from_combo(cls, colours: list[Colour]) -> "Colours":
        return cls([(f"Combo{i}", c) for i, c in enumerate(colours[:8], 1)])

    @property
    def combo(self) -> list[Colour]:
        """Combo colours as osu! uses them: keys ``Combo1``..``Combo8`` in file order, at most 8."""
        return [c for key, c in self.entries if _is_combo_key(key)][:8]

    def get(self, key: str) -> Colour | None:
        """The last colour written under ``key`` (e.g. ``SliderTrackOverride``, ``SliderBorder``)."""
        return next((c for k, c in reversed(self.entries) if k == key), None)

    @property
    def slider_track(self) -> Colour | None:
        return self.get("SliderTrackOverride")

    @property
    def slider_border(self) -> Colour | None:
        return self.get("SliderBorder")
