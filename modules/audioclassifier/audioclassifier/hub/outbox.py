"""The durable outbox: every message is committed to SQLite (WAL) before it is sent.

A message leaves the outbox only when :meth:`Outbox.ack` is called after IoT Hub confirmed the
send, so a dead hub, a broker restart or a killed module loses nothing; at worst a message whose
confirmation was lost is sent twice, and its ``seq`` (a durable per-output counter) lets the cloud
drop the duplicate. A size quota bounds the file: when it is exceeded the oldest telemetry goes
first and alerts last, and every drop is counted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AuscultError

__all__ = ["DROP_ORDER", "Entry", "MessageTooLargeError", "Outbox", "OutboxError", "OutboxStats"]

DROP_ORDER = ("telemetry", "alerts")
"""Which output loses its oldest message first when the quota is reached; alerts go last."""

SEND_ORDER = ("alerts", "telemetry")
"""Which output is drained first after an outage: technicians need alerts before summaries."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    output TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    properties TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_output ON messages (output, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


_SIZE = "LENGTH(CAST(body AS BLOB)) + LENGTH(CAST(properties AS BLOB))"
"""A row's size in bytes (LENGTH of TEXT counts characters)."""


class OutboxError(AuscultError):
    """The outbox cannot take a message (too big for the quota, or the database failed)."""


class MessageTooLargeError(OutboxError):
    """A message the outbox can never hold (over half its quota): retrying cannot help."""


@dataclass(frozen=True)
class Entry:
    """One queued message: ``body`` is the JSON text to send on ``output``."""

    id: int
    output: str
    seq: int
    body: str
    properties: dict[str, str]
    created: float
    attempts: int

    @property
    def message_id(self) -> str:
        """Stable across resends, so IoT Hub routing and the cloud can deduplicate."""
        return f"{self.output}-{self.seq}"


@dataclass(frozen=True)
class OutboxStats:
    """What the twin reports about the queue."""

    pending: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    quota_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"pending": dict(self.pending), "bytes": self.bytes, "quota_bytes": self.quota_bytes,
                "dropped": dict(self.dropped), "sent": dict(self.sent)}


