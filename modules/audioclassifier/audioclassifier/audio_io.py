"""Audio file input and output: read any WAV/FLAC soundfile can, to mono float32 at the model rate.

libsndfile (through soundfile) reads what Python's ``wave`` module rejects, such as MIMII's
8-channel WAVE_FORMAT_EXTENSIBLE files, and 8/16/24/32-bit integer or float samples. Anything
unreadable, truncated, empty or non-finite raises :class:`AudioFileError`, which names the file
and the reason, so batch tools can report it and go on.

Input is bounded by construction, because a header can lie:

* the sample rate must be plausible for sound, :data:`MIN_AUDIO_RATE` to :data:`MAX_AUDIO_RATE`
  (a 40 kB file claiming 1 Hz would otherwise become 20,000 s of audio once resampled); low-rate
  sensor series (accelerometers at 200 Hz) pass with ``sensor=True``;
* :func:`load_audio` refuses a file longer than ``max_seconds`` (default one hour) before decoding
  it; :func:`iter_blocks` streams any length in bounded memory;
* samples more than :data:`MAX_ABS_SAMPLE` (60 dB over full scale) are refused with the file's
  name: finite values such as 1e30 in a float WAV overflow the front end's power spectrum.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audioclassifier.durable import atomic_file
from audioclassifier.errors import AuscultError

__all__ = [
    "AUDIO_SUFFIXES",
    "MAX_ABS_SAMPLE",
    "MAX_AUDIO_RATE",
    "MIN_AUDIO_RATE",
    "AudioFileError",
    "AudioInfo",
    "audio_info",
    "iter_blocks",
    "load_audio",
    "resample",
    "to_mono",
    "write_wav",
]

#: File name suffixes that the batch tools pick up in a folder tree.
AUDIO_SUFFIXES = (".wav", ".flac")
#: Plausible sample rates for sound, in Hz (outside: a lying header, unless ``sensor=True``).
MIN_AUDIO_RATE, MAX_AUDIO_RATE = 1000, 384000
#: Samples beyond this magnitude (60 dB over full scale) are refused.
MAX_ABS_SAMPLE = 1000.0
#: :func:`load_audio` decodes at most this much audio by default (longer files: iter_blocks).
MAX_LOAD_SECONDS = 3600.0

_SIZE_MISMATCH = re.compile(r"data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.IGNORECASE)


class AudioFileError(AuscultError):
    """An audio file that cannot be used: ``path`` names it and ``reason`` says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, from its header."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(path: str | os.PathLike[str], *, sensor: bool = False, data: bytes | None = None) -> sf.SoundFile:
    """Open for reading, turning every libsndfile failure into AudioFileError; the header's rate
    must be plausible (see the module docstring). With ``data``, the file's bytes are read from
    memory and ``path`` only names them in messages (an upload)."""
    p = Path(path)
    if data is None:
        if not p.exists():
            raise AudioFileError(p, "file not found")
        if not p.is_file():
            raise AudioFileError(p, "not a regular file")
        if p.stat().st_size == 0:
            raise AudioFileError(p, "empty file (0 bytes)")
    elif not data:
        raise AudioFileError(p, "empty file (0 bytes)")
    try:
        f = sf.SoundFile(str(p) if data is None else io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(p, f"not a readable audio file ({_clean(exc)})") from exc
    try:
        if f.samplerate <= 0:
            raise AudioFileError(p, f"invalid sample rate {f.samplerate} in header")
        if not sensor and not MIN_AUDIO_RATE <= f.samplerate <= MAX_AUDIO_RATE:
            raise AudioFileError(p, f"implausible sample rate {f.samplerate} Hz in header for audio (accepted "
                                    f"{MIN_AUDIO_RATE} to {MAX_AUDIO_RATE} Hz; a low-rate sensor series needs sensor=True)")
        if f.frames <= 0:
            raise AudioFileError(p, "no audio samples (0 frames)")
        _check_not_truncated(f, p)
    except BaseException:
        f.close()
        raise
    return f


def _clean(exc: BaseException) -> str:
    """libsndfile's message without the path (or the in-memory file's repr) repeated in it."""
    msg = str(exc).strip() or type(exc).__name__
    msg = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>:?\s*", "", msg)
    return msg.replace("Error opening ", "").strip()


def _check_not_truncated(f: sf.SoundFile, p: Path) -> None:
    """Refuse a file whose data chunk is shorter than its header declares (a cut-off copy).

    libsndfile quietly reads what is there and notes ``data : N (should be M)`` in its log.
    """
    m = _SIZE_MISMATCH.search(f.extra_info or "")
    if m:
        declared, present = int(m.group(1)), int(m.group(2))
        if present < declared:
            raise AudioFileError(
                p, f"truncated: header declares {declared} data bytes, the file holds {present}"
            )


def audio_info(path: str | os.PathLike[str], *, sensor: bool = False, data: bytes | None = None) -> AudioInfo:
    """Header facts of an audio file (raises :class:`AudioFileError` if unusable); ``sensor``
    admits low rates; ``data``: the file's bytes, in memory (``path`` names them)."""
    with _open(path, sensor=sensor, data=data) as f:
        return AudioInfo(str(path), int(f.samplerate), int(f.channels), int(f.frames), f.format, f.subtype)


def to_mono(x: np.ndarray, *, channel: int | None = None) -> np.ndarray:
    """``(frames, channels)`` → 1-D: pick ``channel`` (0-based) or, if None, average all channels."""
    if x.ndim == 1:  # one channel: 0 or -1 names it
        if channel not in (None, 0, -1):
            raise ValueError(f"channel {channel} requested from mono audio")
        return x
    n = x.shape[1]
    if channel is None:
        return x[:, 0].copy() if n == 1 else x.mean(axis=1, dtype=np.float32)
    if not -n <= channel < n:
        raise ValueError(f"channel {channel} requested, the audio has {n} channel(s)")
    return np.ascontiguousarray(x[:, channel])


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling with soxr (float32 in, float32 out); a no-op when rates match."""
    if orig_sr == target_sr:
        return y
    return soxr.resample(y, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


#: Frames :func:`iter_blocks` reads from the file per call (at most; whole blocks).
READ_AHEAD_FRAMES = 65536
_PCM16_SCALE = np.float32(1.0 / 32768.0)


def _read_float32(f: sf.SoundFile, frames: int = -1) -> np.ndarray:
    """Up to ``frames`` frames (-1: the rest) as float32, the values libsndfile's float read gives:
    1-D for a mono file (no copy to take its one channel), ``(frames, channels)`` otherwise.

    16-bit PCM, most recordings, is read as integers and scaled here: ``x / 32768`` is exact in
    float32, so the samples are the same bit for bit, for a third of the CPU (libsndfile converts
    sample by sample; a replayed hour costs 0.16 s against 0.05 s)."""
    if f.subtype == "PCM_16":
        x = f.read(frames, dtype="int16").astype(np.float32)
        x *= _PCM16_SCALE
        return x
    return f.read(frames, dtype="float32")


def _check_samples(path: str | os.PathLike[str], x: np.ndarray) -> None:
    if not x.size:
        return
    peak = max(float(x.max()), -float(x.min()))  # NaN propagates through both: one check for all
    if peak <= MAX_ABS_SAMPLE:
        return
    if not np.isfinite(x).all():
        raise AudioFileError(path, "contains NaN or infinite samples")
    if peak > MAX_ABS_SAMPLE:
        raise AudioFileError(path, f"samples far beyond full scale (peak {peak:.3g}; at most {MAX_ABS_SAMPLE:g} "
                                   "is accepted): not a recording")


def load_audio(
    path: str | os.PathLike[str], *, sample_rate: int | None = 16000, channel: int | None = None,
    max_seconds: float | None = MAX_LOAD_SECONDS, sensor: bool = False,
) -> np.ndarray:
    """Read a whole file as mono float32 in [-1, 1], resampled to ``sample_rate`` (None: keep).

    ``channel`` picks one channel (0-based); None mixes all channels down. A file longer than
    ``max_seconds`` (None: no limit) is refused before it is decoded; ``sensor`` admits low rates.
    """
    with _open(path, sensor=sensor) as f:
        sr = int(f.samplerate)
        if max_seconds is not None and f.frames > max_seconds * sr:
            raise AudioFileError(path, f"{f.frames / sr:.0f} s of audio, more than {max_seconds:g} s to load at once "
                                       "(stream it in blocks)")
        try:
            x = _read_float32(f)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioFileError(path, f"read failed ({_clean(exc)})") from exc
    if x.shape[0] == 0:
        raise AudioFileError(path, "no audio samples could be read")
    _check_samples(path, x)
    try:
        y = to_mono(x, channel=channel)
    except ValueError as exc:
        raise AudioFileError(path, str(exc)) from exc
    return resample(y, orig_sr=sr, target_sr=sample_rate) if sample_rate else y


def iter_blocks(
    path: str | os.PathLike[str],
    *,
    block_frames: int,
    sample_rate: int | None = 16000,
    channel: int | None = None,
    sensor: bool = False,
    data: bytes | None = None,
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of a file of any length, resampled on the fly (for replay).

    Memory stays bounded by a few blocks: the file is read up to :data:`READ_AHEAD_FRAMES` frames
    at a time (libsndfile's per-call cost, three seeks included, is then paid once per read, not
    once per block) and handed out block by block; the last block may be shorter. A block with
    non-finite or out-of-range samples raises :class:`AudioFileError` (blocks before it were given).
    ``data``: the file's bytes, in memory (an upload; ``path`` names them in messages).
    """
    if block_frames <= 0:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    read_frames = max(1, READ_AHEAD_FRAMES // block_frames) * block_frames
    with _open(path, sensor=sensor, data=data) as f:
        sr = int(f.samplerate)
        if channel is not None and not -f.channels <= channel < f.channels:
            raise AudioFileError(path, f"channel {channel} requested, the file has {f.channels} channel(s)")
        stream = None if not sample_rate or sample_rate == sr else soxr.ResampleStream(
            sr, sample_rate, 1, dtype="float32", quality="HQ"
        )
        while True:
            try:
                x = _read_float32(f, read_frames)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioFileError(path, f"read failed ({_clean(exc)})") from exc
            end = x.shape[0] < read_frames
            for at in range(0, max(x.shape[0], 1), block_frames):
                part = x[at : at + block_frames]
                _check_samples(path, part)
                y = to_mono(part, channel=channel)
                if stream is not None:
                    y = stream.resample_chunk(y, last=end and at + block_frames >= x.shape[0])
                if y.size:
                    yield y
            if end:
                return


def write_wav(
    path: str | os.PathLike[str], y: np.ndarray, *, sample_rate: int, subtype: str = "PCM_16"
) -> Path:
    """Write mono (or ``(frames, channels)``) float audio as WAV, durably and atomically.

    The WAV is encoded in memory first, then goes to a temporary file in the same folder, is
    fsynced and renamed over ``path``: a reader never sees half a file, a crash leaves either the
    old file or the new one, and a full disk is a plain ``OSError`` (ENOSPC) with nothing left
    behind (libsndfile writing to the disk itself reported it as an ``AssertionError``).
    """
    dest = Path(path)
    buf = io.BytesIO()
    sf.write(buf, np.asarray(y, dtype=np.float32), sample_rate, subtype=subtype, format="WAV")
    with atomic_file(dest) as fh:
        fh.write(buf.getbuffer())
    return dest
