"""Logit rules that keep state between steps give what a scan of the whole history gives, step after step.
(The rule chain as a whole is held to upstream's tokens by the golden runs, greedy and sampled.)"""
from __future__ import annotations

import pytest
import torch

from engine.decoding import HISTORY_COLUMNS, MonotonicTime, TopP
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


def test_a_restarted_rule_chain_decides_as_a_new_one():
    """A token graph keeps its rule chain for the next window (engine.token_graph): after restart() the chain,
    its state updated in place, must decide each step as a chain made for that window does."""
    from engine.decoding import DecodingOptions, TokenChoice

    tokenizer = load("v32").tokenizer
    r = tokenizer.id_range(EventType.TIME_SHIFT)
    opts = DecodingOptions(do_sample=False, types_first=True, timing_temperature=0.5, timeshift_bias=0.3)
    gen = torch.Generator().manual_seed(8)
    pool = torch.tensor(list(range(r.start, r.stop, 3)) + [tokenizer.sos_id] * 5 + list(range(3, r.start, 5)))

    def window(chain: TokenChoice, prompt: torch.Tensor, seed: int) -> list:
        """Each step's scores after each rule, and the rules' state after the step."""
        scores_gen = torch.Generator().manual_seed(seed)
        ids, steps = prompt, []
        for _ in range(12):
            scores, after = torch.randn(len(ids), tokenizer.vocab_size_out, generator=scores_gen), []
            for rule in chain.rules:
                scores = rule(ids, scores)
                after.append(scores.tolist())
            steps.append((after, [(name, t.tolist()) for rule in chain.rules
                                  for name, t in vars(rule).items() if isinstance(t, torch.Tensor)]))
            ids = torch.cat([ids, scores.argmax(-1)[:, None]], dim=1)
        return steps

    kept = TokenChoice(tokenizer, opts, 2000.0, guided=False, device=torch.device("cpu"))
    window(kept, pool[torch.randint(len(pool), (3, 30), generator=gen)], seed=1)
    state = {name: id(t) for rule in kept.rules for name, t in vars(rule).items() if isinstance(t, torch.Tensor)}
    kept.restart()
    # the new prompts end in a time shift and a timed event: the floor and the lookback rule both start there
    ends = torch.tensor([r.start + 2, tokenizer.id_range(EventType.CIRCLE).start]).expand(3, -1)
    prompt = torch.cat([pool[torch.randint(len(pool), (3, 25), generator=gen)], ends], dim=1)
    fresh = TokenChoice(tokenizer, opts, 2000.0, guided=False, device=torch.device("cpu"))
    assert window(kept, prompt, seed=2) == window(fresh, prompt, seed=2)
    # the same tensors as before the restart: a captured graph reads and writes those
    assert {name: id(t) for rule in kept.rules for name, t in vars(rule).items() if isinstance(t, torch.Tensor)} == state


@pytest.mark.parametrize("tied", [False, True], ids=["distinct scores", "tied scores"])
def test_top_p_filters_as_hugging_faces_warper_does(tied, monkeypatch):
    """Upstream samples through transformers' TopPLogitsWarper: the same scores out, ties at the threshold
    included (which equal scores stay depends on the sort's order of them; bf16 logits tie often). On a CPU
    TopP cuts below a threshold without torch's index sort unless a tie straddles the cut: both paths run."""
    from transformers import TopPLogitsWarper

    answered = []
    cut_below = TopP._cut_below
    monkeypatch.setattr(TopP, "_cut_below", lambda self, s: answered.append(cut_below(self, s)) or answered[-1])
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        p = (0.5, 0.9, 0.95, 0.99)[trial % 4]
        if tied:
            scores = torch.randint(0, 6, (3, 4097), generator=g).float()
            if trial % 2:
                scores = (torch.randn(3, 4097, generator=g) * 4).bfloat16().float()
        else:
            scores = torch.randn(3, 4097, generator=g) * 3
            scores[:, torch.randint(0, 4097, (1500,), generator=g)] = -torch.inf  # tokens a rule forbade
        if trial % 5 == 0:
            scores = torch.cat([scores, scores[:, :1]], dim=1)[:, 1:]  # a view that starts off alignment
        ours = TopP(p)(None, scores)
        assert torch.equal(ours, TopPLogitsWarper(p)(None, scores.clone())), (trial, p)
        assert ours.isfinite().sum() < scores.isfinite().sum()  # it did filter
    sorted_again = sum(a is None for a in answered)
    assert len(answered) == 40
    assert (0 < sorted_again < 40) if tied else sorted_again == 0
