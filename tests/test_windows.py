import json

import numpy as np
import pytest

from engine.errors import OptionError
from engine.presets import PRESETS
from engine.windows import WindowLayout

from tests.conftest import need


@pytest.mark.parametrize("version", ["v30", "v31", "v32"])
def test_segments_match_upstream(upstream, version):
    golden = json.loads(need(upstream / version / "preprocess" / "segments.json").read_text())
    wave = np.load(need(upstream / "audio" / "waveform_16k_mono.npy"))
    layout = WindowLayout.for_preset(PRESETS[version])
    seg = layout.segment(wave)

    assert len(seg) == golden["num_windows"]
    assert layout.window_samples == golden["window_samples"]
    assert list(seg.starts_ms) == golden["window_start_ms"]
    assert seg.song_length_ms == golden["song_length_ms"]
    assert len(wave) == golden["waveform_len"]

    window0 = np.load(need(upstream / version / "preprocess" / "window0_samples.npy"))
    assert window0.dtype == np.float32
    np.testing.assert_array_equal(seg.samples(0), window0)
    assert seg.stacked().shape == (golden["num_windows"], golden["window_samples"])


def test_v32_numbers_from_readme():
    layout = WindowLayout.for_preset(PRESETS["v32"])
    assert layout.window_samples == 262016
    assert layout.stride_samples == 26201
    assert layout.window_ms == 16376.0
    assert layout.lookback_ms == 8188.0
    assert layout.lookahead_ms == pytest.approx(6550.4)
    assert layout.lookahead_start_ms == pytest.approx(9825.6)


@pytest.mark.parametrize("version", ["v30", "v32"])
@pytest.mark.parametrize("n", [1, 1000, 262016, 262017, 320000, 16000 * 95 + 7])
def test_windows_cover_the_song(version, n):
    layout = WindowLayout.for_preset(PRESETS[version])
    padded = layout.padded_samples(n)
    count = layout.num_windows(n)
    assert padded >= n and padded >= layout.window_samples
    # the last window ends exactly at the padded end, and stops no more than a stride past the song
    assert (count - 1) * layout.stride_samples + layout.window_samples == padded
    assert padded - max(n, layout.window_samples) < layout.stride_samples
    seg = layout.segment(np.ones(n, dtype=np.float32))
    assert len(seg) == count
    assert all(len(seg.samples(i)) == layout.window_samples for i in range(count))
    assert seg.samples(count - 1)[-1] == (1.0 if padded == n else 0.0)
    starts = seg.starts_ms
    assert starts[0] == 0
    for i, s in enumerate(starts):
        assert s == int(i * layout.stride_ms)  # exact for these lengths: float32 holds them


def test_trained_v32_song_has_ten_windows(upstream):
    layout = WindowLayout.for_preset(PRESETS["v32"])
    n = int(30.0 * 16000)
    starts = layout.window_starts_ms(layout.num_windows(n))
    assert len(starts) == 10
    # README 9.2: windows start at these mel frames (stride samples / hop, rounded)
    frames = [round(s * 16000 / 1000 / 128) for s in starts]
    assert frames == [0, 205, 409, 614, 819, 1023, 1228, 1433, 1638, 1842]


def test_parallel_windows_do_not_overlap():
    layout = WindowLayout.for_preset(PRESETS["v32"], parallel=True)
    assert layout.stride_samples == layout.window_samples
    assert layout.num_windows(layout.window_samples * 3 + 1) == 4


def test_start_and_end_time_selection():
    layout = WindowLayout.for_preset(PRESETS["v32"])
    starts = layout.window_starts_ms(10)
    all_windows = layout.select(starts)
    assert list(all_windows) == list(range(10))

    # a window is kept when its generation region (before the lookahead) reaches past start_time
    sel = layout.select(starts, start_time=12000)
    assert all(starts[i] + layout.lookahead_start_ms >= 12000 for i in sel)
    assert sel.start == 0 or starts[sel.start - 1] + layout.lookahead_start_ms <= 12000
    assert sel.stop == 10

    # and dropped when its lookback region starts at or after end_time
    sel = layout.select(starts, end_time=12000)
    assert sel.start == 0
    assert all(starts[i] + layout.lookback_ms < 12000 for i in sel)
    assert sel.stop == 10 or starts[sel.stop] + layout.lookback_ms >= 12000

    # at least one window always stays
    assert len(layout.select(starts, start_time=10**7)) == 1
    assert list(layout.select(starts, start_time=10**7)) == [9]
    assert list(layout.select(starts, end_time=-10**7)) == [0]
    assert list(layout.select(starts, start_time=10**7, end_time=-10**7)) == [9]


def test_segment_with_start_time_keeps_absolute_samples(upstream):
    wave = np.load(need(upstream / "audio" / "waveform_16k_mono.npy"))
    layout = WindowLayout.for_preset(PRESETS["v32"])
    full = layout.segment(wave)
    part = layout.segment(wave, start_time=14000)
    assert part.starts_ms == full.starts_ms[part.first_index :]
    assert part.first_index > 0
    np.testing.assert_array_equal(part.samples(0), full.samples(part.first_index))


@pytest.mark.parametrize("lookback, lookahead", [(-0.1, 0.4), (0.5, 0.5), (0.7, 0.4), (0.2, 1.0)])
def test_bad_lookback_lookahead(lookback, lookahead):
    with pytest.raises(OptionError):
        WindowLayout.for_preset(PRESETS["v32"], lookback=lookback, lookahead=lookahead)


def test_windows_are_cut_from_the_song_as_if_it_were_zero_padded():
    """Segments keep the song itself (no padded copy of a long song); each window still reads as the padded song."""
    rng = np.random.default_rng(0)
    for lookback, lookahead, pad in [(0.5, 0.4, 0), (0.0, 0.0, 0), (0.25, 0.2, 1234), (0.5, 0.4, 50_000)]:
        layout = WindowLayout(9, 160, 16000, lookback, lookahead)
        song = rng.standard_normal(23_456).astype(np.float32)
        seg = layout.segment(song, begin_pad=pad)
        assert seg.audio is song  # held once, not copied
        padded = np.zeros(layout.padded_samples(pad + len(song)), np.float32)
        padded[pad: pad + len(song)] = song
        for i in range(len(seg)):
            begin = i * layout.stride_samples
            assert np.array_equal(seg.samples(i), padded[begin: begin + layout.window_samples])
