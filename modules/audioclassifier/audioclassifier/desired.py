"""The last desired properties the module received, kept on disk for a start without the hub.

The hub side (:class:`~audioclassifier.hub.HubApp`) keeps the whole desired section as it stands
(the twin fetched at connect, with every later patch merged in: ``null`` removes a property) in
``<spool dir>/desired.json``, written atomically. :func:`audioclassifier.config.load_config`
reads it back at the next start (:func:`load_desired`), so a module that cannot reach its hub
starts from what the twin last said, never from the code's defaults; the twin's values still go
through the same checks (:func:`audioclassifier.hub.twin.apply_desired`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from audioclassifier.durable import atomic_file

__all__ = ["MAX_DESIRED_BYTES", "load_desired", "merge_patch", "save_desired"]

log = logging.getLogger(__name__)

#: IoT Hub keeps at most 32 KB of desired properties; a larger document is not kept.
MAX_DESIRED_BYTES = 64 * 1024


def merge_patch(doc: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with ``patch`` merged in as IoT Hub merges desired patches (``null`` removes)."""
    out = {k: v for k, v in doc.items()}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_patch(out[k], v)
        else:
            out[k] = v
    return out


def save_desired(path: Path, doc: Mapping[str, Any]) -> bool:
    """Keep ``doc`` at ``path`` atomically; False (logged) when it is too large or cannot be written."""
    try:
        data = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        log.warning("desired properties not kept: not JSON (%s)", exc)
        return False
    if len(data) > MAX_DESIRED_BYTES:
        log.warning("desired properties not kept: %d bytes (at most %d)", len(data), MAX_DESIRED_BYTES)
        return False
    try:
        with atomic_file(path) as fh:
            fh.write(data)
    except OSError as exc:
        log.warning("desired properties not kept: %s", exc)
        return False
    return True


def load_desired(path: Path) -> dict[str, Any] | None:
    """The desired properties kept at ``path``; None when there are none or they are unreadable (logged)."""
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_DESIRED_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("the kept desired properties %s are unreadable (%s): not used", path, exc)
        return None
    if not isinstance(doc, dict):
        log.warning("the kept desired properties %s are not an object: not used", path)
        return None
    return doc
