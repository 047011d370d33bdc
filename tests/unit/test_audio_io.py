"""Audio input: every WAV/FLAC shape we meet in the field, and clear errors for the rest."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclassifier.audio_io import AudioFileError, audio_info, iter_blocks, load_audio, write_wav
from harness.audio import tone_and_noise


@pytest.mark.parametrize(
    "fmt,subtype,tol",
    [("WAV", "PCM_U8", 2 / 256), ("WAV", "PCM_16", 1e-4), ("WAV", "PCM_24", 1e-6), ("WAV", "PCM_32", 1e-7),
     ("WAV", "FLOAT", 0.0), ("WAV", "DOUBLE", 0.0), ("FLAC", "PCM_16", 1e-4), ("WAVEX", "PCM_16", 1e-4)],
)
def test_reads_integer_and_float_formats(tmp_path: Path, fmt: str, subtype: str, tol: float) -> None:
    y = tone_and_noise(8000, seed=4) * 0.8
    path = tmp_path / f"x.{'flac' if fmt == 'FLAC' else 'wav'}"
    sf.write(path, y, 16000, format=fmt, subtype=subtype)
    got = load_audio(path)
    assert got.dtype == np.float32 and got.shape == y.shape
    assert np.abs(got - y).max() <= tol + 1e-7


def test_eight_channel_wave_format_extensible(tmp_path: Path) -> None:
    """MIMII's layout: 8 channels, WAVE_FORMAT_EXTENSIBLE, which Python's wave module refuses."""
    chans = np.stack([tone_and_noise(16000, seed=s) * 0.5 for s in range(8)], axis=1)
    path = tmp_path / "mimii_like.wav"
    sf.write(path, chans, 16000, format="WAVEX", subtype="PCM_16")
    with pytest.raises(wave.Error):
        wave.open(str(path)).close()
    info = audio_info(path)
    assert (info.channels, info.frames, info.sample_rate) == (8, 16000, 16000)
    q = sf.read(path, dtype="float32")[0]
    np.testing.assert_allclose(load_audio(path, channel=3), q[:, 3])
    np.testing.assert_allclose(load_audio(path), q.mean(axis=1), atol=1e-6)
    with pytest.raises(AudioFileError, match="channel 8 requested"):
        load_audio(path, channel=8)


def test_real_mimii_and_bldc_files_load(shared_data: Path) -> None:
    mimii = shared_data / "mimii-demo-clips/fan/abnormal/00000000.wav"
    assert audio_info(mimii).channels == 8
    y = load_audio(mimii, channel=0)
    assert y.shape == (160000,) and 0 < np.abs(y).max() <= 1
    stereo = shared_data / "bldc-motor-sound/Propeller/M1"
    f = sorted(stereo.glob("*.wav"))[0]
    assert audio_info(f).channels == 2
    assert not np.allclose(load_audio(f, channel=0), load_audio(f, channel=1))


def test_resamples_44k_to_model_rate(tmp_path: Path, shared_data: Path) -> None:
    sr = 44100
    t = np.arange(sr) / sr
    path = tmp_path / "tone44k.wav"
    sf.write(path, (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr, subtype="PCM_16")
    y = load_audio(path, sample_rate=16000)
    assert abs(len(y) - 16000) <= 1
    spec = np.abs(np.fft.rfft(y[1000:15000]))
    assert abs(np.argmax(spec) * 16000 / 14000 - 1000) < 2
    real = shared_data / "bldc-motor-sound/Healthy/M1/1400.wav"
    info = audio_info(real)
    assert info.sample_rate == 44100
    assert abs(len(load_audio(real)) - info.frames * 16000 / 44100) <= 1
    assert load_audio(real, sample_rate=None).shape == (info.frames,)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.wav"
    sf.write(good, tone_and_noise(16000), 16000, subtype="PCM_16")
    raw = good.read_bytes()
    cases = {}
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.wav", "empty file")
    (tmp_path / "header_only.wav").write_bytes(raw[:44])
    cases["header_only"] = (tmp_path / "header_only.wav", "0 frames")
    (tmp_path / "truncated.wav").write_bytes(raw[: len(raw) // 2])
    cases["truncated"] = (tmp_path / "truncated.wav", "truncated")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 20)
    cases["text"] = (tmp_path / "text.wav", "not a readable audio file")
    (tmp_path / "garbage.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    cases["garbage"] = (tmp_path / "garbage.wav", "not a readable audio file")
    nan = tone_and_noise(1000)
    nan[10] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    cases["nan"] = (tmp_path / "nan.wav", "NaN")
    cases["missing"] = (tmp_path / "missing.wav", "not found")
    (tmp_path / "adir.wav").mkdir()
    cases["directory"] = (tmp_path / "adir.wav", "not a regular file")
    return cases


@pytest.mark.parametrize("case", ["empty", "header_only", "truncated", "text", "garbage", "nan", "missing", "directory"])
def test_bad_files_raise_one_typed_error_naming_file_and_reason(tmp_path: Path, case: str) -> None:
    path, reason = _bad_files(tmp_path)[case]
    with pytest.raises(AudioFileError) as err:
        load_audio(path)
    assert err.value.path == str(path) and reason in err.value.reason
    assert str(path) in str(err.value)
    with pytest.raises(AudioFileError):
        list(iter_blocks(path, block_frames=512))


@pytest.mark.parametrize("sr", [16000, 48000])
def test_iter_blocks_equals_whole_file(tmp_path: Path, sr: int) -> None:
    y = tone_and_noise(3 * sr + 123, sr=sr, seed=5)
    path = tmp_path / "long.wav"
    sf.write(path, y, sr, subtype="FLOAT")
    blocks = list(iter_blocks(path, block_frames=4000, sample_rate=16000))
    assert all(len(b) > 0 for b in blocks)
    joined = np.concatenate(blocks)
    whole = load_audio(path, sample_rate=16000)
    assert abs(len(joined) - len(whole)) <= 2
    n = min(len(joined), len(whole))
    np.testing.assert_allclose(joined[:n], whole[:n], atol=2e-3)


def test_write_wav_is_atomic_and_readable(tmp_path: Path) -> None:
    y = tone_and_noise(16000)
    dest = write_wav(tmp_path / "clips" / "a.wav", y, sample_rate=16000)
    assert [p.name for p in dest.parent.iterdir()] == ["a.wav"]
    info = sf.info(dest)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    np.testing.assert_allclose(load_audio(dest), y, atol=1e-4)


def test_a_lying_sample_rate_is_refused_before_decoding(tmp_path: Path) -> None:
    """40 kB claiming 1 Hz used to become 20,000 s of audio (7.8 GB) once resampled to 16 kHz."""
    path = tmp_path / "liar.wav"
    sf.write(path, np.zeros(20_000, dtype=np.int16), 1, subtype="PCM_16")
    with pytest.raises(AudioFileError, match="implausible sample rate 1 Hz"):
        load_audio(path)
    with pytest.raises(AudioFileError, match="implausible sample rate"):
        next(iter_blocks(path, block_frames=1024))
    # A low-rate sensor series is fine when the caller says so (and is not resampled up 80x here).
    sensor = tmp_path / "accel.wav"
    sf.write(sensor, np.zeros(400, dtype=np.float32), 200, subtype="FLOAT")
    assert load_audio(sensor, sample_rate=None, sensor=True).shape == (400,)
    big = tmp_path / "ultrasonic.wav"
    sf.write(big, np.zeros(100, dtype=np.float32), 768_000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="768000"):
        load_audio(big)


def test_a_file_too_long_to_load_at_once_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(16000 * 3, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="more than 2 s to load at once"):
        load_audio(path, max_seconds=2)
    assert sum(b.size for b in iter_blocks(path, block_frames=4096)) == 16000 * 3  # streaming reads it all


@pytest.mark.parametrize("value", [1e21, 3e38, -1e30])
def test_finite_samples_far_beyond_full_scale_are_a_clear_error(tmp_path: Path, value: float) -> None:
    """Finite but absurd float samples used to pass the reader and overflow the front end."""
    y = np.zeros(16000, dtype=np.float32)
    y[8000] = value
    path = tmp_path / "huge.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="beyond full scale"):
        load_audio(path)
    with pytest.raises(AudioFileError, match="beyond full scale"):
        list(iter_blocks(path, block_frames=4000))
    y[8000] = 1.5  # a little over full scale (float headroom) is a recording
    sf.write(path, y, 16000, subtype="FLOAT")
    assert load_audio(path).max() == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("sr", [16000, 48000])
def test_blocks_before_a_bad_one_are_given_although_the_file_is_read_ahead(tmp_path: Path, sr: int) -> None:
    """iter_blocks reads many blocks per call; a NaN in block 5 still hands out blocks 0-4 first."""
    y = tone_and_noise(10 * sr, sr=sr, seed=2).astype(np.float32)
    y[5 * sr + 10] = np.nan
    path = tmp_path / "nan-later.wav"
    sf.write(path, y, sr, subtype="FLOAT")
    got = []
    with pytest.raises(AudioFileError, match="NaN"):
        for block in iter_blocks(path, block_frames=sr, sample_rate=16000):
            got.append(block)
    assert len(got) == 5
    good = tmp_path / "good.wav"
    sf.write(good, y[: 5 * sr], sr, subtype="FLOAT")
    n = 4 * 16000  # the resampler's last block differs at the cut: compare the first four seconds
    np.testing.assert_allclose(np.concatenate(got)[:n], load_audio(good, sample_rate=16000)[:n], atol=2e-3)


@pytest.mark.parametrize("fmt,channels", [("WAV", 1), ("WAV", 2), ("FLAC", 1), ("WAVEX", 8)])
def test_16_bit_pcm_reads_bit_for_bit_as_libsndfile_converts_it(tmp_path: Path, fmt: str, channels: int) -> None:
    """16-bit files take the integer read (scaled in numpy): every code, the extremes included,
    gives exactly the float libsndfile gives, through load_audio and iter_blocks alike."""
    codes = np.arange(-32768, 32768, dtype=np.int16)
    x = np.stack([np.roll(codes, 7 * c) for c in range(channels)], axis=1)
    path = tmp_path / f"all-codes.{'flac' if fmt == 'FLAC' else 'wav'}"
    sf.write(path, x, 16000, subtype="PCM_16", format=fmt)
    reference, _ = sf.read(path, dtype="float32", always_2d=True)
    for c in [*range(channels), -1]:
        got = load_audio(path, sample_rate=None, channel=c)
        assert got.dtype == np.float32 and np.array_equal(got, reference[:, c])
        blocks = np.concatenate(list(iter_blocks(path, block_frames=5000, sample_rate=None, channel=c)))
        assert np.array_equal(blocks, reference[:, c])
    mixed = load_audio(path, sample_rate=None)
    assert np.array_equal(mixed, reference.mean(axis=1, dtype=np.float32) if channels > 1 else reference[:, 0])
