"""engine.audio: upstream-exact loading of real songs, tags, and clear errors for bad files."""
from __future__ import annotations

import io
import os
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf

import engine
from engine import audio
from engine.audio import AudioTags, AudioWarning, audio_duration_ms, load_audio, read_tags
from engine.errors import AudioError

CLIP_S = 12


@pytest.fixture(scope="module")
def song(asc_songs):
    """The shortest asc song (a real 22.05 kHz stereo mp3)."""
    return min(asc_songs, key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def clip(song):
    """CLIP_S seconds of real music from the middle of the song, as decoded 16-bit integers."""
    rate = sf.info(song).samplerate
    data, rate = sf.read(song, start=40 * rate, frames=CLIP_S * rate, dtype="int16", always_2d=True)
    assert data.shape == (CLIP_S * rate, 2)
    return data, rate


@pytest.fixture(scope="module")
def clip_files(clip, tmp_path_factory):
    """The clip written in every format we support (the same music, different encodings)."""
    data, rate = clip  # written as integers, so every lossless file holds the same samples
    folder = tmp_path_factory.mktemp("clip")
    paths = {}

    def write(name, samples, samplerate, **kwargs):
        paths[name] = folder / name
        sf.write(paths[name], samples, samplerate, **kwargs)

    write("pcm16.wav", data, rate, subtype="PCM_16")
    write("pcm24.wav", data, rate, subtype="PCM_24")
    write("pcm32.wav", data, rate, subtype="PCM_32")
    write("u8.wav", data, rate, subtype="PCM_U8")
    write("pcm16.flac", data, rate, subtype="PCM_16")
    write("pcm24.flac", data, rate, subtype="PCM_24")
    floats = data / 32768.0
    write("float.wav", floats, rate, subtype="FLOAT")
    write("vorbis.ogg", floats, rate, format="OGG", subtype="VORBIS")
    write("lame.mp3", floats, rate, format="MP3", subtype="MPEG_LAYER_III")
    # Opus only runs at 48 kHz: a 48 kHz wav of the same music is its reference.
    floats48 = _linear_resample(floats, rate, 48000)
    write("pcm16_48k.wav", floats48, 48000, subtype="PCM_16")
    write("opus.opus", floats48, 48000, format="OGG", subtype="OPUS")
    return paths


def _linear_resample(data: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    t = np.arange(int(len(data) * new_rate / rate)) * (rate / new_rate)
    return np.stack([np.interp(t, np.arange(len(data)), data[:, c]) for c in range(data.shape[1])], axis=1)


def _decoded_frames(path) -> int:
    frames = 0
    with sf.SoundFile(path) as f:
        while block := len(f.read(1 << 20, dtype="int16")):
            frames += block
    return frames


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --- upstream golden -------------------------------------------------------------------------------


@pytest.mark.golden
def test_click150_is_bit_exact_with_upstream(upstream):
    golden = np.load(upstream / "audio" / "waveform_16k_mono.npy")
    samples = engine.load_audio(upstream / "audio" / "click150.wav", 16000)
    assert samples.dtype == np.float32 and samples.shape == golden.shape == (320000,)
    np.testing.assert_array_equal(samples, golden)


@pytest.mark.golden
def test_click150_band_limited_resampler_would_not_match(upstream):
    """Guards the reason for audioop: a proper (anti-aliased) resampler differs on the clicks."""
    golden = np.load(upstream / "audio" / "waveform_16k_mono.npy")
    data, rate = sf.read(upstream / "audio" / "click150.wav", dtype="float32")
    spectrum = np.fft.rfft(data.mean(axis=1))
    keep = np.fft.rfftfreq(len(data), 1 / rate) < 8000
    band_limited = np.fft.irfft(spectrum[keep], n=320000)
    band_limited /= np.max(np.abs(band_limited))
    assert np.max(np.abs(band_limited - golden)) > 1e-3


# --- real songs ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_mp3_loads_at_16k_with_the_songs_length(asc_songs):
    for song in asc_songs:
        info = sf.info(song)
        samples = load_audio(song, 16000)
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert np.all(np.isfinite(samples))
        assert np.max(np.abs(samples)) == 1.0
        # ratecv emits one output frame per 16000/rate input frames.
        assert abs(len(samples) - _decoded_frames(song) * 16000 / info.samplerate) <= 1
        assert abs(len(samples) / 16 - audio_duration_ms(song)) < 50
        assert len(samples) / 16000 > 120  # these are real multi-minute songs


def test_mp3_waveform_follows_the_music(song, clip):
    """Independent check of channel order and time alignment: a float linear resampler of the same
    decoded samples agrees closely with upstream's integer pipeline."""
    data, rate = clip
    samples = load_audio(song, 16000)
    start = 40 * 16000
    ours = samples[start : start + CLIP_S * 16000 - 16]
    reference = _linear_resample(data.astype(np.float64), rate, 16000).mean(axis=1)[: len(ours)]
    assert np.corrcoef(ours, reference)[0, 1] > 0.995
    gain = np.dot(ours, reference) / np.dot(reference, reference)  # ours is peak-normalised
    assert _rms(ours - gain * reference) < 0.05 * _rms(ours)


def test_lossless_encodings_give_identical_samples(clip_files):
    wav = load_audio(clip_files["pcm16.wav"], 16000)
    assert len(wav) == CLIP_S * 16000
    np.testing.assert_array_equal(load_audio(clip_files["pcm16.flac"], 16000), wav)
    wav24 = load_audio(clip_files["pcm24.wav"], 16000)
    flac24 = load_audio(clip_files["pcm24.flac"], 16000)
    # pydub keeps a 0xFF low byte on negative 24-bit WAV samples but not for FLAC (ffmpeg's s32).
    assert not np.array_equal(wav24, flac24)
    np.testing.assert_allclose(flac24, wav24, atol=1e-6)
    for name in ("pcm24.wav", "pcm32.wav", "float.wav"):
        np.testing.assert_allclose(load_audio(clip_files[name], 16000), wav, atol=2e-4, err_msg=name)
    # 8-bit is 8-bit: close to the 16-bit file but not better than its quantisation.
    u8 = load_audio(clip_files["u8.wav"], 16000)
    assert 1e-4 < _rms(u8 - wav) < 0.01


@pytest.mark.parametrize(
    "name, reference, tolerance",
    [("vorbis.ogg", "pcm16.wav", 0.1), ("opus.opus", "pcm16_48k.wav", 0.1), ("lame.mp3", "pcm16.wav", 0.1)],
)
def test_lossy_encodings_agree_with_the_wav(clip_files, name, reference, tolerance):
    wav = load_audio(clip_files[reference], 16000)
    lossy = load_audio(clip_files[name], 16000)
    assert lossy.dtype == np.float32 and np.max(np.abs(lossy)) == 1.0
    assert len(lossy) == len(wav)  # decoders drop their priming samples (pre-skip, LAME gapless)
    assert np.corrcoef(lossy, wav)[0, 1] > 0.99
    assert _rms(lossy - wav) < tolerance * _rms(wav)


def test_block_reads_decode_like_one_read(song, tmp_path, monkeypatch):
    """mp3 decoded block by block must equal one whole-file decode: soundfile's re-seek after each
    read would restart mpg123 without its bit reservoir and change samples at block edges (by up to
    ~80 LSB on this song's intro)."""
    intro, rate = sf.read(song, frames=CLIP_S * 22050, dtype="float64")
    path = tmp_path / "intro.mp3"
    sf.write(path, intro, rate, format="MP3", subtype="MPEG_LAYER_III")
    whole = audio._float_to_int16(sf.read(path, dtype="float64")[0])
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 1000)  # not a multiple of the 1152-sample frame
    blockwise = load_audio(path, rate, normalize=False)
    assert len(blockwise) == len(whole)
    # tomono halves each channel and floors; mpg123's buffering may flip a rounding (1 LSB).
    mono = np.floor(whole.astype(np.float64) @ [0.5, 0.5])
    assert np.max(np.abs(blockwise - mono)) <= 1


def test_pydub_sample_widths(clip_files, tmp_path):
    """The integer width each codec is held in before ratecv, as pydub gets it from ffmpeg."""
    expected = {
        "pcm16.wav": (2, audio._same_int16),
        "pcm24.wav": (4, audio._pydub_24_bit),
        "pcm32.wav": (4, audio._same_int32),
        "u8.wav": (1, audio._shift_to_int8),
        "float.wav": (4, audio._float_to_int32),
        "pcm16.flac": (2, audio._same_int16),
        "pcm24.flac": (4, audio._same_int32),
        "s8.flac": (2, audio._same_int16),  # ffmpeg decodes 8-bit FLAC to (left-justified) s16
        "vorbis.ogg": (4, audio._float_to_int32),
        "opus.opus": (4, audio._float_to_int32),
        "lame.mp3": (2, audio._float_to_int16),
    }
    paths = dict(clip_files, **{"s8.flac": tmp_path / "s8.flac"})
    data, rate = sf.read(clip_files["pcm16.wav"], dtype="int16")
    sf.write(paths["s8.flac"], data, rate, subtype="PCM_S8")
    for name, width in expected.items():
        with sf.SoundFile(paths[name]) as f:
            assert audio._integer_width(f) == width, name


def test_float_conversion_rounds_and_saturates_like_ffmpeg():
    block = np.array([[0.5, -0.5], [1.5, -1.5], [3.0 / 65536, -1.0], [np.nan, 1.0]])
    np.testing.assert_array_equal(
        audio._float_to_int16(block), np.array([[16384, -16384], [32767, -32768], [2, -32768], [0, 32767]])
    )
    np.testing.assert_array_equal(audio._float_to_int32(block[:1]), np.array([[1 << 30, -(1 << 30)]]))


def test_pydub_24_bit_quirk_on_real_samples(clip_files):
    ints = sf.read(clip_files["pcm24.wav"], dtype="int32")[0]
    quirked = audio._pydub_24_bit(ints)
    assert np.all(quirked[ints >= 0] == ints[ints >= 0])
    assert np.all(quirked[ints < 0] == ints[ints < 0] + 255)


def test_speed_is_upstreams_frame_rate_trick(clip_files):
    path = clip_files["pcm16.wav"]  # 22050 Hz
    frames = CLIP_S * 22050
    for speed in (1.5, 0.75, 1.1):
        # The file is read as if recorded at int(22050 * speed) Hz, then resampled to 16 kHz.
        expected = frames * 16000 / int(22050 * speed)
        assert abs(len(load_audio(path, 16000, speed=speed)) - expected) <= 1
    # Rate 44100 × 2 → 16000 is the same ratio as 44100 → 8000, so ratecv gives the same samples.
    data = sf.read(path, dtype="int16")[0]
    wav44 = path.with_name("pcm16_44k.wav")
    sf.write(wav44, np.repeat(data, 2, axis=0), 44100, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(wav44, 16000, speed=2.0), load_audio(wav44, 8000))


def test_mono_and_multichannel_files(clip, tmp_path):
    data, rate = clip
    mono = data[:, 0]
    sf.write(tmp_path / "mono.wav", mono, rate, subtype="PCM_16")
    sf.write(tmp_path / "quad.wav", np.stack([mono] * 4, axis=1), rate, subtype="PCM_16")
    one = load_audio(tmp_path / "mono.wav", 16000, normalize=False)
    four = load_audio(tmp_path / "quad.wav", 16000, normalize=False)
    # pydub sums x // 4 over the four channels: the same music, off by at most 3 LSB.
    assert len(one) == len(four)
    assert np.max(np.abs(four - one)) <= 3 and np.any(four != one)
    # No resampling at the native rate: the integers come back unchanged.
    np.testing.assert_array_equal(load_audio(tmp_path / "mono.wav", rate, normalize=False), mono)


def test_normalize_false_keeps_integer_scale(clip_files):
    raw = load_audio(clip_files["pcm16.wav"], 16000, normalize=False)
    assert raw.dtype == np.float32
    assert 10000 < np.max(np.abs(raw)) <= 32768
    np.testing.assert_array_equal(raw / np.max(np.abs(raw)), load_audio(clip_files["pcm16.wav"], 16000))


@pytest.mark.slow
def test_matches_upstream_pydub_and_ffmpeg(clip_files, song, tmp_path):
    """Cross-check with upstream's own loader where pydub and ffmpeg are installed (not in CI)."""
    pydub = pytest.importorskip("pydub", reason="pydub is not installed (pip install pydub)")
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("ffmpeg/ffprobe are not installed")

    def upstream_load(path):  # data_utils.load_audio_file: from_file, set_frame_rate, set_channels(1)
        segment = pydub.AudioSegment.from_file(path).set_frame_rate(16000).set_channels(1)
        ints = np.array(segment.get_array_of_samples()).astype(np.float32)
        return ints / np.max(np.abs(ints))

    data, rate = sf.read(clip_files["pcm16.wav"], dtype="int16")
    extra = {"u8.aiff": "PCM_S8", "ulaw.wav": "ULAW", "pcm24.aiff": "PCM_24", "s8.flac": "PCM_S8"}
    paths = dict(clip_files)
    for name, subtype in extra.items():
        paths[name] = tmp_path / name
        sf.write(paths[name], data, rate, subtype=subtype)
    exact = ["pcm16.wav", "pcm24.wav", "pcm32.wav", "u8.wav", "float.wav", "pcm16.flac", "pcm24.flac", *extra]
    for name in exact:
        ours, theirs = load_audio(paths[name], 16000), upstream_load(paths[name])
        np.testing.assert_array_equal(ours, theirs, err_msg=name)
    # Lossy codecs: the same pipeline, different decoders (libvorbis, libopus, mpg123 vs ffmpeg's).
    for path, max_error, rms_error in [
        (paths["vorbis.ogg"], 1e-5, 1e-6),
        (paths["opus.opus"], 0.02, 5e-4),
        (paths["lame.mp3"], 0.02, 5e-4),
        (song, 0.05, 5e-4),
    ]:
        ours, theirs = load_audio(path, 16000), upstream_load(path)
        assert len(ours) == len(theirs), path.name
        assert np.max(np.abs(ours - theirs)) < max_error, path.name
        assert _rms(ours - theirs) < rms_error, path.name


# --- bad input -------------------------------------------------------------------------------------


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.mp3", 16000)
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path, 16000)
    with pytest.raises(AudioError, match="not found"):
        audio_duration_ms(tmp_path / "nope.ogg")
    with pytest.raises(AudioError, match="not found"):
        read_tags(tmp_path / "nope.flac")


