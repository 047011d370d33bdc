"""HubSink: the module's IoT Hub side (the Sink the runtime uses when edgeHub is configured).

It ties the parts together: :meth:`HubSink.emit` commits each message to the durable outbox (a
quick local write; the audio worker never waits on the network), the :class:`HubClient` sends
them and serves the twin and the direct methods, the :class:`Uploader` empties the clip spool,
and model updates from the twin are fetched and verified by :mod:`.ota` before the runtime swaps
them in. Everything reported goes to the twin's reported properties (DESIGN.md, module twin).

Environment (all optional): ``AUSCULT_SPOOL_DIR`` (default /var/lib/auscult/spool: outbox
database, clips/, models/), ``AUSCULT_OUTBOX_QUOTA_MB`` (20), ``AUSCULT_SPOOL_QUOTA_MB`` (500),
the upload target variables of :mod:`.uploader`, ``AUSCULT_HUB_RECONNECT_SECONDS`` (10).
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from ..events import message_properties
from ..runtime import CalibrationError
from ..settings import ModelRef, Settings
from .client import HubClient, hub_configured, method_payload
from .ota import OtaError, fetch_model
from .outbox import Outbox, OutboxError
from .redact import install as install_redaction
from .redact import redact
from .spool import Spool
from .uploader import Target, Uploader, target_from_environment

__all__ = ["DEFAULT_SPOOL_DIR", "HubSink", "hub_configured"]

log = logging.getLogger(__name__)

DEFAULT_SPOOL_DIR = "/var/lib/auscult/spool"
MAX_CAPTURE_SECONDS = 60.0
MAX_CALIBRATION_SECONDS = 3600.0
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
REPORT_INTERVAL_SECONDS = 60.0


def _megabytes(env: Mapping[str, str], name: str, default: float) -> int:
    try:
        value = float(env.get(name, default))
    except ValueError:
        raise ValueError(f"{name} must be a number of megabytes, got {env.get(name)!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value * 1024 * 1024)


def _quiet_sdk_loggers() -> None:
    """The SDKs log every reconnect attempt and HTTP request; the hub logs what matters itself."""
    for name, level in (("azure.iot.device", logging.ERROR), ("paho", logging.ERROR), ("azure", logging.WARNING)):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)


class HubSink:
    """Alerts and telemetry to IoT Hub outputs through a durable outbox; clips to storage.

    ``client_factory`` and ``target`` exist for tests that build the parts themselves; by
    default both come from the environment.
    """

    def __init__(self, spool_dir: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None,
                 client_factory: Callable[..., HubClient] | None = None, target: Target | None = None) -> None:
        install_redaction()
        _quiet_sdk_loggers()
        self._env = dict(os.environ if env is None else env)
        root = Path(spool_dir or self._env.get("AUSCULT_SPOOL_DIR") or DEFAULT_SPOOL_DIR)
        self.root = root
        self.outbox = Outbox(root / "outbox.sqlite3",
                             quota_bytes=_megabytes(self._env, "AUSCULT_OUTBOX_QUOTA_MB", 20))
        self.spool = Spool(root / "clips", quota_bytes=_megabytes(self._env, "AUSCULT_SPOOL_QUOTA_MB", 500))
        self.models_dir = root / "models"
        self._target = target
        self._client_factory = client_factory or HubClient.from_environment
        self.client: HubClient | None = None
        self.uploader: Uploader | None = None
        self._control: Any = None
        self._rejected: set[str] = set()
        self._model_ref = ModelRef()
        self._ota_lock = threading.Lock()
        self._desired_lock = threading.Lock()
        self._ota_wanted: ModelRef | None = None
        self._ota_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reporter: threading.Thread | None = None
        self.emit_errors = 0
        self.last_error: str | None = None

    # -- Sink protocol --------------------------------------------------------------------------

    @property
    def clip_dir(self) -> Path:
        """Where the runtime writes flagged clips: the spool itself."""
        return self.spool.root

    def start(self, control: Any) -> None:
        """Connect (in the background), start uploading, serve the twin and methods."""
        self._control = control
        target = self._target if self._target is not None else target_from_environment(self._env)
        self.uploader = Uploader(self.spool, target, on_result=self._on_upload_result)
        self.client = self._client_factory(self.outbox, on_desired=self._on_desired, on_method=self._on_method)
        self.report_status()
        self.client.start()
        self.uploader.start()
        self._reporter = threading.Thread(target=self._report_loop, name="hub-reporter", daemon=True)
        self._reporter.start()
        log.info("hub: started (spool %s, %d message(s) and %d clip(s) waiting)",
                 self.root, len(self.outbox), len(self.spool.pending()))

    def emit(self, output: str, message: dict) -> None:
        """Commit ``message`` to the outbox for ``output`` and wake the sender; never raises."""
        try:
            entry = self.outbox.put(output, message, message_properties(message))
        except (OutboxError, ValueError, TypeError) as exc:
            self.emit_errors += 1
            self.last_error = f"outbox: {exc}"
            log.error("hub: could not queue a %s message: %s", output, exc)
            return
        if output == "alerts":
            log.info("alert %s: %s score %.3f (clip %s)", entry.seq, message.get("label"),
                     float(message.get("score") or 0.0), message.get("clip"))
        if self.client:
            self.client.wake()
        if message.get("clip") and self.uploader:
            self.uploader.wake()

    def close(self) -> None:
        """Flush (bounded), stop uploading, shut the connection; what is left stays durable."""
        self._stop.set()
        if self.uploader:
            self.uploader.stop()
        if self.client:
            self.report_status()
            self.client.close(flush_seconds=5.0)
        left = len(self.outbox)
        self.outbox.close()
        log.info("hub: closed (%d message(s) left for the next start)", left)

    # -- status and reported properties ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What getStatus answers and the twin reports."""
        runtime: dict[str, Any] = {}
        if self._control is not None:
            try:
                runtime = dict(self._control.status())
            except Exception as exc:  # noqa: BLE001
                runtime = {"error": f"{type(exc).__name__}: {exc}"}
        client = self.client
        hub = {"connected": bool(client and client.connected), "connects": client.connects if client else 0,
               "resyncs": client.resyncs if client else 0, "send_failures": client.send_failures if client else 0,
               "last_error": client.last_error if client else None}
        return {**runtime, "hub": hub, "outbox": self.outbox.stats().to_dict(),
                "uploads": self.uploader.stats() if self.uploader else None, "last_error": self.last_error}

    def report_status(self) -> None:
        if not self.client:
            return
        status = self.status()
        settings = self._settings()
        self.client.report({"status": _redacted(status), "settings": _redacted(settings.to_dict()) if settings else None})

    def _report_loop(self) -> None:
        while not self._stop.wait(REPORT_INTERVAL_SECONDS):
            try:
                self.report_status()
            except Exception:  # noqa: BLE001
                log.exception("hub: periodic report failed")

    def _settings(self) -> Settings | None:
        return getattr(self._control, "settings", None) if self._control is not None else None

    # -- twin -----------------------------------------------------------------------------------

    def _on_desired(self, desired: dict, complete: bool) -> None:
        """Validate and apply desired properties; refused values are reported, old ones kept."""
        with self._desired_lock:  # patches (SDK thread) and full twins (hub thread) one at a time
            self._apply_desired(desired)

    def _apply_desired(self, desired: dict) -> None:
        current = self._settings() or Settings()
        known = {f.name for f in fields(Settings)}
        # In a twin, null removes a property: removing one the module does not know is no error.
        desired = {k: v for k, v in desired.items() if v is not None or k in known}
        new, errors = current.apply_patch(desired)
        rejected = {e.field: e.reason for e in errors}
        wanted_model = new.model
        # The model field changes only once the new model is verified and swapped in.
        new = replace(new, model=current.model)
        if new != current:
            try:
                self._control.apply_settings(new)
            except Exception as exc:  # noqa: BLE001 - the runtime refused: keep what is in force
                rejected["$"] = f"{type(exc).__name__}: {exc}"
        cleared = {f: None for f in self._rejected - set(rejected)}
        self._rejected = set(rejected)
        if rejected:
            self.last_error = "rejected desired properties: " + "; ".join(f"{k}: {v}" for k, v in rejected.items())
            log.warning("hub: %s", self.last_error)
        settings = self._settings() or new
        if self.client:
            self.client.report({"settings": _redacted(settings.to_dict()), "rejected": {**cleared, **rejected},
                                "last_error": self.last_error})
        if wanted_model.url and wanted_model != self._model_ref:
            self._request_model(wanted_model)

    def _request_model(self, ref: ModelRef) -> None:
        with self._ota_lock:
            self._ota_wanted = ref
            if self._ota_thread is None or not self._ota_thread.is_alive():
                self._ota_thread = threading.Thread(target=self._ota_loop, name="model-update", daemon=True)
                self._ota_thread.start()

    def _ota_loop(self) -> None:
        while True:
            with self._ota_lock:
                ref, self._ota_wanted = self._ota_wanted, None
                if ref is None:
                    self._ota_thread = None
                    return
            self._update_model(ref)

    def _update_model(self, ref: ModelRef) -> None:
        """Download, verify, swap; on any failure keep the old model and report why."""
        report = self.client.report if self.client else (lambda patch: None)
        report({"model": {"requested": ref.version, "state": "downloading", "error": None}})
        try:
            path, card = fetch_model(ref, self.models_dir)
            result = self._control.swap_model(path)
        except Exception as exc:  # noqa: BLE001 - OtaError, the runtime's typed swap error, anything
            reason = redact(str(exc)) if isinstance(exc, OtaError) else redact(f"{type(exc).__name__}: {exc}")
            self.last_error = f"model {ref.version}: {reason}"
            log.warning("hub: model update to %s refused, keeping the old model: %s", ref.version, reason)
            report({"model": {"requested": ref.version, "state": "failed", "error": reason},
                    "last_error": self.last_error})
            return
        self._model_ref = ref
        settings = self._settings()
        if settings is not None and settings.model != ref:
            try:
                self._control.apply_settings(replace(settings, model=ref))
            except Exception:  # noqa: BLE001 - the model is in; the settings echo is cosmetic
                log.exception("hub: recording the model reference in the settings failed")
        log.info("hub: model %s in use", ref.version)
        report({"model": {"requested": ref.version, "state": "ok", "version": ref.version, "error": None,
                          "sha256": ref.sha256, "card": card.summary(),
                          "result": _redacted(result) if isinstance(result, dict) else None}})
        self.report_status()

    # -- direct methods -------------------------------------------------------------------------

    def _on_method(self, name: str, payload: Any) -> tuple[int, Any]:
        if name == "getStatus":
            return 200, _redacted(self.status())
        if name == "captureClip":
            return self._capture(payload)
        if name == "reloadModel":
            result = self._control.reload_model()
            return 200, _redacted(dict(result or {}))
        if name == "selfTest":
            result = dict(self._control.self_test() or {})
            return (200 if result.get("ok", True) else 500), _redacted(result)
        if name == "calibrate":
            return self._calibrate(payload)
        return 404, {"error": f"unknown method {name!r}; known: getStatus, captureClip, reloadModel, selfTest, "
                              "calibrate"}

    def _calibrate(self, payload: Any) -> tuple[int, Any]:
        """Start a site calibration and answer 202 at once (a method call would time out); the
        outcome goes to reported ``calibration`` (and the threshold in force to ``settings``)."""
        try:
            args = method_payload(payload)
            seconds = args.get("seconds")
            percentile = args.get("percentile", 99.5)
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                    or not 1 <= seconds <= MAX_CALIBRATION_SECONDS:
                raise ValueError(f"seconds must be a number in [1, {MAX_CALIBRATION_SECONDS:g}], got {seconds!r}")
            if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
                    or not math.isfinite(percentile) or not 50 < percentile < 100:
                raise ValueError(f"percentile must be a number in (50, 100), got {percentile!r}")
            unknown = sorted(set(args) - {"seconds", "percentile"})
            if unknown:
                raise ValueError(f"unknown argument(s) {', '.join(unknown)}; known: seconds, percentile")
        except ValueError as exc:
            return 400, {"error": str(exc)}
        try:
            state = self._control.start_calibration(float(seconds), float(percentile),
                                                    on_done=self._on_calibration_done)
        except CalibrationError as exc:  # one is running already
            return 409, {"error": str(exc)}
        if self.client:
            self.client.report({"calibration": _redacted(state)})
        return 202, _redacted(state)

    def _on_calibration_done(self, state: dict[str, Any]) -> None:
        """Called by the runtime's worker: report (non-blocking) the outcome and the settings."""
        if state.get("state") == "failed":
            self.last_error = f"calibration failed: {state.get('error')}"
        if self.client:
            settings = self._settings()
            self.client.report({"calibration": _redacted(state),
                                "settings": _redacted(settings.to_dict()) if settings else None})
            self.report_status()

    def _capture(self, payload: Any) -> tuple[int, Any]:
        try:
            args = method_payload(payload)
            seconds = args.get("seconds", 10)
            label = args.get("label", "field")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                    or not 0 < seconds <= MAX_CAPTURE_SECONDS:
                raise ValueError(f"seconds must be in (0, {MAX_CAPTURE_SECONDS:g}], got {seconds!r}")
            if not isinstance(label, str) or not _LABEL.match(label):
                raise ValueError(f"label must be 1-64 characters of letters, digits, '-' or '_', got {label!r}")
        except ValueError as exc:
            return 400, {"error": str(exc)}
        path = Path(self._control.capture_clip(float(seconds), label))
        try:
            name = path.resolve().relative_to(self.spool.root.resolve()).as_posix()
        except ValueError:  # written elsewhere: spool a copy so it is uploaded all the same
            name = self.spool.put(f"captures/{path.name}", path.read_bytes()).name
        if self.uploader:
            self.uploader.wake()
        return 200, {"clip": name, "seconds": float(seconds), "label": label, "upload": "queued"}

    def _on_upload_result(self, result: dict[str, Any]) -> None:
        if self.client and self.uploader:
            self.client.report({"uploads": _redacted(self.uploader.stats())})


def _redacted(value: Any) -> Any:
    """``value`` as plain JSON data with every string redacted (for anything that leaves the
    device): numpy scalars become numbers, paths and other objects strings, NaN/inf null."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redacted(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        try:
            value = value.item()
        except (TypeError, ValueError):
            return redact(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _redacted(value.to_dict())
    return redact(str(value))

