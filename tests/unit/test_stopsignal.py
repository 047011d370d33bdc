"""audioclassifier.stopsignal: a stop signal takes no lock in its handler, so it cannot deadlock the
thread it interrupts (the module once ignored SIGTERM while its paced source waited on an Event)."""

from __future__ import annotations

import os
import signal
import threading
import time

from audioclassifier.stopsignal import stop_on_signals


def test_a_signal_stops_while_the_interrupted_thread_holds_the_lock_the_stop_needs() -> None:
    # The handler runs in this (main) thread while it holds `lock`. A handler that took the lock
    # itself (as Event.set does with the Event's own lock) would wait for ever here.
    lock = threading.Lock()
    stopped = threading.Event()
    names: list[str] = []

    def on_stop(name: str) -> None:
        with lock:
            names.append(name)
        stopped.set()

    with stop_on_signals(on_stop, signals=(signal.SIGUSR1,)):
        with lock:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.2)  # the handler runs in here, with the lock held
            assert names == [], "on_stop ran inside the handler"
        assert stopped.wait(10), "on_stop never ran"
    assert names == ["SIGUSR1"]


def test_a_second_signal_has_the_default_action_and_leaving_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    calls: list[str] = []
    done = threading.Event()
    with stop_on_signals(lambda name: (calls.append(name), done.set()), signals=(signal.SIGUSR2,)):
        assert signal.getsignal(signal.SIGUSR2) not in (before, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert done.wait(10)
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # a second one ends the process
    assert signal.getsignal(signal.SIGUSR2) == before
    assert calls == ["SIGUSR2"]


def test_leaving_without_a_signal_calls_nothing_and_ends_the_thread() -> None:
    calls: list[str] = []
    with stop_on_signals(calls.append, signals=(signal.SIGUSR1,)):
        pass
    assert calls == []
    assert not [t for t in threading.enumerate() if t.name == "stop-signal"]