def test_empty_text_and_random_bytes(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty, 16000)
    text = tmp_path / "notes.mp3"
    text.write_text("[General]\nAudioFilename: song.mp3\n" * 50)
    with pytest.raises(AudioError, match="not a readable audio file.*mp3, ogg"):
        load_audio(text, 16000)
    noise = tmp_path / "noise.ogg"
    noise.write_bytes(np.random.default_rng(0).bytes(50000))
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(noise, 16000)
    with pytest.raises(AudioError, match="not a readable audio file"):
        audio_duration_ms(noise)


def test_corrupt_header_of_a_real_file(clip_files, tmp_path):
    data = bytearray(clip_files["vorbis.ogg"].read_bytes())
    data[:64] = bytes(64)
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(bytes(data))
    with pytest.raises(AudioError, match="broken.ogg"):
        load_audio(broken, 16000)


def test_truncated_mp3_warns(clip_files, tmp_path):
    whole = clip_files["lame.mp3"].read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole[: len(whole) // 3])
    with pytest.warns(AudioWarning, match="truncated"):
        samples = load_audio(cut, 16000)
    assert 0.2 * CLIP_S * 16000 < len(samples) < 0.5 * CLIP_S * 16000
    assert np.max(np.abs(samples)) == 1.0


def test_truncated_headerless_mp3_keeps_what_decodes(song, tmp_path):
    """asc's mp3s have no Xing header: a cut one decodes up to the broken last frame, with a warning."""
    cut = tmp_path / "cut.mp3"
    with open(song, "rb") as f:
        cut.write_bytes(f.read(200_000))  # 20 s at 80 kbit/s
    with pytest.warns(AudioWarning, match="damaged after .* truncated"):
        samples = load_audio(cut, 16000)
    assert 19 * 16000 < len(samples) < 20 * 16000 and np.all(np.isfinite(samples))
    whole = load_audio(song, 16000, normalize=False)
    with pytest.warns(AudioWarning):
        part = load_audio(cut, 16000, normalize=False)
    np.testing.assert_array_equal(part, whole[: len(part)])


@pytest.mark.skipif(os.name != "posix", reason="the full-length mp3 read uses a pipe, POSIX only")
def test_headerless_vbr_mp3_decodes_to_the_end(clip, tmp_path):
    """Without a Xing header libsndfile guesses an mp3's length from its first frame and stops there;
    ffmpeg (upstream) decodes the whole stream, and so must we."""
    data, _ = clip
    music = np.repeat(data, 2, axis=0) / 32768.0  # 44.1 kHz: MPEG-1 frames

    def encode(samples, level):
        buffer = io.BytesIO()
        buffer.name = "part.mp3"
        with sf.SoundFile(buffer, "w", 44100, 2, format="MP3", subtype="MPEG_LAYER_III",
                          bitrate_mode="CONSTANT", compression_level=level) as f:
            f.write(samples)
        return buffer.getvalue()

    loud = encode(music[: 2 * 44100], 0.0)  # 320 kbit/s, starting with a LAME "Info" frame
    quiet = encode(music[2 * 44100 :], 0.99)  # 32 kbit/s
    assert loud[:3] == b"\xff\xfb\xe0" and loud.find(b"Info") < 64  # 320 kbit/s, 44.1 kHz, no padding
    info_frame = 144 * 320_000 // 44100
    path = tmp_path / "headerless_vbr.mp3"
    path.write_bytes(loud[info_frame:] + quiet)
    assert sf.info(path).duration < CLIP_S / 2  # libsndfile's guess from the 320 kbit/s first frame

    samples = load_audio(path, 16000)
    assert abs(len(samples) / 16000 - CLIP_S) < 0.2


def test_zero_length_audio(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 2)), 44100, subtype="PCM_16")
    assert path.stat().st_size > 0
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path, 16000)


