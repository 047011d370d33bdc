"""Train/validation splits that keep groups apart (no machine, or recording, on both sides) and
never drop a label that training needs.

:func:`plan_split` is the one entry point of ``train``: it chooses validation groups among
candidate group splits (the folds of :class:`~sklearn.model_selection.StratifiedGroupKFold`
over a few shuffles, and for small trees every subset of groups), keeps only those that leave
every required label in training, and prefers the one whose validation side holds the most
labels and comes closest to the requested fraction. When no group split keeps every label,
it refuses with :class:`SplitError` and says which label lives on which groups.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from audioclassifier.errors import AuscultError

__all__ = ["SPLIT_BY", "Split", "SplitError", "group_split", "plan_split"]

log = logging.getLogger(__name__)

#: what a group is: the machine folder, or each recording on its own
SPLIT_BY = ("machine", "recording")
#: trees with at most this many groups have every subset of groups tried
_EXHAUSTIVE_GROUPS = 12
_SHUFFLES = 8


class SplitError(AuscultError, ValueError):
    """No honest split of this tree meets the run's needs; the message says why."""


@dataclass(frozen=True)
class Split:
    """Indices of files on each side, the groups on each side, and notes for the user and card."""

    train: np.ndarray
    val: np.ndarray
    by: str
    train_groups: list[str]
    val_groups: list[str]
    how: str
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the card's ``trained.split``."""
        return (f"by {self.by} ({self.how}): train groups {self.train_groups}, "
                f"validation groups {self.val_groups}")


def _where(labels: np.ndarray, groups: np.ndarray) -> dict[str, list[str]]:
    return {lab: sorted(set(groups[labels == lab].tolist())) for lab in sorted(set(labels.tolist()))}


def _candidates(labels: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int) -> Iterable[frozenset[str]]:
    """Validation group sets to consider, in order of preference for ties."""
    from sklearn.model_selection import StratifiedGroupKFold

    names = sorted(set(groups.tolist()))
    n_groups = len(names)
    k = int(min(n_groups, max(2, round(1 / val_fraction))))
    idx = np.arange(len(labels))
    for s in range(seed, seed + _SHUFFLES):
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=s)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "least populated class has only ..."
                for _, va in sgkf.split(idx, labels.astype(str), groups.astype(str)):
                    yield frozenset(groups[va].tolist())
        except ValueError:
            break
    if n_groups <= _EXHAUSTIVE_GROUPS:
        for size in range(1, n_groups):
            for combo in itertools.combinations(names, size):
                yield frozenset(combo)


