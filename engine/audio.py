"""Load a song as the mono waveform the models were trained on, without ffmpeg.

Upstream (``load_audio_file``) decodes with pydub, which reads PCM WAV itself and hands everything
else to ffmpeg as ``pcm_s{N}le``; it then works on interleaved integers, in this order:

1. decode to integers of a width that depends on the codec (see :func:`_integer_width`);
2. pretend the rate is ``int(rate * speed)`` (the DT/HT augmentation trick);
3. resample with ``audioop.ratecv``: a linear interpolator with no anti-alias filter;
4. mix down to mono: ``audioop.tomono(…, 0.5, 0.5)`` for stereo, ``sum(x // n)`` for n > 2 channels;
5. cast to float32 and divide by the peak absolute value (silence is left as zeros).

We decode with libsndfile (soundfile) and run steps 2–5 with the same ``audioop`` functions (stdlib
up to Python 3.12, ``audioop-lts`` from 3.13). ratecv is a streaming filter with explicit state, so
feeding it block by block gives the same bytes as one call and memory stays bounded. Integer PCM
(wav, aiff, flac; 8/16/24/32-bit, G.711) is therefore bit-exact with upstream, checked against
pydub + ffmpeg and the shared click150.wav golden. Float-decoded codecs get ffmpeg's float→int
conversion (``clip(rint(x * 2**15))`` for mp3, ``clip(rint(x * 2**31))`` for the rest); what differs
then is the decoder itself. Measured against pydub + ffmpeg 5.1 on real songs, after normalisation:
Vorbis ≤ 3e-7; mp3 (mpg123 vs ffmpeg's decoder) rms 2e-6 – 1.3e-4, max up to 0.016 in a few frames
of some songs; Opus (libopus vs ffmpeg's own decoder) rms 6e-5, max 3e-3. Lengths are identical.
(Upstream's own result on lossy formats depends on its ffmpeg build, which it does not record.)

Deliberate differences: formats libsndfile cannot read (m4a/aac, wma, video) raise
:class:`AudioError` instead of going through ffmpeg; 64-bit float WAVs (upstream crashes) and ADPCM
WAVs (ffmpeg fails) are read; a file whose tail cannot be decoded keeps what decoded up to the last
whole block (≤ 0.4 s less than ffmpeg would give) with a warning; silence warns.

Problems that do not stop the job (silent, very long or truncated audio) are reported through the
:mod:`warnings` module as :class:`AudioWarning`, so the CLI and the app can show them
(``warnings.catch_warnings(record=True)``) and tests can assert them. Everything else raises
:class:`AudioError` with a message saying what to do.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import threading
import unicodedata
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from .errors import AudioError
from .messages import Message

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # stdlib audioop on 3.11/3.12
    import audioop

__all__ = [
    "AudioTags",
    "AudioWarning",
    "LONG_AUDIO_S",
    "MAX_AUDIO_S",
    "audio_duration_ms",
    "check_announced_duration",
    "load_audio",
    "read_tags",
]

LONG_AUDIO_S = 15 * 60  # longer songs load, with a warning: generation will be slow
MAX_AUDIO_S = 2 * 60 * 60  # past this we refuse: ~0.5 GB of samples at 16 kHz, hours of inference

_BLOCK_FRAMES = 1 << 14  # small, so a damaged tail loses at most ~0.4 s
_UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's SF_COUNT_MAX: a stream of unknown length
_SUPPORTED = "mp3, ogg (Vorbis or Opus), flac or wav"


class AudioWarning(UserWarning):
    """Audio that loads but is probably not what the user meant (silent, very long, truncated)."""


def _note(notes: list | None, message: Message) -> None:
    if notes is None:
        warnings.warn(AudioWarning(message), stacklevel=3)
    else:
        notes.append(message)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    *,
    speed: float = 1.0,
    normalize: bool = True,
    max_duration_s: float = MAX_AUDIO_S,
    notes: list | None = None,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 waveform at ``sample_rate``, exactly as upstream does.

    ``speed`` > 1 makes the song faster and shorter (DT), < 1 slower (HT): the source rate is taken
    as ``int(rate * speed)`` before resampling, so pitch changes with tempo like osu!'s rate mods
    without pitch correction. With ``normalize`` the result is divided by its peak absolute value.

    Raises :class:`AudioError` for a missing, unreadable, empty or over-long file; warns with
    :class:`AudioWarning` for songs over :data:`LONG_AUDIO_S`, audio that decodes much shorter than
    its header says, and all-silent audio (returned as zeros rather than divided by zero). A job passes
    ``notes`` (a list): those warnings are appended to it instead, as messages the user is shown.
    """
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise AudioError(f"sample rate must be a positive integer, got {sample_rate!r}")
    try:
        speed = float(speed)
    except (TypeError, ValueError) as e:
        raise AudioError(f"speed must be a positive number, got {speed!r}") from e
    if not (math.isfinite(speed) and speed > 0):
        raise AudioError(f"speed must be a positive number, got {speed!r}")

    path = _check_file(path)
    with _decoder(path) as (f, expected_frames, exact_length):
        source_rate = int(f.samplerate * speed)
        if source_rate < 1:
            raise AudioError(Message("audio.speed_too_small", "{path}: speed {speed} is too small for a {rate} Hz "
                                     "file", path=str(path), speed=speed, rate=f.samplerate))
        expected_s = expected_frames / f.samplerate
        if expected_s > max_duration_s:
            raise AudioError(_too_long(path, expected_s, max_duration_s))

        width, to_int = _integer_width(f)
        channels, rate = f.channels, f.samplerate
        # one float32 buffer sized from the header: no list of blocks to concatenate, which would need
        # twice the song's samples at once (230 MB for a 30-minute song at 16 kHz)
        out = _Samples(expected_frames * sample_rate // source_rate + 16 if expected_frames else 0)
        state = None
        decoded = 0
        damaged = None
        try:
            while True:
                try:
                    block = f.read(_BLOCK_FRAMES, dtype=_read_dtype(to_int), always_2d=True)
                except sf.LibsndfileError as e:
                    if decoded == 0:
                        raise
                    # A cut or corrupt tail: keep what decoded, as ffmpeg does (minus this block).
                    damaged = e.error_string
                    break
                if len(block) == 0:
                    break
                decoded += len(block)
                if decoded / rate > max_duration_s:
                    raise AudioError(_too_long(path, decoded / rate, max_duration_s))
                data = to_int(block).tobytes()
                if source_rate != sample_rate:
                    data, state = audioop.ratecv(data, width, channels, source_rate, sample_rate, state)
                out.append(_to_mono(data, width, channels))
            samples = out.result()
        except sf.LibsndfileError as e:
            raise AudioError(Message("audio.damaged", "{path}: the audio data is damaged and cannot be decoded "
                                     "({error})", path=str(path), error=str(e.error_string))) from e
        except MemoryError as e:
            minutes = decoded / rate / 60
            raise AudioError(Message("audio.no_memory", "{path}: not enough memory to load {minutes:.0f} minutes of "
                                     "audio", path=str(path), minutes=float(minutes))) from e
        del out

    if samples.size == 0:
        raise AudioError(Message("audio.no_samples", "{path}: the file contains no audio samples", path=str(path)))
    seconds = decoded / rate
    if damaged is not None:
        _note(notes, Message("audio.damaged_tail", "{path}: the audio is damaged after {seconds:.1f} s ({reason}); the "
                             "rest is left out. The file is probably truncated", path=str(path), seconds=seconds,
                             reason=str(damaged)))
    elif exact_length and expected_s - seconds > max(1.0, 0.02 * expected_s):
        _note(notes, Message("audio.short", "{path}: decoded only {seconds:.1f} s of the {expected:.1f} s the file "
                             "header announces; the file is probably truncated or damaged", path=str(path),
                             seconds=seconds, expected=expected_s))
    if seconds > LONG_AUDIO_S:
        _note(notes, Message("audio.long_song", "{path}: the song is {minutes:.0f} minutes long; generation will take "
                             "a long time", path=str(path), minutes=seconds / 60))
    if not normalize:
        return samples
    peak = max(samples.max(), -samples.min())  # not np.abs(samples): that is a second copy of the song
    if peak == 0:
        _note(notes, Message("audio.silent", "{path}: the audio is completely silent", path=str(path)))
        return samples
    samples /= peak  # in place: a second copy of a long song is what would make memory peak
    return samples


def audio_duration_ms(path: str | os.PathLike) -> int:
    """The song's length in milliseconds from its header, without decoding the audio.

    Exact for wav/flac/ogg/opus and for mp3 with a Xing/LAME/VBRI header. For an mp3 without one it
    is estimated from the first frame's bitrate: close for constant bitrate (10 ms on the asc songs),
    possibly far off for variable bitrate, which :func:`load_audio` still decodes in full.
    """
    path = _check_file(path)
    with _open(path) as f:
        frames, rate, fmt = f.frames, f.samplerate, f.format
    if fmt == "MP3":
        # libsndfile guesses the length of header-less CBR mp3 from the file size; mutagen counts
        # from the first frame's header and is closer (~10 ms instead of ~0.4 s on the asc songs).
        length = _mutagen_length(path)
        if length is not None:
            return round(length * 1000)
    return round(frames * 1000 / rate)


def check_announced_duration(source: BinaryIO, name: str, max_duration_s: float = MAX_AUDIO_S) -> float | None:
    """Refuse audio whose header announces more than ``max_duration_s``, before any sample is decoded.

    ``source`` is a seekable binary file object (e.g. a member of a zip archive, so that a song is
    refused before it is extracted); ``name`` names it in the error. Returns the announced length in
    seconds, or None when the header does not say or libsndfile cannot read it (then
    :func:`load_audio` decides, still stopping at ``max_duration_s`` while it decodes).
    """
    try:
        with sf.SoundFile(source) as f:
            frames, rate = f.frames, f.samplerate
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError):
        return None
    if rate <= 0 or not 0 < frames < _UNKNOWN_FRAMES:
        return None
    seconds = frames / rate
    if seconds > max_duration_s:
        raise AudioError(_too_long(name, seconds, max_duration_s))
    return seconds