def test_silence_warns_and_returns_zeros(tmp_path):
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros((44100 * 2, 2)), 44100, subtype="PCM_16")
    with pytest.warns(AudioWarning, match="silent"):
        samples = load_audio(path, 16000)
    assert len(samples) == 32000 and not np.any(samples) and not np.any(np.isnan(samples))


def test_a_jobs_song_warnings_are_shown_with_its_result_in_the_users_language(tmp_path):
    """A job collects the song's warnings (the app shows them with the map) instead of Python's warnings, which
    no one sees in the app; each keeps an id, so it is shown in the user's language."""
    import engine
    from mapperator_app import i18n

    from .conftest import UPSTREAM, need

    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000 * 20), 16000, subtype="PCM_16")
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        load_audio(path, 16000, notes=notes)
    assert notes == [f"{path}: the audio is completely silent"]
    assert i18n.render(notes[0], "fr") == f"{path} : l'audio est entièrement silencieux"

    result = engine.generate(engine.GenerateOptions(
        audio_path=str(path), output_path=str(tmp_path / "out"), device="cpu", do_sample=False, seed=1,
        model_path=str(need(UPSTREAM / "trained" / "v32" / "checkpoint")), gamemode=0, difficulty=3.0))
    assert f"{path}: the audio is completely silent" in result.warnings


