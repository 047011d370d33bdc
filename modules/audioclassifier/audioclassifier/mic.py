"""The microphone source (PortAudio through sounddevice): capture that never crashes the module.

The capture callback only copies into a preallocated ring buffer and notes the time; the worker
drains the ring in :meth:`MicSource.chunks`. When the ring is full the oldest audio is dropped
and counted (``overflows``), as are PortAudio's own input overflows. A microphone that delivers
no callbacks, or only digital zeros, for ``dead_seconds`` puts the source in state ``no-audio``;
it is then closed and reopened with exponential backoff (1 s, 2 s, ... up to ``max_backoff``),
forever, and the analysis starts afresh when audio is back. A missing device at start is the
same case: the module waits for it instead of exiting.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator

import numpy as np

from audioclassifier.audio_io import to_mono
from audioclassifier.sources import Chunk

__all__ = ["MicSource", "parse_device"]

log = logging.getLogger(__name__)


def parse_device(text: str | int | None) -> str | int | None:
    """An index (``"3"`` → 3), a name (substring, as sounddevice matches it), or None (default)."""
    if text is None or isinstance(text, int):
        return text
    t = text.strip()
    if not t or t.lower() == "default":
        return None
    return int(t) if t.isdigit() else t


class _Ring:
    """A fixed-size ring of ``(frames, channels)`` float32 samples, written by the callback."""

    def __init__(self, frames: int, channels: int) -> None:
        self.buf = np.zeros((frames, channels), dtype=np.float32)
        self.size = frames
        self.written = 0  # total frames ever written
        self.read = 0  # total frames ever read
        self.dropped = 0  # frames overwritten before they were read
        self.lock = threading.Lock()

    def write(self, x: np.ndarray) -> None:
        n = x.shape[0]
        with self.lock:
            if n >= self.size:  # only the newest fit; the skipped frames count as lost below
                x = x[-self.size :]
                self.written += n - self.size
                n = self.size
            i = self.written % self.size
            k = min(n, self.size - i)
            self.buf[i : i + k] = x[:k]
            if k < n:
                self.buf[: n - k] = x[k:]
            self.written += n
            lost = self.written - self.read - self.size
            if lost > 0:
                self.dropped += lost
                self.read += lost

    def take(self) -> tuple[np.ndarray, int, int]:
        """All unread frames (a copy), the total index of the first one, and frames lost since."""
        with self.lock:
            start, end = self.read, self.written
            n = end - start
            i = start % self.size
            k = min(n, self.size - i)
            out = np.concatenate((self.buf[i : i + k], self.buf[: n - k])) if k < n else self.buf[i : i + n].copy()
            self.read = end
            dropped, self.dropped = self.dropped, 0
            return out, start, dropped


class MicSource:
    """Microphone capture: device by name or index, capture rate and channels as configured.

    Audio is mixed down (or ``channel`` picked) and resampled to ``sample_rate`` (the model's)
    with a streaming soxr resampler.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        device: str | int | None = None,
        capture_rate: int | None = None,
        channels: int = 1,
        channel: int | None = None,
        block_seconds: float = 0.1,
        dead_seconds: float = 5.0,
        max_backoff: float = 30.0,
        ring_seconds: float = 30.0,
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.capture_rate = int(capture_rate or sample_rate)
        self.device = parse_device(device)
        self.channels = int(channels)
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if channel is not None and not -self.channels <= channel < self.channels:
            raise ValueError(f"channel {channel} requested, capturing {self.channels} channel(s)")
        self.channel = channel
        self.block_frames = max(1, int(round(block_seconds * self.capture_rate)))
        self.dead_seconds = float(dead_seconds)
        self.max_backoff = float(max_backoff)
        self.name = "mic" if self.device is None else f"mic:{self.device}"
        self.state = "no-audio"
        self.overflows = 0  # blocks with lost audio (ring full or PortAudio input overflow)
        self.dropped_frames = 0
        self.reopens = 0
        self.last_error: str | None = None
        self._ring = _Ring(int(ring_seconds * self.capture_rate), self.channels)
        self._stream: Any = None
        self._sd: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._callbacks = 0
        self._pa_overflows = 0
        self._anchor: tuple[int, float] = (0, 0.0)  # (frames written after a callback, POSIX time then)
        self._listed_devices = False

    # -- capture (PortAudio's thread) -------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """Copy into the ring; note the time and any overflow. Nothing else runs here."""
        self._ring.write(indata)
        self._anchor = (self._ring.written, time.time())
        self._callbacks += 1
        if status and status.input_overflow:
            self._pa_overflows += 1
        self._wake.set()

    # -- stream management (worker thread) --------------------------------------------------------

    def _open(self) -> None:
        if self._sd is None:
            import sounddevice  # PortAudio: only the microphone needs it

            self._sd = sounddevice
        sd = self._sd
        if self.reopens:
            # PortAudio lists devices once per initialisation: re-scan so a re-plugged one is found.
            try:
                sd._terminate()
                sd._initialize()
            except Exception:  # noqa: BLE001 - best effort; opening reports the real problem
                pass
        stream = sd.InputStream(
            device=self.device,
            samplerate=self.capture_rate,
            channels=self.channels,
            dtype="float32",
            blocksize=self.block_frames,
            callback=self._callback,
        )
        stream.start()
        self._stream = stream
        log.info("microphone open: %s, %d Hz, %d channel(s)", _device_name(sd, stream), self.capture_rate, self.channels)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except Exception as exc:  # noqa: BLE001 - a dead device may fail to close; it is gone anyway
                log.debug("closing the microphone: %s", exc)

    def _list_devices_once(self) -> None:
        if self._listed_devices or self._sd is None:
            return
        self._listed_devices = True
        try:
            inputs = [f"{i}: {d['name']}" for i, d in enumerate(self._sd.query_devices()) if d["max_input_channels"] > 0]
            log.info("input devices: %s", "; ".join(inputs) or "none")
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        self._stop.set()
        self._wake.set()

    def chunks(self) -> Iterator[Chunk]:
        t_source = time.time()
        backoff = 1.0
        next_try = 0.0
        fresh = True  # the next audio starts a new segment
        resampler = None
        try:
            while not self._stop.is_set():
                now = time.time()
                if self._stream is None:
                    if now < next_try:
                        self._stop.wait(min(0.5, next_try - now))
                        yield Chunk(_EMPTY, time.time(), time.time() - t_source, name=self.name)
                        continue
                    try:
                        self._open()
                    except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError (no such device), ...
                        self.last_error = f"microphone {self.device if self.device is not None else 'default'}: {exc}"
                        log.error("%s; retrying in %.0f s", self.last_error, backoff)
                        self._list_devices_once()
                        self.state = "no-audio"
                        next_try, backoff = now + backoff, min(backoff * 2, self.max_backoff)
                        continue
                    opened = last_audio = last_sound = time.time()
                    self._ring.take()  # forget anything from before
                    fresh, resampler = True, self._resampler()
                self._wake.wait(0.25)
                self._wake.clear()
                x, _start, dropped = self._ring.take()
                now = time.time()
                if dropped:
                    self.overflows += 1
                    self.dropped_frames += dropped
                    log.warning("capture overflow: %d frames lost (the worker fell behind)", dropped)
                    fresh = True
                if self._pa_overflows:
                    self.overflows += self._pa_overflows
                    self._pa_overflows = 0
                if x.shape[0]:
                    last_audio = now
                    if np.any(x):
                        last_sound = now
                if now - last_audio > self.dead_seconds or now - last_sound > self.dead_seconds:
                    why = "no audio callbacks" if now - last_audio > self.dead_seconds else "only digital silence"
                    self._dead(f"{why} for {self.dead_seconds:g} s")
                    next_try, backoff = now + backoff, min(backoff * 2, self.max_backoff)
                    yield Chunk(_EMPTY, now, now - t_source, name=self.name)
                    continue
                if not x.shape[0]:
                    yield Chunk(_EMPTY, now, now - t_source, name=self.name)
                    continue
                if last_sound > opened and self.state != "running":
                    self.state = "running"
                    backoff = 1.0
                    log.info("microphone delivering audio")
                anchor_frames, anchor_time = self._anchor
                t_first = anchor_time - (anchor_frames - _start) / self.capture_rate
                y = to_mono(x, channel=self.channel)
                if resampler is not None:
                    y = resampler.resample_chunk(y)
                if y.size:
                    yield Chunk(np.ascontiguousarray(y, dtype=np.float32), t_first, t_first - t_source,
                                discontinuity=fresh, name=self.name)
                    fresh = False
        finally:
            self._close_stream()

    def _dead(self, why: str) -> None:
        self.last_error = f"microphone: {why}"
        if self.state != "no-audio":
            log.error("%s; reopening", self.last_error)
        self.state = "no-audio"
        self._close_stream()
        self.reopens += 1

    def _resampler(self) -> Any:
        if self.capture_rate == self.sample_rate:
            return None
        import soxr

        return soxr.ResampleStream(self.capture_rate, self.sample_rate, 1, dtype="float32", quality="HQ")


_EMPTY = np.zeros(0, dtype=np.float32)


def _device_name(sd: Any, stream: Any) -> str:
    try:
        return str(sd.query_devices(stream.device)["name"])
    except Exception:  # noqa: BLE001
        return str(stream.device)