@dataclass(frozen=True)
class AudioTags:
    """Title and artist from a song's tags, split the way osu! metadata wants them.

    ``title``/``artist`` are ASCII-only (osu!'s romanised fields): the tag itself when it is ASCII,
    else its sort-order tag (TSOT/TSOP, TITLESORT/ARTISTSORT) when that is ASCII, else ``None``.
    ``title_unicode``/``artist_unicode`` are the tags as written. Missing tags are ``None``.
    """

    title: str | None = None
    artist: str | None = None
    title_unicode: str | None = None
    artist_unicode: str | None = None


def read_tags(path: str | os.PathLike) -> AudioTags:
    """Read title/artist from ID3 (mp3, wav), Vorbis comments (ogg, opus, flac) or MP4 tags.

    A file without tags, or whose tags cannot be parsed, gives an empty :class:`AudioTags`; only a
    missing path raises :class:`AudioError`.
    """
    import mutagen
    from mutagen.id3 import ID3

    path = _check_file(path)
    try:
        tagged = mutagen.File(path, easy=True)
    except (mutagen.MutagenError, OSError, ValueError):
        return AudioTags()
    tags = getattr(tagged, "tags", None)
    if not tags:
        return AudioTags()

    def first(key: str) -> str | None:
        try:
            if isinstance(tags, ID3):  # wav/aiff: mutagen has no "easy" view of their ID3 chunk
                frame = tags.get(_ID3_FRAMES[key])
                values = frame.text if frame is not None else []
            else:
                values = tags.get(key) or []
        except (KeyError, ValueError):  # easy wrappers raise for keys a format cannot hold
            return None
        for value in values:
            text = _clean_tag(str(value))
            if text:
                return text
        return None

    title, artist = first("title"), first("artist")
    return AudioTags(
        title=_romanised(title, first("titlesort")),
        artist=_romanised(artist, first("artistsort")),
        title_unicode=title,
        artist_unicode=artist,
    )


