"""Model over the air: download a model the twin names, verify its SHA-256 and its card, swap it in.

:func:`fetch_model` never leaves a half-written or unverified file where the runtime could load
it: the download goes to a hidden temporary file, is hashed on the way, checked, and only then
renamed to ``<models_dir>/<sha256>.onnx`` (a verified copy is reused, so a restart re-applying the
twin does not download again). Any failure raises :class:`OtaError` with the reason; the caller
keeps the old model. :class:`ModelUpdater` is the worker thread around it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..card import CardError, ModelCard, read_card
from ..errors import AuscultError
from ..settings import ModelRef
from .redact import redact

__all__ = ["ModelUpdater", "OtaError", "fetch_model", "prune"]

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 512 * 1024 * 1024


class OtaError(AuscultError):
    """A model update that was refused: ``stage`` is download, verify or card."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"model {stage} failed: {reason}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _open(url: str, *, timeout: float, ca_file: str | None):
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        return open(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), "rb")
    if scheme != "https":
        raise OtaError("download", f"only https:// and file:// URLs are allowed, got {scheme}://")
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return urllib.request.urlopen(url, timeout=timeout, context=context)  # noqa: S310 - scheme checked


#: A download may take this long in all (a server trickling one byte every few seconds keeps each
#: read alive, so a per-read timeout alone never ends it).
DOWNLOAD_DEADLINE_SECONDS = 600.0
#: After :data:`RATE_GRACE_SECONDS`, a download slower than this on average is abandoned.
MIN_BYTES_PER_SECOND = 2048.0
RATE_GRACE_SECONDS = 30.0


def fetch_model(ref: ModelRef, models_dir: str | os.PathLike[str], *, timeout: float = 60.0,
                ca_file: str | None = None, max_bytes: int = MAX_MODEL_BYTES,
                deadline: float = DOWNLOAD_DEADLINE_SECONDS, min_rate: float = MIN_BYTES_PER_SECOND,
                grace: float = RATE_GRACE_SECONDS, cancel: threading.Event | None = None) -> tuple[Path, ModelCard]:
    """Download ``ref.url`` into ``models_dir``, verify hash and card; returns (path, card).

    The download ends with :class:`OtaError` when it takes longer than ``deadline`` seconds, when it
    averages under ``min_rate`` bytes/s after ``grace`` seconds, or as soon as ``cancel`` is set (a
    newer request superseded it); ``timeout`` bounds each read."""
    if not ref.url or len(ref.sha256) != 64:
        raise OtaError("download", "the model reference needs a url and a sha256")
    models = Path(models_dir)
    models.mkdir(parents=True, exist_ok=True)
    final = models / f"{ref.sha256.lower()}.onnx"
    if final.exists() and _sha256(final) == ref.sha256.lower():
        return final, _card(final)
    fd, tmp_name = tempfile.mkstemp(prefix=".download.", suffix=".part", dir=models)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        size = 0
        start = time.monotonic()
        try:
            with os.fdopen(fd, "wb") as out, \
                    _open(ref.url, timeout=min(timeout, deadline), ca_file=ca_file) as src:
                read = getattr(src, "read1", src.read)  # returns what has arrived: deadlines are checked often
                for block in iter(lambda: read(1 << 16), b""):
                    size += len(block)
                    if size > max_bytes:
                        raise OtaError("download", f"model larger than {max_bytes} bytes")
                    h.update(block)
                    out.write(block)
                    _check_progress(size, time.monotonic() - start, deadline=deadline, min_rate=min_rate,
                                    grace=grace, cancel=cancel)
                out.flush()
                os.fsync(out.fileno())
        except OtaError:
            raise
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, ssl, OSError, timeouts
            raise OtaError("download", redact(f"{type(exc).__name__}: {exc}")) from None
        digest = h.hexdigest()
        if digest != ref.sha256.lower():
            raise OtaError("verify", f"sha256 mismatch: expected {ref.sha256.lower()}, got {digest}")
        card = _card(tmp)
        os.replace(tmp, final)
        return final, card
    finally:
        tmp.unlink(missing_ok=True)


