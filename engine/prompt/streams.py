"""Event streams of one context type and their conversion to and from a window's token ids.

A stream is an :class:`~engine.events.EventStream`: events whose TIME_SHIFT values are absolute
milliseconds, plus a parallel list with the time of every event (int ms); a :class:`ContextStream` holds
the stream of one context in a generation run, with its type. In a window, time shifts become tokens counted in 10 ms steps from
the window start; generated tokens come back the other way. Inference decodes a non-negative step
``t`` to ``start + 10 t + 5`` ms: tokenization truncates to the step, so the half step removes the
5 ms average bias (and re-encoding the decoded time gives the same step back).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..events.stream import EventStream
from ..presets import MS_PER_STEP, DataFlags
from ..tokenizer import ContextType, Event, EventType, Tokenizer

# (events, times, end_time, types_first) -> None; extends ``times`` to cover ``events``
UpdateTimes = Callable[[list[Event], list[int], "float | None", bool], None]


def _default_update_times() -> UpdateTimes:
    from ..events import update_event_times

    return update_event_times


@dataclass
class ContextStream:
    """The :class:`~engine.events.EventStream` of one context type over the whole song.

    ``given`` streams come from a reference beatmap or an earlier pass and are never generated.
    ``class_tokens`` is set only for reference contexts that carry their own conditioning tokens
    in the prompt (a reference MAP/GD in-context). Generated events are added to ``stream`` in place.
    """

    type: ContextType
    stream: EventStream = field(default_factory=EventStream.empty)
    given: bool = False
    class_tokens: tuple[int, ...] | None = None

    def __post_init__(self):
        events, times = self.stream
        if len(events) != len(times):
            raise ValueError(f"{self.type.value} stream has {len(events)} events but {len(times)} times")

    def window_range(self, start_ms: float, end_ms: float) -> tuple[int, int]:
        return window_range(self.stream.times, start_ms, end_ms)

    def events_between(self, start_ms: float, end_ms: float) -> list[Event]:
        """The events in [start_ms, end_ms) (see :func:`window_range`)."""
        s, e = self.window_range(start_ms, end_ms)
        return self.stream.events[s:e]

    def last_event_before(self, event_type: EventType, time_ms: float) -> Event | None:
        for ev, t in zip(reversed(self.stream.events), reversed(self.stream.times)):
            if ev.type == event_type and t < time_ms:
                return ev
        return None


def window_range(times: Sequence[float], start_ms: float, end_ms: float) -> tuple[int, int]:
    """Slice bounds of the events in [start_ms, end_ms).

    Each bound is one past the *last* event before it, searched from the end, so it stays right
    when times are not perfectly sorted (interpolated anchor times can step back slightly).
    """

    def after_last_before(limit: float) -> int:
        for i in range(len(times) - 1, -1, -1):
            if times[i] < limit:
                return i + 1
        return 0

    return after_last_before(start_ms), after_last_before(end_ms)


def drop_before(events: list[Event], times: list[int], time_ms: float) -> None:
    """Remove, in place, every event earlier than ``time_ms``."""
    keep = [i for i, t in enumerate(times) if not t < time_ms]
    events[:] = [events[i] for i in keep]
    times[:] = [times[i] for i in keep]


def drop_trailing_after(events: list[Event], times: list[int], time_ms: float) -> None:
    """Remove, in place, the events at the end of the stream that are later than ``time_ms``."""
    n = len(times)
    while n > 0 and times[n - 1] > time_ms:
        n -= 1
    del events[n:]
    del times[n:]


@dataclass(frozen=True)
class WindowCodec:
    """Events <-> token ids relative to a window start."""

    tokenizer: Tokenizer
    types_first: bool = False

    def encode(self, events: Sequence[Event], window_start_ms: float) -> list[int]:
        tok = self.tokenizer
        ts = tok.range.get(EventType.TIME_SHIFT)
        ids = []
        for ev in events:
            if ev.type == EventType.TIME_SHIFT:
                step = int((ev.value - window_start_ms) / MS_PER_STEP)
                ev = Event(EventType.TIME_SHIFT, min(max(step, ts.min_value), ts.max_value))
            ids.append(tok.encode(ev))
        return ids

    def decode(self, ids: Sequence[int], window_start_ms: int, keep_control: bool = False) -> list[Event]:
        """Events of generated ids, time shifts made absolute (with the +5 ms half step).

        Stops at the first EOS and skips other non-event ids (context markers, padding) unless
        ``keep_control``, which keeps every non-event id as a CONTROL event (for MaiMod's
        "expected" suggestions) and does not stop at EOS.
        """
        tok = self.tokenizer
        events = []
        for i in ids:
            i = int(i)
            if not keep_control and i == tok.eos_id:
                break
            if not tok.is_event(i):
                if keep_control:
                    events.append(Event(EventType.CONTROL, i))
                continue
            ev = tok.decode(i)
            if ev.type == EventType.TIME_SHIFT:
                half = MS_PER_STEP // 2 if ev.value >= 0 else 0
                ev = Event(EventType.TIME_SHIFT, int(window_start_ms + ev.value * MS_PER_STEP + half))
            events.append(ev)
        return events

    def window_tokens(self, stream: ContextStream, window_start_ms: float, window_ms: float) -> list[int]:
        return self.encode(stream.events_between(window_start_ms, window_start_ms + window_ms), window_start_ms)


def time_shift_ids(tokenizer: Tokenizer, first_step: int, end_step: int) -> range:
    """Ids of the time-shift tokens with steps in [first_step, end_step)."""
    base = tokenizer.start[EventType.TIME_SHIFT] - tokenizer.range[EventType.TIME_SHIFT].min_value
    return range(base + first_step, base + end_step)


@dataclass(frozen=True)
class Absorber:
    """Adds the ids generated for one window to a stream, trimmed the way inference expects.

    ``lookback_ms`` / ``lookahead_start_ms`` are the window regions (see ``WindowLayout``) and
    ``end_ms`` is how far after the window start the model was trained to cover (the time given to
    trailing control points that have no later time shift).
    """

    codec: WindowCodec
    lookback_ms: float
    lookahead_start_ms: float
    end_ms: float
    update_times: UpdateTimes | None = None

    def __call__(
        self,
        stream: ContextStream,
        generated: Sequence[int],
        window_start_ms: int,
        *,
        trim_lookback: bool,
        trim_lookahead: bool,
    ) -> None:
        tok = self.codec.tokenizer
        ids = [int(i) for i in generated]
        ends = {tok.eos_id}
        if stream.type in tok.context_eos:
            ends.add(tok.context_eos[stream.type])
        while ids and ids[-1] in ends:
            ids.pop()

        # Generation stops on a time shift into the lookback or lookahead region: that event belongs
        # to another window, so drop it (with its type token when types come first).
        if ids:
            step_range = tok.range[EventType.TIME_SHIFT]
            lookback = time_shift_ids(tok, step_range.min_value, int(self.lookback_ms / MS_PER_STEP))
            lookahead = time_shift_ids(tok, int(self.lookahead_start_ms / MS_PER_STEP), step_range.max_value + 1)
            if (trim_lookahead and ids[-1] in lookahead) or (trim_lookback and ids[-1] in lookback):
                del ids[-2 if self.codec.types_first else -1 :]

        events, times = stream.stream
        events.extend(self.codec.decode(ids, window_start_ms))
        update = self.update_times or _default_update_times()
        update(events, times, window_start_ms + self.end_ms, self.codec.types_first)

        if trim_lookahead:
            drop_trailing_after(events, times, window_start_ms + self.lookahead_start_ms)


# --- finished streams --------------------------------------------------------------------------------


def rescale_positions(events: Sequence[Event], times: Sequence[int], flags: DataFlags) -> EventStream:
    """Position tokens to osu! pixels: POS_X/POS_Y scaled by the precision, and joint POS (with
    its optional POS_REFINE) split into POS_X and POS_Y. POS_REFINE events stay in the stream."""
    precision = flags.position_precision
    x_min, x_max = flags.position_range[0] // precision, flags.position_range[1] // precision
    y_min = flags.position_range[2] // precision
    x_count = x_max - x_min + 1
    centre = precision // 2 if precision > 1 else 0
    out_events: list[Event] = []
    out_times: list[int] = []
    for i, ev in enumerate(events):
        if ev.type in (EventType.POS_X, EventType.POS_Y):
            out_events.append(Event(ev.type, ev.value * precision))
            out_times.append(times[i])
        elif ev.type == EventType.POS:
            nxt = events[i + 1] if i + 1 < len(events) else None
            if nxt is not None and nxt.type == EventType.POS_REFINE and flags.position_refinement:
                per_axis = precision // flags.position_refinement
                dx = nxt.value % per_axis * flags.position_refinement
                dy = nxt.value // per_axis * flags.position_refinement
            else:
                dx = dy = centre
            x = (ev.value % x_count + x_min) * precision + dx
            y = (ev.value // x_count + y_min) * precision + dy
            out_events += [Event(EventType.POS_X, x), Event(EventType.POS_Y, y)]
            out_times += [times[i], times[i]]
        else:
            out_events.append(ev)
            out_times.append(times[i])
    return EventStream(out_events, out_times)


def columns_to_positions(events: Sequence[Event], times: Sequence[int], keycount: int) -> EventStream:
    """Mania columns to the x/y pixel position osu! stores for them (centre of the column, y 192)."""
    out_events: list[Event] = []
    out_times: list[int] = []
    for ev, t in zip(events, times):
        if ev.type == EventType.MANIA_COLUMN:
            out_events += [Event(EventType.POS_X, int((ev.value + 0.5) * 512 / keycount)), Event(EventType.POS_Y, 192)]
            out_times += [t, t]
        else:
            out_events.append(ev)
            out_times.append(t)
    return EventStream(out_events, out_times)


def finish_stream(
    stream: ContextStream,
    *,
    flags: DataFlags,
    song_length_ms: float,
    gamemode: int = 0,
    keycount: int = 4,
    start_time: float | None = None,
    end_time: float | None = None,
    reference: EventStream | None = None,
    update_times: UpdateTimes | None = None,
) -> EventStream:
    """A generated stream ready for post-processing: times recomputed over the whole song, trimmed
    to [start_time - 10, end_time + 10] ms when given, positions in pixels and mania columns as x.

    ``reference`` (events in pixel units, from the beatmap being added to) fills in what lies
    outside [start_time, end_time] when generating a part of an existing map.
    """
    events = list(stream.stream.events)
    times: list[int] = []
    (update_times or _default_update_times())(events, times, song_length_ms, flags.types_first)
    # 10 ms of leniency: generated events need not land exactly on the requested bounds
    if start_time is not None:
        drop_before(events, times, start_time - 10)
    if end_time is not None:
        drop_trailing_after(events, times, end_time + 10)
    if stream.type == ContextType.MAP and flags.add_positions:
        events, times = rescale_positions(events, times, flags)
    if reference is not None and (start_time is not None or end_time is not None):
        ref_events, ref_times = list(reference[0]), list(reference[1])
        if start_time is not None:
            before_e, before_t = list(ref_events), list(ref_times)
            drop_trailing_after(before_e, before_t, start_time - 1)
            events, times = before_e + events, before_t + times
        if end_time is not None:
            after_e, after_t = list(ref_events), list(ref_times)
            drop_before(after_e, after_t, end_time + 1)
            events, times = events + after_e, times + after_t
    if stream.type == ContextType.MAP and gamemode == 3:
        events, times = columns_to_positions(events, times, keycount)
    return EventStream(events, times)
