"""Commands from other threads to the runtime's worker, through one queue.

The twin, direct methods and signal handlers never touch the worker's state: they put a
:class:`Command` on the :class:`CommandQueue`, which the worker drains between chunks (or the
caller itself drains, while no worker runs). Each command carries a
:class:`concurrent.futures.Future`: the worker marks it running before it acts (a caller that gave
up first cancels it, and the worker then skips it) and resolves it with the outcome, which a
caller that needs it waits for (:func:`wait`).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from audioclassifier.backends import LoadedModel
from audioclassifier.capture import Capture
from audioclassifier.settings import Settings

__all__ = ["ApplySettings", "Command", "CommandQueue", "EndCalibration", "GiveFeedback", "StartCalibration",
           "StartCapture", "StartLearning", "SwapModel", "settles", "wait"]

T = TypeVar("T")


@dataclass(kw_only=True)
class Command:
    """A request to the worker; ``future`` gets its outcome."""

    future: Future[Any] = field(default_factory=Future)


@dataclass(kw_only=True)
class ApplySettings(Command):
    """Put ``settings`` in force (and ``model``, compiled for their device, if given)."""

    settings: Settings
    model: LoadedModel | None = None


@dataclass(kw_only=True)
class SwapModel(Command):
    """Swap ``model`` (loaded and compiled by the caller) in between two windows."""

    model: LoadedModel


@dataclass(kw_only=True)
class StartCapture(Command):
    """Record the next audio into ``capture``; the future is the capture's (resolved when written)."""

    capture: Capture


@dataclass(kw_only=True)
class StartCalibration(Command):
    """Start a site calibration; the future gets the future of its final state."""

    seconds: float
    percentile: float
    on_done: Callable[[dict[str, Any]], None] | None = None


@dataclass(kw_only=True)
class EndCalibration(Command):
    """Fail the calibration whose final-state future is ``run`` (if still in progress) with ``reason``."""

    run: Future[dict[str, Any]]
    reason: str


@dataclass(kw_only=True)
class StartLearning(Command):
    """Start on-site learning over the next ``seconds``; the future gets the future of its final state."""

    seconds: float


@dataclass(kw_only=True)
class GiveFeedback(Command):
    """A technician's verdict on alert ``seq`` (:mod:`audioclassifier.feedback`); the future gets what was done."""

    seq: int
    verdict: str
    label: str | None = None
    note: str | None = None


class CommandQueue:
    """Many producers, one consumer (a :class:`queue.SimpleQueue`)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def put(self, command: Command) -> None:
        self._queue.put(command)

    def drain(self) -> Iterator[Command]:
        """The commands waiting now, in order, each marked running (cancelled ones are skipped)."""
        while True:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                return
            # a future already resolved: its caller gave up (a capture); cancelled ones are skipped
            if not command.future.done() and command.future.set_running_or_notify_cancel():
                yield command


def wait(future: Future[T], timeout: float, what: str) -> T:
    """The outcome of ``future`` (its exception raised); TimeoutError if the worker did not start
    on it within ``timeout`` seconds (the command is then cancelled)."""
    try:
        return future.result(timeout)
    except FutureTimeout:
        if future.cancel():
            raise TimeoutError(f"{what}: the worker did not take it within {timeout:g} s") from None
        return future.result()  # the worker is on it: it finishes soon


def settles(future: Future[Any], timeout: float) -> bool:
    """Whether ``future`` is resolved within ``timeout`` seconds (its outcome is not looked at)."""
    try:
        future.exception(timeout)
    except FutureTimeout:
        return False
    except CancelledError:
        pass
    return True
