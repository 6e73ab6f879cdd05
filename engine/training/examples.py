"""Training examples: one audio window of a song and the decoder tokens and labels that go with it.

For each beatmap the song is cut into consecutive windows of ``src_seq_len - 1`` spectrogram frames
(starting at a random frame offset). In every window the prompt is laid out as inference lays it out::

    [in contexts] [conditioning tokens] SOS [out contexts, each SOS_x events EOS_x]

and the labels are the out-context tokens shifted by one, so the model learns to continue every
position of the out contexts; positions before the lookback point, the in contexts and the
conditioning tokens carry no label (-100). Every number here follows upstream's dataset code
(``SequenceDatasetMixin``), so an example built here equals the one upstream builds for the same
random choices (``tests/test_training_examples.py`` checks this against an upstream-built example).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from .. import beatmap_stats
from ..events import (EventStream, HITSOUND_TYPES, kiai_events, map_events, remove_events_of_type,
                      scroll_speed_events, timing_events)
from ..presets import MS_PER_STEP, DataFlags, VersionPreset
from ..tokenizer import ContextType, Event, EventType, Tokenizer
from .augment import Augmentations, Draws

C = ContextType
T = EventType
IGNORE = -100
STEPS_PER_MS = 1 / MS_PER_STEP  # the same float as 0.1: tokens stay bit-identical to upstream's


@dataclass(frozen=True)
class MapFacts:
    """What a beatmap tells the model about itself (conditioning tokens and embedder inputs)."""

    gamemode: int
    beatmap_id: int | None
    beatmap_idx: int | None
    user_id: int | None
    difficulty: float | None  # star rating at the song's speed
    year: int | None
    hitsounded: bool
    song_length_ms: float
    global_sv: float | None = None  # osu!/catch only
    circle_size: float | None = None  # osu!/catch only
    keycount: int | None = None  # mania only
    hold_note_ratio: float | None = None  # mania only
    scroll_speed_ratio: float | None = None  # taiko/mania only
    has_hold_note_ratio: bool = False
    has_scroll_speed_ratio: bool = False


def map_facts(beatmap, *, beatmap_id: int | None, beatmap_idx: int | None, user_id: int | None,
              difficulty: float | None, year: int | None, song_length_ms: float,
              mania_bpm_normalized: bool = True) -> MapFacts:
    """The facts of one beatmap, measured the way upstream's datasets measure them."""
    mode = beatmap.mode
    d = beatmap.difficulty
    return MapFacts(
        gamemode=mode,
        beatmap_id=beatmap_id,
        beatmap_idx=beatmap_idx,
        user_id=user_id,
        difficulty=difficulty,
        year=year,
        hitsounded=beatmap_stats.is_hitsounded(beatmap),
        song_length_ms=song_length_ms,
        global_sv=d.slider_multiplier if mode in (0, 2) else None,
        circle_size=d.circle_size if mode in (0, 2) else None,
        keycount=int(d.circle_size) if mode == 3 else None,
        hold_note_ratio=beatmap_stats.hold_note_ratio(beatmap) if mode == 3 else None,
        scroll_speed_ratio=(beatmap_stats.scroll_speed_ratio(beatmap, mania_normalized=mania_bpm_normalized)
                            if mode in (1, 3) else None),
        has_hold_note_ratio=mode == 3,
        has_scroll_speed_ratio=mode in (1, 3),
    )


@dataclass
class MapInput:
    """A parsed beatmap of the song and its facts (the target, or another difficulty for GD context)."""

    beatmap: object  # engine.beatmap.Beatmap
    facts: MapFacts
    name: str = ""
    streams: dict = field(default_factory=dict, repr=False)  # event streams by (context, speed, flip)


@dataclass
class Example:
    """One training example. Arrays are numpy; the collator turns batches into tensors."""

    frames: np.ndarray  # float32 [window samples], zero-padded at the song's end
    decoder_input_ids: np.ndarray  # int64 [length]
    labels: np.ndarray  # int64 [length], IGNORE where there is nothing to learn
    cond: dict[str, np.ndarray]  # difficulty, mapper_idx, beatmap_idx, song_position
    source: str = ""
    window_ms: float = 0.0
    clipped_time_shifts: int = 0