def test_long_and_over_long_audio(clip_files, monkeypatch):
    path = clip_files["pcm16.wav"]
    with pytest.raises(AudioError, match="over the 0-minute limit"):
        load_audio(path, 16000, max_duration_s=5)
    monkeypatch.setattr(audio, "LONG_AUDIO_S", 5)
    with pytest.warns(AudioWarning, match="minutes long"):
        load_audio(path, 16000)


def test_no_warning_for_a_normal_song(clip_files):
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        load_audio(clip_files["vorbis.ogg"], 16000)


@pytest.mark.parametrize("kwargs", [{"speed": 0}, {"speed": -1.0}, {"speed": float("nan")}])
def test_bad_speed(clip_files, kwargs):
    with pytest.raises(AudioError, match="speed"):
        load_audio(clip_files["pcm16.wav"], 16000, **kwargs)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5])
def test_bad_sample_rate(clip_files, rate):
    with pytest.raises(AudioError, match="sample rate"):
        load_audio(clip_files["pcm16.wav"], rate)


# --- duration and tags -----------------------------------------------------------------------------


def test_duration_without_decoding(clip_files):
    for name in ("pcm16.wav", "pcm16.flac", "vorbis.ogg", "lame.mp3"):
        assert audio_duration_ms(clip_files[name]) == CLIP_S * 1000, name
    assert abs(audio_duration_ms(clip_files["opus.opus"]) - CLIP_S * 1000) <= 1


