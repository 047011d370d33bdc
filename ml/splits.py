"""Train/validation splits that keep groups apart: no machine (or recording) on both sides."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["group_split"]

log = logging.getLogger(__name__)


def group_split(
    labels: Sequence[str], groups: Sequence[str], *, val_fraction: float = 0.25, seed: int = 0,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)`` of files such that no group is on both sides.

    With ``stratify``, :class:`~sklearn.model_selection.StratifiedGroupKFold` keeps the label
    mix of both sides alike (the first of ``round(1 / val_fraction)`` folds is the validation
    side); otherwise :class:`~sklearn.model_selection.GroupShuffleSplit`. With a single group
    (one machine), each file becomes its own group: recordings are still kept apart.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels, dtype=object)
    groups = np.asarray(groups, dtype=object)
    n = len(labels)
    if n < 2:
        raise ValueError(f"need at least 2 files to split into training and validation, got {n}")
    if len(set(groups)) < 2:
        log.warning("only one group (%s): splitting by recording instead of by machine", groups[0])
        groups = np.arange(n).astype(str).astype(object)
    n_groups = len(set(groups))
    idx = np.arange(n)
    train = val = np.empty(0, dtype=np.int64)
    if stratify and len(set(labels)) > 1:
        k = int(min(n_groups, max(2, round(1 / val_fraction))))
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "least populated class has only ..."
                train, val = next(sgkf.split(idx, labels.astype(str), groups.astype(str)))
        except ValueError:  # too few members of some label for k folds: fall back to a plain group split
            pass
    if len(train) == 0 or len(val) == 0:
        gss = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
        train, val = next(gss.split(idx, groups=groups.astype(str)))
    if len(train) == 0 or len(val) == 0:
        raise ValueError("the split left one side empty: add files or groups")
    return np.sort(train), np.sort(val)
