"""Feedback without a broker: accepted sounds in the normal model (learning.py), the alerts' windows
(alertwindows.py), the verdicts (feedback.py) on the shipped model's card, the method's argument
table (constraints.py) and answers (hub/methods.py), and the clip marks (hub/marks.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audioclassifier.alertwindows import RECENT_WINDOWS, AlertRecord, AlertWindows
from audioclassifier.card import read_card
from audioclassifier.config import DEFAULT_MODEL
from audioclassifier.constraints import METHODS, ConstraintError, check_arguments
from audioclassifier.feedback import HISTORY, Feedback, FeedbackConflictError, UnknownAlertError
from audioclassifier.hub.marks import MAX_MARKS, ClipMarks, metadata, sidecar, tags
from audioclassifier.hub.methods import MethodContext, dispatch
from audioclassifier.hub.spool import Spool
from audioclassifier.learning import MAX_ACCEPTED, MAX_ACCEPTED_WINDOWS, LearningError, NormalModel, fit_normal
from audioclassifier.onsite import OnsiteLearning
from ml.fieldclips import read_mark


def _cluster(n: int, seed: int, *, dim: int = 12, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, dim)) @ np.diag(np.linspace(0.3, 1.5, dim)) + shift


# ------------------------------------------------------------------------------------------------
# accepted sounds in the normal model


@pytest.mark.parametrize("method", ["mahalanobis", "knn"])
def test_an_accepted_sound_stops_scoring_high_and_other_sounds_do_not_move(method: str) -> None:
    base = fit_normal(_cluster(300, 0), method=method)
    other = _cluster(200, 1, shift=2.0)  # a new sound: another place in the embedding space
    heard = other[:30]  # the alert's windows
    model = base.accept(7, heard, {"label": "normal"})
    later = other[30:]  # the same sound, later
    far = _cluster(200, 2, shift=-2.0)  # a fault elsewhere
    assert np.mean(base.score(later) > base.threshold) > 0.9
    assert np.mean(model.score(later) > model.threshold) < 0.25
    np.testing.assert_array_equal(model.score(far), base.score(far))  # the component is far: no change
    normal = _cluster(100, 3)
    assert (model.score(normal) <= base.score(normal)).all()  # never higher: the lowest of the parts
    assert model.accepted_seqs == [7] and model.threshold == base.threshold
    back = model.forget(7)
    np.testing.assert_allclose(back.score(later), base.score(later))
    assert back.accepted_seqs == [] and model.forget(99).accepted_seqs == [7]


def test_two_windows_borrow_the_shape_of_the_normal_model_and_suppress_the_same_sound() -> None:
    """With only the alert's two windows, the component's covariance is mostly the base model's."""
    base = fit_normal(_cluster(300, 0), method="mahalanobis")
    other = _cluster(100, 4, shift=1.5)
    model = base.accept(1, other[:2])
    assert np.mean(model.score(other[2:]) > model.threshold) < 0.5 < np.mean(base.score(other[2:]) > base.threshold)


def test_accepted_sounds_round_trip_and_are_bounded() -> None:
    base = fit_normal(_cluster(100, 0), method="mahalanobis")
    model = base.accept(3, _cluster(5, 1, shift=2), {"label": "fan", "note": "the new fan"}).accept(
        9, _cluster(2, 2, shift=-2))
    again = NormalModel.from_bytes(model.to_bytes())
    x = _cluster(50, 5, shift=1)
    np.testing.assert_allclose(again.score(x), model.score(x), rtol=1e-5, atol=1e-5)
    assert again.accepted_seqs == [3, 9] and again.accepted[0].meta == {"label": "fan", "note": "the new fan"}
    assert model.accept(3, _cluster(4, 6, shift=3)).accepted_seqs == [9, 3]  # the same alert again: replaced
    for bad in (np.zeros((0, 12)), np.zeros((MAX_ACCEPTED_WINDOWS + 1, 12)), np.zeros((3, 4)),
                np.full((2, 12), np.nan)):
        with pytest.raises(LearningError):
            base.accept(1, bad)
    full = base
    for seq in range(MAX_ACCEPTED):
        full = full.accept(seq, _cluster(1, seq, shift=3))
    with pytest.raises(LearningError, match="undo one"):
        full.accept(MAX_ACCEPTED, _cluster(1, 0))
    # a file from before accepted sounds existed reads as a model without any
    assert NormalModel.from_bytes(base.to_bytes()).accepted == ()


