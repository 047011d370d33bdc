"""Twin settings: valid patches apply, bad values are refused with a reason and the old value kept."""

from __future__ import annotations

import pytest

from audioclassifier.settings import ModelRef, Settings, SettingsError, UploadSettings

SHA = "ab" * 32


def test_valid_patch_applies_and_leaves_original_untouched() -> None:
    s = Settings()
    new, errors = s.apply_patch({"threshold": 0.8, "consecutive": 3, "device": "cpu", "machine": " fan-7 ",
                                 "upload": {"max_per_hour": 10}, "$version": 12})
    assert errors == []
    assert (new.threshold, new.consecutive, new.device, new.machine) == (0.8, 3, "CPU", "fan-7")
    assert new.upload == UploadSettings(enabled=True, max_per_hour=10)
    assert s == Settings()  # frozen: the caller keeps the old settings until it swaps


@pytest.mark.parametrize(
    "patch,field,reason",
    [
        ({"threshold": "high"}, "threshold", "finite number"),
        ({"threshold": float("nan")}, "threshold", "finite number"),
        ({"hop_seconds": 0}, "hop_seconds", "must be in"),
        ({"consecutive": 1.5}, "consecutive", "integer"),
        ({"precision": "int8"}, "precision", "one of"),
        ({"precision": 16}, "precision", "one of"),
        ({"consecutive": True}, "consecutive", "integer"),
        ({"cooldown_seconds": -1}, "cooldown_seconds", "must be in"),
        ({"energy_gate_dbfs": 3}, "energy_gate_dbfs", "must be in"),
        ({"telemetry_interval_seconds": 0.1}, "telemetry_interval_seconds", "must be in"),
        ({"device": "TPU"}, "device", "AUTO, CPU, GPU, NPU"),
        ({"machine": ""}, "machine", "non-empty"),
        ({"upload": {"enabled": "yes"}}, "upload.enabled", "true or false"),
        ({"upload": {"max_per_hour": -2}}, "upload.max_per_hour", "must be in"),
        ({"upload": {"speed": 1}}, "upload.speed", "unknown"),
        ({"upload": 5}, "upload", "object"),
        ({"model": {"url": "http://x/m.onnx", "sha256": SHA, "version": "2"}}, "model.url", "https"),
        ({"model": {"url": "https://x/m.onnx", "sha256": "abc", "version": "2"}}, "model.sha256", "64"),
        ({"model": {"url": "https://x/m.onnx", "sha256": SHA}}, "model.version", "non-empty"),
        ({"colour": "red"}, "colour", "unknown setting"),
    ],
)
def test_bad_values_are_refused_with_reason_and_old_value_kept(patch: dict, field: str, reason: str) -> None:
    old = Settings(threshold=0.5, consecutive=4, upload=UploadSettings(enabled=False, max_per_hour=7))
    new, errors = old.apply_patch(patch)
    assert len(errors) == 1 and errors[0].field == field and reason in errors[0].reason
    assert new == old


def test_mixed_patch_applies_good_fields_and_refuses_bad_ones() -> None:
    new, errors = Settings().apply_patch({"threshold": 0.9, "hop_seconds": -1, "cooldown_seconds": 5})
    assert [e.field for e in errors] == ["hop_seconds"]
    assert (new.threshold, new.hop_seconds, new.cooldown_seconds) == (0.9, 1.0, 5.0)


def test_null_resets_to_default_and_model_ref_normalised() -> None:
    s, _ = Settings().apply_patch({"threshold": 0.9})
    s, errors = s.apply_patch({"threshold": None, "model": {"url": "file:///m.onnx", "sha256": SHA.upper(), "version": "7"}})
    assert errors == [] and s.threshold is None
    assert s.model == ModelRef(url="file:///m.onnx", sha256=SHA, version="7")


def test_from_mapping_is_strict_and_to_dict_roundtrips() -> None:
    s = Settings.from_mapping({"hop_seconds": 0.5, "upload": {"enabled": False}})
    assert Settings.from_mapping(s.to_dict()) == s
    with pytest.raises(SettingsError, match="hop_seconds"):
        Settings.from_mapping({"hop_seconds": "fast"})
    _, errors = Settings().apply_patch(["not", "a", "mapping"])
    assert errors and "object" in errors[0].reason
