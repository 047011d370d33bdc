"""The module's DTDL model (modules/audioclassifier/dtdl/) read for tests: its interfaces, their
contents, and a check that a JSON value fits a DTDL schema (what IoT Central or Azure Digital Twins
would make of a message, a reported property or a command's answer).

The check follows DTDL v3's schemas: primitives (``boolean``, ``double``, ``integer``, ``long``,
``string``, ``dateTime``), ``Object`` (fields), ``Map``, ``Array``, ``Enum`` and schemas named by
``@id`` in an interface's ``schemas``. ``null`` stands for "not sent" and fits any schema.
``strict`` objects must not carry fields the schema lacks (top-level bodies and status); nested
ones may (a consumer shows them as unmodelled).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.paths import REPO

DTDL_DIR = REPO / "modules" / "audioclassifier" / "dtdl"

__all__ = ["DTDL_DIR", "check_value", "interfaces", "load_model"]


def load_model() -> dict[str, dict[str, Any]]:
    """Every interface under :data:`DTDL_DIR`, by ``@id``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(DTDL_DIR.rglob("*.json")):
        doc = json.loads(path.read_text())
        for iface in doc if isinstance(doc, list) else [doc]:
            out[iface["@id"]] = iface
    return out


def interfaces() -> tuple[dict[str, Any], dict[str, Any]]:
    """(interfaces by @id, named schemas by @id)."""
    model = load_model()
    named: dict[str, Any] = {}
    for iface in model.values():
        for schema in iface.get("schemas", []):
            named[schema["@id"]] = schema
    return model, named


def contents(iface: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in iface["contents"] if c["@type"] == kind or kind in c["@type"]}


_PRIMITIVES = {
    "boolean": lambda v: isinstance(v, bool),
    "double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**31 <= v < 2**31,
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
}


def _datetime(v: Any) -> bool:
    if not isinstance(v, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", v):
        return False
    datetime.fromisoformat(v.replace("Z", "+00:00"))
    return True


def check_value(value: Any, schema: Any, named: dict[str, Any], *, where: str = "$", strict: bool = False) -> None:
    """Raise AssertionError (naming the place) unless ``value`` fits ``schema``."""
    if value is None:
        return
    if isinstance(schema, str):
        if schema in named:
            return check_value(value, named[schema], named, where=where, strict=strict)
        if schema == "dateTime":
            assert _datetime(value), f"{where}: {value!r} is not a dateTime"
            return
        assert schema in _PRIMITIVES, f"{where}: unknown schema {schema!r}"
        assert _PRIMITIVES[schema](value), f"{where}: {value!r} is not a {schema}"
        return
    kind = schema["@type"]
    if kind == "Object":
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        fields = {f["name"]: f["schema"] for f in schema["fields"]}
        if strict:
            extra = set(value) - set(fields)
            assert not extra, f"{where}: fields the model does not have: {sorted(extra)}"
        for name, sub in fields.items():
            check_value(value.get(name), sub, named, where=f"{where}.{name}", strict=strict)
    elif kind == "Map":
        assert isinstance(value, dict), f"{where}: {value!r} is not a map"
        for k, v in value.items():
            check_value(k, schema["mapKey"]["schema"], named, where=f"{where} key", strict=strict)
            check_value(v, schema["mapValue"]["schema"], named, where=f"{where}[{k}]", strict=strict)
    elif kind == "Array":
        assert isinstance(value, list), f"{where}: {value!r} is not an array"
        for i, v in enumerate(value):
            check_value(v, schema["elementSchema"], named, where=f"{where}[{i}]", strict=strict)
    elif kind == "Enum":
        allowed = [e["enumValue"] for e in schema["enumValues"]]
        assert value in allowed, f"{where}: {value!r} is not one of {allowed}"
    else:
        raise AssertionError(f"{where}: schema type {kind!r} is not handled")


def parse_with_dtdl_parser(parser_dir: Path, files: list[Path]) -> tuple[bool, str]:
    """Run the real DTDL parser (DTDLParser for .NET as WebAssembly, npm @digicatapult/dtdl-parser,
    installed under ``parser_dir``) over ``files`` together: (valid, its message)."""
    import subprocess

    script = (
        "import { getInterop } from '@digicatapult/dtdl-parser';\n"
        "import fs from 'fs';\n"
        "const parser = await getInterop();\n"
        "const docs = process.argv.slice(2).map(f => JSON.parse(fs.readFileSync(f, 'utf-8')));\n"
        "try { const out = JSON.parse(parser.parse(JSON.stringify(docs)));\n"
        "  const n = Object.values(out).filter(e => e.EntityKind === 'Interface').length;\n"
        "  console.log(`VALID ${parser.parserVersion()}: ${n} interfaces`); }\n"
        "catch (e) { console.log('INVALID ' + (e.message || String(e))); process.exitCode = 3; }\n")
    runner = parser_dir / "parse-dtdl.mjs"
    runner.write_text(script)
    proc = subprocess.run(["node", str(runner), *map(str, files)], capture_output=True, text=True, timeout=180,
                          cwd=parser_dir)
    text = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0 and "VALID " in proc.stdout and "INVALID" not in proc.stdout, text