def _check_progress(size: int, elapsed: float, *, deadline: float, min_rate: float, grace: float,
                    cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise OtaError("download", "superseded by a newer model request")
    if elapsed > deadline:
        raise OtaError("download", f"not done after {deadline:g} s ({size} bytes): too slow")
    if elapsed > grace and size / elapsed < min_rate:
        raise OtaError("download", f"{size / elapsed:.0f} bytes/s after {elapsed:.0f} s: too slow "
                                   f"(at least {min_rate:g} bytes/s)")


def prune(models_dir: Path, keep: set[str]) -> list[str]:
    """Remove downloads left behind: interrupted ``.part`` files and models whose SHA-256 is not in
    ``keep`` (the model in use and the one before it). Returns the names removed."""
    removed = []
    for p in models_dir.glob("*"):
        stale = p.name.startswith(".download.") or (p.suffix == ".onnx" and p.stem not in keep)
        if stale and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    if removed:
        log.info("hub: removed old downloads: %s", ", ".join(sorted(removed)))
    return removed


def _card(path: Path) -> ModelCard:
    try:
        return read_card(path)
    except CardError as exc:
        raise OtaError("card", exc.reason) from None
    except Exception as exc:  # noqa: BLE001 - not an ONNX file at all
        raise OtaError("card", f"not a readable ONNX model: {type(exc).__name__}: {exc}") from None


class ModelUpdater:
    """The model-update worker: :meth:`request` a model; one thread fetches, verifies and swaps.

    A newer request supersedes the one running (its download is abandoned) and any queued one.
    After a swap, downloads other than the model in use and the one before it are removed.
    ``swap(path)`` puts a verified model in force (the runtime's ``swap_model``; it raises and
    keeps the old on failure); ``report(patch)`` reports progress under ``model``; ``on_done(ref)``
    is called once a model is in use.
    """

    def __init__(self, models_dir: Path, *, swap: Callable[[Path], Any], report: Callable[[dict[str, Any]], None],
                 on_done: Callable[[ModelRef], None], ca_file: str | None = None) -> None:
        self.models_dir = Path(models_dir)
        self._swap = swap
        self._report = report
        self._on_done = on_done
        self._ca_file = ca_file
        self._lock = threading.Lock()
        self._wanted: ModelRef | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.current = ModelRef()
        self.previous = ModelRef()
        self.last_error: str | None = None
        if self.models_dir.is_dir():
            prune(self.models_dir, keep={r.sha256 for r in (self.current, self.previous) if r.sha256} | {
                p.stem for p in self.models_dir.glob("*.onnx")})  # at start: only interrupted downloads go

    def request(self, ref: ModelRef) -> None:
        """Fetch and swap ``ref`` in the background, unless it is the model in use."""
        if not ref.url or ref == self.current:
            return
        with self._lock:
            self._wanted = ref
            self._cancel.set()  # a download still running for an older request ends now
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="model-update", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                ref, self._wanted = self._wanted, None
                if ref is None:
                    self._thread = None
                    return
                self._cancel.clear()
            self._update(ref)

    def _update(self, ref: ModelRef) -> None:
        """Download, verify, swap; on any failure keep the old model and report why."""
        self._report({"model": {"requested": ref.version, "state": "downloading", "error": None}})
        try:
            path, card = fetch_model(ref, self.models_dir, ca_file=self._ca_file, cancel=self._cancel)
            result = self._swap(path)
        except Exception as exc:  # noqa: BLE001 - OtaError, the runtime's ModelError, anything: keep the old
            # A verified download the runtime could not load is of no use: only the model in use and
            # the one before it stay on disk.
            prune(self.models_dir, keep={r.sha256 for r in (self.current, self.previous) if r.sha256})
            reason = redact(str(exc)) if isinstance(exc, OtaError) else redact(f"{type(exc).__name__}: {exc}")
            self.last_error = f"model {ref.version}: {reason}"
            log.warning("hub: model update to %s refused, keeping the old model: %s", ref.version, reason)
            self._report({"model": {"requested": ref.version, "state": "failed", "error": reason},
                          "last_error": self.last_error})
            return
        self.previous, self.current = self.current, ref
        prune(self.models_dir, keep={r.sha256 for r in (self.current, self.previous) if r.sha256})
        log.info("hub: model %s in use", ref.version)
        self._report({"model": {"requested": ref.version, "state": "ok", "version": ref.version, "error": None,
                                "sha256": ref.sha256, "card": card.summary(),
                                "result": result if isinstance(result, dict) else None}})
        self._on_done(ref)
