"""Training data on disk: what beatmaps and songs there are, and which of them a run uses.

Three layouts are read:

* ``mmrs``: the dataset the Mapperator console app writes (``Mapperator.ConsoleApp dataset2``), the one
  upstream trains on: ``metadata.parquet`` (one row per beatmap: ``Id``, ``BeatmapSetId``,
  ``BeatmapSetFolder``, ``BeatmapFile``, ``AudioFile``, ``ModeInt``, ``UserId``, ``StarRating`` at seven
  speeds, ``DifficultyRating``, ``SubmittedDate``, ``RankedDate``, ``Ranked``, ``OmdbTags``, ``TopTagIds``,
  ``TopTagCounts``) and ``data/<BeatmapSetFolder>/`` with the .osu files and the audio;
* ``osz``: a folder (searched recursively) of ``.osz`` archives, one mapset each;
* ``songs``: an osu! Songs folder, or any folder tree of mapset folders with .osu files and their audio.

A mapset is split by audio file (difficulties of one set may use different songs). Sets are sorted
by set id (or name), so ``start``/``end`` ranges pick the same sets every time, as upstream's ranges do.
Metadata a layout lacks (mapper user id, dates, ranked status) is unknown: year filters then let the
beatmap through, and the mapper and year tokens say "unknown".
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import AudioError, BeatmapError, MapperatorError, OptionError

log = logging.getLogger(__name__)

STAR_RATING_SPEEDS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # the speeds of MMRS's StarRating column
# A song inside an .osz, extracted for training: 2 hours (engine.audio.MAX_AUDIO_S) of 320 kbps mp3 is
# 288 MB; osu! songs are at most 192 kbps.
MAX_AUDIO_MEMBER_BYTES = 512 << 20
_NUMBER = re.compile(r"^(\d+)")


@dataclass(frozen=True)
class BeatmapItem:
    """One difficulty of the dataset and what is known about it without parsing it."""

    name: str  # for messages
    mode: int | None = None
    beatmap_id: int | None = None
    user_id: int | None = None
    year: int | None = None  # submission year: the year token
    ranked_year: int | None = None  # for min_year/max_year (ranked date, else submission)
    ranked: int | None = None
    stars: float | None = None  # at normal speed; None: computed with rosu-pp when needed
    star_curve: tuple[float, ...] | None = None  # at STAR_RATING_SPEEDS
    beatmap_idx: int | None = None
    omdb_tags: tuple[str, ...] = ()
    top_tags: tuple[tuple[int, int], ...] = ()  # (osu! tag id, votes)
    osu_path: Path | None = None  # the .osu on disk, or
    osz_member: str | None = None  # its name inside the set's .osz


@dataclass(frozen=True)
class MapSet:
    """Difficulties that share one song."""

    key: tuple  # sort key: (set id or a large number, name)
    name: str
    beatmaps: tuple[BeatmapItem, ...]
    audio_path: Path | None = None
    osz_path: Path | None = None
    audio_member: str | None = None  # the song's name inside the .osz


@dataclass
class SkipLog:
    """Items left out of training, counted by reason (a broken file never stops a run)."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    _seen: set = field(default_factory=set, repr=False)

    def add(self, reason: str, what: str) -> None:
        """Count ``what`` as skipped for ``reason`` (once: later epochs meeting it again do not recount)."""
        if (reason, what) in self._seen:
            return
        self._seen.add((reason, what))
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 3:
            shown.append(what)
        log.warning("skipped %s: %s", what, reason)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "nothing skipped"
        lines = [f"{self.total} item(s) skipped:"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {n} × {reason} (e.g. {', '.join(self.examples.get(reason, []))})")
        return "\n".join(lines)


@dataclass(frozen=True)
class DataFilter:
    """Which beatmaps take part (upstream's gamemodes, ranked_statuses, min/max year and difficulty)."""

    gamemodes: tuple[int, ...] | None = None
    ranked_statuses: tuple[int, ...] | None = None
    min_year: int | None = None
    max_year: int | None = None
    min_difficulty: float | None = None
    max_difficulty: float | None = None

    def reason_to_skip(self, item: BeatmapItem, stars: float | None = None) -> str | None:
        """Why ``item`` is filtered out, or None. Unknown values (mode aside) never filter an item out."""
        if self.gamemodes is not None and item.mode is not None and item.mode not in self.gamemodes:
            return "game mode not selected"
        if self.ranked_statuses is not None and item.ranked is not None and item.ranked not in self.ranked_statuses:
            return "ranked status not selected"
        if item.ranked_year is not None:
            if self.min_year is not None and item.ranked_year < self.min_year:
                return "older than min_year"
            if self.max_year is not None and item.ranked_year > self.max_year:
                return "newer than max_year"
        stars = item.stars if stars is None else stars
        if stars is not None:
            if self.min_difficulty is not None and stars < self.min_difficulty:
                return "easier than min_difficulty"
            if self.max_difficulty is not None and stars > self.max_difficulty:
                return "harder than max_difficulty"
        return None

    @property
    def needs_stars(self) -> bool:
        return self.min_difficulty is not None or self.max_difficulty is not None


# --- layouts --------------------------------------------------------------------------------------------------


def detect_layout(root: Path) -> str:
    if (root / "metadata.parquet").is_file():
        return "mmrs"
    if root.is_file() and root.suffix.lower() == ".osz":
        return "osz"
    if root.is_dir():
        if any(root.rglob("*.osz")):
            return "osz"
        if any(root.rglob("*.osu")):
            return "songs"
    raise OptionError(f"{root}: no dataset found (expected metadata.parquet, .osz files or mapset folders with .osu "
                      "files)")


def read_dataset(path: str | Path, layout: str = "auto", skipped: SkipLog | None = None) -> list[MapSet]:
    """Every mapset of a dataset, sorted by set id then name."""
    root = Path(path).expanduser()
    if not root.exists():
        raise OptionError(f"dataset {root} does not exist")
    layout = detect_layout(root) if layout == "auto" else layout
    skipped = skipped if skipped is not None else SkipLog()
    if layout == "mmrs":
        sets = read_mmrs(root, skipped)
    elif layout == "osz":
        sets = read_osz_folder(root, skipped)
    elif layout == "songs":
        sets = read_songs_folder(root, skipped)
    else:
        raise OptionError(f"unknown dataset_type {layout!r}")
    return sorted(sets, key=lambda s: s.key)


def split(sets: Sequence[MapSet], start: int, end: int | None) -> list[MapSet]:
    """Mapsets ``start`` to ``end`` (exclusive; None = to the end), as upstream's dataset ranges."""
    return list(sets[start:end])


def apply_filter(sets: Iterable[MapSet], rule: DataFilter, skipped: SkipLog, stars=None) -> list[MapSet]:
    """The sets with their filtered-out beatmaps removed (empty sets dropped). ``stars(item)`` rates unrated items."""
    kept = []
    for s in sets:
        items = []
        for item in s.beatmaps:
            rating = item.stars
            if rating is None and rule.needs_stars and stars is not None:
                rating = stars(s, item)
                item = replace(item, stars=rating)
            reason = rule.reason_to_skip(item, rating)
            if reason is None:
                items.append(item)
            else:
                skipped.counts[f"filtered: {reason}"] += 1  # expected, so not logged one by one
        if items:
            kept.append(replace(s, beatmaps=tuple(items)))
    return kept


def read_mmrs(root: Path, skipped: SkipLog) -> list[MapSet]:
    """The Mapperator console app's dataset: ``metadata.parquet`` plus ``data/<set folder>/``."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise OptionError("reading metadata.parquet needs pyarrow: pip install 'mapperator[train]' "
                          "(or pip install pyarrow)") from None
    path = root / "metadata.parquet"
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow's errors have no common public base
        raise OptionError(f"{path} cannot be read: {e}") from None
    required = {"Id", "BeatmapSetId", "BeatmapSetFolder", "BeatmapFile", "AudioFile", "ModeInt"}
    missing = required - set(table.column_names)
    if missing:
        raise OptionError(f"{path} lacks the column(s) {', '.join(sorted(missing))}; is it a Mapperator dataset?")
    rows = table.to_pylist()
    by_set: dict[int, list[tuple[int, dict]]] = {}
    for index, row in enumerate(rows):
        by_set.setdefault(int(row["BeatmapSetId"]), []).append((index, row))
    sets = []
    for set_id, members in by_set.items():
        members.sort(key=lambda m: m[1]["Id"])
        folder = root / "data" / str(members[0][1]["BeatmapSetFolder"])
        items = []
        for index, row in members:
            items.append(BeatmapItem(
                name=f"{row['BeatmapSetFolder']}/{row['BeatmapFile']}",
                mode=int(row["ModeInt"]),
                beatmap_id=int(row["Id"]),
                user_id=_int(row.get("UserId")),
                year=_year(row.get("SubmittedDate")),
                ranked_year=_year(row.get("RankedDate")) or _year(row.get("SubmittedDate")),
                ranked=_int(row.get("Ranked")),
                stars=_float(row.get("DifficultyRating")),
                star_curve=_curve(row.get("StarRating")),
                beatmap_idx=index,  # upstream's BeatmapIdx: the row number in metadata.parquet
                omdb_tags=tuple(row.get("OmdbTags") or ()),
                top_tags=tuple(zip(row.get("TopTagIds") or (), row.get("TopTagCounts") or ())),
                osu_path=root / "data" / str(row["BeatmapSetFolder"]) / str(row["BeatmapFile"]),
            ))
        sets.append(MapSet((set_id, str(members[0][1]["BeatmapSetFolder"])), folder.name, tuple(items),
                           audio_path=folder / str(members[0][1]["AudioFile"])))
    return sets


def read_osz_folder(root: Path, skipped: SkipLog) -> list[MapSet]:
    """Every ``.osz`` under ``root`` (or ``root`` itself); unreadable archives and difficulties are skipped,
    archives over the size caps of :mod:`engine.beatmap.osz` (zip bombs) among them."""
    from ..beatmap import parse_beatmap, read_osz

    archives = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() == ".osz")
    sets = []
    for path in archives:
        try:
            archive = read_osz(path)
        except BeatmapError as e:
            skipped.add(f"unreadable .osz ({e.reason})", path.name)
            continue
        groups: dict[str | None, list[BeatmapItem]] = {}
        set_id = None
        for entry in archive.difficulties:
            try:  # parsed here and dropped, not cached on the entry: one parsed difficulty at a time
                beatmap = parse_beatmap(entry.data, f"{path}/{entry.name}")
            except BeatmapError as e:
                skipped.add(f"unreadable beatmap ({e.reason})", f"{path.name}/{entry.name}")
                continue
            audio = _member(archive.names, beatmap.general.audio_filename)
            if audio is None:
                skipped.add("audio file missing from the .osz", f"{path.name}/{entry.name}")
                continue
            set_id = set_id or _positive(beatmap.metadata.beatmap_set_id)
            groups.setdefault(audio, []).append(_item_from_beatmap(beatmap, f"{path.name}/{entry.name}",
                                                                   osz_member=entry.name))
        set_id = set_id or _leading_number(path.stem)
        for audio, items in groups.items():
            sets.append(MapSet(_set_key(set_id, f"{path.name}:{audio}"), path.stem, tuple(items),
                               osz_path=path, audio_member=audio))
    return sets


def read_songs_folder(root: Path, skipped: SkipLog) -> list[MapSet]:
    """Mapset folders (an osu! Songs folder): every folder holding .osu files, grouped by their audio file."""
    from ..beatmap import read_beatmap

    folders: dict[Path, list[Path]] = {}
    for osu in sorted(p for p in root.rglob("*") if p.suffix.lower() == ".osu" and p.is_file()):
        folders.setdefault(osu.parent, []).append(osu)
    sets = []
    for folder, files in folders.items():
        names = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
        groups: dict[Path, list[BeatmapItem]] = {}
        set_id = None
        for osu in files:
            try:
                beatmap = read_beatmap(osu)
            except BeatmapError as e:
                skipped.add(f"unreadable beatmap ({e.reason})", str(osu.relative_to(root)))
                continue
            audio_name = (beatmap.general.audio_filename or "").replace("\\", "/").lower()
            audio = names.get(audio_name) or (folder / audio_name if audio_name and (folder / audio_name).is_file()
                                              else None)
            if audio is None:
                skipped.add("audio file not found", str(osu.relative_to(root)))
                continue
            set_id = set_id or _positive(beatmap.metadata.beatmap_set_id)
            groups.setdefault(audio, []).append(_item_from_beatmap(beatmap, str(osu.relative_to(root)), osu_path=osu))
        set_id = set_id or _leading_number(folder.name)
        for audio, items in groups.items():
            sets.append(MapSet(_set_key(set_id, f"{folder.name}:{audio.name}"), folder.name, tuple(items),
                               audio_path=audio))
    return sets


def _member(names: Sequence[str], wanted: str | None) -> str | None:
    """The archive member called ``wanted`` (case-insensitive, either slash), as osu! resolves it."""
    wanted = (wanted or "").replace("\\", "/").lower()
    return next((n for n in names if n.lower() == wanted), None) if wanted else None


def _item_from_beatmap(beatmap, name: str, **where) -> BeatmapItem:
    return BeatmapItem(name=name, mode=beatmap.mode, beatmap_id=_positive(beatmap.metadata.beatmap_id), **where)


def _set_key(set_id: int | None, name: str) -> tuple:
    return (set_id if set_id is not None else 1 << 62, name)


def _positive(value) -> int | None:
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _leading_number(text: str) -> int | None:
    m = _NUMBER.match(text)
    return int(m.group(1)) if m else None


def _int(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        value = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return value if value is not None and np.isfinite(value) else None


def _year(value) -> int | None:
    if isinstance(value, datetime):
        return value.year
    if isinstance(value, str) and len(value) >= 4 and value[:4].isdigit():
        return int(value[:4])
    return None


def _curve(value) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        curve = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return curve if len(curve) == len(STAR_RATING_SPEEDS) and all(np.isfinite(curve)) else None


# --- reading one item's files ----------------------------------------------------------------------------------


def read_item_beatmap(s: MapSet, item: BeatmapItem):
    """Parse the .osu of ``item`` (raises BeatmapError)."""
    from ..beatmap import parse_beatmap, read_beatmap

    if item.osu_path is not None:
        return read_beatmap(item.osu_path)
    if s.osz_path is not None and item.osz_member is not None:
        from ..beatmap.decoder import MAX_FILE_SIZE
        from ..beatmap.osz import read_member

        return parse_beatmap(read_member(s.osz_path, item.osz_member, MAX_FILE_SIZE), f"{s.osz_path}/{item.osz_member}")
    raise BeatmapError("the dataset entry names no .osu file", item.name)


def star_rating_at(s: MapSet, item: BeatmapItem, beatmap, speed: float = 1.0) -> float | None:
    """Star rating at ``speed``: interpolated from the dataset's ratings when it has them, else rosu-pp."""
    if item.star_curve is not None:
        return float(np.interp(speed, STAR_RATING_SPEEDS, item.star_curve))
    if speed == 1.0 and item.stars is not None:
        return item.stars
    from .. import beatmap_stats

    return beatmap_stats.star_rating(beatmap, speed=speed)


class AudioSource:
    """Loads a set's song at a given speed (from the .osz through a temporary file when needed).

    A song inside an .osz is checked before it is extracted: its header must announce at most
    :data:`engine.audio.MAX_AUDIO_S`, and it is copied out in pieces, refused past
    :data:`MAX_AUDIO_MEMBER_BYTES`, so a huge or endless entry never sits in memory whole.
    """

    def __init__(self, s: MapSet):
        self.set = s

    def load(self, sample_rate: int, speed: float = 1.0, normalize: bool = True) -> np.ndarray:
        import tempfile
        import warnings

        from ..audio import AudioWarning, load_audio

        s = self.set
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AudioWarning)
            if s.audio_path is not None:
                return load_audio(s.audio_path, sample_rate, speed=speed, normalize=normalize)
            if s.osz_path is None or s.audio_member is None:
                raise MapperatorError(f"{s.name}: no audio file")
            suffix = Path(s.audio_member).suffix
            with tempfile.TemporaryDirectory(prefix="mapperator-train-") as tmp:
                target = Path(tmp) / f"audio{suffix}"
                self._extract(target)
                try:
                    return load_audio(target, sample_rate, speed=speed, normalize=normalize)
                except AudioError as e:  # name the archive member, not the temporary copy
                    raise AudioError(str(e).replace(str(target), self._member_name)) from None

    @property
    def _member_name(self) -> str:
        return f"{self.set.osz_path.name}/{self.set.audio_member}"

    def _extract(self, target: Path) -> None:
        import zipfile

        from ..audio import check_announced_duration
        from ..beatmap.osz import extract_member

        s = self.set
        try:
            with zipfile.ZipFile(s.osz_path) as z:
                info = z.getinfo(s.audio_member)
                if info.file_size > MAX_AUDIO_MEMBER_BYTES:
                    raise AudioError(f"{self._member_name}: the song is {info.file_size >> 20} MiB, over the "
                                     f"{MAX_AUDIO_MEMBER_BYTES >> 20} MiB limit for a song inside an .osz")
                with z.open(info) as member:
                    member.MAX_SEEK_READ = 1 << 20  # zipfile seeks by decompressing; keep its pieces small
                    check_announced_duration(member, self._member_name)
            with open(target, "wb") as out:
                extract_member(s.osz_path, s.audio_member, out, MAX_AUDIO_MEMBER_BYTES)
        except BeatmapError as e:
            raise AudioError(f"{self._member_name}: {e.reason}") from None
        except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as e:
            raise MapperatorError(f"{s.osz_path}: cannot extract {s.audio_member}: {e}") from None
