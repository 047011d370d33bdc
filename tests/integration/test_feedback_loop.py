"""Feedback end to end below the hub: the real runtime on the shipped model learns from a false alarm
(with a learned model, and from the card's model alone), the verdicts survive a restart; the clip
marks reach Azurite (metadata, index tags; a sidecar through IoT Hub file upload), also for clips
spooled while storage was down; ``python -m ml dataset pull`` turns them into a training tree."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclassifier.alertwindows import AlertWindows
from audioclassifier.audio_io import write_wav
from audioclassifier.backends import load_model
from audioclassifier.config import DEFAULT_MODEL
from audioclassifier.feedback import Feedback
from audioclassifier.hub.marks import ClipMarks
from audioclassifier.hub.redact import find_secrets
from audioclassifier.hub.spool import Spool
from audioclassifier.hub.uploader import BlobTarget, FileUploadTarget, Uploader
from audioclassifier.onsite import OnsiteLearning
from audioclassifier.runtime import Runtime
from audioclassifier.settings import Settings
from audioclassifier.sinks import LocalSink
from audioclassifier.sources import FileSource
from harness.azurite import ACCOUNT, ACCOUNT_KEY
from harness.paths import REPO

SR = 16000


def synth(out: Path, seconds: int, *extra: str) -> np.ndarray:
    subprocess.run([sys.executable, "-m", "ml", "synth", "--long-seconds", str(seconds), "--seed", "3", "--machine-id",
                    "0", "--snr-db", "6", "--out", str(out), *extra], check=True, capture_output=True, cwd=REPO,
                   timeout=300)
    return sf.read(out, dtype="float32")[0]


def hum(n: int, db: float) -> np.ndarray:
    """A benign new sound: a 150 Hz hum with harmonics (a new extractor fan, say), ``db`` dB."""
    t = np.arange(n) / SR
    return (sum(np.sin(2 * np.pi * 150 * k * t + k) / k for k in range(1, 6)) * 10 ** (db / 20)).astype(np.float32)


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("feedback-audio")
    return {"healthy": synth(folder / "healthy.wav", 250),
            "bearing": synth(folder / "bearing.wav", 90, "--fault", "bearing", "--fault-start", "10",
                             "--ramp-seconds", "5")}


class Device:
    """The runtime's parts with their state folder, one run per recording (a restart each time)."""

    def __init__(self, root: Path, learn_seconds: float = 0.0) -> None:
        self.root, self.learn_seconds = root, learn_seconds
        self.alerts: list[dict] = []

    def play(self, audio: np.ndarray, name: str) -> tuple[Runtime, list[dict]]:
        path = self.root / f"{name}.wav"
        sf.write(path, audio, SR)
        out = self.root / "out"
        rt = Runtime(source=FileSource(path, sample_rate=SR, speed=None),
                     model=load_model(DEFAULT_MODEL, backend="onnxruntime"),
                     settings=Settings(threshold=None, consecutive=2, cooldown_seconds=5.0, machine="pump-1"),
                     sink=LocalSink(out), state_path=self.root / "sequence.json",
                     onsite=OnsiteLearning(directory=self.root / "learned", seconds=self.learn_seconds),
                     alert_windows=AlertWindows(self.root / "feedback" / "alerts"),
                     feedback=Feedback(self.root / "feedback"))
        assert rt.run() == 0
        rt.pipeline.sink.close()
        lines = (out / "alerts.jsonl").read_text().splitlines() if (out / "alerts.jsonl").exists() else []
        new = [json.loads(x) for x in lines][len(self.alerts):]
        self.alerts += new
        return rt, new