_ID3_FRAMES = {"title": "TIT2", "artist": "TPE1", "titlesort": "TSOT", "artistsort": "TSOP"}


def _check_file(path: str | os.PathLike) -> Path:
    try:
        path = Path(path)
    except TypeError as e:
        raise AudioError(Message("audio.not_a_path", "audio path must be a file path, got {path}",
                                 path=repr(path))) from e
    if not path.exists():
        raise AudioError(Message("audio.not_found", "{path}: audio file not found", path=str(path)))
    if path.is_dir():
        raise AudioError(Message("audio.is_folder", "{path}: is a folder; give the path of an audio file "
                                 "({formats})", path=str(path), formats=_SUPPORTED))
    try:
        size = path.stat().st_size
    except OSError as e:
        raise AudioError(Message("audio.unreadable", "{path}: cannot read the file ({error})", path=str(path),
                                 error=str(e.strerror))) from e
    if size == 0:
        raise AudioError(Message("audio.empty", "{path}: the file is empty", path=str(path)))
    return path


def _open(path: Path) -> sf.SoundFile:
    try:
        f = sf.SoundFile(path)
    except sf.LibsndfileError as e:
        raise AudioError(Message(
            "audio.not_audio", "{path}: not a readable audio file ({error}). Supported formats: {formats}; "
            "convert other formats (m4a, aac, wma, video) first", path=str(path), error=str(e.error_string),
            formats=_SUPPORTED)
        ) from e
    except OSError as e:
        raise AudioError(Message("audio.unreadable", "{path}: cannot read the file ({error})", path=str(path),
                                 error=str(e))) from e
    if f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise AudioError(Message("audio.bad_header", "{path}: the file header is damaged ({rate} Hz, {channels} "
                                 "channels)", path=str(path), rate=f.samplerate, channels=f.channels))
    return f


