"""Module settings: the twin's desired properties, validated; a bad value is refused with a reason.

Every setting is optional in the twin; :class:`Settings` holds the values in force. A desired
patch is applied with :meth:`Settings.apply_patch`, which returns new settings (the old object is
untouched) and the per-field errors for the values it refused, so the caller can report them and
keep the old values. ``threshold`` None means "use the model card's threshold".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping
from audioclassifier.errors import AuscultError

__all__ = ["DEVICES", "PRECISIONS", "ModelRef", "Settings", "SettingsError", "UploadSettings"]

DEVICES = ("AUTO", "CPU", "GPU", "NPU")
#: OpenVINO inference precision (audioclassifier.backends.PRECISIONS): f32 unless a user opts out.
PRECISIONS = ("f32", "bf16", "f16", "device")


class SettingsError(AuscultError, ValueError):
    """One refused setting: ``field`` names it (dotted for nested ones) and ``reason`` says why."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field = field_name
        self.reason = reason
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True)
class UploadSettings:
    """Clip uploads: on or off, and a rate limit so a flapping machine cannot flood storage."""

    enabled: bool = True
    max_per_hour: int = 60


@dataclass(frozen=True)
class ModelRef:
    """A model to download over the air: where, its SHA-256, and the version to report."""

    url: str = ""
    sha256: str = ""
    version: str = ""


@dataclass(frozen=True)
class Settings:
    """The values in force (DESIGN.md, module twin)."""

    threshold: float | None = None
    hop_seconds: float = 1.0
    consecutive: int = 2
    cooldown_seconds: float = 30.0
    energy_gate_dbfs: float = -70.0
    telemetry_interval_seconds: float = 60.0
    device: str = "AUTO"
    precision: str = "f32"
    upload: UploadSettings = field(default_factory=UploadSettings)
    model: ModelRef = field(default_factory=ModelRef)
    machine: str = "machine"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as reported in the twin."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> "Settings":
        """Strict build from a mapping (e.g. a config file): any bad value raises SettingsError."""
        new, errors = cls().apply_patch(d)
        if errors:
            raise errors[0]
        return new

    def apply_patch(self, patch: Mapping[str, Any]) -> tuple["Settings", list[SettingsError]]:
        """Apply a desired-properties patch; refuse bad fields one by one, keeping their old value.

        Keys starting with ``$`` (``$version``) are twin metadata and ignored, as are unknown keys
        (reported as errors so an operator sees a typo). ``None`` resets a field to its default.
        """
        if not isinstance(patch, Mapping):
            return self, [SettingsError("$", f"desired properties must be an object, got {type(patch).__name__}")]
        changes: dict[str, Any] = {}
        errors: list[SettingsError] = []
        defaults = Settings()
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            check = _CHECKS.get(key)
            if check is None:
                errors.append(SettingsError(key, "unknown setting"))
                continue
            try:
                if value is None:
                    changes[key] = getattr(defaults, key)
                elif key == "upload":
                    changes[key] = _upload(value, self.upload)
                elif key == "model":
                    changes[key] = _model(value)
                else:
                    changes[key] = check(value)
            except SettingsError as exc:
                errors.append(exc if exc.field.startswith(key) else SettingsError(f"{key}.{exc.field}", exc.reason))
            except (TypeError, ValueError) as exc:
                errors.append(SettingsError(key, str(exc)))
        return replace(self, **changes), errors


def _number(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v!r}")
        if (v <= lo if lo_open else v < lo) or v > hi:
            raise ValueError(f"must be in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")
        return float(v)

    return check


def _integer(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            raise ValueError(f"must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be in [{lo}, {hi}], got {v!r}")
        return int(v)

    return check


def _device(v: Any) -> str:
    if not isinstance(v, str) or v.upper() not in DEVICES:
        raise ValueError(f"must be one of {', '.join(DEVICES)}, got {v!r}")
    return v.upper()


def _precision(v: Any) -> str:
    if not isinstance(v, str) or v.lower() not in PRECISIONS:
        raise ValueError(f"must be one of {', '.join(PRECISIONS)}, got {v!r}")
    return v.lower()


def _machine(v: Any) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > 128:
        raise ValueError(f"must be a non-empty name of at most 128 characters, got {v!r}")
    return v.strip()


def _upload(v: Any, current: UploadSettings) -> UploadSettings:
    if not isinstance(v, Mapping):
        raise SettingsError("upload", f"must be an object, got {v!r}")
    out = current
    for k, x in v.items():
        if k.startswith("$"):
            continue
        if k == "enabled":
            if not isinstance(x, bool):
                raise SettingsError("upload.enabled", f"must be true or false, got {x!r}")
            out = replace(out, enabled=x)
        elif k == "max_per_hour":
            try:
                out = replace(out, max_per_hour=_integer(0, 3600)(x))
            except ValueError as exc:
                raise SettingsError("upload.max_per_hour", str(exc)) from None
        else:
            raise SettingsError(f"upload.{k}", "unknown setting")
    return out


def _model(v: Any) -> ModelRef:
    if not isinstance(v, Mapping):
        raise SettingsError("model", f"must be an object with url, sha256, version, got {v!r}")
    url, sha, version = v.get("url", ""), v.get("sha256", ""), v.get("version", "")
    if url == sha == version == "":
        return ModelRef()  # no over-the-air model: the one in the image (or --model) stays
    if not isinstance(url, str) or not url.startswith(("https://", "file://")):
        raise SettingsError("model.url", f"must be an https:// or file:// URL, got {url!r}")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha):
        raise SettingsError("model.sha256", "must be 64 hexadecimal characters")
    if not isinstance(version, str) or not version:
        raise SettingsError("model.version", f"must be a non-empty string, got {version!r}")
    return ModelRef(url=url, sha256=sha.lower(), version=version)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "threshold": _number(-1e9, 1e9),
    "hop_seconds": _number(0.05, 60.0),
    "consecutive": _integer(1, 100),
    "cooldown_seconds": _number(0.0, 86400.0),
    "energy_gate_dbfs": _number(-200.0, 0.0),
    "telemetry_interval_seconds": _number(1.0, 86400.0),
    "device": _device,
    "precision": _precision,
    "upload": lambda v: v,
    "model": lambda v: v,
    "machine": _machine,
}
