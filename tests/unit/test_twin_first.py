"""The twin first: the desired properties kept on disk (desired.py), read by the one configuration load
(config.py), and the Plug and Play acknowledgements of what a desired document asks (hub/pnp.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audioclassifier.config import ConfigError, hub_config, load_config
from audioclassifier.desired import MAX_DESIRED_BYTES, load_desired, merge_patch, save_desired
from audioclassifier.hub.pnp import WRITABLE, acknowledgements
from audioclassifier.settings import Settings

EDGE = {"EdgeHubConnectionString": "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5;GatewayHostName=localhost",
        "EdgeModuleCACertificateFile": "/nonexistent/ca.pem"}


def test_patches_merge_as_iot_hub_merges_them() -> None:
    doc = {"threshold": 0.8, "upload": {"enabled": False, "max_per_hour": 5}, "machine": "p"}
    out = merge_patch(doc, {"threshold": None, "upload": {"max_per_hour": 9}, "hop_seconds": 0.5})
    assert out == {"upload": {"enabled": False, "max_per_hour": 9}, "machine": "p", "hop_seconds": 0.5}
    assert doc["threshold"] == 0.8  # the document itself is left as it was


def test_kept_desired_properties_round_trip_and_bad_files_are_not_used(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "desired.json"
    assert load_desired(path) is None
    assert save_desired(path, {"threshold": 0.8, "machine": "pump-9"})
    assert load_desired(path) == {"threshold": 0.8, "machine": "pump-9"}
    assert not list(path.parent.glob(".*.part"))  # written atomically: no temporary file left
    assert not save_desired(path, {"machine": "m" * MAX_DESIRED_BYTES})  # too large: the old one stays
    assert load_desired(path) == {"threshold": 0.8, "machine": "pump-9"}
    path.write_text("{not json")
    assert load_desired(path) is None
    path.write_text("[1, 2]")
    assert load_desired(path) is None


def test_the_one_configuration_load_reads_the_kept_desired_properties_and_the_twin_wait(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    save_desired(spool / "desired.json", {"threshold": 0.8})
    env = {**EDGE, "AUSCULT_SPOOL_DIR": str(spool), "AUSCULT_TWIN_WAIT_SECONDS": "2.5"}
    config = load_config([], env)
    assert config.hub is not None and config.hub.desired == {"threshold": 0.8}
    assert config.hub.twin_wait_seconds == 2.5 and config.hub.desired_path == spool / "desired.json"
    assert load_config(["--twin-wait-seconds", "0"], env).hub.twin_wait_seconds == 0.0  # the command line wins
    assert hub_config({**env, "AUSCULT_TWIN_WAIT_SECONDS": ""}).twin_wait_seconds == 5.0
    with pytest.raises(ConfigError, match="AUSCULT_TWIN_WAIT_SECONDS"):
        hub_config({**env, "AUSCULT_TWIN_WAIT_SECONDS": "-1"})
    assert load_config([], {"AUSCULT_SPOOL_DIR": str(spool)}).hub is None  # local mode: no twin


def _acks(desired, *, complete=False, rejected=None, failure=None, known=None, settings=None):
    return acknowledgements(desired, complete=complete, rejected=rejected or {}, failure=failure,
                            settings=(settings or Settings(machine="pump-1")).to_dict(), threshold=2.13,
                            known_unknown=known)


def test_acknowledgements_follow_the_plug_and_play_convention() -> None:
    acks = _acks({"$version": 9, "hop_seconds": 0.5, "threshold": None, "upload": {"max_per_hour": -1},
                  "colour": "red", "shade": None},
                 rejected={"upload.max_per_hour": "must be in [0, 3600], got -1", "colour": "unknown setting"},
                 settings=Settings(hop_seconds=0.5, machine="pump-1"))
    assert acks["hop_seconds"] == {"value": 0.5, "ac": 200, "av": 9, "ad": "applied"}
    assert acks["threshold"]["value"] == 2.13 and acks["threshold"]["ac"] == 200  # unset: the threshold in force
    assert acks["upload"]["ac"] == 400 and acks["upload"]["value"] == {"enabled": True, "max_per_hour": 60}
    assert "upload.max_per_hour: must be in [0, 3600]" in acks["upload"]["ad"]
    assert acks["colour"] == {"value": None, "ac": 400, "av": 9, "ad": "refused: unknown setting"}
    assert acks["shade"] is None  # an unknown property removed: its acknowledgement goes too
    assert "machine" not in acks and "model" not in acks  # a patch acknowledges what it names

    whole = _acks({"$version": 10, "consecutive": 3}, complete=True, known={"colour"})
    assert set(whole) == set(WRITABLE) | {"colour"} and whole["colour"] is None
    assert whole["consecutive"]["ac"] == 200 and whole["consecutive"]["av"] == 10
    assert whole["machine"] == {"value": "pump-1", "ac": 203, "av": 0,
                                "ad": "not in the desired properties: the start value is in force"}
    assert "url" not in whole["model"]["value"]

    failed = _acks({"$version": 11, "device": "GPU"}, failure="ModelError: no GPU")
    assert failed["device"] == {"value": "AUTO", "ac": 500, "av": 11, "ad": "not applied: ModelError: no GPU"}
    json.dumps([acks, whole, failed], allow_nan=False)
