"""Model over the air: download a model the twin names, verify its SHA-256 and its card.

:func:`fetch_model` never leaves a half-written or unverified file where the runtime could load
it: the download goes to a hidden temporary file, is hashed on the way, checked, and only then
renamed to ``<models_dir>/<sha256>.onnx`` (a verified copy is reused, so a restart re-applying the
twin does not download again). Any failure raises :class:`OtaError` with the reason; the caller
keeps the old model.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from audioclassifier.card import CardError, ModelCard, read_card

from ..settings import ModelRef
from .redact import redact
from ..errors import AuscultError

__all__ = ["OtaError", "fetch_model"]

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


def fetch_model(ref: ModelRef, models_dir: str | os.PathLike[str], *, timeout: float = 60.0,
                ca_file: str | None = None, max_bytes: int = MAX_MODEL_BYTES) -> tuple[Path, ModelCard]:
    """Download ``ref.url`` into ``models_dir``, verify hash and card; returns (path, card)."""
    if not ref.url or len(ref.sha256) != 64:
        raise OtaError("download", "the model reference needs a url and a sha256")
    models = Path(models_dir)
    models.mkdir(parents=True, exist_ok=True)
    final = models / f"{ref.sha256.lower()}.onnx"
    if final.exists() and _sha256(final) == ref.sha256.lower():
        return final, _card(final)
    ca_file = ca_file or os.environ.get("AUSCULT_CA_FILE") or None
    fd, tmp_name = tempfile.mkstemp(prefix=".download.", suffix=".part", dir=models)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, _open(ref.url, timeout=timeout, ca_file=ca_file) as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    size += len(block)
                    if size > max_bytes:
                        raise OtaError("download", f"model larger than {max_bytes} bytes")
                    h.update(block)
                    out.write(block)
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


def _card(path: Path) -> ModelCard:
    try:
        return read_card(path)
    except CardError as exc:
        raise OtaError("card", exc.reason) from None
    except Exception as exc:  # noqa: BLE001 - not an ONNX file at all
        raise OtaError("card", f"not a readable ONNX model: {type(exc).__name__}: {exc}") from None


def prune_models(models_dir: str | os.PathLike[str], keep: set[Path]) -> None:
    """Remove downloaded models other than ``keep`` (the one in use and the one being loaded)."""
    for p in Path(models_dir).glob("*.onnx"):
        if p.resolve() not in {k.resolve() for k in keep}:
            p.unlink(missing_ok=True)

