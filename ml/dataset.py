"""Dataset folder trees: ``ROOT/<label>/[<group>/]**/*.wav`` (DESIGN.md, command-line contract)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from audioclassifier.audio_io import AUDIO_SUFFIXES

__all__ = ["Item", "find_audio", "scan_tree"]


@dataclass(frozen=True)
class Item:
    """One audio file of a labelled tree: its label (first folder) and group (second folder)."""

    path: Path
    label: str
    group: str


def find_audio(root: str | os.PathLike[str]) -> list[Path]:
    """All audio files under ``root`` (or ``root`` itself if it is a file), sorted."""
    r = Path(root)
    if r.is_file():
        return [r]
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: no such file or folder")
    return sorted(p for p in r.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def scan_tree(root: str | os.PathLike[str]) -> list[Item]:
    """Label and group every audio file of a dataset tree.

    The group keeps splits apart (no machine in both train and test): the second folder (the
    machine ID, shared across labels: ``normal/id_00`` and ``bearing/id_00`` are one machine) if
    the file lies deeper than ``label/``, otherwise the file itself (its own recording).
    """
    r = Path(root)
    items = []
    for p in find_audio(r):
        parts = p.relative_to(r).parts
        if len(parts) < 2:
            raise ValueError(f"{p}: files must sit in a label folder (ROOT/<label>/...), found one at the top")
        label = parts[0]
        group = parts[1] if len(parts) > 2 else f"{label}/{p.stem}"
        items.append(Item(p, label, group))
    return items
