"""``python -m ml convert``: arrays that match librosa, images, and bad files skipped, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from harness.audio import tone_and_noise
from ml.__main__ import main


def _tree(root: Path) -> None:
    (root / "normal/id_00").mkdir(parents=True)
    (root / "bearing/id_00").mkdir(parents=True)
    sf.write(root / "normal/id_00/a.wav", tone_and_noise(32000, seed=1), 16000, subtype="PCM_16")
    chans = np.stack([tone_and_noise(16000, sr=22050, seed=s) for s in range(8)], axis=1)
    sf.write(root / "bearing/id_00/b.wav", chans, 22050, format="WAVEX", subtype="PCM_24")
    (root / "bearing/id_00/broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    (root / "normal/id_00/notes.txt").write_text("ignored")


def test_convert_tree_matches_librosa_and_skips_bad_files(tmp_path: Path, capsys) -> None:
    src, out = tmp_path / "wav", tmp_path / "mel"
    _tree(src)
    code = main(["convert", "--input", str(src), "--output", str(out), "--jobs", "2"])
    assert code == 3  # some converted, one failed
    printed = capsys.readouterr().out
    assert "converted 2 file(s)" in printed and "broken.wav" in printed and "failed 1" in printed
    a = np.load(out / "normal/id_00/a.npy")
    y, _ = sf.read(src / "normal/id_00/a.wav", dtype="float32")
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=512,
                                                             n_mels=128, center=False), ref=1.0, amin=1e-10, top_db=None)
    assert a.dtype == np.float32 and a.shape == ref.shape and np.abs(a - ref).max() <= 1e-3
    b = np.load(out / "bearing/id_00/b.npy")
    assert b.shape == (128, 21)  # 16000 samples at 22.05 kHz -> 11610 at 16 kHz -> 21 frames
    assert (out / "normal/id_00/a.png").stat().st_size > 5000
    assert (out / "bearing/id_00/b.png").is_file()
    assert not (out / "bearing/id_00/broken.npy").exists()
    report = json.loads((out / "convert.json").read_text())
    assert len(report["converted"]) == 2 and any("broken.wav" in k for k in report["failed"])


def test_convert_exit_codes(tmp_path: Path) -> None:
    assert main(["convert", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    (tmp_path / "bad/x").mkdir(parents=True)
    (tmp_path / "bad/x/only.wav").write_bytes(b"")
    assert main(["convert", "--input", str(tmp_path / "bad"), "--output", str(tmp_path / "o"), "--no-png"]) == 1
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it, naming the option
        main(["convert", "--input", str(tmp_path / "bad"), "--output", str(tmp_path / "o"), "--n-mels", "0"])
    assert exit_.value.code == 2
    assert main(["convert", "--input", str(tmp_path / "bad"), "--output", str(tmp_path / "o"),
                 "--fmin", "9000"]) == 2  # LogMelParams refuses fmin >= fmax
