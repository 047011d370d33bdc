"""Dataset folder trees: ``ROOT/<label>/[<group>/]**/*.wav`` (DESIGN.md, command-line contract)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from audioclassifier.audio_io import AUDIO_SUFFIXES

__all__ = ["Item", "find_audio", "scan_tree", "suffixes"]


@dataclass(frozen=True)
class Item:
    """One audio file of a labelled tree: its label (first folder) and group (second folder)."""

    path: Path
    label: str
    group: str


def suffixes(sensor: bool = False) -> tuple[str, ...]:
    """The file types a tree is read for: audio, and with ``sensor`` the series types too."""
    from ml.series import SERIES_SUFFIXES

    return AUDIO_SUFFIXES + (SERIES_SUFFIXES if sensor else ())


def _walk(r: Path) -> list[Path]:
    """Every file under ``r``, following symbolic links to folders (each real folder once)."""
    out: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(r, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        out.extend(Path(dirpath) / f for f in filenames)
    return out


def find_audio(root: str | os.PathLike[str], *, sensor: bool = False) -> list[Path]:
    """All audio files (with ``sensor``, CSV/NPY series too) under ``root``, or ``root`` itself if
    it is a file, sorted. Symbolic links to folders are followed."""
    r = Path(root)
    if r.is_file():
        return [r]
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: no such file or folder")
    kinds = suffixes(sensor)
    return sorted(p for p in _walk(r) if p.suffix.lower() in kinds and p.is_file())


def scan_tree(root: str | os.PathLike[str], *, sensor: bool = False) -> list[Item]:
    """Label and group every audio file of a dataset tree.

    The group keeps splits apart (no machine in both train and test): the second folder (the
    machine ID, shared across labels: ``normal/id_00`` and ``bearing/id_00`` are one machine) if
    the file lies deeper than ``label/``, otherwise the file itself (its own recording).
    """
    r = Path(root)
    items = []
    for p in find_audio(r, sensor=sensor):
        parts = p.relative_to(r).parts
        if len(parts) < 2:
            raise ValueError(f"{p}: files must sit in a label folder (ROOT/<label>/...), found one at the top")
        label = parts[0]
        group = parts[1] if len(parts) > 2 else f"{label}/{p.stem}"
        items.append(Item(p, label, group))
    return items
