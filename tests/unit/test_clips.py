"""One clip-naming function: names unique per alert, valid blob names as they are."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from audioclassifier.clips import blob_name, clip_name, safe_part, write_clip

T = 1_767_323_045.25  # 2026-01-02 03:04:05.250 UTC


def test_clip_name_layout_and_kinds() -> None:
    assert clip_name("pump-1", T, "bearing", seq=7).as_posix() == "pump-1/2026-01-02/030405250-bearing-a7.wav"
    assert clip_name("pump-1", T, "field", seq=3, kind="capture").as_posix() == \
        "pump-1/2026-01-02/030405250-field-c3.wav"
    with pytest.raises(ValueError):
        clip_name("m", T, "x", seq=-1)
    with pytest.raises(ValueError):
        clip_name("m", T, "x", seq=1, kind="other")


def test_the_names_that_used_to_disagree_now_agree() -> None:
    """`pump-` became `pump-` in the alert and `pump` as a blob: the clip field named no blob."""
    name = clip_name("pump-", T, "anomaly", seq=1).as_posix()
    assert blob_name(name) == name and name.startswith("pump/")
    assert blob_name("../../etc/passwd") == "etc/passwd"
    assert blob_name("Halle 3/Pumpe ö?#/x y.wav") == "Halle-3/Pumpe/x-y.wav"
    with pytest.raises(ValueError):
        blob_name("../..")


names = st.text(alphabet=string.printable + "äöü€/\\.", max_size=150)


@settings(max_examples=300, deadline=None)
@given(machine=names, label=names, seq=st.integers(0, 10**12), t=st.floats(0, 4e9))
def test_any_clip_name_is_a_valid_blob_name_unchanged(machine: str, label: str, seq: int, t: float) -> None:
    name = clip_name(machine, t, label, seq=seq).as_posix()
    assert blob_name(name) == name
    parts = name.split("/")
    assert len(parts) == 3 and all(p and p[0] not in "._-" and p[-1] not in "._-" for p in parts)
    assert len(name) <= 1024  # Azure's blob name limit
    assert set(name) <= set(string.ascii_letters + string.digits + "._-/")


@settings(max_examples=100, deadline=None)
@given(machine=names, label=names, seqs=st.lists(st.integers(1, 10**6), min_size=2, max_size=20, unique=True))
def test_names_are_unique_per_alert_in_the_same_millisecond(machine: str, label: str, seqs: list[int]) -> None:
    assert len({clip_name(machine, T, label, seq=s) for s in seqs}) == len(seqs)
    assert clip_name(machine, T, label, seq=1) != clip_name(machine, T, label, seq=1, kind="capture")


def test_safe_part_is_idempotent_and_never_a_dot_name() -> None:
    for raw in ("..", ".", "", "-_.", "a b", "ö", "x" * 300):
        part = safe_part(raw)
        assert part not in (".", "..", "") and safe_part(part) == part and len(part) <= 100


def test_write_clip_writes_under_the_name(tmp_path: Path) -> None:
    name = clip_name("fan", T, "bearing", seq=2)
    assert write_clip(tmp_path, name, np.zeros(1600, dtype=np.float32), sample_rate=16000) == name.as_posix()
    y, sr = sf.read(tmp_path / name)
    assert sr == 16000 and len(y) == 1600
