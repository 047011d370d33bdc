"""Every twin setting is read by exactly one part of the module (upload.enabled and max_per_hour were
validated, reported and documented, and read by nothing: with enabled false every clip was uploaded).

The check reads the package's source: attribute reads of a setting on a settings object
(``settings.X``, ``s.X``, ``self._settings.X``, the uploader's ``policy.X``, the updater's
``ref.X``) are collected per file, and must come from the one consumer named here (the composition
root may read the start values of what it compiles the first model with).
"""

from __future__ import annotations

import ast
from pathlib import Path

from audioclassifier.constraints import SETTINGS

PACKAGE = Path(__file__).resolve().parents[2] / "modules" / "audioclassifier" / "audioclassifier"

#: setting → the file that acts on it.
CONSUMERS = {
    "threshold": "pipeline.py", "hop_seconds": "pipeline.py", "consecutive": "pipeline.py",
    "cooldown_seconds": "pipeline.py", "energy_gate_dbfs": "pipeline.py",
    "telemetry_interval_seconds": "pipeline.py", "machine": "pipeline.py", "health_window_seconds": "pipeline.py",
    "device": "runtime.py", "precision": "runtime.py",
    "upload.enabled": "hub/uploader.py", "upload.max_per_hour": "hub/uploader.py",
    "model.url": "hub/ota.py", "model.sha256": "hub/ota.py", "model.version": "hub/ota.py",
}
#: files that carry settings without acting on them (definitions, checks, reports, wiring)
CARRIERS = {"settings.py", "constraints.py", "config.py", "hub/twin.py", "status.py"}
#: files that read the settings in force only to score an upload as the module would (POST /api/score),
#: acting on nothing the module does
VIEWS = {"web/handlers.py"}
SETTINGS_OBJECTS = {"settings", "s", "policy", "ref", "new", "old"}


def _reads(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not isinstance(node.ctx, ast.Load):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        if name in SETTINGS_OBJECTS or name.endswith("settings"):
            out.add(node.attr)
        if isinstance(owner, ast.Attribute) and owner.attr in ("upload", "model"):
            inner = owner.value
            inner_name = inner.id if isinstance(inner, ast.Name) else getattr(inner, "attr", "")
            if inner_name in SETTINGS_OBJECTS or inner_name.endswith("settings"):
                out.add(f"{owner.attr}.{node.attr}")
    return out


def test_every_setting_has_exactly_one_consumer() -> None:
    assert set(CONSUMERS) == set(SETTINGS), "a setting without a named consumer (or a stale name)"
    readers: dict[str, set[str]] = {name: set() for name in SETTINGS}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        reads = _reads(ast.parse(path.read_text()))
        for name in SETTINGS:
            leaf = name.split(".")[-1]
            if name in reads or (leaf in reads and rel in (CONSUMERS[name],)):
                readers[name].add(rel)
    for name, consumer in CONSUMERS.items():
        found = readers[name] - CARRIERS - VIEWS - {"__main__.py"}
        assert consumer in readers[name] or consumer in found, f"{name}: {consumer} does not read it"
        assert found <= {consumer}, f"{name} is read by {sorted(found)}, expected only {consumer}"
