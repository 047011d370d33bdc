"""Module settings: the twin's desired properties, checked against one table (:data:`constraints.SETTINGS`).

Every setting is optional in the twin; :class:`Settings` holds the values in force. A desired
patch is applied with :meth:`Settings.apply_patch`, which returns new settings (the old object is
untouched) and the per-field errors for the values it refused, so the caller can report them and
keep the old values. ``threshold`` None means "use the model card's threshold".

A twin ``null`` removes a property: the setting returns to the value the module *started* with
(command line, environment, deployment), passed as ``start``, not to the code's default: a device
started with ``AUSCULT_HOP_SECONDS=0.5`` keeps 0.5 when the twin drops ``hop_seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from audioclassifier.constraints import DEVICES, PRECISIONS, SETTINGS, ConstraintError
from audioclassifier.errors import AuscultError

__all__ = ["DEVICES", "PRECISIONS", "ModelRef", "Settings", "SettingsError", "UploadSettings"]


class SettingsError(AuscultError, ValueError):
    """One refused setting: ``field`` names it (dotted for nested ones) and ``reason`` says why."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field = field_name
        self.reason = reason
        super().__init__(f"{field_name}: {reason}")


def _default(name: str) -> Any:
    return SETTINGS[name].default


@dataclass(frozen=True)
class UploadSettings:
    """Clip uploads: on or off, and a rate limit so a flapping machine cannot flood storage."""

    enabled: bool = _default("upload.enabled")
    max_per_hour: int = _default("upload.max_per_hour")


@dataclass(frozen=True)
class ModelRef:
    """A model to download over the air: where, its SHA-256, and the version to report."""

    url: str = ""
    sha256: str = ""
    version: str = ""


@dataclass(frozen=True)
class Settings:
    """The values in force; defaults and limits come from :data:`constraints.SETTINGS`."""

    threshold: float | None = _default("threshold")
    hop_seconds: float = _default("hop_seconds")
    consecutive: int = _default("consecutive")
    cooldown_seconds: float = _default("cooldown_seconds")
    energy_gate_dbfs: float = _default("energy_gate_dbfs")
    telemetry_interval_seconds: float = _default("telemetry_interval_seconds")
    health_window_seconds: float = _default("health_window_seconds")
    device: str = _default("device")
    precision: str = _default("precision")
    upload: UploadSettings = field(default_factory=UploadSettings)
    model: ModelRef = field(default_factory=ModelRef)
    machine: str = _default("machine")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as reported in the twin."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> Settings:
        """Strict build from a mapping (e.g. a config file): any bad value raises SettingsError."""
        new, errors = cls().apply_patch(d)
        if errors:
            raise errors[0]
        return new

    def apply_patch(self, patch: Mapping[str, Any], *, start: Settings | None = None,
                    ) -> tuple[Settings, list[SettingsError]]:
        """Apply a desired-properties patch; refuse bad fields one by one, keeping their old value.

        Keys starting with ``$`` (``$version``) are twin metadata and ignored; unknown keys are
        reported as errors so an operator sees a typo. ``None`` returns a field to its value in
        ``start`` (the settings the module started with; the code's defaults if not given).
        """
        if not isinstance(patch, Mapping):
            return self, [SettingsError("$", f"desired properties must be an object, got {type(patch).__name__}")]
        start = start or Settings()
        changes: dict[str, Any] = {}
        errors: list[SettingsError] = []
        for key, value in patch.items():
            if not isinstance(key, str) or key.startswith("$"):
                continue
            try:
                if value is None and key in _FIELDS:
                    changes[key] = getattr(start, key)
                elif key == "upload":
                    changes[key] = _upload(value, self.upload, start.upload)
                elif key == "model":
                    changes[key] = _model(value)
                elif key in SETTINGS:
                    changes[key] = SETTINGS[key].check(value)
                else:
                    raise SettingsError(key[:64], "unknown setting")
            except ConstraintError as exc:
                errors.append(SettingsError(exc.name, exc.reason))
            except SettingsError as exc:
                errors.append(exc)
        return replace(self, **changes), errors


_FIELDS = {f for f in Settings.__dataclass_fields__}


def _upload(v: Any, current: UploadSettings, start: UploadSettings) -> UploadSettings:
    if not isinstance(v, Mapping):
        raise SettingsError("upload", f"must be an object with enabled, max_per_hour, got {type(v).__name__}")
    out = current
    for k, x in v.items():
        if not isinstance(k, str) or k.startswith("$"):
            continue
        name = f"upload.{k}"
        if name not in SETTINGS:
            raise SettingsError(name[:64], "unknown setting")
        out = replace(out, **{k: getattr(start, k) if x is None else SETTINGS[name].check(x)})
    return out


def _model(v: Any) -> ModelRef:
    if not isinstance(v, Mapping):
        raise SettingsError("model", f"must be an object with url, sha256, version, got {type(v).__name__}")
    parts = {k: v.get(k, "") for k in ("url", "sha256", "version")}
    if all(x in ("", None) for x in parts.values()):
        return ModelRef()  # no over-the-air model: the one in the image (or --model) stays
    checked = {k: SETTINGS[f"model.{k}"].check(x if x is not None else "") for k, x in parts.items()}
    return ModelRef(url=checked["url"], sha256=checked["sha256"].lower(), version=checked["version"])