@pytest.mark.slow
@pytest.mark.parametrize(("learned", "hum_db"), [(True, -25.0), (False, -12.0)], ids=["learned", "card-model-alone"])
def test_a_false_alarm_stops_recurring_on_the_same_sound_and_a_fault_still_alerts(sounds, tmp_path: Path,
                                                                                  learned: bool, hum_db: float) -> None:
    """The machine (learned from its first 2 minutes, or the card's model alone) hears a new hum from 130 s:
    alerts. Marked a false alarm, the hum no longer alerts in later recordings (after restarts); a
    bearing fault with the same hum still does; undone, the hum alerts again."""
    h, b = sounds["healthy"], sounds["bearing"]
    dev = Device(tmp_path, learn_seconds=120.0 if learned else 0.0)
    first = h[:190 * SR].copy()
    first[130 * SR:] += hum(60 * SR, hum_db)
    rt, alerts = dev.play(first, "first")
    on_hum = [a for a in alerts if a["audio_offset_seconds"] >= 131]
    assert len(on_hum) >= 5, [a["audio_offset_seconds"] for a in alerts]
    assert all(a["audio_offset_seconds"] >= 128 for a in alerts)  # nothing before the hum
    out = rt.feedback(on_hum[0]["seq"], "false_alarm", None, "the new extractor fan")
    assert out["normal_model"]["seeded"] is (not learned) and out["normal_model"]["accepted"] == 1
    assert out["mark"]["clip"] == on_hum[0]["clip"] and out["mark"]["label"] == "normal"
    status = rt.status()["verdicts"]
    assert status["false_alarms"] == 1 and status["accepted_sounds"] == 1 and status["last"]["seq"] == on_hum[0]["seq"]
    assert rt.status()["learning"]["state"] == "learned" and rt.status()["learning"]["accepted"] == 1

    later = h[190 * SR:250 * SR] + hum(60 * SR, hum_db)
    _, again = dev.play(later, "later")
    assert again == [], [a["audio_offset_seconds"] for a in again]  # the same sound: no alert in 60 s
    _, fault = dev.play(b[30 * SR:90 * SR] + hum(60 * SR, hum_db), "fault")
    assert len(fault) >= 5  # a fault, with the accepted hum on top: alerts as before
    print(f"feedback_{'learned' if learned else 'card'}: hum alerts before {len(on_hum)} in 60 s, after 0 in 60 s; "
          f"bearing+hum alerts {len(fault)} in 60 s")

    rt, _ = dev.play(h[:5 * SR], "short")
    undone = rt.feedback(on_hum[0]["seq"], "undo", None, None)
    assert undone["undid"] == "false_alarm" and undone["mark"]["verdict"] == "undone"
    assert undone["normal_model"]["dropped"] is (not learned)
    _, back = dev.play(later, "later-again")
    assert len(back) >= 5  # alarms again


def spool_clip(spool: Spool, name: str, seed: int) -> bytes:
    y = np.random.default_rng(seed).standard_normal(8000).astype(np.float32) * 0.1
    return write_wav(spool.root / name, y, sample_rate=SR).read_bytes()


def mark(clip: str, verdict: str, label: str, seq: int, note: str | None = None) -> dict:
    return {"clip": clip, "verdict": verdict, "label": label, "machine": "pump-1", "seq": seq, "note": note,
            "at": "2026-01-02T03:04:05.000Z", "model": "v1", "alert_time": "2026-01-02T03:00:00.000Z"}


def pull(out: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AUSCULT_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "ml", "dataset", "pull", "--out", str(out), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120, env=full)


