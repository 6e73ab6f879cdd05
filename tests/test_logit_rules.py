"""Logit rules that keep state between steps give what a scan of the whole history gives, step after step.
(The rule chain as a whole is held to upstream's tokens by the golden runs, greedy and sampled.)"""
from __future__ import annotations

import pytest
import torch

from engine.decoding import HISTORY_COLUMNS, MonotonicTime
from engine.tokenizer import EventType

from .test_static_decoding import load


def _reference_floor(ids: torch.Tensor, tokenizer) -> list[int]:
    """Per row: the value of the last time shift after the last SOS, or -1 (read token by token, in Python)."""
    r = tokenizer.id_range(EventType.TIME_SHIFT)
    sos = {tokenizer.sos_id, *tokenizer.context_sos.values()}
    floors = []
    for row in ids.tolist():
        floor = -1
        for token in row:
            if r.start <= token < r.stop:
                floor = token - r.start
            elif token in sos:
                floor = -1
        floors.append(floor)
    return floors


@pytest.mark.parametrize("history", [None, HISTORY_COLUMNS], ids=["whole history", "last columns"])
@pytest.mark.parametrize("host_reads", [True, False], ids=["cpu shortcut", "gpu path"])
def test_monotonic_time_follows_each_new_token_as_a_full_scan_would(monkeypatch, host_reads, history):
    """Called once a step as decode calls it: with the whole history, or after the prompt with only its last
    columns (what the token graph passes on a GPU)."""
    tokenizer = load("v32").tokenizer
    monkeypatch.setattr("engine.decoding.cheap_host_reads", lambda t: host_reads)
    r = tokenizer.id_range(EventType.TIME_SHIFT)
    sos = [tokenizer.sos_id, *tokenizer.context_sos.values()]
    gen = torch.Generator().manual_seed(3)
    # tokens drawn from time shifts, SOS ids and everything else, so floors rise, fall back to -1 and restart
    pool = torch.tensor(list(range(r.start, r.stop, 7)) + sos * 20 + list(range(3, r.start, 5)))

    def draw(rows: int, columns: int) -> torch.Tensor:
        return pool[torch.randint(len(pool), (rows, columns), generator=gen)]

    rule = MonotonicTime(tokenizer)
    ids = draw(4, 30)
    vocab = tokenizer.vocab_size_out
    for step in range(120):
        scores = torch.randn(len(ids), vocab, generator=gen)
        out = rule(ids if history is None or step == 0 else ids[:, -history:], scores)
        floors = _reference_floor(ids, tokenizer)
        assert rule.floor.tolist() == floors, step
        for row, floor in enumerate(floors):
            first_allowed = r.start + max(floor, 0)  # floor -1: every shift allowed
            assert torch.isneginf(out[row, r.start: first_allowed]).all()
            assert torch.equal(out[row, first_allowed:], scores[row, first_allowed:])
            assert torch.equal(out[row, : r.start], scores[row, : r.start])
        if step == 60:  # a finished row leaves the batch
            keep = torch.tensor([0, 2, 3])
            rule.select(keep)
            ids = ids[keep]
        ids = torch.cat([ids, draw(len(ids), 1)], dim=1)