class Outbox:
    """A thread-safe durable FIFO per output, in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, quota_bytes: int = 20 * 1024 * 1024) -> None:
        if quota_bytes < 4096:
            raise ValueError(f"outbox quota must be at least 4096 bytes, got {quota_bytes}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = int(quota_bytes)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed alert survives a power cut
        # The write-ahead log is checkpointed every 32 pages (128 KB) rather than SQLite's 1000 (4 MB)
        # and cut back to 128 KB after a burst: on a small or full disk it must fit the reserve the
        # spool leaves free (a tenth of a small disk), or the outbox could not even delete what it sent.
        self._db.execute("PRAGMA wal_autocheckpoint=32")
        self._db.execute(f"PRAGMA journal_size_limit={128 * 1024}")
        self._db.executescript(_SCHEMA)
        with self._tx():
            # Recompute the byte count: the counter is a cache and must never drift from the rows.
            (total,) = self._db.execute(
                "SELECT COALESCE(SUM(" + _SIZE + "), 0) FROM messages").fetchone()
            self._set("bytes", total)

    # -- writing ---------------------------------------------------------------------------------

    def put(self, output: str, message: Mapping[str, Any], properties: Mapping[str, str] | None = None) -> Entry:
        """Commit ``message`` for ``output``. Its ``seq`` is kept when it is a whole number > 0 (the
        runtime numbers its messages, and an alert's clip name carries the same number); a message
        without one gets the next number of the outbox's own durable per-output counter.

        Returns the stored entry. Raises :class:`OutboxError` for a message larger than the quota.
        """
        props = {str(k): str(v) for k, v in (properties or {}).items()}
        props_text = json.dumps(props, sort_keys=True)
        given = message.get("seq")
        with self._lock, self._tx():
            last = self._get(f"seq.{output}")
            numbered = isinstance(given, int) and not isinstance(given, bool) and given > 0
            seq = int(given) if numbered else last + 1  # type: ignore[arg-type]
            body = json.dumps({**message, "seq": seq}, ensure_ascii=False, allow_nan=False)
            size = len(body.encode()) + len(props_text.encode())
            if size > self.quota_bytes // 2:
                raise MessageTooLargeError(f"message of {size} bytes exceeds half the outbox quota ({self.quota_bytes})")
            now = time.time()
            cur = self._db.execute(
                "INSERT INTO messages (output, seq, body, properties, created) VALUES (?, ?, ?, ?, ?)",
                (output, seq, body, props_text, now))
            self._set(f"seq.{output}", max(seq, last))
            self._set("bytes", self._get("bytes") + size)
            self._enforce_quota()
            return Entry(int(cur.lastrowid or 0), output, seq, body, props, now, 0)

    def _enforce_quota(self) -> None:
        while self._get("bytes") > self.quota_bytes:
            victim = None
            outputs = [o for (o,) in self._db.execute("SELECT DISTINCT output FROM messages")]
            # Outputs not named in DROP_ORDER go before alerts; alerts are always last.
            order = [o for o in DROP_ORDER if o != "alerts"] + sorted(set(outputs) - set(DROP_ORDER)) + ["alerts"]
            for output in order:
                victim = self._db.execute(
                    "SELECT id, output, " + _SIZE + " FROM messages "
                    "WHERE output = ? ORDER BY id LIMIT 1", (output,)).fetchone()
                if victim:
                    break
            if victim is None:
                self._set("bytes", 0)
                return
            vid, voutput, vsize = victim
            self._db.execute("DELETE FROM messages WHERE id = ?", (vid,))
            self._set("bytes", self._get("bytes") - vsize)
            self._set(f"dropped.{voutput}", self._get(f"dropped.{voutput}") + 1)

    def ack(self, entry: Entry) -> None:
        """The hub confirmed ``entry``: remove it for good."""
        with self._lock, self._tx():
            cur = self._db.execute("DELETE FROM messages WHERE id = ?", (entry.id,))
            if cur.rowcount:
                size = len(entry.body.encode()) + len(json.dumps(entry.properties, sort_keys=True).encode())
                self._set("bytes", max(0, self._get("bytes") - size))
                self._set(f"sent.{entry.output}", self._get(f"sent.{entry.output}") + 1)

    def failed(self, entry: Entry) -> None:
        """Count one failed attempt to send ``entry`` (it stays first in line)."""
        with self._lock, self._tx():
            self._db.execute("UPDATE messages SET attempts = attempts + 1 WHERE id = ?", (entry.id,))

    # -- reading ---------------------------------------------------------------------------------

    def head(self) -> Entry | None:
        """The next message to send: the oldest alert, else the oldest of any other output."""
        with self._lock:
            for output in SEND_ORDER:
                row = self._db.execute(
                    "SELECT id, output, seq, body, properties, created, attempts FROM messages "
                    "WHERE output = ? ORDER BY id LIMIT 1", (output,)).fetchone()
                if row:
                    return _entry(row)
            row = self._db.execute(
                "SELECT id, output, seq, body, properties, created, attempts FROM messages "
                "ORDER BY id LIMIT 1").fetchone()
            return _entry(row) if row else None

    def entries(self, output: str | None = None) -> list[Entry]:
        """Everything queued (for an output), oldest first."""
        with self._lock:
            sql = "SELECT id, output, seq, body, properties, created, attempts FROM messages"
            rows = (self._db.execute(sql + " WHERE output = ? ORDER BY id", (output,)) if output
                    else self._db.execute(sql + " ORDER BY id"))
            return [_entry(r) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def stats(self) -> OutboxStats:
        """Counts per output. Every output ever seen is listed, drained ones with 0: reported
        properties merge, so an output left out would keep its last count in the twin forever."""
        with self._lock:
            pending = dict(self._db.execute("SELECT output, COUNT(*) FROM messages GROUP BY output").fetchall())
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())

        def pick(prefix: str) -> dict[str, int]:
            return {k[len(prefix):]: int(v) for k, v in counters.items() if k.startswith(prefix)}

        seen = {name for prefix in ("seq.", "dropped.", "sent.") for name in pick(prefix)} | set(pending)
        return OutboxStats(pending={o: int(pending.get(o, 0)) for o in sorted(seen)},
                           bytes=int(counters.get("bytes", 0)), quota_bytes=self.quota_bytes,
                           dropped={o: pick("dropped.").get(o, 0) for o in sorted(seen)},
                           sent={o: pick("sent.").get(o, 0) for o in sorted(seen)})

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- helpers ---------------------------------------------------------------------------------

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def _get(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _set(self, name: str, value: int) -> None:
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, int(value)))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (re-raised as OutboxError if sqlite)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # e.g. the disk is full
            raise OutboxError(f"outbox database error: {exc}") from exc

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as commit_exc:  # a full disk often fails here, at the commit
                exc = commit_exc
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # nothing was committed either way
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(f"outbox database error: {exc}") from exc


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(int(row[0]), row[1], int(row[2]), row[3], json.loads(row[4]), float(row[5]), int(row[6]))
