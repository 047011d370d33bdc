"""The IoT Hub application: the hub side's parts, wired, around the runtime's control surface.

:class:`HubApp` owns the durable outbox and clip spool, the :class:`OutboxSink` the runtime emits
into, the connection (:class:`HubClient`), the clip :class:`Uploader`, the model
:class:`ModelUpdater` and the :class:`Reporter`. It is built by the composition root
(``__main__``) from a :class:`~audioclassifier.config.HubConfig`; :meth:`start` gets the runtime's
control surface (:class:`~audioclassifier.control.RuntimeControl`) and serves the twin
(:mod:`.twin`) and the direct methods (:mod:`.methods`) with it. Nothing here reads the
environment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import HubConfig
from ..desired import merge_patch, save_desired
from ..settings import ModelRef, Settings
from .client import HubClient
from .marks import ClipMarks
from .methods import MethodContext, dispatch
from .ota import ModelUpdater
from .outbox import Outbox
from .pnp import ack, acknowledgements, desired_version, property_value
from .redact import install as install_redaction
from .reporting import Reporter
from .sink import OutboxSink
from .spool import Spool
from .twin import apply_desired
from .uploader import Target, Uploader, make_target

__all__ = ["HubApp"]

log = logging.getLogger(__name__)

#: How long uploads wait at start for the twin's desired properties before going ahead without.
TWIN_WAIT_SECONDS = 30.0


def _quiet_sdk_loggers() -> None:
    """The SDKs log every reconnect attempt and HTTP request; the hub logs what matters itself."""
    for name, level in (("azure.iot.device", logging.ERROR), ("paho", logging.ERROR), ("azure", logging.WARNING)):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)


class HubApp:
    """See the module docstring. ``client_factory`` and ``target`` let tests build those parts."""

    def __init__(self, config: HubConfig, *, client_factory: Callable[..., HubClient] | None = None,
                 target: Target | None = None) -> None:
        install_redaction()
        _quiet_sdk_loggers()
        self.config = config
        self.root = Path(config.spool_dir)
        self.outbox = Outbox(self.root / "outbox.sqlite3", quota_bytes=config.outbox_quota_bytes)
        self.spool = Spool(self.root / "clips", quota_bytes=config.spool_quota_bytes)
        self.marks = ClipMarks(self.root / "marks")
        self.models_dir = self.root / "models"
        self.sink = OutboxSink(self.outbox, self.spool, wake_sender=self._wake_sender,
                               wake_uploader=self._wake_uploader)
        self._target = target if target is not None else make_target(config.upload, ca_file=config.ca_file)
        self._client_factory = client_factory or HubClient.from_edge_environment
        self.client: HubClient | None = None
        self.uploader: Uploader | None = None
        self.control: Any = None
        self.start_settings = Settings()
        self._unknown_acked: set[str] = set()  # desired names the interface lacks, acknowledged as refused
        self._desired_doc: dict[str, Any] = dict(config.desired or {})  # the desired section as it stands
        self._model_request: tuple[ModelRef, int] | None = None  # the model asked for and its desired $version
        self._desired_lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._closing = threading.Event()
        self.last_error: str | None = None
        self.reporter = Reporter(self._report, self.status, self._settings_dict)
        self.updater = ModelUpdater(self.models_dir, swap=self._swap_model, report=self._on_model_report,
                                    on_done=self._model_in_use, ca_file=config.ca_file)

    @property
    def clip_dir(self) -> Path:
        return self.spool.root

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, control: Any) -> None:
        """Connect (in the background), start uploading, serve the twin and methods for ``control``.
        The settings ``control`` holds now are the start values a twin ``null`` returns to; the
        desired properties the last run kept are put in force over them at once, until the twin
        arrives (:meth:`wait_for_twin`)."""
        self.control = control
        self.start_settings = control.settings
        if self.config.desired:
            self._apply_kept_desired(self.config.desired)
        self.uploader = Uploader(self.spool, self._target, on_result=self._on_upload_result,
                                 policy=lambda: self.control.settings.upload, marks=self.marks)
        self.client = self._client_factory(self.outbox, on_desired=self._on_desired, on_method=self._on_method,
                                           reconnect_seconds=self.config.reconnect_seconds)
        self.reporter.report_status()
        status = control.status()
        self.reporter.send({"learning": status.get("learning"), "verdicts": status.get("verdicts")})
        self.client.start()
        # Uploads wait for the twin's upload settings (a clip uploaded before `upload.enabled: false`
        # arrived went out all the same), or TWIN_WAIT_SECONDS when the hub cannot be reached.
        threading.Thread(target=self._start_uploads, name="uploader-start", daemon=True).start()
        self.reporter.start()
        log.info("hub: started (spool %s, %d message(s) and %d clip(s) waiting)",
                 self.root, len(self.outbox), len(self.spool.pending()))

    def wait_for_twin(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the twin's desired properties to be in force (the first
        window is scored after this); False when the hub could not be reached in time."""
        assert self.client is not None
        if self.client.wait_ready(timeout):
            log.info("hub: the twin's desired properties are in force")
            return True
        kept = "the desired properties kept from the last run" if self.config.desired else \
            "the start values (no desired properties were kept)"
        log.warning("hub: no twin in %g s: starting with %s; the twin applies when it arrives", timeout, kept)
        return False

    def _apply_kept_desired(self, desired: dict[str, Any]) -> None:
        """Put the kept desired properties in force (no acknowledgements: the hub is not there)."""
        outcome = apply_desired(desired, current=self.control.settings, start=self.start_settings, complete=True)
        try:
            if outcome.settings != self.control.settings:
                self.control.apply_settings(outcome.settings)
        except Exception as exc:  # noqa: BLE001 - keep the start values
            log.warning("hub: the kept desired properties could not be applied: %s: %s", type(exc).__name__, exc)
            return
        log.info("hub: the desired properties kept from the last run are in force%s",
                 f" ({len(outcome.rejected)} value(s) refused)" if outcome.rejected else "")
        self.updater.request(outcome.model)  # a verified copy on disk is used without a download

    def _start_uploads(self) -> None:
        assert self.client is not None and self.uploader is not None
        if not self.client.wait_ready(TWIN_WAIT_SECONDS) and not self._closing.is_set():
            log.warning("hub: no twin after %g s; uploading with the settings in force", TWIN_WAIT_SECONDS)
        with self._lifecycle:
            if not self._closing.is_set():
                self.uploader.start()

    def close(self) -> None:
        """Flush (bounded), stop uploading, shut the connection; what is left stays durable."""
        with self._lifecycle:  # no upload starts once closing has begun
            self._closing.set()
        if not self.sink.flush():
            log.error("hub: %d message(s) could not be stored before the end (the disk is full): lost",
                      self.sink.waiting)
        self.reporter.stop()
        if self.uploader:
            self.uploader.stop()
        if self.client:
            self.reporter.report_status()
            self.client.close(flush_seconds=5.0)
        left = len(self.outbox)
        self.outbox.close()
        log.info("hub: closed (%d message(s) left for the next start)", left)

    # -- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What getStatus answers and the twin reports."""
        runtime: dict[str, Any] = {}
        if self.control is not None:
            try:
                runtime = dict(self.control.status())
            except Exception as exc:  # noqa: BLE001 - the status must answer whatever happened
                runtime = {"error": f"{type(exc).__name__}: {exc}"}
        c = self.client
        hub = {"connected": bool(c and c.connected), "connects": c.connects if c else 0,
               "resyncs": c.resyncs if c else 0, "send_failures": c.send_failures if c else 0,
               "refused_reports": c.reports.refused if c else 0,
               "last_error": (c.last_error or c.reports.last_error or c.sender.last_error) if c else None}
        return {**runtime, "hub": hub, "outbox": self.outbox.stats().to_dict(),
                "uploads": self.uploader.stats() if self.uploader else None,
                "last_error": self.last_error or self.sink.last_error or self.updater.last_error}

    def _settings_dict(self) -> dict[str, Any] | None:
        return self.control.settings.to_dict() if self.control is not None else None

    def _threshold(self) -> float | None:
        threshold = getattr(self.control, "threshold", None)
        return float(threshold) if isinstance(threshold, (int, float)) else None

    def _report(self, patch: dict[str, Any]) -> None:
        if self.client:
            self.client.report(patch)

    # -- twin -------------------------------------------------------------------------------------

    def _on_desired(self, desired: dict, complete: bool) -> None:
        """Validate and apply desired properties (:mod:`.twin`), acknowledge each writable property
        by the Plug and Play convention (:mod:`.pnp`: refusals with ``ac`` 400, the old value kept),
        and keep the desired section on disk for a start without the hub (:mod:`..desired`)."""
        with self._desired_lock:  # patches (SDK thread) and full twins (hub thread) one at a time
            current = self.control.settings
            outcome = apply_desired(desired, current=current, start=self.start_settings, complete=complete)
            rejected = dict(outcome.rejected)
            failure = None
            if outcome.settings != current:
                try:
                    self.control.apply_settings(outcome.settings)
                except Exception as exc:  # noqa: BLE001 - the runtime refused (e.g. no GPU): keep what is in force
                    failure = f"{type(exc).__name__}: {exc}"
            problems = [f"{k}: {v}" for k, v in rejected.items()] + ([f"not applied: {failure}"] if failure else [])
            if problems:
                self.last_error = "rejected desired properties: " + "; ".join(problems)
                log.warning("hub: %s", self.last_error)
            settings = self._settings_dict() or {}
            acks: dict[str, Any] = {}
            if "$" not in rejected:  # a document refused whole (not an object, too deep) names no property
                acks = acknowledgements(desired, complete=complete, rejected=rejected, settings=settings,
                                        threshold=self._threshold(), failure=failure,
                                        known_unknown=self._unknown_acked)
            for name, value in acks.items():
                if name not in self._settings_fields():
                    (self._unknown_acked.add if value is not None else self._unknown_acked.discard)(name)
            if "$" not in rejected and ("model" in desired or complete) and "model" not in acks:
                acks["model"] = self._model_ack(outcome.model, desired_version(desired))
            self.reporter.send({"settings": settings, **acks, "last_error": self.last_error})
            self.updater.request(outcome.model)
            if "$" not in rejected:
                self._keep_desired(desired, complete)

    @staticmethod
    def _settings_fields() -> set[str]:
        return set(Settings.__dataclass_fields__)

    def _keep_desired(self, desired: dict, complete: bool) -> None:
        doc = {k: v for k, v in desired.items() if not str(k).startswith("$")}
        self._desired_doc = doc if complete else merge_patch(self._desired_doc, doc)
        save_desired(self.config.desired_path, self._desired_doc)

    def _model_ack(self, ref: ModelRef, version: int) -> dict[str, Any]:
        """``model``'s acknowledgement: 202 while a new model downloads (200 or 500 follows, from
        :meth:`_on_model_report`), 200 when the one named is in use (or none is named)."""
        value = property_value("model", {"model": {"url": ref.url, "sha256": ref.sha256, "version": ref.version}},
                               None)
        if ref.url and ref != self.updater.current:
            self._model_request = (ref, version)
            return ack(value, 202, version, f"downloading model {ref.version}")
        self._model_request = None
        if not ref.url:
            return ack(value, 200, version, "no over-the-air model: the model of the image (or --model) is in use")
        return ack(value, 200, version, f"model {ref.version} in use")

    def _on_model_report(self, patch: dict[str, Any]) -> None:
        """The model updater's progress: reported under ``model_update``, and the ``model``
        acknowledgement completed (200 in use, 500 failed) for the request it belongs to."""
        update = dict(patch.get("model") or {})
        out: dict[str, Any] = {"model_update": update, **{k: v for k, v in patch.items() if k != "model"}}
        request = self._model_request
        if request is not None and update.get("requested") == request[0].version \
                and update.get("state") in ("ok", "failed"):
            ref, version = request
            value = property_value("model", {"model": {"url": ref.url, "sha256": ref.sha256,
                                                       "version": ref.version}}, None)
            out["model"] = (ack(value, 200, version, f"model {ref.version} in use") if update["state"] == "ok"
                            else ack(value, 500, version, f"model not used: {update.get('error')}"))
            self._model_request = None
        self.reporter.send(out)

    def _swap_model(self, path: Path) -> Any:
        return self.control.swap_model(path)

    def _model_in_use(self, ref: ModelRef) -> None:
        settings = self.control.settings
        if settings.model != ref:
            try:
                self.control.apply_settings(replace(settings, model=ref))
            except Exception:
                log.exception("hub: recording the model reference in the settings failed")
        self.reporter.report_status()

    # -- methods ----------------------------------------------------------------------------------

    def _on_method(self, name: str, payload: Any) -> tuple[int, Any]:
        ctx = MethodContext(control=self.control, status=self.status, spool=self.spool,
                            clip_queued=self._wake_uploader,
                            calibration_started=lambda state: self.reporter.send({"calibration": state}),
                            calibration_done=self.on_calibration_done, feedback_given=self._on_feedback)
        return dispatch(name, payload, ctx)

    def _on_feedback(self, outcome: dict[str, Any]) -> str | None:
        """A verdict was applied: keep its clip's mark for the uploader, report ``feedback`` (and
        ``learning``, which a false alarm changes). Returns the mark's state (``queued``) or None."""
        mark, state = outcome.get("mark"), None
        if mark:
            try:
                self.marks.put(mark)
                state = "queued"
            except OSError as exc:
                state = f"not kept: {exc}"
                self.last_error = f"feedback: the mark of {mark.get('clip')} could not be kept: {exc}"
                log.error("hub: %s", self.last_error)
            self._wake_uploader()
        status = self.control.status()
        self.reporter.send({"verdicts": status.get("verdicts"), "learning": status.get("learning")})
        self.reporter.report_status()
        return state

    def on_calibration_done(self, state: dict[str, Any]) -> None:
        """Called by the runtime's worker: report the outcome; a fitted threshold becomes the
        value a twin ``null`` returns to (the site's own threshold, not the card's)."""
        if state.get("state") == "failed":
            self.last_error = f"calibration failed: {state.get('error')}"
        result = state.get("result") or {}
        if state.get("state") == "done" and "threshold" in result:
            self.start_settings = replace(self.start_settings, threshold=float(result["threshold"]))
        self.reporter.send({"calibration": state, "settings": self._settings_dict()})
        self.reporter.report_status()

    def on_health(self, health: dict[str, Any]) -> None:
        """Called by the runtime's worker when the machine's health state changes: report it (``health``)."""
        self.reporter.send({"health": health})

    def on_learning(self, state: dict[str, Any]) -> None:
        """Called by the runtime's worker at every on-site learning state: report it (``learning``)."""
        if state.get("state") == "failed":
            self.last_error = f"on-site learning failed: {state.get('error')}"
        self.reporter.send({"learning": state})
        if self.control is not None:
            self.reporter.report_status()

    # -- uploads and wake-ups -----------------------------------------------------------------------

    def _on_upload_result(self, result: dict[str, Any]) -> None:
        if self.uploader:
            self.reporter.send({"uploads": self.uploader.stats()})

    def _wake_sender(self) -> None:
        if self.client:
            self.client.wake()

    def _wake_uploader(self) -> None:
        if self.uploader:
            self.uploader.wake()

