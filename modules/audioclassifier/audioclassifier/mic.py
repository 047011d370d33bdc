"""The microphone source (PortAudio through sounddevice): capture that never crashes the module.

The capture callback only hands a copy of its block over (python-sounddevice's model); the
worker takes what arrived and joins it outside the lock in :meth:`MicSource.chunks`. When the
worker falls ``ring_seconds`` behind the oldest audio is dropped and counted (``overflows``), as
are PortAudio's own input overflows. A microphone that delivers no callbacks, or only digital
zeros, for ``dead_seconds`` puts the source in state ``no-audio``; it is then closed and reopened
with exponential backoff (:class:`~audioclassifier.backoff.Backoff`, about 1 s, 2 s, ... up to
``max_backoff``), forever, and the analysis starts afresh when audio is back. A missing device
at start is the same case: the module waits for it instead of exiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from audioclassifier.audio_io import to_mono
from audioclassifier.backoff import Backoff
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


class _Taken(NamedTuple):
    """What the worker took from the hand-off: the frames, the total index of the first, frames
    lost since the last take, (total frames handed over, POSIX time) at the newest callback, and
    the callbacks since the last take that reported a PortAudio input overflow."""

    samples: np.ndarray
    start: int
    dropped: int
    anchor: tuple[int, float]
    input_overflows: int = 0


class _Handoff:
    """Blocks from the PortAudio callback to the worker, at most ``capacity`` frames held.

    python-sounddevice's model: the callback hands over a copy of its block (the lock is held for
    a list append, nothing else) and the worker takes everything at once (a list swap) and joins
    the blocks outside the lock, so the callback never waits on the worker's copying. When the
    worker falls behind, the oldest frames are dropped and counted.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: list[np.ndarray] = []
        self._held = 0  # frames in _blocks
        self._written = 0  # frames ever handed over (dropped ones included)
        self._dropped = 0  # frames dropped since the last take
        self._anchor: tuple[int, float] = (0, 0.0)
        self._input_overflows = 0
        self._lock = threading.Lock()

    def write(self, block: np.ndarray, at: float = 0.0, *, input_overflow: bool = False) -> None:
        """Hand over ``block`` (the caller's own copy), which ended at POSIX time ``at``."""
        with self._lock:
            self._input_overflows += input_overflow
            self._blocks.append(block)
            self._held += block.shape[0]
            self._written += block.shape[0]
            self._anchor = (self._written, at)
            if self._held > self.capacity:
                self._drop_oldest(self._held - self.capacity)

    def _drop_oldest(self, excess: int) -> None:
        self._dropped += excess
        self._held -= excess
        while excess:
            first = self._blocks[0]
            if first.shape[0] <= excess:
                excess -= first.shape[0]
                self._blocks.pop(0)
            else:
                self._blocks[0] = first[excess:]
                excess = 0

    def take(self) -> _Taken:
        """Everything handed over since the last take (a fresh array; the lock is held for a swap)."""
        with self._lock:
            blocks, self._blocks = self._blocks, []
            held, self._held = self._held, 0
            dropped, self._dropped = self._dropped, 0
            start, anchor = self._written - held, self._anchor
            input_overflows, self._input_overflows = self._input_overflows, 0
        samples = np.concatenate(blocks) if len(blocks) > 1 else blocks[0] if blocks else _EMPTY2
        return _Taken(samples, start, dropped, anchor, input_overflows)


class _Liveness:
    """Is the microphone alive? Audio must arrive, and not only digital zeros, every ``dead_seconds``."""

    def __init__(self, dead_seconds: float, now: float) -> None:
        self.dead_seconds = dead_seconds
        self.opened = self.last_audio = self.last_sound = now

    def note(self, x: np.ndarray, now: float) -> None:
        if x.shape[0]:
            self.last_audio = now
            if np.any(x):
                self.last_sound = now

    @property
    def sounding(self) -> bool:
        """Non-zero audio has arrived since the stream opened."""
        return self.last_sound > self.opened

    def dead(self, now: float) -> str | None:
        """Why the microphone counts as dead, or None."""
        if now - self.last_audio > self.dead_seconds:
            return f"no audio callbacks for {self.dead_seconds:g} s"
        if now - self.last_sound > self.dead_seconds:
            return f"only digital silence for {self.dead_seconds:g} s"
        return None