def test_inconsistent_accepted_arrays_are_refused() -> None:
    model = fit_normal(_cluster(40, 0)).accept(4, _cluster(3, 1))
    with np.load(io.BytesIO(model.to_bytes())) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes())
    for change in ({"accepted_seq": arrays["accepted_seq"][:-1]}, {"accepted": arrays["accepted"][:, :3]},
                   {"header": {**header, "accepted": [{"seq": 4, "n": 2}]}},
                   {"header": {**header, "accepted": [{"seq": 5, "n": 3}]}}):
        bad = dict(arrays)
        for k, v in change.items():
            bad[k] = np.frombuffer(json.dumps(v).encode(), np.uint8) if k == "header" else v
        buf = io.BytesIO()
        np.savez(buf, **bad)
        with pytest.raises(LearningError, match="inconsistent"):
            NormalModel.from_bytes(buf.getvalue())


# ------------------------------------------------------------------------------------------------
# the alerts' windows


def test_an_alert_keeps_its_run_and_what_follows_and_records_are_bounded(tmp_path: Path) -> None:
    aw = AlertWindows(tmp_path / "alerts", keep=3)
    e = [np.full(4, i, np.float32) for i in range(200)]
    for i in range(5):
        aw.window(e[i], over=False)
    aw.window(e[5], over=True, overlap=1)  # a run begins: the window before it heard its start
    aw.window(e[6], over=True)
    record = aw.flagged("fp")
    aw.alerted(record, seq=11, machine="m", clip="m/d/x-a11.wav", label="anomaly", score=3.0, threshold=2.0,
               time=1.0, model="v1")
    for i in range(7, 100):  # the run goes on: the same sound, up to the cap
        aw.window(e[i], over=True)
    aw.window(e[100], over=False)
    got = aw.get(11)
    assert got is not None and len(got.windows) == MAX_ACCEPTED_WINDOWS
    assert [w[0] for w in got.windows[:3]] == [5, 6, 7] and got.fingerprint == "fp"
    assert [w[0] for w in aw.recent()] == [0, 1, 2, 3, 100]  # window 4 overlapped the run's start
    again = AlertWindows(tmp_path / "alerts", keep=3)  # a restart finds it, whole
    assert again.get(11) is not None and len(again.get(11).windows) == MAX_ACCEPTED_WINDOWS
    assert again.get(11).clip == "m/d/x-a11.wav"
    for seq in (12, 13, 14):
        aw.window(e[seq], over=True)
        aw.alerted(aw.flagged("fp"), seq=seq, machine="m")
        aw.end_run()
    assert aw.get(11) is None and aw.oldest == 12 and len(list((tmp_path / "alerts").glob("a*.npz"))) == 3
    for i in range(RECENT_WINDOWS + 10):
        aw.window(e[i % 200], over=False)
    assert len(aw.recent()) == RECENT_WINDOWS  # bounded
    aw.window(None, over=True)  # no embedding: ends the run, adds nothing
    assert aw.status() == {"kept_alerts": 3, "oldest_kept": 12, "recent_normal_windows": RECENT_WINDOWS}
    with pytest.raises(ValueError):
        AlertRecord.from_bytes(b"not a record")


# ------------------------------------------------------------------------------------------------
# verdicts on the shipped model's card


@pytest.fixture(scope="module")
def card():
    return read_card(DEFAULT_MODEL)


