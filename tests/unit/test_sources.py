"""File replay and the streaming windower: exact windows, offsets, gaps, pacing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclassifier.analysis import Windower, level_dbfs
from audioclassifier.audio_io import load_audio
from audioclassifier.card import ModelCard
from audioclassifier.features import LogMelParams, logmel
from audioclassifier.sources import Chunk, FileSource, SourceError, parse_speed
from harness.audio import tone

SR = 16000
CARD = ModelCard(kind="anomaly", labels=("anomaly",), features=LogMelParams(), window_seconds=2.0, threshold=0.0)


def write(path: Path, y: np.ndarray, sr: int = SR, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, **kw)
    return path


def test_replay_gives_the_whole_file_with_offsets_and_times(tmp_path: Path) -> None:
    y = tone(3.3, dbfs=-20)
    f = write(tmp_path / "a.wav", y, subtype="FLOAT")
    src = FileSource(f, sample_rate=SR, speed=None, start_time=1000.0)
    chunks = list(src.chunks())
    got = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(got, y)
    pos = 0
    for c in chunks:
        assert c.offset == pytest.approx(pos / SR)
        assert c.start_time == pytest.approx(1000.0 + pos / SR)
        pos += c.samples.size
    assert not any(c.discontinuity for c in chunks)


def test_replay_resamples_and_picks_a_channel(tmp_path: Path) -> None:
    left, right = tone(2.0, sr=44100, dbfs=-20), np.zeros(88200, dtype=np.float32)
    f = write(tmp_path / "st.wav", np.stack([left, right], axis=1), sr=44100)
    right_only = np.concatenate([c.samples for c in FileSource(f, sample_rate=SR, channel=1, speed=None).chunks()])
    assert right_only.size == pytest.approx(32000, abs=2) and np.abs(right_only).max() < 1e-3
    mixed = np.concatenate([c.samples for c in FileSource(f, sample_rate=SR, speed=None).chunks()])
    np.testing.assert_allclose(mixed, load_audio(f, sample_rate=SR), atol=1e-4)


def test_folder_plays_in_order_skips_bad_files_and_marks_gaps(tmp_path: Path) -> None:
    write(tmp_path / "d" / "1.wav", tone(1.0, dbfs=-20))
    (tmp_path / "d" / "2.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write(tmp_path / "d" / "sub" / "3.wav", tone(1.5, dbfs=-30))
    src = FileSource(tmp_path / "d", sample_rate=SR, speed=None, start_time=0.0)
    chunks = list(src.chunks())
    assert [c.name for c in chunks if c.discontinuity] == ["3.wav"]
    gap = next(c for c in chunks if c.discontinuity)
    assert gap.offset == pytest.approx(1.0)  # offsets run on across the folder
    assert sum(c.samples.size for c in chunks) == 2.5 * SR
    assert src.files_done == 2 and src.files_failed == 1 and "2.wav" in (src.last_error or "")


@pytest.mark.parametrize("content", [b"", b"not audio at all"])
def test_an_unreadable_single_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "bad.wav"
    f.write_bytes(content)
    with pytest.raises(SourceError, match="bad.wav"):
        FileSource(f, sample_rate=SR)


def test_missing_source_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        FileSource(tmp_path / "nope.wav", sample_rate=SR)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no audio files"):
        FileSource(tmp_path / "empty", sample_rate=SR)


def test_paced_replay_takes_at_least_the_audio_time(tmp_path: Path) -> None:
    f = write(tmp_path / "a.wav", tone(1.0))
    t0 = time.monotonic()
    n = sum(c.samples.size for c in FileSource(f, sample_rate=SR, speed=4.0).chunks())
    assert n == SR
    assert time.monotonic() - t0 >= 0.2  # 1 s of audio at 4x: never sooner than 0.25 s (minus a block)


def test_parse_speed() -> None:
    assert parse_speed("realtime") == 1.0 and parse_speed("max") is None and parse_speed("10") == 10.0
    for bad in ("0", "-1", "fast-ish", "nan"):
        with pytest.raises(ValueError):
            parse_speed(bad)


def chunked(y: np.ndarray, sizes: list[int], t0: float = 0.0) -> list[Chunk]:
    out, i, k = [], 0, 0
    while i < y.size:
        n = sizes[k % len(sizes)]
        out.append(Chunk(y[i : i + n], t0 + i / SR, i / SR))
        i, k = i + n, k + 1
    return out


@pytest.mark.parametrize("sizes", [[1600], [SR * 3], [1, 511, 4099, 700]])
def test_windows_equal_the_batch_front_end_on_their_samples(sizes: list[int]) -> None:
    y = tone(7.0, dbfs=-20, noise_dbfs=-30, seed=3)
    win = Windower(CARD, hop_seconds=1.0)
    windows = [w for c in chunked(y, sizes, t0=500.0) for w in win.push(c)]
    hop = win.hop_frames * CARD.features.hop_length
    assert win.hop_seconds == pytest.approx(31 * 512 / SR)
    assert len(windows) == 1 + (y.size - CARD.window_samples) // hop
    for k, w in enumerate(windows):
        s = k * hop
        assert (w.start_sample, w.end_sample) == (s, s + CARD.window_samples)
        np.testing.assert_allclose(w.logmel, logmel(y[s : s + CARD.window_samples]), atol=1e-3)
        assert w.start_offset == pytest.approx(s / SR) and w.end_time - w.start_time == pytest.approx(2.0)
        assert w.start_time == pytest.approx(500.0 + s / SR)
        seg = y[s : s + CARD.window_samples].astype(np.float64)
        assert w.level_dbfs == pytest.approx(level_dbfs(float(np.mean(seg**2))), abs=1e-3)


def test_a_discontinuity_restarts_the_windows() -> None:
    win = Windower(CARD, hop_seconds=0.5)
    a = [w for c in chunked(tone(3.0), [4000]) for w in win.push(c)]
    gap = Chunk(tone(1.0, freq=1000), 100.0, 50.0, discontinuity=True)
    assert win.push(gap) == []  # 1 s: not a full window of the new segment
    b = win.push(Chunk(tone(1.5, freq=1000), 101.0, 51.0))
    assert len(a) == 2 and len(b) == 2  # window ends at columns 61, 77 (93 > the 92 of 3 s)
    assert b[0].index == 0 and b[0].start_offset == pytest.approx(50.0)
    clip = win.clip(b[0], context_seconds=3.0)
    assert clip.size == CARD.window_samples  # context never reaches back across the gap


def test_hop_change_and_clip_context() -> None:
    win = Windower(CARD, hop_seconds=1.0, context_seconds=3.0)
    y = tone(12.0, seed=5)
    ws = [w for c in chunked(y[: 8 * SR], [SR]) for w in win.push(c)]
    win.set_hop(0.25)
    ws2 = [w for c in chunked(y[8 * SR :], [SR], t0=8.0) for w in win.push(c)]
    assert len(ws) == 7 and len(ws2) == pytest.approx(4 / 0.256, abs=1)
    starts = [w.start_sample for w in ws2]
    assert set(np.diff(starts)) == {8 * 512}
    last = ws[-1]
    clip = win.clip(last)
    assert clip.size == CARD.window_samples + 3 * SR
    np.testing.assert_array_equal(clip, y[last.start_sample - 3 * SR : last.end_sample])


def test_capture_handoff_counts_what_the_worker_could_not_take() -> None:
    from audioclassifier.mic import _Handoff

    ring = _Handoff(1000)
    block = np.arange(600 * 2, dtype=np.float32).reshape(600, 2)
    ring.write(block.copy(), 10.0)
    x, start, dropped, anchor, _ = ring.take()
    np.testing.assert_array_equal(x, block)
    assert (start, dropped, anchor) == (0, 0, (600, 10.0))
    for i in range(3):  # 1800 frames into 1000: the oldest 800 are lost, and counted
        ring.write(block.copy(), 11.0 + i, input_overflow=i == 1)
    x, start, dropped, anchor, input_overflows = ring.take()
    assert input_overflows == 1
    assert (x.shape[0], start, dropped, anchor) == (1000, 1400, 800, (2400, 13.0))
    np.testing.assert_array_equal(x, np.concatenate([block, block, block])[-1000:])
    ring.write(np.ones((2500, 2), dtype=np.float32))  # one callback bigger than the ring
    x, start, dropped, _, _ = ring.take()
    assert x.shape[0] == 1000 and dropped == 1500 and start == 2400 + 1500
    assert ring.take().samples.shape[0] == 0  # nothing new


def test_the_ring_holds_the_newest_samples_by_number() -> None:
    from audioclassifier.ring import AudioRing

    ring = AudioRing(1000)
    y = np.arange(2500, dtype=np.float32)
    for part in np.split(y, [300, 1700, 1800]):
        ring.write(part)
    assert (ring.start, ring.end) == (1500, 2500)
    np.testing.assert_array_equal(ring.get(0, 1600), y[1500:1600])  # clipped to what is held
    np.testing.assert_array_equal(ring.get(1900, 2500), y[1900:2500])  # across the wrap
    assert ring.mean_square(2000, 2002) == pytest.approx((2000.0**2 + 2001.0**2) / 2)
    stereo = AudioRing(4, channels=2)
    stereo.write(np.ones((6, 2), dtype=np.float32))
    assert stereo.get(0, 10).shape == (4, 2)


def test_a_file_shorter_than_a_window_is_warned_as_unscorable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "clips"
    d.mkdir()
    for name, n in (("a_short.wav", SR // 2), ("b_long.wav", SR * 3)):
        sf.write(d / name, np.full(n, 0.1, np.float32), SR)
    src = FileSource(d, sample_rate=SR, speed=None, window_seconds=2.0)
    with caplog.at_level("WARNING", logger="audioclassifier.sources"):
        list(src.chunks())
    assert src.files_short == 1
    assert any("a_short.wav" in r.message and "cannot be scored" in r.message for r in caplog.records)
    assert not any("b_long.wav" in r.message for r in caplog.records)
