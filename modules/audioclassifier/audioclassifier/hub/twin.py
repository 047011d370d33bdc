"""Desired properties → the settings to put in force: pure functions, no SDK, no threads.

:func:`apply_desired` takes a desired-properties document (a patch, or the complete desired
section fetched at connect), the settings in force and the settings the module started with, and
returns what to apply, what it refused and why, and which model the twin asks for:

* a refused value keeps the value in force; ``rejected`` says why (field → reason; reasons quote
  at most 60 characters of the value, so a 1 MB value is never echoed back), and the hub side
  acknowledges it by the IoT Plug and Play convention (``ac`` 400 under the property: :mod:`.pnp`);
* ``null`` in a patch (a removed property) returns the setting to its *start* value (command line,
  environment, deployment; a site calibration's threshold), not to the code's default; in a
  complete document, a setting that is absent returns to its start value the same way;
* ``model`` is never put in force here: it changes only once the new model is downloaded,
  verified and swapped in (:mod:`.ota`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ..settings import ModelRef, Settings
from .sdkjson import REFUSED

__all__ = ["DesiredOutcome", "apply_desired"]

_FIELDS = tuple(f.name for f in fields(Settings))


@dataclass(frozen=True)
class DesiredOutcome:
    """What a desired document asks for: ``settings`` to put in force (``model`` unchanged),
    ``rejected`` fields with reasons, and the ``model`` the twin names (may be the one in force)."""

    settings: Settings
    rejected: dict[str, str]
    model: ModelRef


def apply_desired(desired: Mapping[str, Any], *, current: Settings, start: Settings,
                  complete: bool = False) -> DesiredOutcome:
    """See the module docstring. ``complete``: ``desired`` is the whole desired section."""
    if not isinstance(desired, Mapping):
        return DesiredOutcome(current, {"$": f"desired properties must be an object, got {type(desired).__name__}"},
                              current.model)
    if REFUSED in desired:  # the SDK's bounded parser refused the document (hub/sdkjson.py)
        return DesiredOutcome(current, {"$": str(desired[REFUSED])}, current.model)
    # A null removes a property: removing one the module does not know (a typo fixed) is no error.
    patch: dict[str, Any] = {k: v for k, v in desired.items() if v is not None or k in _FIELDS}
    if complete:
        for name in _FIELDS:
            if name != "model":
                patch.setdefault(name, None)  # absent from the twin: back to the start value
    new, errors = current.apply_patch(patch, start=start)
    return DesiredOutcome(settings=replace(new, model=current.model), rejected={e.field: e.reason for e in errors},
                          model=new.model)
