"""Clip uploads from the spool: to a blob container, or through IoT Hub file upload.

A clip is deleted from the spool only after its target confirmed the upload; failures are
retried with backoff, so a storage outage or a killed module just delays the upload. Uploading
under the clip's own name with ``overwrite=True`` makes a retry after a crash idempotent: the
blob ends up once, byte-identical.

Targets (from :class:`audioclassifier.config.UploadTarget`, see :func:`make_target`):

* :class:`BlobTarget`: Blob Storage on IoT Edge or an Azure Storage account, from
  ``AUSCULT_BLOB_CONNECTION_STRING`` (+ ``AUSCULT_BLOB_CONTAINER``) or a container SAS URL in
  ``AUSCULT_BLOB_CONTAINER_SAS_URL``;
* :class:`FileUploadTarget`: IoT Hub file upload, which only a *device* identity can do, from
  ``AUSCULT_DEVICE_CONNECTION_STRING``: ask the hub for a SAS URI, upload, and always notify the
  hub of the result.

Clip marks (a technician's verdict and label, :mod:`.marks`) go with them: a clip still spooled is
uploaded with its mark as blob metadata; a clip already uploaded gets it as metadata (and index
tags, where the storage account and the credential allow: a SAS needs the ``t`` permission) or,
through IoT Hub file upload, as a sidecar JSON blob ``<clip>.json``. A mark whose clip is gone
(dropped by the spool's quota before it was uploaded) is counted ``lost``.

``ca_file`` (``AUSCULT_CA_FILE``) optionally names an extra CA certificate (PEM) to trust for these
endpoints (a gateway with a private CA; the tests' loopback stand-ins).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .. import clips
from ..backoff import Backoff
from ..config import UploadTarget
from ..errors import AuscultError
from ..settings import UploadSettings
from .marks import ClipMarks, metadata, sidecar, sidecar_name, tags
from .redact import redact
from .spool import Clip, Spool

__all__ = ["BlobTarget", "FileUploadTarget", "MarkLostError", "Target", "UploadError", "Uploader", "make_target"]

log = logging.getLogger(__name__)

DEFAULT_CONTAINER = "auscult-clips"
_BLOB_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 10, "read_timeout": 60}
"""Fail fast inside azure-storage-blob: the uploader's own backoff does the waiting."""


class UploadError(AuscultError):
    """One failed upload attempt; the clip stays spooled for the next."""


class MarkLostError(UploadError):
    """A mark's clip is not in storage (and not in the spool): it can never be marked."""


class Target(Protocol):
    """Where clips go. ``upload`` (with the clip's mark, if any) and ``mark`` (a clip uploaded
    before) return only once storage confirmed them."""

    name: str

    def upload(self, path: Path, blob_name: str, mark: dict[str, Any] | None = None) -> str: ...

    def mark(self, blob_name: str, mark: dict[str, Any]) -> str: ...