@contextlib.contextmanager
def _decoder(path: Path) -> Iterator[tuple[sf.SoundFile, int, bool]]:
    """An open decoder for the whole stream, the frame count its header announces (0: unknown),
    and whether that count is exact rather than a guess."""
    with contextlib.ExitStack() as cleanup:
        f = cleanup.enter_context(_open(path))
        expected = f.frames if 0 < f.frames < _UNKNOWN_FRAMES else 0
        exact = f.seekable()
        if f.format == "MP3" and os.name == "posix":
            # On Windows libsndfile may use another C runtime, where our pipe's fd is not valid.
            streamed = _open_mp3_stream(path, cleanup)
            if streamed is not None:
                f.close()
                f, exact = streamed, False
        # soundfile seeks back to its own idea of the position after every read. For mp3 that seek
        # restarts mpg123 without its bit reservoir and alters the samples at each block boundary
        # (by up to 1e-3 with 4096-frame blocks). We only read forward, so present a stream.
        with contextlib.suppress(AttributeError):  # soundfile internals; tests check the result
            f._info.seekable = 0
        yield f, expected, exact


def _open_mp3_stream(path: Path, cleanup: contextlib.ExitStack) -> sf.SoundFile | None:
    """Open a header-less mp3 through a pipe, or None when the mp3 knows its exact length.

    libsndfile stops decoding at the length mpg123 reports. Without a Xing/VBRI header that length
    is a guess from the file size and the first frame's bitrate, which cuts a VBR song short where
    ffmpeg decodes it all. Reading from a pipe, mpg123 cannot guess and decodes to the end. The
    ID3v2 tag is not fed through: libsndfile cannot skip a large one (cover art) in a pipe.
    """
    with open(path, "rb") as src:
        audio_start = _id3v2_end(src)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        try:
            with open(path, "rb") as src, open(write_fd, "wb") as dst:
                src.seek(audio_start)
                shutil.copyfileobj(src, dst)
        except OSError:  # the reader closed early (the probe found a length), or the file vanished
            pass

    feeder = threading.Thread(target=feed, name="mp3-feed", daemon=True)
    feeder.start()

    def close_pipe() -> None:
        os.close(read_fd)  # a writer still blocked on the pipe now fails and ends
        feeder.join()

    try:
        stream = sf.SoundFile(read_fd, closefd=False)
    except (sf.LibsndfileError, OSError):  # e.g. a platform where libsndfile cannot read a pipe
        close_pipe()
        return None
    if stream.seekable():  # the Xing header gave an exact length: the ordinary reader is right
        stream.close()
        close_pipe()
        return None
    cleanup.callback(close_pipe)
    cleanup.enter_context(stream)
    return stream


def _id3v2_end(src) -> int:
    """Offset of the first byte after the ID3v2 tag(s) at the start of a file (0 if none)."""
    offset = 0
    while True:
        src.seek(offset)
        header = src.read(10)
        if len(header) < 10 or header[:3] != b"ID3" or any(b & 0x80 for b in header[6:10]):
            return offset
        size = sum(b << 7 * (3 - i) for i, b in enumerate(header[6:10]))  # "syncsafe": 7 bits a byte
        offset += 10 + size + (10 if header[5] & 0x10 else 0)


def _integer_width(f: sf.SoundFile):
    """The integer sample width (bytes) pydub would hold this file in, and a block converter to it.

    pydub reads PCM WAV itself and otherwise asks ffmpeg for ``pcm_s{N}le``, N from ffprobe:
    mp3 (float decoder) is forced to 16 bits; other float decoders (vorbis, opus, mp1/mp2, float
    PCM) report 32 bits; FLAC reports its container width (s16, or s32 for 24-bit, left-justified);
    8-bit and G.711 become unsigned 8-bit, which pydub re-biases to signed; 24-bit PCM is widened to
    32 bits with the 3 sample bytes on top and a low byte of 0xFF for negative samples (a pydub
    quirk we keep, since it changes the integers ratecv sees).
    """
    subtype, container = f.subtype, f.format
    if container == "FLAC":  # ffmpeg's FLAC decoder gives s16 up to 16 bits, s32 above
        return (4, _same_int32) if subtype == "PCM_24" else (2, _same_int16)
    if subtype in ("PCM_S8", "PCM_U8", "ULAW", "ALAW"):
        return 1, _shift_to_int8
    if subtype == "PCM_16":
        return 2, _same_int16
    if subtype == "PCM_24":
        return 4, _pydub_24_bit
    if subtype == "PCM_32":
        return 4, _same_int32
    if subtype == "MPEG_LAYER_III":
        return 2, _float_to_int16
    if subtype in ("FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II"):
        return 4, _float_to_int32
    # ADPCM, GSM and the other 16-bit-decoding codecs libsndfile knows.
    return 2, _same_int16