def test_untagged_song_has_empty_tags(song):
    assert read_tags(song) == AudioTags()


def test_id3_tags_with_romanised_sort_order(song, tmp_path):
    from mutagen.id3 import APIC, ID3, TIT2, TPE1, TSOT

    path = tmp_path / "tagged.mp3"
    path.write_bytes(song.read_bytes())
    tags = ID3()
    tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="cover", data=bytes(range(256)) * 2000))
    tags.add(TIT2(encoding=3, text="夜に駆ける"))
    tags.add(TSOT(encoding=3, text="Yoru ni Kakeru"))
    tags.add(TPE1(encoding=3, text="YOASOBI\n"))
    tags.save(path)
    assert read_tags(path) == AudioTags(
        title="Yoru ni Kakeru", artist="YOASOBI", title_unicode="夜に駆ける", artist_unicode="YOASOBI"
    )
    # A 0.5 MB tag with cover art in front of the audio does not disturb decoding.
    np.testing.assert_array_equal(load_audio(path, 16000), load_audio(song, 16000))


def test_vorbis_comment_tags(clip_files, tmp_path):
    from mutagen.flac import FLAC
    from mutagen.oggopus import OggOpus

    flac = tmp_path / "tagged.flac"
    flac.write_bytes(clip_files["pcm16.flac"].read_bytes())
    tagged = FLAC(flac)
    tagged["TITLE"] = ["Café\tdel Mar "]
    tagged["ARTIST"] = ["Ｍｏｔｏｉ"]
    tagged.save()
    assert read_tags(flac) == AudioTags(
        title=None, artist=None, title_unicode="Café del Mar", artist_unicode="Ｍｏｔｏｉ"
    )

    opus = tmp_path / "tagged.opus"
    opus.write_bytes(clip_files["opus.opus"].read_bytes())
    tagged = OggOpus(opus)
    tagged["title"] = ["Blue Zenith"]
    tagged["artist"] = ["xi"]
    tagged.save()
    assert read_tags(opus) == AudioTags("Blue Zenith", "xi", "Blue Zenith", "xi")


def test_wav_id3_chunk_tags(clip_files, tmp_path):
    from mutagen.id3 import TIT2, TPE1
    from mutagen.wave import WAVE

    path = tmp_path / "tagged.wav"
    path.write_bytes(clip_files["pcm16.wav"].read_bytes())
    tagged = WAVE(path)
    tagged.add_tags()
    tagged.tags.add(TIT2(encoding=3, text="Freedom Dive"))
    tagged.tags.add(TPE1(encoding=3, text="xi"))
    tagged.save()
    assert read_tags(path) == AudioTags("Freedom Dive", "xi", "Freedom Dive", "xi")
    np.testing.assert_array_equal(load_audio(path, 16000), load_audio(clip_files["pcm16.wav"], 16000))


def test_tags_of_a_non_audio_file_are_empty(tmp_path):
    path = tmp_path / "readme.mp3"
    path.write_text("not music")
    assert read_tags(path) == AudioTags()