class BlobTarget:
    """A blob container (Blob Storage on IoT Edge, or an Azure Storage account)."""

    name = "blob"

    def __init__(self, container: Any) -> None:
        self._container = container
        self._created = False
        self.tags_supported = True  # until the account or the credential refuses index tags

    @classmethod
    def from_connection_string(cls, conn_str: str, container: str = DEFAULT_CONTAINER, *,
                               verify: bool | str = True) -> BlobTarget:
        from azure.storage.blob import ContainerClient

        return cls(ContainerClient.from_connection_string(conn_str, container, connection_verify=verify,
                                                          **_BLOB_OPTIONS))

    @classmethod
    def from_sas_url(cls, url: str, *, verify: bool | str = True) -> BlobTarget:
        from azure.storage.blob import ContainerClient

        target = cls(ContainerClient.from_container_url(url, connection_verify=verify, **_BLOB_OPTIONS))
        target._created = True  # a container SAS cannot create its container: it must exist
        return target

    def upload(self, path: Path, blob_name: str, mark: dict[str, Any] | None = None) -> str:
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.blob import ContentSettings

        try:
            if not self._created:
                try:
                    self._container.create_container()
                except ResourceExistsError:
                    pass
                self._created = True
            with open(path, "rb") as fh:
                self._container.upload_blob(blob_name, fh, overwrite=True, metadata=metadata(mark) if mark else None,
                                            content_settings=ContentSettings(content_type="audio/wav"))
        except (AzureError, OSError) as exc:
            raise UploadError(f"blob upload of {blob_name} failed: {redact(_short(exc))}") from None
        if mark:
            self._tag(blob_name, mark)
        return f"{self._container.container_name}/{blob_name}"

    def mark(self, blob_name: str, mark: dict[str, Any]) -> str:
        """Put ``mark`` on the uploaded ``blob_name``: metadata, and index tags where allowed."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            self._container.get_blob_client(blob_name).set_blob_metadata(metadata(mark))
        except ResourceNotFoundError:
            raise MarkLostError(f"{blob_name} is not in the container: its mark cannot be applied") from None
        except AzureError as exc:
            raise UploadError(f"marking {blob_name} failed: {redact(_short(exc))}") from None
        self._tag(blob_name, mark)
        return f"{self._container.container_name}/{blob_name}"

    def _tag(self, blob_name: str, mark: dict[str, Any]) -> None:
        """Index tags for ``mark``, best effort: an account or credential that refuses them (a SAS
        without the ``t`` permission, a hierarchical-namespace account) turns them off, metadata stays."""
        from azure.core.exceptions import AzureError, HttpResponseError

        if not self.tags_supported:
            return
        try:
            self._container.get_blob_client(blob_name).set_blob_tags(tags(mark))
        except HttpResponseError as exc:
            if exc.status_code in (400, 403, 409, 501):
                self.tags_supported = False
                log.warning("uploader: blob index tags refused (%s): clip marks go in blob metadata only",
                            redact(_short(exc)))
                return
            raise UploadError(f"tagging {blob_name} failed: {redact(_short(exc))}") from None
        except AzureError as exc:
            raise UploadError(f"tagging {blob_name} failed: {redact(_short(exc))}") from None


class FileUploadTarget:
    """IoT Hub file upload with a device identity: SAS URI from the hub, upload, notify."""

    name = "iothub-file-upload"

    def __init__(self, device_client: Any, *, verify: bool | str = True) -> None:
        self._client = device_client
        self._verify = verify

    @classmethod
    def from_connection_string(cls, conn_str: str, *, ca_file: str | None = None) -> FileUploadTarget:
        from azure.iot.device import IoTHubDeviceClient

        kwargs: dict[str, Any] = {}
        if ca_file:
            kwargs["server_verification_cert"] = Path(ca_file).read_text()
        client = IoTHubDeviceClient.create_from_connection_string(conn_str, **kwargs)
        return cls(client, verify=ca_file or True)

    def upload(self, path: Path, blob_name: str, mark: dict[str, Any] | None = None) -> str:
        with open(path, "rb") as fh:
            where = self._put(fh, blob_name, "audio/wav")
        if mark:
            self.mark(blob_name, mark)
        return where

    def mark(self, blob_name: str, mark: dict[str, Any]) -> str:
        """A device cannot change an uploaded blob: the mark goes next to it as ``<clip>.json``."""
        return self._put(sidecar(mark), sidecar_name(blob_name), "application/json")

    def _put(self, data: Any, blob_name: str, content_type: str) -> str:
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.storage.blob import BlobClient, ContentSettings

        try:
            info = self._client.get_storage_info_for_blob(blob_name)
        except Exception as exc:  # noqa: BLE001 - the SDK raises its own families of errors
            raise UploadError(f"IoT Hub refused a SAS URI for {blob_name}: {redact(_short(exc))}") from None
        url = "https://{}/{}/{}{}".format(info["hostName"], info["containerName"],
                                          urllib.parse.quote(info["blobName"]), info["sasToken"])
        try:
            blob = BlobClient.from_blob_url(url, connection_verify=self._verify, **_BLOB_OPTIONS)
            blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=content_type))
        except (AzureError, OSError) as exc:
            status = exc.status_code if isinstance(exc, HttpResponseError) and exc.status_code else 500
            reason = redact(_short(exc))
            self._notify(info["correlationId"], False, status, reason[:200])
            raise UploadError(f"file upload of {blob_name} failed: {reason}") from None
        # The hub must hear about every upload, successful or not; an unconfirmed success is
        # retried as a whole (same blob name, so the result is the same).
        self._notify(info["correlationId"], True, 200, "uploaded")
        return f"{info['containerName']}/{info['blobName']}"

    def _notify(self, correlation_id: str, ok: bool, status: int, description: str) -> None:
        try:
            self._client.notify_blob_upload_status(correlation_id, ok, status, description)
        except Exception as exc:  # noqa: BLE001
            if ok:
                raise UploadError(f"upload notification failed: {redact(_short(exc))}") from None
            log.warning("uploader: could not notify the hub of a failed upload: %s", redact(_short(exc)))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def make_target(upload: UploadTarget, *, ca_file: str | None = None) -> Target | None:
    """The configured upload target, or None (clips then stay spooled)."""
    verify: bool | str = ca_file or True
    if upload.blob_connection_string:
        return BlobTarget.from_connection_string(upload.blob_connection_string, upload.blob_container, verify=verify)
    if upload.container_sas_url:
        return BlobTarget.from_sas_url(upload.container_sas_url, verify=verify)
    if upload.device_connection_string:
        return FileUploadTarget.from_connection_string(upload.device_connection_string, ca_file=ca_file)
    return None


class Uploader:
    """A background thread that empties the spool into ``target``, oldest clip first."""

    def __init__(self, spool: Spool, target: Target | None, *, backoff: Backoff | None = None,
                 poll_seconds: float = 5.0, on_result: Callable[[dict[str, Any]], None] | None = None,
                 policy: Callable[[], UploadSettings] = UploadSettings, marks: ClipMarks | None = None) -> None:
        self.spool = spool
        self.target = target
        self.marks = marks
        self._policy = policy
        self._recent: deque[float] = deque()  # monotonic times of the uploads of the last hour
        self.paused: str | None = None  # why uploads wait: "disabled" or "rate limit", else None
        self._backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        self._poll = poll_seconds
        self._on_result = on_result
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.uploaded = 0
        self.failures = 0
        self.last: dict[str, Any] | None = None

    def start(self) -> None:
        if self.target is None:
            log.warning("uploader: no upload target configured; clips stay in %s (quota %d bytes)",
                        self.spool.root, self.spool.quota_bytes)
        self._thread = threading.Thread(target=self._loop, name="clip-uploader", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A clip was spooled: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        pending = self.spool.pending()
        return {"target": self.target.name if self.target else None, "uploaded": self.uploaded,
                "failures": self.failures, "pending": len(pending), "pending_bytes": sum(c.size for c in pending),
                "dropped": self.spool.dropped, "paused": self.paused, "last": self.last,
                "marks": self.marks.stats() if self.marks else None}

    def _allowed(self) -> bool:
        """The twin's ``upload`` settings: off, or over ``max_per_hour`` in the last hour, means wait
        (clips stay in the spool, bounded by its quota; alerts are sent regardless)."""
        policy = self._policy()
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= 3600.0:
            self._recent.popleft()
        if not policy.enabled:
            self.paused = "disabled"
        elif len(self._recent) >= policy.max_per_hour:
            self.paused = "rate limit"
        else:
            self.paused = None
        return self.paused is None

    def upload_pending(self) -> bool:
        """Upload every spooled clip now, stopping at the first failure; True if none failed."""
        if self.target is None:
            self.spool.enforce_quota()
            return False
        self.spool.enforce_quota()
        if not self.apply_marks():
            return False
        for clip in self.spool.pending():
            if self._stop.is_set() or not self._allowed():
                return True  # nothing failed: the policy holds the rest back (see _allowed)
            if not self._upload(clip):
                return False
        return True

    def apply_marks(self) -> bool:
        """Put the waiting marks on their clips already in storage (a spooled clip takes its mark
        along when it is uploaded); False at the first failure."""
        if self.marks is None or self.target is None:
            return True
        spooled = {c.name for c in self.spool.pending()}
        for mark in self.marks.pending():
            if self._stop.is_set():
                return True
            if mark["clip"] in spooled:
                continue
            name = clips.blob_name(mark["clip"])
            try:
                where = self.target.mark(name, mark)
            except MarkLostError as exc:
                self.marks.done(mark, lost=True)
                log.warning("uploader: %s", exc)
                continue
            except UploadError as exc:
                return self._failed(name, exc)
            self.marks.done(mark)
            self._result({"clip": name, "ok": True, "marked": mark.get("verdict"), "to": where, "time": time.time()})
            log.info("uploader: %s marked %s (label %s) at %s", name, mark.get("verdict"), mark.get("label"), where)
        return True

    def _failed(self, name: str, exc: UploadError) -> bool:
        """Count and report a failed upload or mark of blob ``name``; False: stop this round (backoff)."""
        self.failures += 1
        self._result({"clip": name, "ok": False, "error": str(exc), "time": time.time()})
        log.warning("uploader: %s", exc)
        return False

    def _upload(self, clip: Clip) -> bool:
        assert self.target is not None
        name = clips.blob_name(clip.name)
        mark = self.marks.get(clip.name) if self.marks is not None else None
        try:
            where = self.target.upload(clip.path, name, mark)
        except FileNotFoundError:
            return True  # dropped by the quota meanwhile
        except UploadError as exc:
            return self._failed(name, exc)
        self.spool.remove(clip)
        if mark is not None and self.marks is not None:
            self.marks.done(mark)
        self.uploaded += 1
        self._recent.append(time.monotonic())
        self._backoff.reset()
        self._result({"clip": name, "ok": True, "to": where, "bytes": clip.size, "time": time.time()})
        log.info("uploader: %s uploaded to %s", name, where)
        return True

    def _result(self, result: dict[str, Any]) -> None:
        self.last = result
        if self._on_result:
            try:
                self._on_result(result)
            except Exception:
                log.exception("uploader: result callback failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ok = self.upload_pending()
            except Exception as exc:  # noqa: BLE001 - never die: log, back off, try again
                log.warning("uploader: unexpected %s", redact(_short(exc)))
                ok = False
            if ok or self.target is None:
                self._wake.wait(self._poll)
            else:
                self._wake.wait(self._backoff.next())
            self._wake.clear()