class _PortAudio:
    """One PortAudio input stream through sounddevice (imported at the first open)."""

    def __init__(self) -> None:
        self.stream: Any = None
        self._sd: Any = None
        self._listed_devices = False

    def open(self, *, device: str | int | None, rate: int, channels: int, block_frames: int,
             callback: Callable[..., None], rescan: bool) -> None:
        """Open and start; ``rescan``: re-initialise PortAudio first, so a re-plugged device is found."""
        if self._sd is None:
            import sounddevice  # PortAudio: only the microphone needs it

            self._sd = sounddevice
        sd = self._sd
        if rescan:  # PortAudio lists devices once per initialisation
            try:
                sd._terminate()  # noqa: SLF001 - no public rescan in sounddevice
                sd._initialize()  # noqa: SLF001
            except Exception:  # noqa: BLE001 - best effort; opening reports the real problem
                pass
        stream = sd.InputStream(device=device, samplerate=rate, channels=channels, dtype="float32",
                                blocksize=block_frames, callback=callback)
        stream.start()
        self.stream = stream
        log.info("microphone open: %s, %d Hz, %d channel(s)", _device_name(sd, stream), rate, channels)

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except Exception as exc:  # noqa: BLE001 - a dead device may fail to close; it is gone anyway
                log.debug("closing the microphone: %s", exc)

    def list_devices_once(self) -> None:
        """Log the input devices (once: after the first failure to open)."""
        if self._listed_devices or self._sd is None:
            return
        self._listed_devices = True
        try:
            inputs = [f"{i}: {d['name']}" for i, d in enumerate(self._sd.query_devices()) if d["max_input_channels"] > 0]
            log.info("input devices: %s", "; ".join(inputs) or "none")
        except Exception:  # noqa: BLE001
            pass


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
        self.name = "mic" if self.device is None else f"mic:{self.device}"
        self.state = "no-audio"
        self.overflows = 0  # blocks with lost audio (worker behind, or PortAudio input overflow)
        self.dropped_frames = 0
        self.reopens = 0
        self.last_error: str | None = None
        self._handoff = _Handoff(int(ring_seconds * self.capture_rate))
        self._backoff = Backoff(initial=1.0, maximum=float(max_backoff))
        self._next_try = 0.0
        self._portaudio = _PortAudio()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._t_source = time.time()
        self._live = _Liveness(self.dead_seconds, self._t_source)
        self._resampler: Any = None
        self._fresh = True  # the next audio starts a new segment

    # -- capture (PortAudio's thread) -------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """Hand a copy of the block to the worker; note any overflow. Nothing else runs here."""
        self._handoff.write(indata.copy(), time.time(), input_overflow=bool(status and status.input_overflow))
        self._wake.set()

    # -- the worker's side ------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        self._wake.set()

    def chunks(self) -> Iterator[Chunk]:
        self._t_source = time.time()
        try:
            while not self._stop.is_set():
                if self._portaudio.stream is None and not self._try_open():
                    yield self._heartbeat()
                    continue
                yield self._next_chunk()
        finally:
            self._portaudio.close()

    def _heartbeat(self, now: float | None = None) -> Chunk:
        now = time.time() if now is None else now
        return Chunk(_EMPTY, now, now - self._t_source, name=self.name)

    def _try_open(self) -> bool:
        """Open the stream when the backoff allows; False (after a short wait) while it is closed."""
        now = time.time()
        if now < self._next_try:
            self._stop.wait(min(0.5, self._next_try - now))
            return False
        try:
            self._portaudio.open(device=self.device, rate=self.capture_rate, channels=self.channels,
                                 block_frames=self.block_frames, callback=self._callback, rescan=self.reopens > 0)
        except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError (no such device), ...
            self.last_error = f"microphone {self.device if self.device is not None else 'default'}: {exc}"
            self.state = "no-audio"
            self._next_try = now + self._backoff.next()
            log.error("%s; retrying in %.1f s", self.last_error, self._next_try - now)
            self._portaudio.list_devices_once()
            return False
        self._live = _Liveness(self.dead_seconds, time.time())
        self._handoff.take()  # forget anything from before
        self._fresh, self._resampler = True, self._new_resampler()
        return True

    def _next_chunk(self) -> Chunk:
        """Wait for audio (a quarter second at most) and turn what came into a chunk or a heartbeat."""
        self._wake.wait(0.25)
        self._wake.clear()
        taken = self._handoff.take()
        now = time.time()
        self._count_overflows(taken.dropped, taken.input_overflows)
        self._live.note(taken.samples, now)
        why = self._live.dead(now)
        if why is not None:
            self._dead(why)
            return self._heartbeat(now)
        if not taken.samples.shape[0]:
            return self._heartbeat(now)
        if self._live.sounding and self.state != "running":
            self.state = "running"
            self._backoff.reset()
            log.info("microphone delivering audio")
        return self._to_chunk(taken) or self._heartbeat(now)

    def _count_overflows(self, dropped: int, input_overflows: int) -> None:
        if dropped:
            self.overflows += 1
            self.dropped_frames += dropped
            log.warning("capture overflow: %d frames lost (the worker fell behind)", dropped)
            self._fresh = True
        self.overflows += input_overflows

    def _to_chunk(self, taken: _Taken) -> Chunk | None:
        """Time-stamp, mix down and resample captured frames (None while the resampler fills)."""
        anchor_frames, anchor_time = taken.anchor
        t_first = anchor_time - (anchor_frames - taken.start) / self.capture_rate
        y = to_mono(taken.samples, channel=self.channel)
        if self._resampler is not None:
            y = self._resampler.resample_chunk(y)
        if not y.size:
            return None
        fresh, self._fresh = self._fresh, False
        return Chunk(np.ascontiguousarray(y, dtype=np.float32), t_first, t_first - self._t_source,
                     discontinuity=fresh, name=self.name)

    def _dead(self, why: str) -> None:
        self.last_error = f"microphone: {why}"
        if self.state != "no-audio":
            log.error("%s; reopening", self.last_error)
        self.state = "no-audio"
        self._portaudio.close()
        self.reopens += 1
        self._next_try = time.time() + self._backoff.next()

    def _new_resampler(self) -> Any:
        if self.capture_rate == self.sample_rate:
            return None
        import soxr

        return soxr.ResampleStream(self.capture_rate, self.sample_rate, 1, dtype="float32", quality="HQ")


_EMPTY = np.zeros(0, dtype=np.float32)
_EMPTY2 = np.zeros((0, 1), dtype=np.float32)


def _device_name(sd: Any, stream: Any) -> str:
    try:
        return str(sd.query_devices(stream.device)["name"])
    except Exception:  # noqa: BLE001
        return str(stream.device)
