"""Stopping on SIGTERM / SIGINT without taking a lock inside the signal handler.

Python runs a signal handler in the main thread, between two bytecodes of whatever it was doing.
If that was ``Event.wait`` or ``Queue.get`` (the paced file source and the microphone wait that
way) the main thread may hold the very lock that ``Event.set`` or ``close()`` needs, and the
process hangs for ever on its own stop (seen: the module ignored SIGTERM about once in 300).

So the handler only writes the signal's number to a pipe (a system call, no lock), and a thread of
its own reads it and calls ``on_stop``, which may then take any lock. A second signal ends the
process at once (the handler restores the default action as it fires).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["stop_on_signals"]


@contextmanager
def stop_on_signals(on_stop: Callable[[str], None], *,
                    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Within the block, the first of ``signals`` calls ``on_stop(name)`` from a thread of its own.

    Call from the main thread (Python's rule for installing handlers). On leaving, the previous
    handlers are restored and the thread ends.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def handler(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
        try:
            os.write(write_fd, bytes([signum]))
        except OSError:  # the pipe is full or closed: a stop is already on its way
            pass

    def wait() -> None:
        data = os.read(read_fd, 1)
        if data:  # empty: the block was left without a signal
            on_stop(signal.Signals(data[0]).name)

    thread = threading.Thread(target=wait, name="stop-signal", daemon=True)
    thread.start()
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        os.close(write_fd)  # the thread reads end-of-file and ends, unless it is already stopping
        thread.join()
        os.close(read_fd)