@dataclass
class _Context:
    type: ContextType
    stream: EventStream
    add_type: bool
    role: str  # "in" or "out": keeps the last-kiai/last-SV memory of in and out contexts apart
    facts: MapFacts | None = None  # only contexts that carry their own conditioning tokens (GD)
    starts: np.ndarray = field(default=None, repr=False)  # first event index at or after each frame


@dataclass
class _Window:
    events: list[Event]
    labels_offset: int
    last_kiai: Event | None = None
    last_sv: Event | None = None


class ExampleBuilder:
    """Builds the examples of one beatmap for one version and vocabulary."""

    def __init__(self, preset: VersionPreset, tokenizer: Tokenizer, augment: Augmentations):
        self.preset = preset
        self.flags: DataFlags = preset.data
        self.tok = tokenizer
        self.augment = augment
        flags = self.flags
        if flags.add_pre_tokens or flags.add_gd_context or flags.center_pad_decoder:
            raise ValueError(f"{preset.name}: pre tokens, extra GD context and centre padding are not supported")
        self.frame_seq_len = flags.src_seq_len - 1
        self.hop = flags.hop_length
        self.sample_rate = flags.sample_rate
        self.window_samples = self.frame_seq_len * self.hop
        ts = tokenizer.range[T.TIME_SHIFT]
        self.min_shift, self.max_shift = ts.min_value, ts.max_value

    # --- event streams ----------------------------------------------------------------------------------

    def _stream(self, ct: ContextType, source: MapInput, speed: float, flip: tuple[bool, bool]) -> EventStream:
        """The events of one context type of a beatmap (memoised on the MapInput: they never change)."""
        if ct in (C.MAP, C.GD):
            ct = C.MAP
        key = (ct, speed, flip if ct in (C.MAP, C.NO_HS) else None)
        if key not in source.streams:
            source.streams[key] = self._make_stream(ct, source, speed, flip)
        return source.streams[key]

    def _make_stream(self, ct: ContextType, source: MapInput, speed: float, flip: tuple[bool, bool]) -> EventStream:
        beatmap, flags = source.beatmap, self.flags
        if ct == C.NONE:
            return EventStream.empty()
        if ct == C.MAP:
            return map_events(beatmap, flags, speed=speed, flip=flip)
        if ct == C.NO_HS:
            return remove_events_of_type(self._stream(C.MAP, source, speed, flip), HITSOUND_TYPES)
        if ct == C.TIMING:
            return timing_events(beatmap, flags, speed=speed)
        if ct == C.KIAI:
            return kiai_events(beatmap, flags, speed=speed)
        if ct == C.SV:
            return scroll_speed_events(beatmap, flags, speed=speed) if beatmap.mode == 3 else EventStream.empty()
        raise ValueError(f"unknown context type {ct!r}")

    # --- conditioning tokens --------------------------------------------------------------------------

    def special_tokens(self, facts: MapFacts, time_ms: float, draws: Draws,
                       last_kiai: Event | None = None, last_sv: Event | None = None) -> list[int]:
        """Conditioning tokens of one beatmap, in the version's order, with conditioning dropout."""
        f, tok, flags = facts, self.tok, self.flags
        ids: list[int] = []
        if flags.add_gamemode_token:
            ids.append(tok.encode(Event(T.GAMEMODE, f.gamemode)))
        if flags.add_style_token:
            idx = f.beatmap_idx if f.beatmap_idx is not None and draws.keep("style") else tok.num_classes
            ids.append(tok.encode_clipped(T.STYLE, idx))
        if flags.add_diff_token:
            ids.append(tok.difficulty_token(f.difficulty if draws.keep("difficulty") else None))
        if flags.add_mapper_token:
            user = tok.mapper_of_beatmap(f.beatmap_id) if draws.keep("mapper") else None
            ids.append(tok.mapper_token(user))
        if flags.add_year_token:
            year = f.year if draws.keep("year") else None
            ids.append(tok.unknown(T.YEAR) if year is None else tok.encode_clipped(T.YEAR, year))
        if flags.add_hitsounded_token:
            ids.append(tok.encode(Event(T.HITSOUNDED, int(f.hitsounded))))
        if flags.add_song_length_token:
            ids.append(tok.song_length_token(f.song_length_ms))
        if flags.add_global_sv_token and f.global_sv is not None:
            ids.append(tok.global_sv_token(f.global_sv))
        if flags.add_cs_token and f.circle_size is not None:
            ids.append(tok.cs_token(f.circle_size if draws.keep("cs") else None))
        if flags.add_keycount_token and f.keycount is not None:
            ids.append(tok.encode_clipped(T.MANIA_KEYCOUNT, f.keycount))
        if flags.add_hold_note_ratio_token and f.has_hold_note_ratio:
            ids.append(tok.hold_note_ratio_token(f.hold_note_ratio if draws.keep("hold_note_ratio") else None))
        if flags.add_scroll_speed_ratio_token and f.has_scroll_speed_ratio:
            ids.append(tok.scroll_speed_ratio_token(
                f.scroll_speed_ratio if draws.keep("scroll_speed_ratio") else None))
        if flags.add_descriptors:
            known = tok.beatmap_descriptors.get(f.beatmap_id) if f.beatmap_id is not None else None
            if known and draws.keep("descriptor"):
                ids.extend(tok.encode_clipped(T.DESCRIPTOR, i) for i in known)
            else:
                ids.append(tok.unknown(T.DESCRIPTOR))
        if flags.add_kiai_special_token and last_kiai is not None:
            ids.append(tok.encode(last_kiai))
        if flags.add_sv_special_token and last_sv is not None:
            ids.append(tok.encode_clipped(T.SCROLL_SPEED, last_sv.value))
        if flags.add_song_position_token:
            ids.append(tok.encode(tok.song_position_event(time_ms, f.song_length_ms)))
        return ids

    def _tracks_kiai(self, ct: ContextType) -> bool:
        return ct == C.KIAI or (self.flags.add_kiai and ct in (C.GD, C.MAP))

    def _tracks_sv(self, ct: ContextType) -> bool:
        return ct == C.SV or ((self.flags.add_sv or self.flags.add_mania_sv) and ct in (C.GD, C.MAP))

    # --- the examples of one beatmap -----------------------------------------------------------------

    def frames(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The song padded to whole frames (always at least one sample of padding) and each frame's start (ms)."""
        hop = self.hop
        padded = np.pad(samples, (0, hop - len(samples) % hop))
        n_frames = len(padded) // hop
        return padded, np.arange(n_frames) / (self.sample_rate / hop / 1000)

    def examples(self, samples: np.ndarray, target: MapInput, others: Sequence[MapInput], draws: Draws,
                 *, speed: float = 1.0, flip: tuple[bool, bool] = (False, False)) -> Iterator[Example]:
        """Every window of ``target`` over ``samples`` (the song already at ``speed``).

        ``others`` are the set's other difficulties (for the GD context). Random choices come from
        ``draws``: prompt template, frame offset, lookback masking, dropout and token noise.
        """
        flags, tok = self.flags, self.tok
        template = flags.context_templates[draws.template(self.augment.context_weights)]
        inputs = list(template.inputs)
        if C.GD in inputs and not others:
            inputs.remove(C.GD)
            if not inputs:
                inputs.append(C.NONE)
        contexts: list[_Context] = []
        for ct in inputs:
            if ct == C.GD:
                other = others[draws.other_beatmap(len(others))]
                contexts.append(_Context(ct, self._stream(ct, other, speed, flip), True, "in", other.facts))
            else:
                contexts.append(_Context(ct, self._stream(ct, target, speed, flip), True, "in"))
        outs = [_Context(ct, self._stream(ct, target, speed, flip), flags.add_out_context_types, "out")
                for ct in template.outputs]

        f = target.facts
        cond_base = {
            "beatmap_idx": np.int64(f.beatmap_idx if f.beatmap_idx is not None and draws.keep("beatmap_idx")
                                    else tok.num_classes),
            "mapper_idx": np.int64(tok.mapper_index(f.user_id) if draws.keep("mapper_idx") else tok.num_mapper_classes),
            "difficulty": np.float32(f.difficulty if f.difficulty is not None else 0.0),
        }

        padded, frame_times = self.frames(samples)
        n_frames = len(frame_times)
        for ctx in contexts + outs:
            ctx.starts = _first_at_or_after(ctx.stream.times, frame_times)

        fsl = self.frame_seq_len
        offset = draws.frame_offset(min(fsl, 2000))
        lookback_frames = int(round(self.augment.lookback * fsl)) if draws.use_lookback() else 0
        gen_frames = int(round((1 - flags.lookahead) * fsl))
        memory: dict[tuple[str, ContextType], dict[str, Event]] = {}

        for start in range(offset, n_frames - lookback_frames, fsl):
            end = min(start + fsl, n_frames)
            gen_start = min(start + lookback_frames, n_frames - 1)
            gen_end = min(start + gen_frames, n_frames)
            time_ms = float(frame_times[start])

            in_windows = [self._window(ctx, start, end, gen_start, memory) for ctx in contexts]
            out_windows = [self._window(ctx, start, gen_end, gen_start, memory) for ctx in outs]
            last_kiai = last_sv = None
            for w in out_windows:
                last_kiai = w.last_kiai or last_kiai
                last_sv = w.last_sv or last_sv

            ids, labels, clipped = self._tokens(contexts, in_windows, outs, out_windows, f, time_ms,
                                                last_kiai, last_sv, draws)
            window = padded[start * self.hop: end * self.hop]
            if len(window) < self.window_samples:
                window = np.pad(window, (0, self.window_samples - len(window)))
            cond = dict(cond_base)
            cond["song_position"] = np.array([start / n_frames, end / n_frames], dtype=np.float32)
            yield Example(window.astype(np.float32, copy=False), ids, labels, cond, target.name, time_ms, clipped)

    def _window(self, ctx: _Context, start: int, end: int, gen_start: int, memory: dict) -> _Window:
        """The events of one context between two frames, and its running last-kiai/last-SV state."""
        events = _slice(ctx, start, end)
        w = _Window(events, int(ctx.starts[gen_start] - ctx.starts[start]))
        state = memory.setdefault((ctx.role, ctx.type), {})
        if self._tracks_kiai(ctx.type):
            w.last_kiai = state.get("kiai", Event(T.KIAI, 0))
            state["kiai"] = next((e for e in reversed(events) if e.type == T.KIAI), w.last_kiai)
        if self._tracks_sv(ctx.type):
            w.last_sv = state.get("sv", Event(T.SCROLL_SPEED, 100))
            state["sv"] = next((e for e in reversed(events) if e.type == T.SCROLL_SPEED), w.last_sv)
        return w

    def _encode(self, events: list[Event], time_ms: float) -> tuple[list[int], int]:
        """Token ids of a window's events; time shifts relative to the window in 10 ms steps (clipped)."""
        tok = self.tok
        ids, clipped = [], 0
        for e in events:
            if e.type == T.TIME_SHIFT:
                step = int((e.value - time_ms) * STEPS_PER_MS)
                if not self.min_shift <= step <= self.max_shift:
                    clipped += 1
                    step = min(max(step, self.min_shift), self.max_shift)
                e = Event(T.TIME_SHIFT, step)
            ids.append(tok.encode(e))
        return ids, clipped

    def _tokens(self, contexts, in_windows, outs, out_windows, facts: MapFacts, time_ms: float,
                last_kiai, last_sv, draws: Draws) -> tuple[np.ndarray, np.ndarray, int]:
        tok, tgt_len = self.tok, self.flags.tgt_seq_len
        special = self.special_tokens(facts, time_ms, draws, last_kiai, last_sv)
        in_special = [self.special_tokens(ctx.facts, time_ms, draws, w.last_kiai, w.last_sv) if ctx.facts else []
                      for ctx, w in zip(contexts, in_windows)]
        clipped = 0
        in_ids, out_ids = [], []
        for w in in_windows:
            ids, c = self._encode(w.events, time_ms)
            in_ids.append(ids)
            clipped += c
        for w in out_windows:
            ids, c = self._encode(w.events, time_ms)
            out_ids.append(ids)
            clipped += c

        # Tokens that are never truncated: SOS, conditioning tokens and the context markers.
        fixed = 1 + len(special) + sum(len(s) for s in in_special)
        fixed += 2 * sum(ctx.add_type for ctx in contexts + outs)
        out_budget = min(tgt_len - fixed, sum(map(len, out_ids)))
        in_budget = min(tgt_len - fixed - out_budget, sum(map(len, in_ids)))

        seq: list[int] = []
        for ctx, s, ids in zip(contexts, in_special, in_ids):
            take = min(len(ids), in_budget)
            in_budget -= take
            seq += [tok.context_sos[ctx.type]] if ctx.add_type else []
            seq += s + ids[:take]
            seq += [tok.context_eos[ctx.type]] if ctx.add_type else []
        seq += special
        noise_from = len(seq)
        seq.append(tok.sos_id)
        label_spans: list[tuple[int, int]] = []  # [first input position whose token is a label, end)
        sos_labels: list[tuple[int, int]] = []  # (position, token): the next context's SOS marker
        for ctx, w, ids in zip(outs, out_windows, out_ids):
            if ctx.add_type:
                sos_labels.append((len(seq) - 1, tok.context_sos[ctx.type]))
                seq.append(tok.context_sos[ctx.type])
            first = len(seq) + w.labels_offset
            take = min(len(ids), out_budget)
            out_budget -= take
            seq += ids[:take]
            if ctx.add_type:
                seq.append(tok.context_eos[ctx.type])
            label_spans.append((first, len(seq)))

        ids = np.asarray(seq, dtype=np.int64)
        labels = np.full(len(ids), IGNORE, dtype=np.int64)
        for position, token in sos_labels:
            labels[position] = token
        for first, end in label_spans:
            if first < end:
                labels[first - 1: end - 1] = ids[first:end]
        labels[-1] = tok.eos_id
        return self._noisy(ids, noise_from, draws), labels, clipped

    def _noisy(self, ids: np.ndarray, noise_from: int, draws: Draws) -> np.ndarray:
        """Input ids with time-shift jitter after the conditioning tokens and random snapping classes."""
        tok = self.tok
        out = ids.copy()
        if self.augment.timing_random_offset > 0:
            part = out[noise_from:]
            lo, hi = tok.start[T.TIME_SHIFT], tok.end[T.TIME_SHIFT]
            is_shift = (part >= lo) & (part < hi)
            jittered = np.clip(part + draws.timing_noise(len(part)), lo, hi - 1)
            out[noise_from:] = np.where(is_shift, jittered, part)
        if self.augment.snapping_random_prob > 0 and tok.has(T.SNAPPING):
            lo, hi = tok.start[T.SNAPPING], tok.end[T.SNAPPING]
            mask, classes = draws.snapping_noise(len(out), hi - lo)
            out = np.where(((out >= lo) & (out < hi)) & mask, lo + classes, out)
        return out


def _first_at_or_after(times: Sequence[int], frame_times: np.ndarray) -> np.ndarray:
    """For each frame start, the index of the first event not earlier than it.

    Event times need not be sorted (interpolated slider anchors can step back); the index is then the
    first event whose time reaches the frame start, which is where a forward scan over the events stops.
    """
    if len(times) == 0:
        return np.zeros(len(frame_times), dtype=np.int64)
    running_max = np.maximum.accumulate(np.asarray(times, dtype=np.float64))
    return np.searchsorted(running_max, frame_times, side="left")


def _slice(ctx: _Context, start: int, end: int) -> list[Event]:
    """Events from frame ``start`` up to (not including) frame ``end``; the song's last frame is excluded."""
    events = ctx.stream.events
    if not events:
        return []
    n = len(ctx.starts)
    stop = ctx.starts[end] if end < n else ctx.starts[n - 1]
    return list(events[ctx.starts[start]:stop])