# The converters take a (frames, channels) block as read with _read_dtype and return integers that
# tobytes() lays out interleaved, as ratecv expects.
def _same_int16(block: np.ndarray) -> np.ndarray:
    return block


def _same_int32(block: np.ndarray) -> np.ndarray:
    return block


def _shift_to_int8(block: np.ndarray) -> np.ndarray:
    return (block >> 8).astype(np.int8)


def _pydub_24_bit(block: np.ndarray) -> np.ndarray:
    return block | np.where(block < 0, np.int32(0xFF), np.int32(0))


def _float_to_int16(block: np.ndarray) -> np.ndarray:
    return _float_to_int(block, 15, np.int16)


def _float_to_int32(block: np.ndarray) -> np.ndarray:
    return _float_to_int(block, 31, np.int32)


def _float_to_int(block: np.ndarray, bits: int, dtype) -> np.ndarray:
    # ffmpeg's swresample: round to nearest (even) after scaling by 2**bits, then saturate.
    # float64 holds every scaled float32 exactly; NaN (only possible in float PCM) becomes 0.
    scaled = np.rint(np.nan_to_num(block, nan=0.0).astype(np.float64) * (1 << bits))
    info = np.iinfo(dtype)
    return np.clip(scaled, info.min, info.max).astype(dtype)


def _read_dtype(to_int) -> str:
    if to_int in (_float_to_int16, _float_to_int32):
        return "float64"
    if to_int in (_same_int32, _pydub_24_bit):
        return "int32"
    return "int16"


class _Samples:
    """A growing float32 array: preallocated to the expected length, doubled if the song turns out longer."""

    def __init__(self, expected: int):
        self.buffer = np.empty(max(expected, _BLOCK_FRAMES), np.float32)
        self.size = 0

    def append(self, block: np.ndarray) -> None:
        end = self.size + len(block)
        if end > len(self.buffer):
            grown = np.empty(max(end, 2 * len(self.buffer)), np.float32)
            grown[: self.size] = self.buffer[: self.size]
            self.buffer = grown
        self.buffer[self.size: end] = block
        self.size = end

    def result(self) -> np.ndarray:
        """The samples appended (a copy only when the buffer is much larger than them)."""
        if len(self.buffer) - self.size > _BLOCK_FRAMES:
            return self.buffer[: self.size].copy()
        return self.buffer[: self.size]


def _to_mono(data: bytes, width: int, channels: int) -> np.ndarray:
    if channels == 2:
        data = audioop.tomono(data, width, 0.5, 0.5)
    ints = np.frombuffer(data, dtype={1: np.int8, 2: np.int16, 4: np.int32}[width])
    if channels > 2:
        # pydub sums each channel floor-divided by the channel count.
        ints = (ints.reshape(-1, channels).astype(np.int64) // channels).sum(axis=1)
    return ints.astype(np.float32)


def _too_long(path: Path | str, seconds: float, limit: float) -> str:
    return Message("audio.too_long", "{path}: the audio is {minutes:.0f} minutes long, over the {limit:.0f}-minute "
                   "limit; cut the song to the part you want to map", path=str(path), minutes=seconds / 60,
                   limit=limit / 60)


def _mutagen_length(path: Path) -> float | None:
    import mutagen

    try:
        tagged = mutagen.File(path)
    except (mutagen.MutagenError, OSError, ValueError):
        return None
    length = getattr(getattr(tagged, "info", None), "length", None)
    return length if length and length > 0 else None


def _clean_tag(text: str) -> str:
    # Tags end up on single lines of a .osu file: no line breaks or other control characters.
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    return " ".join(text.split())


def _romanised(text: str | None, sort_text: str | None) -> str | None:
    for candidate in (text, sort_text):
        if candidate and candidate.isascii():
            return candidate
    return None
