"""Fault-type discovery: clips of distinct sounds fall into as many proposed clusters as there are
sounds, and the number of groups is not over-split (synthetic sounds, and real recordings whose
groups are known)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ml.__main__ import main
from ml.cluster import choose_k, cluster

T = np.arange(16000) / 16000


def _write(p: Path, y: np.ndarray) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(p, y.astype(np.float32), 16000, subtype="FLOAT")


def _whine(k: int, rng: np.random.Generator) -> np.ndarray:
    return 0.2 * np.sin(2 * np.pi * (900 + 20 * k) * T) + 0.01 * rng.standard_normal(16000)


def _rattle(k: int, rng: np.random.Generator) -> np.ndarray:
    env = (np.sin(2 * np.pi * (5 + k) * T) > 0.6).astype(float)
    return 0.2 * env * rng.standard_normal(16000) + 0.005 * rng.standard_normal(16000)


def _hum(k: int, rng: np.random.Generator) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * (100 + 3 * k) * T) * (1 + 0.3 * np.sin(2 * np.pi * 7 * T)) + 0.02 * rng.standard_normal(16000)


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "abnormal"
    for k in range(6):
        _write(root / "whine" / f"{k}.wav", _whine(k, rng))
        _write(root / "rattle" / f"{k}.wav", _rattle(k, rng))
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
    choice = list(csv.DictReader(open(out / "choice.csv")))  # every candidate k with its figures
    assert [int(r["k"]) for r in choice] == list(range(1, 9)) and choice[1]["gap"]
    text = capsys.readouterr().out
    assert "adjusted Rand index vs folder names: 1.000" in text and "skipped" in text and "gap statistic" in text


def test_cluster_with_fixed_k_and_too_few_files(clips: Path, tmp_path: Path) -> None:
    assert main(["cluster", "--input", str(clips), "--out", str(tmp_path / "o"), "--k", "3"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "clusters.csv")))
    assert len({r["cluster"] for r in rows}) == 3
    assert main(["cluster", "--input", str(clips / "whine" / "0.wav"), "--out", str(tmp_path / "p")]) == 2
    assert main(["cluster", "--input", str(clips), "--out", str(tmp_path / "q"), "--k", "40"]) == 2


def _blobs(groups: int, seed: int, strays: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs of unequal sizes (12, 18, ...) and spreads in 6 dimensions, then ``strays``
    points drawn from the wide distribution of the centres."""
    rng = np.random.default_rng(groups * 10 + seed)
    centres = rng.normal(0, 8, (groups, 6))
    parts = [c + rng.normal(0, 0.6 + 0.3 * i, (12 + 6 * i, 6)) for i, c in enumerate(centres)]
    truth = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    return np.concatenate(parts + [rng.normal(0, 8, (strays, 6))]), truth


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("groups", [1, 2, 3, 5])
def test_choose_k_finds_the_known_number_of_groups(groups: int, seed: int) -> None:
    """The chosen k is the number of blobs, one included (the gap statistic's rule decides)."""
    from sklearn.metrics import adjusted_rand_score

    z, truth = _blobs(groups, seed)
    ch = choose_k(z, max_k=8, seed=0)
    assert ch.k == groups and "one-standard-error rule" in ch.how, ch.table
    if groups > 1:
        assert adjusted_rand_score(truth, ch.labels) == pytest.approx(1.0)
    min_size = max(2, int(np.ceil(0.05 * len(z))))
    assert all(r["admissible"] == (r["k"] == 1 or r["smallest"] >= min_size) for r in ch.table)


@pytest.mark.parametrize("groups", [1, 3])
def test_a_stray_point_is_no_group_of_its_own(groups: int) -> None:
    z, truth = _blobs(groups, 0, strays=1)
    ch = choose_k(z, max_k=8, seed=0)
    assert ch.k == groups and np.bincount(ch.labels).min() > 1, ch.table


def test_one_sound_with_an_outlier_is_one_group(tmp_path: Path) -> None:
    """Twelve clips of one hum and one odd clip: no singleton 'fault type' (the former silhouette
    choice split such sets), one group proposed, and it says so."""
    rng = np.random.default_rng(4)
    root = tmp_path / "one"
    for k in range(12):
        _write(root / f"{k}.wav", _hum(k, rng))
    _write(root / "odd.wav", _rattle(0, rng))
    res = cluster(root, tmp_path / "out")
    assert res.k == 1 and any("no group structure" in n for n in res.notes), res.table


def test_three_sounds_are_three_groups(tmp_path: Path) -> None:
    """Eight clips each of three sounds that differ only by their noise within a sound."""
    rng = np.random.default_rng(5)
    root = tmp_path / "three"
    for k in range(8):
        _write(root / "whine" / f"{k}.wav", _whine(0, rng))
        _write(root / "rattle" / f"{k}.wav", _rattle(0, rng))
        _write(root / "hum" / f"{k}.wav", _hum(0, rng))
    res = cluster(root, tmp_path / "out")
    assert res.k == 3 and res.adjusted_rand == pytest.approx(1.0), res.table


def _links(dest: Path, folders: dict[str, Path]) -> Path:
    dest.mkdir(parents=True)
    for name, src in folders.items():
        (dest / name).symlink_to(src)
    return dest


@pytest.mark.slow
def test_real_mimii_groups_are_not_over_split(shared_data: Path, tmp_path: Path) -> None:
    """MIMII: abnormal fan and abnormal pump clips (8 channels mixed) are two groups (the former
    silhouette choice made six, one a singleton: ARI 0.58); with the normal fan clips, three."""
    mimii = shared_data / "mimii-demo-clips"
    two = _links(tmp_path / "two", {"fan": mimii / "fan" / "abnormal", "pump": mimii / "pump" / "abnormal"})
    res = cluster(two, tmp_path / "o2")
    assert (res.k, res.adjusted_rand) == (2, pytest.approx(1.0)), res.table
    three = _links(tmp_path / "three", {"fan_abn": mimii / "fan" / "abnormal", "pump_abn": mimii / "pump" / "abnormal",
                                        "fan_norm": mimii / "fan" / "normal"})
    res = cluster(three, tmp_path / "o3")
    assert (res.k, res.adjusted_rand) == (3, pytest.approx(1.0)), res.table


@pytest.mark.slow
def test_real_fan_vibration_speeds_are_four_groups(shared_data: Path, tmp_path: Path) -> None:
    """Ceiling-fan accelerometer series (CSV, 200 Hz) at four speeds without the weight: 4 groups
    (silhouette alone preferred 2, off against running)."""
    fan = shared_data / "ceiling-fan-vibration"
    picks = {}
    for speed in ("off", "low", "med", "high"):
        d = tmp_path / "fan" / speed
        d.mkdir(parents=True)
        for f in sorted((fan / f"fan_0_{speed}_0_weight").glob("*.csv"))[:60]:
            (d / f.name).symlink_to(f)
        picks[speed] = d
    from audioclassifier.features import LogMelParams

    res = cluster(tmp_path / "fan", tmp_path / "out", sensor=True,
                  params=LogMelParams(sample_rate=200, n_fft=64, hop_length=8, n_mels=16))
    assert res.k == 4 and res.adjusted_rand is not None and res.adjusted_rand > 0.95, res.table