def manifest(root: Path) -> dict[str, dict[str, str]]:
    with open(root / "manifest.csv", newline="") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def test_marks_reach_storage_for_uploaded_and_spooled_clips_and_pull_builds_the_tree(tmp_path: Path, azurite,
                                                                                     tls) -> None:
    container = "marks-a"
    spool = Spool(tmp_path / "clips")
    marks = ClipMarks(tmp_path / "marks")
    target = BlobTarget.from_connection_string(azurite.connection_string, container, verify=str(tls.ca))
    up = Uploader(spool, target, marks=marks)
    a, b, c = (f"pump-1/2026-01-02/03000{i}000-anomaly-a{i}.wav" for i in (1, 2, 3))
    data = {a: spool_clip(spool, a, 1)}
    assert up.upload_pending()  # a: uploaded before any verdict
    marks.put(mark(a, "confirmed", "bearing", 1, note="grinding, 2 kHz — louder"))
    azurite.stop()  # b: flagged and marked while storage is down
    try:
        data[b] = spool_clip(spool, b, 2)
        marks.put(mark(b, "false_alarm", "normal", 2))
        assert not up.upload_pending()
        assert [x.name for x in spool.pending()] == [b] and len(marks.pending()) == 2
    finally:
        azurite.start()
    marks.put(mark(c, "confirmed", "bearing", 3))  # c: its clip was dropped by the quota, never uploaded
    assert up.upload_pending()
    assert marks.pending() == [] and marks.stats() == {"pending": 0, "applied": 2, "lost": 1, "dropped": 0}
    blobs = azurite.container(container)
    props = {x: blobs.get_blob_client(x).get_blob_properties() for x in (a, b)}
    assert props[a].metadata["auscult_verdict"] == "confirmed" and props[a].metadata["auscult_label"] == "bearing"
    assert props[b].metadata["auscult_verdict"] == "false_alarm"  # uploaded with its mark
    assert blobs.get_blob_client(a).get_blob_tags() == {"auscult_verdict": "confirmed", "auscult_label": "bearing",
                                                        "auscult_machine": "pump-1"}
    assert azurite.blobs(container) == data  # the clips themselves unchanged

    root = tmp_path / "tree"
    env = {"AUSCULT_BLOB_CONNECTION_STRING": azurite.connection_string}
    r = pull(root, env, "--container", container, "--ca-file", str(tls.ca))
    assert r.returncode == 0, r.stdout + r.stderr
    tree = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.wav")}
    assert tree == {"bearing/pump-1/2026-01-02_030001000-anomaly-a1.wav": data[a],
                    "normal/pump-1/2026-01-02_030002000-anomaly-a2.wav": data[b]}
    rows = manifest(root)
    row = rows["bearing/pump-1/2026-01-02_030001000-anomaly-a1.wav"]
    assert row["verdict"] == "confirmed" and row["seq"] == "1" and row["note"] == "grinding, 2 kHz — louder"
    assert row["blob"] == a and len(row["sha256"]) == 64
    assert "pulled 2 labelled clip(s)" in r.stdout and "2 downloaded" in r.stdout
    assert find_secrets(r.stdout + r.stderr) == []

    # the technician changes their mind: a undone then relabelled, b undone; only confirmed ones asked for
    marks.put(mark(a, "confirmed", "imbalance", 1))
    marks.put(mark(b, "undone", "normal", 2))
    assert up.upload_pending()
    (root / "notes.txt").write_text("mine")  # not ours: never touched
    r = pull(root, env, "--container", container, "--ca-file", str(tls.ca), "--verdict", "confirmed")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav")) == [
        "imbalance/pump-1/2026-01-02_030001000-anomaly-a1.wav"]
    assert (root / "notes.txt").read_text() == "mine" and not (root / "normal").exists()
    r = pull(root, env, "--container", container, "--ca-file", str(tls.ca), "--verdict", "confirmed")
    assert "1 unchanged" in r.stdout and "0 downloaded" in r.stdout  # a sync: nothing new, nothing fetched

    # the training toolkit reads the tree as it reads any dataset tree
    from ml.dataset import scan_tree

    items = scan_tree(root)
    assert [(i.label, i.group) for i in items] == [("imbalance", "pump-1")]


