"""Decoder prompts: which contexts go where, the special tokens, and the per-window token ids.

A prompt is laid out as::

    [in contexts] [class tokens] [special tokens] [pre tokens] SOS [out contexts so far]

In contexts are reference material (each ``SOS_x [its class and special tokens] events EOS_x``).
Out contexts are the streams the model writes, in template order; the last one is the one being
generated and is left open (no EOS). Versions without context markers (v30) put the bare events of
their single out context after SOS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import OptionError
from ..messages import Message, joined
from ..presets import MS_PER_STEP, DataFlags
from ..tokenizer import ContextType, Event, EventType, Tokenizer
from .streams import ContextStream, WindowCodec, time_shift_ids

C = ContextType

SPECIAL_ORDER = ("last_kiai", "last_sv", "song_position")
_MAX_HALVINGS = 10


@dataclass(frozen=True)
class ContextPlan:
    """The trained template chosen for a request.

    ``in_contexts``: reference contexts placed before the class tokens. ``out_contexts``: the
    contexts after SOS in the order they must be produced (some may be given rather than generated).
    ``special_tokens``: the special tokens every prompt of this template carries.
    """

    in_contexts: tuple[ContextType, ...]
    out_contexts: tuple[ContextType, ...]
    special_tokens: tuple[str, ...]


def required_special_tokens(flags: DataFlags, template_out: Sequence[ContextType]) -> tuple[str, ...]:
    """Special tokens a template's prompts always carry (filled with defaults when no stream has one)."""
    has_map = any(c in template_out for c in (C.GD, C.MAP))
    out = []
    if C.KIAI in template_out or (flags.add_kiai and has_map):
        out.append("last_kiai")
    if C.SV in template_out or ((flags.add_sv or flags.add_mania_sv) and has_map):
        out.append("last_sv")
    if flags.add_song_position_token:
        out.append("song_position")
    return tuple(out)


def plan_contexts(
    flags: DataFlags,
    *,
    given: Sequence[ContextType] = (),
    requested: Sequence[ContextType] = (),
    gamemode: int = 0,
) -> ContextPlan:
    """Pick the template for the given (reference or earlier-pass) contexts and requested outputs.

    Among the templates whose outputs include every requested context and whose inputs are all
    given, the one using the most real inputs wins. SV is generated only for mania. The out
    contexts run from the template's first one up to the last requested one, because each is
    generated with all earlier ones in its prompt. With nothing requested, all template outputs.
    """
    given = list(given)
    viable = [
        t
        for t in flags.context_templates
        if all(c in t.outputs for c in requested) and all(c in given or c == C.NONE for c in t.inputs)
    ]
    if not viable:
        raise OptionError(Message(
            "error.prompt.no_template", "this model cannot produce {outputs} from {inputs}; it was trained for: "
            "{templates}",
            outputs=", ".join(c.value for c in requested) or Message("error.prompt.anything", "anything"),
            inputs=", ".join(c.value for c in given) or Message("error.prompt.no_reference", "no reference"),
            templates=joined([_trained_for(t.inputs, t.outputs) for t in flags.context_templates], "; ")))
    # max() keeps the first of equals, as the template order in the config decides ties
    template = max(viable, key=lambda t: sum(c != C.NONE for c in t.inputs))
    all_out = list(template.outputs)
    generatable = [c for c in all_out if c != C.SV or gamemode == 3]
    wanted = [c for c in requested if c in generatable]
    if wanted:
        out = all_out[: max(all_out.index(c) for c in wanted) + 1]
    elif requested:
        raise OptionError(Message(
            "error.prompt.not_for_mode", "none of the requested outputs ({outputs}) can be generated for this game "
            "mode (SV is generated only for mania)", outputs=", ".join(c.value for c in requested)))
    else:
        out = all_out
    return ContextPlan(tuple(template.inputs), tuple(out), required_special_tokens(flags, all_out))


def _trained_for(inputs: Sequence[ContextType], outputs: Sequence[ContextType]) -> str:
    """One template as ``map+timing -> gd`` (``nothing -> timing`` without inputs)."""
    used, made = "+".join(c.value for c in inputs), "+".join(c.value for c in outputs)
    return f"{used} -> {made}" if used else Message("error.prompt.from_nothing", "nothing -> {outputs}", outputs=made)


