"""Where alerts and telemetry go. :class:`LocalSink` is the embedded default (no IoT Hub).

A sink takes the message dictionaries of :mod:`audioclassifier.events` for the outputs
``alerts`` and ``telemetry``. :meth:`Sink.emit` must never block the audio worker: LocalSink
hands lines to a writer thread, which appends them to ``alerts.jsonl`` / ``telemetry.jsonl``
(flushed per line) and prints one readable line per alert on stdout. The IoT Hub sink
(:mod:`audioclassifier.hub`) implements the same protocol.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = ["OUTPUTS", "LocalSink", "Sink", "alert_line"]

log = logging.getLogger(__name__)

OUTPUTS = ("alerts", "telemetry")


class Sink(Protocol):
    """The runtime's outlet."""

    @property
    def clip_dir(self) -> Path:
        """Where the runtime writes clip WAVs."""
        ...

    def emit(self, output: str, message: dict) -> None:
        """Queue ``message`` for ``output`` ("alerts" or "telemetry"); never blocks, never raises."""
        ...

    def close(self) -> None:
        """Flush what is queued and stop."""
        ...


def alert_line(m: dict[str, Any]) -> str:
    """One readable line for an alert message."""
    clip = f" clip={m['clip']}" if m.get("clip") else ""
    return (f"ALERT {m.get('window_start')} machine={m.get('machine')} label={m.get('label')} "
            f"score={m.get('score'):.4f} threshold={m.get('threshold'):.4f} "
            f"audio={m.get('audio_offset_seconds'):.1f}s seq={m.get('seq')}{clip}")


class LocalSink:
    """``<out>/alerts.jsonl``, ``<out>/telemetry.jsonl``, ``<out>/clips/`` and a line per alert."""

    def __init__(self, out_dir: str | Path, *, stdout: IO[str] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._clip_dir = self.out_dir / "clips"
        self._clip_dir.mkdir(exist_ok=True)
        self._stdout = stdout
        self._files = {o: open(self.out_dir / f"{o}.jsonl", "a", encoding="utf-8") for o in OUTPUTS}
        self._queue: queue.SimpleQueue[tuple[str, dict] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="local-sink", daemon=True)
        self._thread.start()
        self.emitted = {o: 0 for o in OUTPUTS}
        self.errors = 0
        self._closed = False
        log.info("local mode: alerts and telemetry in %s, clips in %s", self.out_dir, self._clip_dir)

    @property
    def clip_dir(self) -> Path:
        return self._clip_dir

    def emit(self, output: str, message: dict) -> None:
        if output not in OUTPUTS:
            log.error("unknown output %r: message dropped", output)
            self.errors += 1
            return
        if self._closed:
            log.error("sink closed: %s message dropped", output)
            self.errors += 1
            return
        self.emitted[output] += 1
        self._queue.put((output, message))

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            output, message = item
            try:
                if output == "alerts":  # first: the log line survives a full disk
                    out = self._stdout or sys.stdout
                    out.write(alert_line(message) + "\n")
                    out.flush()
                fh = self._files[output]
                fh.write(json.dumps(message, ensure_ascii=False, allow_nan=False) + "\n")
                fh.flush()
            except (OSError, ValueError, TypeError) as exc:
                self.errors += 1
                log.error("local sink: writing a %s message failed: %s", output, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        for fh in self._files.values():
            try:
                fh.close()
            except OSError as exc:
                log.error("local sink: closing %s: %s", fh.name, exc)