def test_a_sas_without_tag_permission_marks_by_metadata_and_pull_takes_a_sas_url(tmp_path: Path, azurite,
                                                                                 tls) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = "marks-sas"
    azurite.container(container).create_container()
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    sas = generate_container_sas(ACCOUNT, container, account_key=ACCOUNT_KEY, expiry=expiry,
                                 permission=ContainerSasPermissions(write=True, create=True))
    spool, marks = Spool(tmp_path / "clips"), ClipMarks(tmp_path / "marks")
    target = BlobTarget.from_sas_url(f"{azurite.endpoint}/{container}?{sas}", verify=str(tls.ca))
    clip = "fan-2/2026-01-02/010101010-anomaly-a7.wav"
    data = spool_clip(spool, clip, 7)
    marks.put(mark(clip, "confirmed", "imbalance", 7) | {"machine": "fan-2"})
    assert Uploader(spool, target, marks=marks).upload_pending()
    assert target.tags_supported is False  # the SAS has no `t` permission: tags off, metadata kept
    blob = azurite.container(container).get_blob_client(clip)
    assert blob.get_blob_properties().metadata["auscult_label"] == "imbalance" and blob.get_blob_tags() == {}

    read = generate_container_sas(ACCOUNT, container, account_key=ACCOUNT_KEY, expiry=expiry,
                                  permission=ContainerSasPermissions(read=True, list=True))
    root = tmp_path / "tree"
    r = pull(root, {"AUSCULT_BLOB_CONTAINER_SAS_URL": f"{azurite.endpoint}/{container}?{read}"},
             "--ca-file", str(tls.ca), "--machine", "fan-2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "imbalance" / "fan-2" / "2026-01-02_010101010-anomaly-a7.wav").read_bytes() == data
    assert read not in r.stdout + r.stderr
    r = pull(tmp_path / "other", {"AUSCULT_BLOB_CONTAINER_SAS_URL": f"{azurite.endpoint}/{container}?{read}"},
             "--ca-file", str(tls.ca), "--machine", "pump-9")
    assert r.returncode == 1 and "pulled 0" in r.stdout  # nothing labelled for that machine
    r = pull(tmp_path / "none", {}, "--ca-file", str(tls.ca))
    assert r.returncode == 2 and "--connection-string or --sas-url" in r.stdout


def test_through_iot_hub_file_upload_the_mark_is_a_sidecar_that_pull_reads(tmp_path: Path, file_upload_hub, azurite,
                                                                          tls, device_connection_string) -> None:
    from harness.fileupload import CONTAINER as FILE_UPLOAD_CONTAINER

    target = FileUploadTarget.from_connection_string(device_connection_string, ca_file=str(tls.ca))
    device = device_connection_string.split("DeviceId=")[1].split(";")[0]
    spool, marks = Spool(tmp_path / "clips"), ClipMarks(tmp_path / "marks")
    up = Uploader(spool, target, marks=marks)
    early, late = "pump-1/2026-01-02/020202020-anomaly-a8.wav", "pump-1/2026-01-02/020203020-anomaly-a9.wav"
    data = {early: spool_clip(spool, early, 8)}
    assert up.upload_pending()  # uploaded, then marked: a sidecar next to it
    marks.put(mark(early, "confirmed", "bearing", 8))
    data[late] = spool_clip(spool, late, 9)
    marks.put(mark(late, "false_alarm", "normal", 9))  # marked while spooled: the sidecar follows the clip
    assert up.upload_pending() and marks.pending() == []
    blobs = azurite.blobs(FILE_UPLOAD_CONTAINER)
    side = json.loads(blobs[f"{device}/{early}.json"])
    assert side["verdict"] == "confirmed" and side["label"] == "bearing" and side["clip"] == early
    assert f"{device}/{late}.json" in blobs and blobs[f"{device}/{late}"] == data[late]

    root = tmp_path / "tree"
    r = pull(root, {"AUSCULT_BLOB_CONNECTION_STRING": azurite.connection_string}, "--container",
             FILE_UPLOAD_CONTAINER, "--ca-file", str(tls.ca), "--prefix", f"{device}/")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "bearing" / "pump-1" / "2026-01-02_020202020-anomaly-a8.wav").read_bytes() == data[early]
    assert (root / "normal" / "pump-1" / "2026-01-02_020203020-anomaly-a9.wav").read_bytes() == data[late]