def stop_ids(
    tokenizer: Tokenizer,
    context_type: ContextType | None,
    lookback_ms: float = 0.0,
    lookahead_ms: float = 0.0,
) -> list[int]:
    """Token ids that end one generate call: EOS, the context's EOS, time shifts into the lookback
    region (``lookback_ms`` > 0, every window but the first) and into the last ``lookahead_ms`` of
    the window (every window but the last).

    The lookahead ids count ``lookahead_ms`` back from the largest time shift, which is not exactly
    where :class:`Absorber` starts trimming (it uses the window's lookahead start): upstream's two
    ranges differ by one step, and both are kept as they are.
    """
    ids = [tokenizer.eos_id]
    if context_type is not None and context_type in tokenizer.context_eos:
        ids.append(tokenizer.context_eos[context_type])
    if lookback_ms > 0:
        lo = tokenizer.range[EventType.TIME_SHIFT].min_value
        ids.extend(time_shift_ids(tokenizer, lo, lo + int(lookback_ms / MS_PER_STEP)))
    if lookahead_ms > 0:
        end = tokenizer.end[EventType.TIME_SHIFT]
        ids.extend(range(end - int(lookahead_ms / MS_PER_STEP), end))
    return ids


def left_pad(prompts: Sequence[Sequence[int] | None], pad_id: int = 0) -> tuple[list[list[int] | None], int]:
    """Left-pad prompts to one length for a batch; returns them and that length."""
    width = max((len(p) for p in prompts if p is not None), default=0)
    return [None if p is None else [pad_id] * (width - len(p)) + list(p) for p in prompts], width


