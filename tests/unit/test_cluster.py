"""Fault-type discovery: clips of two distinct sounds fall into two proposed clusters."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ml.__main__ import main


def _write(p: Path, y: np.ndarray) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(p, y.astype(np.float32), 16000, subtype="FLOAT")


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    root = tmp_path / "abnormal"
    for k in range(6):  # "whine": a tone plus a little noise
        _write(root / "whine" / f"{k}.wav", 0.2 * np.sin(2 * np.pi * (900 + 20 * k) * t) + 0.01 * rng.standard_normal(16000))
    for k in range(6):  # "rattle": bursts of broadband noise
        env = (np.sin(2 * np.pi * (5 + k) * t) > 0.6).astype(float)
        _write(root / "rattle" / f"{k}.wav", 0.2 * env * rng.standard_normal(16000) + 0.005 * rng.standard_normal(16000))
    (root / "whine" / "bad.wav").write_bytes(b"garbage")
    return root


def test_cluster_separates_two_fault_sounds(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["cluster", "--input", str(clips), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "clusters.csv")))
    assert len(rows) == 12  # the bad file is skipped, not clustered
    assert {r["proposed_label"] for r in rows} == {"fault_A", "fault_B"}
    for folder in ("whine", "rattle"):
        assert len({r["cluster"] for r in rows if r["folder"] == folder}) == 1
    assert (out / "scatter.png").stat().st_size > 1000
    text = capsys.readouterr().out
    assert "adjusted Rand index vs folder names: 1.000" in text and "skipped" in text


def test_cluster_with_fixed_k_and_too_few_files(clips: Path, tmp_path: Path) -> None:
    assert main(["cluster", "--input", str(clips), "--out", str(tmp_path / "o"), "--k", "3"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "clusters.csv")))
    assert len({r["cluster"] for r in rows}) == 3
    assert main(["cluster", "--input", str(clips / "whine" / "0.wav"), "--out", str(tmp_path / "p")]) == 2