def plan_split(
    labels: Sequence[str], groups: Sequence[str], *, val_fraction: float = 0.25, seed: int = 0,
    by: str = "machine", val_groups: Sequence[str] | None = None, required: Sequence[str] | None = None,
    need_in_val: Sequence[str] = (),
) -> Split:
    """Choose the validation files of a tree; raise :class:`SplitError` when no split fits.

    ``labels``/``groups``: one per file (groups are machine IDs). ``by="recording"`` makes every
    file its own group. ``required``: the labels that must keep at least one training file
    (default: all of them). ``need_in_val``: labels the validation side must hold (the anomaly
    kind's normal label). ``val_groups`` names the validation groups instead of choosing them.
    """
    if by not in SPLIT_BY:
        raise SplitError(f"split by must be one of {SPLIT_BY}, got {by!r}")
    lab = np.asarray(labels, dtype=object)
    grp = np.asarray(groups, dtype=object)
    n = len(lab)
    if n < 2:
        raise SplitError(f"need at least 2 files to split into training and validation, got {n}")
    notes: list[str] = []
    if by == "recording":
        grp = np.array([f"{g}#{i}" for i, g in enumerate(grp)], dtype=object)
    elif len(set(grp.tolist())) < 2:
        notes.append(f"only one machine ({grp[0]}): split by recording instead")
        by = "recording"
        grp = np.array([f"{g}#{i}" for i, g in enumerate(grp)], dtype=object)
    req = sorted(set(lab.tolist())) if required is None else list(required)
    where = _where(lab, grp)

    def check(val: frozenset[str]) -> str | None:
        in_val = np.isin(grp, list(val))
        if in_val.all() or not in_val.any():
            return "one side would be empty"
        tr_labels = set(lab[~in_val].tolist())
        va_labels = set(lab[in_val].tolist())
        lost = [x for x in req if x not in tr_labels]
        if lost:
            return "no training file left for " + ", ".join(
                f"'{x}' (only on {', '.join(where.get(x, [])) or 'no group'})" for x in lost)
        missing = [x for x in need_in_val if x not in va_labels]
        if missing:
            return "no validation file of " + ", ".join(f"'{x}'" for x in missing)
        return None

    if val_groups:
        known = set(grp.tolist()) if by == "machine" else set(np.asarray(groups, dtype=object).tolist())
        unknown = [g for g in val_groups if g not in known]
        if unknown:
            raise SplitError(f"--val-groups {', '.join(unknown)}: no such group (groups: {', '.join(sorted(known))})")
        if by == "machine":
            chosen = frozenset(val_groups)
        else:
            base = np.asarray(groups, dtype=object)
            chosen = frozenset(grp[np.isin(base, list(val_groups))].tolist())
        why = check(chosen)
        if why:
            raise SplitError(f"--val-groups {', '.join(val_groups)}: {why}")
        how = "validation groups named by --val-groups"
    else:
        if not 0 < val_fraction < 1:
            raise SplitError(f"val_fraction must be in (0, 1), got {val_fraction}")
        best: tuple[tuple[int, float, int], frozenset[str]] | None = None
        seen: set[frozenset[str]] = set()
        reasons: dict[str, int] = {}
        for order, val in enumerate(_candidates(lab, grp, val_fraction, seed)):
            if val in seen:
                continue
            seen.add(val)
            why = check(val)
            if why:
                reasons[why] = reasons.get(why, 0) + 1
                continue
            in_val = np.isin(grp, list(val))
            key = (-len(set(lab[in_val].tolist())), round(abs(float(in_val.mean()) - val_fraction), 2), order)
            if best is None or key < best[0]:
                best = (key, val)
        if best is None:
            common = max(reasons, key=lambda r: reasons[r]) if reasons else "too few groups"
            layout = "; ".join(f"{x}: {', '.join(g)}" for x, g in where.items()) if by == "machine" else ""
            raise SplitError(
                f"no split by {by} keeps every label in training ({common}). Labels by group: {layout}. "
                "Add machines, name the validation groups (--val-groups), split by recording (--split-by "
                "recording: validation then hears machines it trained on), or give a validation set "
                "(--val-fraction 0 --val-data DIR)")
        chosen = best[1]
        how = f"stratified group split, validation fraction {val_fraction:g}, every label kept in training"
    in_val = np.isin(grp, list(chosen))
    idx = np.arange(n)
    tr, va = idx[~in_val], idx[in_val]
    va_labels = set(lab[va].tolist())
    absent = [x for x in sorted(set(lab.tolist())) if x not in va_labels]
    if absent:
        notes.append("validation has no file of " + ", ".join(absent)
                     + ": its validation metrics cannot show how they are recognised")

    def names(ix: np.ndarray) -> list[str]:
        return sorted(set((grp if by == "machine" else np.asarray(groups, dtype=object))[ix].tolist()))
    return Split(tr, va, by, names(tr), names(va), how, notes)


def group_split(
    labels: Sequence[str], groups: Sequence[str], *, val_fraction: float = 0.25, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)`` of files such that no group is on both sides and every
    label keeps a training file (:func:`plan_split`); raises :class:`SplitError` (a ValueError)."""
    s = plan_split(labels, groups, val_fraction=val_fraction, seed=seed)
    return s.train, s.val