class PromptBuilder:
    """Builds the decoder prompt of one window from the context streams.

    ``class_tokens`` / ``negative_class_tokens`` come from :func:`class_tokens` for the user's
    conditions and their :meth:`Conditions.negative`.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        flags: DataFlags,
        plan: ContextPlan,
        *,
        window_ms: float,
        song_length_ms: float,
        class_tokens: Sequence[int],
        negative_class_tokens: Sequence[int] | None = None,
    ):
        self.tokenizer = tokenizer
        self.flags = flags
        self.plan = plan
        self.window_ms = window_ms
        self.song_length_ms = song_length_ms
        self.class_tokens = list(class_tokens)
        self.negative_class_tokens = None if negative_class_tokens is None else list(negative_class_tokens)
        self.codec = WindowCodec(tokenizer, flags.types_first)

    # --- special tokens -----------------------------------------------------------------------------

    def special_events(self, stream: ContextStream, window_start: int, has_class: bool) -> dict[str, Event]:
        """The special events one stream contributes: its last kiai / last SV state before the
        window, and the window's position in the song for a stream that carries class tokens."""
        f = self.flags
        t = stream.type
        out: dict[str, Event] = {}
        if f.add_kiai_special_token and (t == C.KIAI or (f.add_kiai and t in (C.GD, C.MAP))):
            out["last_kiai"] = stream.last_event_before(EventType.KIAI, window_start) or default_special("last_kiai")
        if f.add_sv_special_token and (t == C.SV or ((f.add_sv or f.add_mania_sv) and t in (C.GD, C.MAP))):
            out["last_sv"] = stream.last_event_before(EventType.SCROLL_SPEED, window_start) or default_special("last_sv")
        if f.add_song_position_token and has_class:
            out["song_position"] = self.tokenizer.song_position_event(window_start, self.song_length_ms)
        return out

    def _special_ids(self, specials: dict[str, Event], window_start: int) -> list[int]:
        return self.codec.encode([specials[k] for k in SPECIAL_ORDER if k in specials], window_start)

    def out_special_ids(self, out_streams: Sequence[ContextStream], window_start: int) -> list[int]:
        """Special tokens after the class tokens: later out streams override earlier ones, and the
        template's required ones get defaults."""
        merged: dict[str, Event] = {}
        for i, s in enumerate(out_streams):
            merged.update(self.special_events(s, window_start, has_class=i == 0))
        for name in self.plan.special_tokens:
            if name not in merged:
                merged[name] = default_special(name)
        return self._special_ids(merged, window_start)

    # --- prompt -----------------------------------------------------------------------------------

    def _events_ids(self, stream: ContextStream, window_start: int, max_len: int | None) -> list[int]:
        ids = self.codec.window_tokens(stream, window_start, self.window_ms)
        if max_len is not None and len(ids) > max_len:
            ids = ids[-max_len:]
        return ids

    def context_ids(
        self,
        stream: ContextStream,
        window_start: int,
        *,
        as_input: bool,
        close: bool = True,
        max_len: int | None = None,
    ) -> list[int]:
        """One context's tokens in a window.

        As an in context: ``SOS_x [class tokens] [special tokens] events EOS_x``. As an out context:
        the events, wrapped in ``SOS_x ... EOS_x`` for versions with context markers (without the
        EOS when not ``close``: the context being generated). ``max_len`` keeps the last events.
        """
        tok = self.tokenizer
        events = self._events_ids(stream, window_start, max_len)
        if as_input:
            has_class = stream.class_tokens is not None
            specials = self._special_ids(self.special_events(stream, window_start, has_class), window_start)
            cls = list(stream.class_tokens) if has_class else []
            return [tok.context_sos[stream.type], *cls, *specials, *events, tok.context_eos[stream.type]]
        if not self.flags.add_out_context_types:
            return events
        return [tok.context_sos[stream.type], *events] + ([tok.context_eos[stream.type]] if close else [])

    def _pre_ids(self, stream: ContextStream, window_start: int, max_len: int | None) -> list[int]:
        ids = self.codec.encode(stream.events_between(window_start - self.window_ms, window_start), window_start)
        if 0 <= self.flags.max_pre_token_len < len(ids):
            ids = ids[len(ids) - self.flags.max_pre_token_len :]
        if max_len is not None:
            ids = ids[-max_len:]
        return ids

    def build(
        self,
        window_start: int,
        in_streams: Sequence[ContextStream],
        out_streams: Sequence[ContextStream],
        *,
        negative: bool = False,
        max_len: int | None = None,
    ) -> list[int]:
        """One prompt. ``out_streams`` are the out contexts up to and including the one being
        generated (or, for teacher forcing, all of them); ``max_len`` caps each context's events."""
        if not out_streams:
            raise ValueError("a prompt needs at least one out context")
        prefix: list[int] = []
        for s in in_streams:
            prefix += self.context_ids(s, window_start, as_input=True, max_len=max_len)
        cls = self.negative_class_tokens if negative else self.class_tokens
        if cls is None:
            raise ValueError("no negative class tokens were given to this builder")
        prefix += cls
        prefix += self.out_special_ids(out_streams, window_start)
        if self.flags.add_pre_tokens:
            prefix += self._pre_ids(out_streams[0], window_start, max_len)
        if self.flags.center_pad_decoder:
            half = self.flags.tgt_seq_len // 2
            prefix = [self.tokenizer.pad_id] * (half - len(prefix)) + prefix[max(0, len(prefix) - half) :]
        ids = prefix + [self.tokenizer.sos_id]
        for i, s in enumerate(out_streams):
            ids += self.context_ids(s, window_start, as_input=False, close=i != len(out_streams) - 1, max_len=max_len)
        return ids

    def prompts(
        self,
        window_start: int,
        in_streams: Sequence[ContextStream],
        out_streams: Sequence[ContextStream],
        with_negative: bool = False,
    ) -> tuple[list[int], list[int] | None]:
        """The prompt (and the negative prompt when ``with_negative``), shortened to fit.

        While the prompt is as long as the decoder's context or longer, each context's events are
        cut to their last ``tgt_seq_len / 2^k`` tokens, k = 1, 2, ... (at most 10 times).
        """
        neg = self.build(window_start, in_streams, out_streams, negative=True) if with_negative else None
        ids = self.build(window_start, in_streams, out_streams)
        max_len = self.flags.tgt_seq_len
        halvings = 0
        while len(ids) >= self.flags.tgt_seq_len:
            halvings += 1
            if halvings > _MAX_HALVINGS:
                raise OptionError(Message("error.prompt.too_long", "the prompt does not fit the model even after "
                                          "shortening its contexts"))
            max_len //= 2
            ids = self.build(window_start, in_streams, out_streams, max_len=max_len)
            if with_negative:
                neg = self.build(window_start, in_streams, out_streams, negative=True, max_len=max_len)
        return ids, neg


def default_special(name: str) -> Event:
    if name == "last_kiai":
        return Event(EventType.KIAI, 0)
    if name == "last_sv":
        return Event(EventType.SCROLL_SPEED, 100)
    raise ValueError(f"special token {name!r} has no default")


def find_context(ids: Sequence[int], sos: int, eos: int, strict: bool = False) -> tuple[int, int]:
    """Bounds of the tokens between the first ``sos`` and the first ``eos`` in ``ids``.

    Not strict: a missing SOS means from the start and a missing EOS to the end. Strict: either
    missing gives the empty span (0, 0).
    """
    ids = list(ids)
    start = ids.index(sos) + 1 if sos in ids else (None if strict else 0)
    end = ids.index(eos) if eos in ids else (None if strict else len(ids))
    if start is None or end is None:
        return 0, 0
    return start, end