class Machine:
    """An on-site learning, the alerts' windows and the verdicts, on one machine; windows are drawn
    around ``normal`` (the machine) or ``odd`` (a new sound)."""

    def __init__(self, card: Any, root: Path, *, learned: bool) -> None:
        self.card, self.root = card, root
        self.dim = int(card.learning["dim"])
        rng = np.random.default_rng(0)
        self.scale = np.linspace(0.3, 1.5, self.dim)
        self.normal = rng.normal(size=(400, self.dim)) * self.scale
        self.odd = rng.normal(size=(200, self.dim)) * self.scale + 3.0
        self.onsite = OnsiteLearning(directory=root / "learned", seconds=40 if learned else 0)
        self.onsite.bind(card, "pump")
        if learned:
            for x in self.normal[:40]:
                self.onsite.window(x)
                if self.onsite.advance(1.0):
                    self.onsite.conclude()
        self.alerts = AlertWindows(root / "fb" / "alerts", keep=10)
        self.feedback = Feedback(root / "fb")
        self.seq = 0

    def hear(self, x: np.ndarray, *, alert: bool) -> int | None:
        """Windows ``x``: normal ones feed the recent windows; ``alert``: they are a run that alerts."""
        for w in x:
            self.alerts.window(w, over=alert, overlap=1)
        if not alert:
            return None
        self.seq += 1
        self.alerts.alerted(self.alerts.flagged(self.onsite.fingerprint), seq=self.seq, machine="pump",
                            clip=f"pump/2025-01-01/000000000-anomaly-a{self.seq}.wav", label="anomaly", score=9.0,
                            threshold=2.0, time=1.7e9, model=self.card.version)
        self.alerts.end_run()
        return self.seq

    def give(self, seq: int, verdict: str, label: str | None = None, note: str | None = None) -> dict[str, Any]:
        return self.feedback.give(seq, verdict, label=label, note=note, alerts=self.alerts, onsite=self.onsite,
                                  hop_seconds=1.0)

    def over(self, x: np.ndarray) -> float:
        return float(np.mean([self.onsite.score(0.0, w) > (self.onsite.threshold or 0.0) for w in x]))


def test_a_false_alarm_teaches_the_learned_model_is_kept_and_undone(card, tmp_path: Path) -> None:
    m = Machine(card, tmp_path, learned=True)
    assert m.onsite.model is not None and m.over(m.odd[50:]) > 0.9
    seq = m.hear(m.odd[:3], alert=True)
    out = m.give(seq, "false_alarm", note="the new extractor fan")
    assert out["changed"] and out["verdict"] == "false_alarm" and out["label"] == "normal"
    assert out["normal_model"] == {"seeded": False, "accepted": 1, "threshold": m.onsite.threshold}
    assert out["mark"]["clip"] == f"pump/2025-01-01/000000000-anomaly-a{seq}.wav"
    assert out["mark"]["note"] == "the new extractor fan" and out["mark"]["verdict"] == "false_alarm"
    assert m.over(m.odd[50:]) < 0.2  # the same sound stops alarming
    assert m.onsite.status()["accepted"] == 1 and m.onsite.status()["state"] == "learned"
    assert m.give(seq, "false_alarm")["changed"] is False  # the same verdict again: nothing changes
    with pytest.raises(FeedbackConflictError, match="undo it first"):
        m.give(seq, "confirmed", label="bearing")
    status = m.feedback.status(m.onsite, m.alerts)
    assert status["false_alarms"] == 1 and status["accepted_sounds"] == 1 and status["given"]["false_alarm"] == 1

    # persisted: a restart scores the same and knows the verdict
    again = Machine(card, tmp_path, learned=False)
    assert again.onsite.model is not None and again.onsite.model.accepted_seqs == [seq]
    assert again.feedback.verdicts[seq]["note"] == "the new extractor fan"
    assert again.give(seq, "undo")["normal_model"] == {"dropped": False, "accepted": 0, "changed": True}
    assert again.over(again.odd[50:]) > 0.9  # alarms again
    with pytest.raises(FeedbackConflictError, match="no verdict to undo"):
        again.give(seq, "undo")
    assert again.feedback.status(again.onsite, again.alerts)["given"] == {"false_alarm": 1, "confirmed": 0, "undo": 1}
    assert again.give(seq, "confirmed", label="fan")["mark"]["label"] == "fan"  # after the undo, a new verdict


def test_without_a_learned_model_a_false_alarm_starts_one_and_its_undo_drops_it(card, tmp_path: Path) -> None:
    m = Machine(card, tmp_path, learned=False)
    assert m.onsite.model is None
    seq = m.hear(m.odd[:2], alert=True)
    with pytest.raises(FeedbackConflictError, match="recent normal window"):  # nothing heard to start from
        m.give(seq, "false_alarm")
    m.hear(m.normal[:60], alert=False)
    seq = m.hear(m.odd[:2], alert=True)
    out = m.give(seq, "false_alarm")
    assert out["normal_model"]["seeded"] is True and m.onsite.model is not None
    assert m.onsite.model.n_fitted == 59  # the recent normal windows, less the one overlapping the run
    assert m.over(m.odd[50:]) < 0.2 and m.over(m.normal[100:]) < 0.1
    assert (tmp_path / "learned" / "pump.npz").is_file()
    assert m.give(seq, "undo")["normal_model"]["dropped"] is True
    assert m.onsite.model is None and not (tmp_path / "learned" / "pump.npz").exists()
    assert m.onsite.status()["state"] == "off"


