"""The module's IoT Plug and Play model (modules/audioclassifier/dtdl/, DTDL v3) is valid and says what
the code does: every twin setting is a writable property of the same schema, every direct method a
command whose request has the method's arguments, every field of the alert and telemetry messages a
telemetry of the output's component, and the model ID the module announces is the model's.

Validity is decided by the real DTDL parser (DTDLParser for .NET, compiled to WebAssembly: npm
@digicatapult/dtdl-parser, installed by .ci/run into build/dtdl-parser); without it the parser test
skips locally and fails in CI. The messages and the status themselves are checked against the model
in tests/integration/test_pnp.py, from the real module.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from audioclassifier.constraints import METHODS, SETTINGS, Param
from audioclassifier.events import Alert, Telemetry
from audioclassifier.health import HealthTracker
from audioclassifier.hub.pnp import COMPONENTS, MODEL_ID, WRITABLE
from harness.dtdl import DTDL_DIR, check_value, contents, interfaces, parse_with_dtdl_parser
from harness.paths import REPO

PARSER_DIR = REPO / "build" / "dtdl-parser"


def _parser() -> Path:
    if shutil.which("node") and (PARSER_DIR / "node_modules" / "@digicatapult" / "dtdl-parser").is_dir():
        return PARSER_DIR
    if os.environ.get("CI"):
        pytest.fail("the DTDL parser is required in CI (.ci/run installs it into build/dtdl-parser)")
    pytest.skip("the DTDL parser is not installed (run .ci/run once: npm @digicatapult/dtdl-parser)")


def _files() -> list[Path]:
    return sorted(DTDL_DIR.rglob("*.json"))


def test_the_real_dtdl_parser_accepts_the_model_and_refuses_a_broken_copy(tmp_path: Path) -> None:
    parser = _parser()
    ok, text = parse_with_dtdl_parser(parser, _files())
    assert ok, text
    assert "3 interfaces" in text
    # the same parser refuses a model with a telemetry named like a property (the reason for the components)
    root = json.loads((DTDL_DIR / "dtmi" / "auscult" / "audioclassifier-1.json").read_text())
    broken = copy.deepcopy(root)
    broken["contents"].append({"@type": "Telemetry", "name": "threshold", "schema": "double"})
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken))
    others = [p for p in _files() if not p.name.startswith("audioclassifier")]
    ok, text = parse_with_dtdl_parser(parser, [bad, *others])
    assert not ok and "threshold" in text


def test_files_are_laid_out_as_a_model_repository() -> None:
    """dtmi:auscult:audioclassifier;1 → dtmi/auscult/audioclassifier-1.json (IoT Explorer, dmr-client)."""
    model, _ = interfaces()
    for path in _files():
        iface = json.loads(path.read_text())
        dtmi = iface["@id"]
        name, version = dtmi.split(";")
        expected = Path(*name.lower().split(":")[:-1], f"{name.lower().split(':')[-1]}-{version}.json")
        assert path.relative_to(DTDL_DIR) == expected
        assert iface["@context"] == "dtmi:dtdl:context;3"
    assert MODEL_ID in model


def _schema_of(param: Param) -> object:
    if param.choices:
        return {"@type": "Enum", "values": sorted(param.choices)}
    return {float: "double", int: "integer", bool: "boolean", str: "string"}[param.kind]


def _normal(schema: object) -> object:
    if isinstance(schema, dict) and schema.get("@type") == "Enum":
        return {"@type": "Enum", "values": sorted(e["enumValue"] for e in schema["enumValues"])}
    return schema


def test_every_setting_is_a_writable_property_of_its_schema() -> None:
    model, _ = interfaces()
    root = model[MODEL_ID]
    props = contents(root, "Property")
    writable = {n for n, p in props.items() if p.get("writable")}
    assert writable == set(WRITABLE), "the writable properties are the twin's settings, no more, no less"
    for name, param in SETTINGS.items():
        top, _, leaf = name.partition(".")
        schema = props[top]["schema"]
        if leaf:
            fields = {f["name"]: f["schema"] for f in schema["fields"]}
            assert leaf in fields, name
            schema = fields[leaf]
        assert _normal(schema) == _schema_of(param), name
    for top in WRITABLE:  # an object property has no field the settings lack
        schema = props[top]["schema"]
        if isinstance(schema, dict) and schema["@type"] == "Object":
            assert {f"{top}.{f['name']}" for f in schema["fields"]} <= set(SETTINGS), top


def test_every_method_is_a_command_with_the_methods_arguments() -> None:
    model, _ = interfaces()
    commands = contents(model[MODEL_ID], "Command")
    assert set(commands) == set(METHODS)
    for name, table in METHODS.items():
        request = commands[name].get("request")
        if not table:
            assert request is None, name
            continue
        fields = {f["name"]: f["schema"] for f in request["schema"]["fields"]}
        assert set(fields) == set(table), name
        for arg, param in table.items():
            assert _normal(fields[arg]) == _schema_of(param), f"{name}.{arg}"


def test_every_message_field_is_a_telemetry_of_its_outputs_component() -> None:
    model, named = interfaces()
    components = contents(model[MODEL_ID], "Component")
    assert {c: components[c]["schema"] for c in COMPONENTS.values()} == {
        "alerts": "dtmi:auscult:alerts;1", "telemetry": "dtmi:auscult:telemetry;1"}
    health = HealthTracker(60)
    health.update(1.5, 1.0, 1_763_700_000.0)
    explanation = {"summary": "+9 dB at 2.1-4.3 kHz, impulsive", "reference": {"source": "running", "windows": 40},
                   "bands": [{"low_hz": 2100.0, "high_hz": 4300.0, "level_db": 9.2, "variability_db": 4.1,
                              "departure": 12.0, "kind": "impulsive"}]}
    alert = Alert(machine="m", label="anomaly", score=2.0, threshold=1.0, window_start=1_763_700_000.0,
                  window_end=1_763_700_002.0, audio_offset_seconds=3.0, model="v", seq=1, clip="m/x.wav",
                  health=health.status(), explanation=explanation).to_message()
    telemetry = Telemetry(machine="m", interval_start=1_763_700_000.0, interval_end=1_763_700_060.0, windows=60,
                          scored=60, mean_score=0.4, max_score=2.0, level_dbfs=-30.0, state="running", model="v",
                          seq=1, alerts=1, health=health.status()).to_message()
    for output, body in (("alerts", alert), ("telemetry", telemetry)):
        iface = model[components[COMPONENTS[output]]["schema"]]
        telemetries = contents(iface, "Telemetry")
        assert set(body) == set(telemetries), output
        for name, value in body.items():
            check_value(value, telemetries[name]["schema"], named, where=f"{output}.{name}", strict=True)


def test_the_value_check_refuses_what_does_not_fit() -> None:
    """The checker the integration tests rely on fails on wrong values (so their passing means something)."""
    _, named = interfaces()
    health = named["dtmi:auscult:audioclassifier:Health;1"]
    check_value({"index": 40, "state": "watch", "trend_per_day": -3.5, "since": "2026-01-01T00:00:00.000Z",
                 "windows": 9}, health, named, strict=True)
    for bad in ({"index": "40"}, {"state": "bad"}, {"since": "yesterday"}, {"colour": 1}, {"index": 1.5}):
        with pytest.raises(AssertionError):
            check_value(bad, health, named, strict=True)
