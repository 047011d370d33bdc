"""The durable outbox: order, durability across a kill, the quota's drop order, counters."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from audioclassifier.hub.outbox import Outbox, OutboxError


def alert(i: int) -> dict:
    return {"type": "anomaly", "label": "bearing", "score": 0.9, "i": i, "seq": 0}


def tele(i: int) -> dict:
    return {"type": "telemetry", "windows": 10, "i": i, "seq": 0}


def drain(box: Outbox) -> list[tuple[str, int, int]]:
    out = []
    while (e := box.head()) is not None:
        out.append((e.output, json.loads(e.body)["i"], e.seq))
        box.ack(e)
    return out


def test_fifo_per_output_alerts_first_and_durable_seq(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    for i in range(3):
        box.put("telemetry", tele(i), {"alert": "false"})
        box.put("alerts", alert(i), {"alert": "true", "label": "bearing"})
    head = box.head()
    assert head.output == "alerts" and head.properties == {"alert": "true", "label": "bearing"}
    assert head.message_id == "alerts-1"
    assert drain(box) == [("alerts", 0, 1), ("alerts", 1, 2), ("alerts", 2, 3),
                          ("telemetry", 0, 1), ("telemetry", 1, 2), ("telemetry", 2, 3)]
    box.close()
    # seq continues after a restart, so the cloud can tell a resend from a new message
    box = Outbox(tmp_path / "o.db")
    assert box.put("alerts", alert(9)).seq == 4
    assert json.loads(box.head().body)["seq"] == 4
    st = box.stats()
    assert st.sent == {"alerts": 3, "telemetry": 3} and st.pending == {"alerts": 1, "telemetry": 0}  # drained: 0


def test_unacknowledged_messages_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    code = (f"import os, signal\nfrom audioclassifier.hub.outbox import Outbox\nb = Outbox({str(db)!r})\n"
            "for i in range(50):\n    b.put('alerts', {'i': i})\n"
            "e = b.head(); b.ack(e)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    box = Outbox(db)
    assert [json.loads(e.body)["i"] for e in box.entries()] == list(range(1, 50))
    assert box.stats().bytes == sum(len(e.body.encode()) + len(json.dumps(e.properties).encode())
                                    for e in box.entries())


def test_quota_drops_oldest_telemetry_first_then_alerts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", quota_bytes=4096)
    pad = "x" * 450
    for i in range(5):
        box.put("alerts", {**alert(i), "pad": pad})
    for i in range(5):
        box.put("telemetry", {**tele(i), "pad": pad})
    st = box.stats()
    assert st.bytes <= 4096
    # the oldest telemetry went first; no alert was touched while telemetry was left
    assert st.dropped.get("telemetry", 0) >= 1 and st.dropped.get("alerts", 0) == 0
    kept = [json.loads(e.body)["i"] for e in box.entries("telemetry")]
    assert kept == list(range(5 - len(kept), 5))
    for i in range(5, 20):
        box.put("alerts", {**alert(i), "pad": pad})
    st = box.stats()
    assert st.pending.get("telemetry", 0) == 0 and st.dropped["telemetry"] == 5
    assert st.dropped["alerts"] >= 1
    kept = [json.loads(e.body)["i"] for e in box.entries("alerts")]
    assert kept == list(range(20 - len(kept), 20))  # oldest alerts dropped, newest kept, in order


def test_message_larger_than_quota_is_refused_and_nothing_lost(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", quota_bytes=4096)
    box.put("alerts", alert(0))
    with pytest.raises(OutboxError, match="exceeds"):
        box.put("alerts", {**alert(1), "pad": "y" * 5000})
    assert [json.loads(e.body)["i"] for e in box.entries()] == [0]
    assert box.put("alerts", alert(2)).seq == 2  # the refused message did not use up a seq


def test_failed_attempts_are_counted_and_keep_the_head(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put("alerts", alert(0))
    box.put("alerts", alert(1))
    e = box.head()
    box.failed(e)
    box.failed(e)
    again = box.head()
    assert again.id == e.id and again.attempts == 2


def test_bad_message_is_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    with pytest.raises(ValueError):
        box.put("alerts", {"score": float("nan")})
    assert len(box) == 0


def test_concurrent_producers_one_consumer(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    got: list[tuple[str, int]] = []
    done = threading.Event()

    def consume() -> None:
        while not (done.is_set() and len(box) == 0):
            e = box.head()
            if e is None:
                continue
            got.append((e.output, e.seq))
            box.ack(e)

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=lambda o=o: [box.put(o, {"i": i}) for i in range(100)])
                 for o in ("alerts", "telemetry", "alerts", "telemetry")]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    done.set()
    consumer.join(30)
    for output in ("alerts", "telemetry"):
        seqs = [s for o, s in got if o == output]
        assert seqs == list(range(1, 201))  # each once, in order
