"""Atomic durable writes: the old file or the whole new one, never half, never a stray temp file."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioclassifier.durable import atomic_file


def test_replaces_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "state.bin"
    with atomic_file(dest) as fh:
        fh.write(b"first")
    with atomic_file(dest) as fh:
        fh.write(b"second version")
    assert dest.read_bytes() == b"second version"
    assert [p.name for p in dest.parent.iterdir()] == ["state.bin"]


def test_failure_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "clip.wav"
    dest.write_bytes(b"old clip")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(dest) as fh:
            fh.write(b"half of a new cl")
            raise RuntimeError("disk full")
    assert dest.read_bytes() == b"old clip"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.wav"]
