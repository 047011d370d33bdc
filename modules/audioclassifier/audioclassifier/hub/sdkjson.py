"""Bounded JSON parsing for what the IoT Hub SDK receives (method payloads, desired patches).

azure-iot-device 2.x parses an incoming method payload with ``json.loads`` inside its MQTT
pipeline, before any handler of ours runs. A payload nested a few thousand levels deep raises
``RecursionError`` there, the request is dropped, and the caller waits for an answer that never
comes. :func:`install` gives that pipeline module a ``json`` whose ``loads`` refuses such input
before decoding it, returning a marker object that :mod:`.methods` answers with 400 (and the twin
code refuses like any bad value): every request gets an answer, in bounded time and memory.

This touches one module-level name of the SDK (its ``json`` import), on purpose and in one place;
the SDK's own behaviour is otherwise unchanged.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

__all__ = ["MAX_BYTES", "MAX_DEPTH", "REFUSED", "install", "loads", "nesting_depth"]

log = logging.getLogger(__name__)

#: Deepest nesting accepted (arrays and objects); IoT Hub twins allow 10 levels, methods less.
MAX_DEPTH = 32
#: Largest document parsed (IoT Hub caps method payloads at 128 KB and twins at 32 KB; parsing a
#: few MB is cheap, deep nesting is what breaks the parser).
MAX_BYTES = 4 * 2**20
#: The key of the marker object returned in place of a refused document.
REFUSED = "$auscult_refused"


def nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text (brackets inside strings are not counted)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class _BoundedJson:
    """The ``json`` module, but ``loads`` refuses oversized or deeply nested documents."""

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)

    @staticmethod
    def loads(s: str | bytes, **kw: Any) -> Any:
        text = s.decode("utf-8", errors="replace") if isinstance(s, (bytes, bytearray)) else s
        if len(text) > MAX_BYTES:
            return _refused(text, f"payload of {len(text)} bytes is larger than {MAX_BYTES}")
        depth = nesting_depth(text)
        if depth > MAX_DEPTH:
            return _refused(text, f"payload nested {depth} levels deep (at most {MAX_DEPTH})")
        try:
            return json.loads(text, **kw)
        except (ValueError, RecursionError) as exc:
            return _refused(text, f"payload is not JSON ({type(exc).__name__})")


def _refused(text: str, reason: str) -> dict[str, Any]:
    """The marker for a refused document; a twin patch's ``$version`` is kept (the SDK needs it)."""
    out: dict[str, Any] = {REFUSED: reason}
    found = re.findall(r'"\$version"\s*:\s*(\d+)', text[-4096:])
    if found:
        out["$version"] = int(found[-1])
    return out


loads = _BoundedJson.loads


def install() -> None:
    """Give the SDK's MQTT translation stage the bounded ``json`` (idempotent)."""
    try:
        from azure.iot.device.iothub.pipeline import pipeline_stages_iothub_mqtt as stage
    except ImportError:  # another SDK layout: nothing to guard
        log.debug("hub: SDK pipeline module not found; payloads parsed by the SDK as they are")
        return
    if not isinstance(getattr(stage, "json", None), _BoundedJson):
        stage.json = _BoundedJson()  # type: ignore[assignment]
