"""audioclassifier.stopsignal: a stop signal takes no lock in its handler, so it cannot deadlock the
thread it interrupts (the module once ignored SIGTERM while its paced source waited on an Event).

Each case runs in a Python process of its own, as the module does: signals sent to the test
process itself would land among whatever native libraries earlier tests loaded there (one such
mix, OpenVINO's compiled-model cache beside onnxruntime, turned a SIGUSR2 into a segfault).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PRELUDE = """
import json, os, signal, threading, time
from audioclassifier.stopsignal import stop_on_signals
"""


def run_child(body: str) -> dict:
    r = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_a_signal_stops_while_the_interrupted_thread_holds_the_lock_the_stop_needs() -> None:
    # The handler runs in the main thread while it holds `lock`. A handler that took the lock itself
    # (as Event.set does with the Event's own lock) would wait for ever: the child would time out.
    out = run_child("""
        lock, stopped, names = threading.Lock(), threading.Event(), []
        def on_stop(name):
            with lock:
                names.append(name)
            stopped.set()
        with stop_on_signals(on_stop):
            with lock:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler runs in here, with the lock held
                inside = list(names)
            ran = stopped.wait(10)
        print(json.dumps({"inside": inside, "ran": ran, "names": names}))
    """)
    assert out == {"inside": [], "ran": True, "names": ["SIGTERM"]}


def test_a_second_signal_has_the_default_action_and_leaving_restores_the_handlers() -> None:
    out = run_child("""
        marker = lambda s, f: None
        signal.signal(signal.SIGINT, marker)
        done = threading.Event()
        calls = []
        with stop_on_signals(lambda name: (calls.append(name), done.set())):
            installed = signal.getsignal(signal.SIGINT) not in (marker, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            ran = done.wait(10)
            after_one = signal.getsignal(signal.SIGINT) == signal.SIG_DFL
        restored = signal.getsignal(signal.SIGINT) is marker
        print(json.dumps([installed, ran, after_one, restored, calls]))
    """)
    assert out == [True, True, True, True, ["SIGINT"]]


def test_a_second_sigterm_ends_the_process_at_once() -> None:
    r = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent("""
        with stop_on_signals(lambda name: None):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        print("still running")
    """)], capture_output=True, text=True, timeout=60)
    assert r.returncode == -15 and "still running" not in r.stdout


def test_leaving_without_a_signal_calls_nothing_and_ends_the_thread() -> None:
    out = run_child("""
        calls = []
        with stop_on_signals(calls.append):
            pass
        print(json.dumps([calls, [t.name for t in threading.enumerate() if t.name == "stop-signal"]]))
    """)
    assert out == [[], []]