def test_confirmed_labels_and_the_refusals_say_why(card, tmp_path: Path) -> None:
    m = Machine(card, tmp_path, learned=True)
    seq = m.hear(m.odd[:2], alert=True)
    out = m.give(seq, "confirmed")
    assert out["label"] == "anomaly" and out["mark"]["verdict"] == "confirmed"  # the alert's own label
    assert m.onsite.model.accepted == ()  # detection unchanged
    with pytest.raises(FeedbackConflictError, match="already marked confirmed"):
        m.give(seq, "confirmed", label="bearing")
    with pytest.raises(UnknownAlertError, match="alert 999 is unknown.*last 10 alerts"):
        m.give(999, "confirmed")
    m.onsite.bind(card, "other-machine")  # the module now listens to another machine
    seq2 = m.hear(m.odd[:2], alert=True)
    m.onsite.bind(card, "pump")
    m.alerts.get(seq2).machine = "elsewhere"
    with pytest.raises(FeedbackConflictError, match="was for machine 'elsewhere'"):
        m.give(seq2, "false_alarm")
    m.alerts.get(seq2).machine, m.alerts.get(seq2).fingerprint = "pump", "another-front-end"
    with pytest.raises(FeedbackConflictError, match="another model's features"):
        m.give(seq2, "false_alarm")
    from dataclasses import replace

    plain = replace(card, extra={k: v for k, v in card.extra.items() if k != "learning"})
    m.onsite.bind(plain, "pump")
    with pytest.raises(FeedbackConflictError, match="cannot learn"):
        m.give(seq2, "false_alarm")
    assert m.give(seq2, "confirmed", label="bearing")["label"] == "bearing"  # a label needs no learning


def test_the_history_is_bounded_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    fb = Feedback(tmp_path)
    for seq in range(HISTORY + 5):
        fb._keep({"seq": seq, "verdict": "confirmed", "label": "x", "at": "t"})
    again = Feedback(tmp_path)
    assert len(again.verdicts) == HISTORY and min(again.verdicts) == 5
    (tmp_path / "verdicts.json").write_text("{not json")
    broken = Feedback(tmp_path)
    assert broken.verdicts == {} and "unreadable" in broken.last_error


# ------------------------------------------------------------------------------------------------
# the method: arguments from the one table, answers


def test_feedback_arguments_are_checked_by_the_table() -> None:
    assert check_arguments("feedback", {"seq": 3, "verdict": "false_alarm"}) == {
        "seq": 3, "verdict": "false_alarm", "label": None, "note": None}
    assert check_arguments("feedback", {"seq": 3.0, "verdict": "CONFIRMED", "label": "bearing", "note": " ok "})[
        "note"] == "ok"
    bad = [({}, "seq", "required"), ({"seq": 3}, "verdict", "required"), ({"seq": 0, "verdict": "undo"}, "seq", "[1, inf)"),
           ({"seq": 1.5, "verdict": "undo"}, "seq", "integer"), ({"seq": "3", "verdict": "undo"}, "seq", "integer"),
           ({"seq": True, "verdict": "undo"}, "seq", "integer"), ({"seq": None, "verdict": "undo"}, "seq", "null"),
           ({"seq": 3, "verdict": "maybe"}, "verdict", "one of false_alarm, confirmed, undo"),
           ({"seq": 3, "verdict": "confirmed", "label": "x" * 65}, "label", "at most 64 characters"),
           ({"seq": 3, "verdict": "confirmed", "label": "x" * 100_000}, "label", "at most 64"),
           ({"seq": 3, "verdict": "confirmed", "label": "../etc"}, "label", "letters, digits"),
           ({"seq": 3, "verdict": "confirmed", "note": "n" * 501}, "note", "at most 500"),
           ({"seq": 3, "verdict": "confirmed", "colour": "red"}, "colour", "unknown argument")]
    for payload, name, reason in bad:
        with pytest.raises(ConstraintError) as info:
            check_arguments("feedback", payload)
        assert info.value.name == name and reason in info.value.reason and len(str(info.value)) < 200, payload
    assert METHODS["feedback"]["seq"].required and not METHODS["feedback"]["label"].required


