"""IoT Plug and Play: the module's model ID and the writable-property acknowledgements.

The module implements the DTDL v3 interface ``modules/audioclassifier/dtdl/`` (:data:`MODEL_ID`),
announced when it connects (the SDK puts ``model-id`` in the MQTT user name when ``product_info``
is a DTMI). Its properties and commands are the root interface's; the messages' fields are the
telemetry of two components, ``alerts`` and ``telemetry`` (:data:`COMPONENTS`). Every writable property (a twin setting: ``threshold``, ..., ``upload``, ``model``)
is acknowledged under its own name in the reported properties, by the Plug and Play convention:

``{"value": <the value in force>, "ac": <code>, "av": <the desired $version>, "ad": <description>}``

* ``ac`` 200: applied (a ``null`` in a patch: back to the start value);
* ``ac`` 202: accepted, in progress (a new model downloading; 200 or 500 follows);
* ``ac`` 203: not in the desired properties: the start value is in force (``av`` 0);
* ``ac`` 400: refused (``ad`` says why, quoting at most 60 characters of the value); the value
  in force stays and is the one reported;
* ``ac`` 500: the runtime could not apply it (a device that is not there), or the model failed.

A desired property the interface does not have is refused the same way (``value`` null) and
its acknowledgement removed once the property is. :func:`acknowledgements` is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..constraints import SETTINGS

__all__ = ["COMPONENTS", "MODEL_ID", "WRITABLE", "ack", "acknowledgements", "desired_version", "property_value"]

#: The DTDL interface this module implements (modules/audioclassifier/dtdl/dtmi/auscult/audioclassifier-1.json).
MODEL_ID = "dtmi:auscult:audioclassifier;1"

#: Output → the component whose telemetry its messages carry (the message property ``$.sub``):
#: alert and telemetry bodies share field names with the settings (``threshold``, ``machine``,
#: ``model``), and one DTDL interface cannot hold a telemetry and a property of the same name.
COMPONENTS = {"alerts": "alerts", "telemetry": "telemetry"}

#: The writable properties: the twin settings, nested ones (``upload.enabled``) under their object.
WRITABLE: tuple[str, ...] = tuple(dict.fromkeys(name.split(".")[0] for name in SETTINGS))


def ack(value: Any, code: int, version: int, description: str) -> dict[str, Any]:
    return {"value": value, "ac": code, "av": version, "ad": description}


def desired_version(desired: Mapping[str, Any]) -> int:
    v = desired.get("$version") if isinstance(desired, Mapping) else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def property_value(name: str, settings: Mapping[str, Any], threshold: float | None) -> Any:
    """What is in force for writable property ``name`` (``settings``: ``Settings.to_dict()``):
    ``threshold`` unset reports the threshold in force; ``model`` leaves its URL out (a secret)."""
    value = settings.get(name)
    if name == "threshold" and value is None:
        return threshold
    if name == "model" and isinstance(value, Mapping):
        return {k: v for k, v in value.items() if k != "url"}
    return value


def acknowledgements(desired: Mapping[str, Any], *, complete: bool, rejected: Mapping[str, str],
                     settings: Mapping[str, Any], threshold: float | None, failure: str | None = None,
                     known_unknown: set[str] | None = None) -> dict[str, Any]:
    """The reported acknowledgements for ``desired`` (a patch, or the whole section when
    ``complete``): one per writable property it names (all of them when ``complete``), one per
    unknown name it sets, and ``None`` for unknown names it removed (or, when ``complete``, that
    ``known_unknown`` acknowledged before and it no longer has). ``rejected``: field → reason
    (dotted fields under their property); ``failure``: the runtime refused the whole change.
    ``model`` is acknowledged here only when refused or absent (the caller acknowledges downloads)."""
    version = desired_version(desired)
    out: dict[str, Any] = {}
    named = [k for k in desired if isinstance(k, str) and not k.startswith("$")]
    for name in WRITABLE:
        value = property_value(name, settings, threshold)
        reasons = [f"{f}: {r}" for f, r in rejected.items() if f == name or f.startswith(name + ".")]
        if reasons:
            out[name] = ack(value, 400, version, "refused, the value in force stays: " + "; ".join(reasons))
        elif name not in named:
            if complete:
                out[name] = ack(value, 203, 0, "not in the desired properties: the start value is in force")
        elif failure is not None:
            out[name] = ack(value, 500, version, f"not applied: {failure}")
        elif name == "model":
            continue
        elif desired[name] is None:
            out[name] = ack(value, 200, version, "removed from the desired properties: back to the start value")
        else:
            out[name] = ack(value, 200, version, "applied")
    for name in named:
        if name in WRITABLE:
            continue
        if desired[name] is None:
            out[name[:64]] = None
        else:
            reason = rejected.get(name[:64], "unknown setting")
            out[name[:64]] = ack(None, 400, version, f"refused: {reason}")
    if complete:
        for name in (known_unknown or set()) - set(named):
            out[name] = None
    return out
