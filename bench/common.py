"""What the benchmarks share: where things are, the ``python -m ml`` runner, synthetic trees,
symlinked data trees over the real recordings (read in place, never copied), and the real sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUSCULT_SHARED_DATA", REPO.parent / "shared" / "data"))
PY = sys.executable


def sh(*args: str) -> None:
    """Run a ``python -m ml`` command, streaming its output."""
    print("$ python -m ml " + " ".join(args), flush=True)
    subprocess.run([PY, "-m", "ml", *args], check=True, cwd=REPO)


def synth(out: Path, *args: str) -> Path:
    """A synthetic tree (kept between runs when it exists)."""
    if not (out / "manifest.csv").is_file():
        shutil.rmtree(out, ignore_errors=True)
        sh("synth", "--out", str(out), *args)
    return out


def link_tree(dest: Path, mapping: dict[str, list[Path]]) -> Path:
    """A dataset tree of symlinks: ``dest/<label>/<group>/<file>`` for ``{"label/group": files}``."""
    shutil.rmtree(dest, ignore_errors=True)
    for key, files in mapping.items():
        d = dest / key
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            (d / f.name).symlink_to(f.resolve())
    return dest


def normal_and_abnormal(*parts: str) -> tuple[list[Path], list[Path]] | None:
    """The sorted normal and abnormal clips of a real set under ../shared/data, or None (said)."""
    root = SHARED.joinpath(*parts)
    if not root.is_dir():
        print(f"skip {'/'.join(parts)}: {root} not found")
        return None
    return sorted((root / "normal").glob("*.wav")), sorted((root / "abnormal").glob("*.wav"))


def bldc_files() -> dict[tuple[str, str], list[Path]] | None:
    """The BLDC recordings by (condition, motor): ``{("Healthy", "M1"): [...1400.wav, ...], ...}``
    (file names are shaft speeds in rpm), or None (said) without the set."""
    root = SHARED / "bldc-motor-sound"
    if not root.is_dir():
        print(f"skip bldc: {root} not found")
        return None
    return {(c, m.name): sorted(m.glob("*.wav")) for c in ("Healthy", "Bearing", "Propeller")
            for m in sorted((root / c).iterdir()) if m.is_dir()}