class Control:
    """The runtime's feedback, as the method handler sees it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def feedback(self, seq: int, verdict: str, label: str | None, note: str | None) -> dict[str, Any]:
        self.calls.append((seq, verdict, label, note))
        if seq == 404:
            raise UnknownAlertError("alert 404 is unknown: the module keeps the last 100 alerts")
        if seq == 409:
            raise FeedbackConflictError("alert 409 is already marked confirmed: undo it first")
        clip = None if seq == 5 else f"m/d/x-a{seq}.wav"
        return {"seq": seq, "verdict": verdict, "label": label or "normal", "changed": True,
                "mark": None if clip is None else {"clip": clip, "verdict": verdict}}


def test_the_method_answers_200_with_the_mark_and_404_409_400_with_the_reason(tmp_path: Path) -> None:
    marks: list[dict] = []

    def given(outcome: dict[str, Any]) -> str | None:
        if outcome["mark"]:
            marks.append(outcome["mark"])
            return "queued"
        return None

    ctx = MethodContext(control=Control(), status=dict, spool=Spool(tmp_path / "spool"), clip_queued=lambda: None,
                        calibration_started=lambda s: None, calibration_done=lambda s: None, feedback_given=given)
    status, body = dispatch("feedback", {"seq": 3, "verdict": "false_alarm", "note": "fan"}, ctx)
    assert status == 200 and body["mark"] == "queued" and marks == [{"clip": "m/d/x-a3.wav", "verdict": "false_alarm"}]
    assert ctx.control.calls[-1] == (3, "false_alarm", None, "fan")
    status, body = dispatch("feedback", {"seq": 5, "verdict": "confirmed"}, ctx)
    assert status == 200 and body["mark"] is None  # the alert had no clip
    assert dispatch("feedback", {"seq": 404, "verdict": "confirmed"}, ctx) == (
        404, {"error": "alert 404 is unknown: the module keeps the last 100 alerts"})
    assert dispatch("feedback", {"seq": 409, "verdict": "confirmed"}, ctx)[0] == 409
    for payload in ({"verdict": "confirmed"}, {"seq": -1, "verdict": "confirmed"}, {"seq": 3, "verdict": "yes"},
                    {"seq": 3, "verdict": "confirmed", "label": "l" * 300}, "[1, 2]", None):
        status, body = dispatch("feedback", payload, ctx)
        assert status == 400 and len(body["error"]) < 200, (payload, body)
    assert len(ctx.control.calls) == 4  # refused payloads never reach the runtime


# ------------------------------------------------------------------------------------------------
# clip marks


def test_marks_in_metadata_tags_and_sidecar_read_back_the_same() -> None:
    mark = {"clip": "Pump 1/2025-01-01/000000000-anomaly-a3.wav", "verdict": "confirmed", "label": "bearing",
            "machine": "Pump 1 (hall B)", "seq": 3, "note": "grinding, 50% louder — étrange", "at": "2025-01-01T00:00:00.000Z",
            "model": "v1", "alert_time": "2024-12-31T23:59:59.000Z"}
    md = metadata(mark)
    assert all(v.isascii() for v in md.values()) and md["auscult_verdict"] == "confirmed"
    back = read_mark(md)
    assert back == {k: v for k, v in mark.items() if k != "clip"}  # every value round-trips, seq as a number
    assert tags(mark) == {"auscult_verdict": "confirmed", "auscult_label": "bearing", "auscult_machine": "Pump-1-hall-B"}
    assert read_mark(sidecar(mark))["note"] == mark["note"]
    assert read_mark({"other": "x"}) is None and read_mark(b"{nope") is None and read_mark(None) is None


def test_clip_marks_wait_durably_and_a_newer_one_wins(tmp_path: Path) -> None:
    marks = ClipMarks(tmp_path / "marks")
    first = {"clip": "m/d/x-a1.wav", "verdict": "false_alarm", "label": "normal"}
    marks.put(first)
    assert ClipMarks(tmp_path / "marks").get("m/d/x-a1.wav") == first  # durable
    newer = {**first, "verdict": "undone"}
    marks.put(newer)
    marks.done(first)  # applied the older one meanwhile: the newer still waits
    assert marks.pending() == [newer] and marks.stats()["applied"] == 0
    marks.done(newer, lost=True)
    assert marks.pending() == [] and marks.stats() == {"pending": 0, "applied": 0, "lost": 1, "dropped": 0}
    assert not (tmp_path / "marks" / "m").exists()  # emptied folders go
    assert MAX_MARKS >= 1000
