"""Field clips → a training tree: the labelled alert clips of a blob container, pulled by verdict.

The edge module marks an alert's clip when a technician gives a verdict (``feedback`` direct
method; ``audioclassifier.hub.marks``): blob metadata ``auscult_verdict``, ``auscult_label``,
``auscult_machine``, ... (percent-encoded values), or, for clips that went through IoT Hub file
upload, a sidecar blob ``<clip>.json`` holding the same fields. :func:`pull` lists the container,
reads each clip's mark (metadata first, else its sidecar) and mirrors the marked clips into

    ROOT/<label>/<machine>/<YYYY-MM-DD>_<clip file name>.wav      (+ ROOT/manifest.csv)

which is the tree ``python -m ml train`` reads (``<label>`` first, the machine as the group that
keeps splits apart). ``confirmed`` clips go under their label (``bearing``); ``false_alarm`` clips
under theirs (``normal`` unless the technician said otherwise): the hard negatives a new model
should learn. Undone verdicts are not pulled.

Pulling again is a sync: a clip whose blob did not change (same ETag) is not downloaded again, a
clip relabelled moves, and a clip whose verdict was undone (or that left the container) is
removed from the tree, but only files the previous manifest lists: nothing else under ROOT is
touched. Each file is written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from audioclassifier.clips import safe_part

__all__ = ["MANIFEST", "VERDICTS", "FieldClip", "PullReport", "container_client", "pull", "read_mark"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
VERDICTS = ("confirmed", "false_alarm")
PREFIX = "auscult_"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_COLUMNS = ("path", "label", "machine", "verdict", "seq", "note", "marked_at", "alert_time", "model", "blob", "etag",
            "bytes", "sha256")
#: A sidecar larger than this is not a mark.
MAX_SIDECAR = 64 * 1024


@dataclass(frozen=True)
class FieldClip:
    """A marked clip in the container and where it goes in the tree."""

    blob: str
    etag: str
    size: int
    mark: dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.mark["label"])

    @property
    def machine(self) -> str:
        return safe_part(str(self.mark.get("machine") or "machine"), fallback="machine")

    @property
    def path(self) -> PurePosixPath:
        """Relative path in the tree: ``<label>/<machine>/<date>_<file>`` (the date folder of the clip name)."""
        parts = PurePosixPath(self.blob).parts
        name = parts[-1] if len(parts) < 2 else f"{parts[-2]}_{parts[-1]}"
        return PurePosixPath(self.label, self.machine, safe_part(name, fallback="clip.wav"))


@dataclass
class PullReport:
    """What a pull did."""

    root: Path
    clips: list[FieldClip] = field(default_factory=list)
    downloaded: int = 0
    unchanged: int = 0
    removed: int = 0
    unmarked: int = 0
    skipped: list[str] = field(default_factory=list)  # "<blob>: why"

    def counts(self) -> dict[str, int]:
        by: dict[str, int] = {}
        for c in self.clips:
            by[c.label] = by.get(c.label, 0) + 1
        return dict(sorted(by.items()))

    def summary(self) -> str:
        labels = ", ".join(f"{k} {v}" for k, v in self.counts().items()) or "none"
        lines = [f"pulled {len(self.clips)} labelled clip(s) into {self.root} ({labels}): {self.downloaded} downloaded, "
                 f"{self.unchanged} unchanged, {self.removed} removed; {self.unmarked} clip(s) without a verdict"]
        lines += [f"  skipped {s}" for s in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more skipped")
        return "\n".join(lines)


def container_client(*, connection_string: str | None = None, container: str = "auscult-clips",
                     sas_url: str | None = None, ca_file: str | None = None) -> Any:
    """A ``ContainerClient`` from a connection string (+ container) or a container SAS URL (which
    needs the ``r`` and ``l`` permissions); ``ca_file``: an extra CA to trust (PEM)."""
    from azure.storage.blob import ContainerClient

    verify: bool | str = ca_file or True
    if sas_url:
        return ContainerClient.from_container_url(sas_url, connection_verify=verify)
    if connection_string:
        return ContainerClient.from_connection_string(connection_string, container, connection_verify=verify)
    raise ValueError("give a connection string or a container SAS URL")


def read_mark(source: dict[str, str] | bytes | None) -> dict[str, Any] | None:
    """A clip's mark from its blob metadata (``auscult_*``, percent-encoded) or its sidecar JSON bytes;
    None when there is none."""
    if source is None:
        return None
    if isinstance(source, (bytes, bytearray)):
        if len(source) > MAX_SIDECAR:
            return None
        try:
            data = json.loads(bytes(source).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) and data.get("verdict") else None
    mark = {k[len(PREFIX):]: urllib.parse.unquote(v) for k, v in source.items() if k.lower().startswith(PREFIX)}
    if not mark.get("verdict"):
        return None
    if "seq" in mark:
        try:
            mark["seq"] = int(mark["seq"])
        except ValueError:
            pass
    return mark


def _wanted(mark: dict[str, Any], verdicts: Iterable[str], machine: str | None) -> str | None:
    """Why a mark is not pulled (None: pulled; ``verdict`` and ``machine``: not asked for)."""
    if mark.get("verdict") not in verdicts:
        return "verdict"
    if not isinstance(mark.get("label"), str) or not _LABEL.fullmatch(mark["label"]):
        return f"label {str(mark.get('label'))[:70]!r} is not a folder name (1-64 letters, digits, - or _)"
    if machine is not None and safe_part(str(mark.get("machine") or "")) != safe_part(machine):
        return "machine"
    return None


def pull(container: Any, root: str | os.PathLike[str], *, verdicts: Iterable[str] = VERDICTS,
         machine: str | None = None, prefix: str | None = None) -> PullReport:
    """Mirror the marked clips of ``container`` (a ``ContainerClient``) into the tree at ``root``
    (see the module docstring). ``verdicts``: which to pull; ``machine``: only that machine's
    clips; ``prefix``: only blobs under it. Storage errors propagate (``azure.core.exceptions``)."""
    verdicts = tuple(verdicts)
    unknown = set(verdicts) - set(VERDICTS)
    if unknown:
        raise ValueError(f"verdicts are {', '.join(VERDICTS)}; not {', '.join(sorted(unknown))}")
    out = Path(root)
    report = PullReport(out)
    blobs = list(container.list_blobs(name_starts_with=prefix, include=["metadata"]))
    names = {b.name for b in blobs}
    for b in blobs:
        if not b.name.lower().endswith(".wav"):
            continue
        mark = read_mark(b.metadata or {})
        if mark is None and f"{b.name}.json" in names:
            mark = read_mark(container.download_blob(f"{b.name}.json").readall())
        if mark is None:
            report.unmarked += 1
            continue
        why = _wanted(mark, verdicts, machine)
        if why in ("verdict", "machine"):
            continue
        if why:
            report.skipped.append(f"{b.name}: {why}")
            continue
        report.clips.append(FieldClip(b.name, str(b.etag), int(b.size or 0), mark))
    _sync(container, out, report)
    return report


def _sync(container: Any, out: Path, report: PullReport) -> None:
    before = _read_manifest(out / MANIFEST)
    rows, taken = [], set()
    for clip in sorted(report.clips, key=lambda c: c.blob):
        rel = clip.path
        if rel in taken:  # two blobs, one file name: keep both
            rel = rel.with_name(f"{rel.stem}-{hashlib.sha256(clip.blob.encode()).hexdigest()[:8]}{rel.suffix}")
        taken.add(rel)
        dest = out / rel
        old = before.get(clip.blob)
        if old and old["etag"] == clip.etag and old["path"] == rel.as_posix() and dest.is_file():
            sha = old["sha256"]
            report.unchanged += 1
        else:
            data = container.download_blob(clip.blob).readall()
            _write(dest, data)
            sha = hashlib.sha256(data).hexdigest()
            report.downloaded += 1
        m = clip.mark
        rows.append({"path": rel.as_posix(), "label": clip.label, "machine": clip.machine, "verdict": m.get("verdict"),
                     "seq": m.get("seq", ""), "note": m.get("note") or "", "marked_at": m.get("at") or "",
                     "alert_time": m.get("alert_time") or "", "model": m.get("model") or "", "blob": clip.blob,
                     "etag": clip.etag, "bytes": clip.size, "sha256": sha})
    kept = {r["path"] for r in rows}
    for old in before.values():  # verdicts undone, relabelled, blobs gone: only files we wrote
        if old["path"] not in kept:
            path = out / old["path"]
            if path.is_file():
                path.unlink()
                report.removed += 1
                _prune(path.parent, out)
    out.mkdir(parents=True, exist_ok=True)
    text = _manifest_text(rows)
    _write(out / MANIFEST, text.encode())


def _manifest_text(rows: list[dict[str, Any]]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    """The previous pull's rows by blob name ({} when there is none or it is not one of ours)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != _COLUMNS:
                return {}
            rows = {r["blob"]: r for r in reader}
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    # a path from a manifest is only trusted inside the tree
    return {b: r for b, r in rows.items() if r["path"] and ".." not in PurePosixPath(r["path"]).parts
            and not PurePosixPath(r["path"]).is_absolute()}


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prune(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
