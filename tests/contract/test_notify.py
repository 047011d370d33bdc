"""The technicians' notifier (cloud/notify): alerts in, readable webhook posts out.

Messages are the module's own (events.Alert/Telemetry and message_properties) and a batch in the
shape the Functions host hands to an Event Hub trigger (tests/data/notify_batch.json), decoded by
the real azure-functions converter. The webhook is a real HTTP server on loopback that records
what it is sent and answers what each test scripts; only the Azure cloud itself is left out.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from audioclassifier.events import Alert, Telemetry, message_properties
from harness.paths import REPO

sys.path.insert(0, str(REPO / "cloud" / "notify"))

import notifier as nt

TOKEN = "hooktoken-3f9a7c"  # the secret part of a webhook URL
SAS = "sv=2024-05-04&sr=c&sp=r&se=2030-01-01&sig=SeCrEtSiGnAtUrE%3D"
CLIP_BASE = "https://auscultclips.blob.core.windows.net/auscult-clips"
T0 = 1_763_700_000.0  # 2025-11-21 04:40:00 UTC


@dataclass
class Webhook:
    """A loopback webhook: records each POST and answers from a script (then 200)."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)

    def bodies(self) -> list[Any]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                hook.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = hook.script.pop(0) if hook.script else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/webhook/{TOKEN}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def settings(url: str, **env: str) -> nt.NotifySettings:
    base = {"AUSCULT_WEBHOOK_URL": url, "AUSCULT_WEBHOOK_FORMAT": "teams", "AUSCULT_CLIP_BASE_URL": CLIP_BASE,
            "AUSCULT_CLIP_SAS": SAS, "AUSCULT_WEBHOOK_RETRIES": "3", "AUSCULT_WEBHOOK_BACKOFF_SECONDS": "0.01"}
    base.update(env)
    return nt.NotifySettings.from_env(base)


def alert(seq: int = 7, *, machine: str = "pump-3", label: str = "bearing", score: float = 0.912,
          clip: str | None = "pump-3/2025-11-21/044000-bearing.wav") -> dict[str, Any]:
    return Alert(machine=machine, label=label, score=score, threshold=0.73, window_start=T0,
                 window_end=T0 + 10, audio_offset_seconds=120.0, model="2025.11-anomaly", seq=seq,
                 clip=clip).to_message()


def telemetry(seq: int = 3) -> dict[str, Any]:
    return Telemetry(machine="pump-3", interval_start=T0 - 60, interval_end=T0, windows=60, scored=60,
                     mean_score=0.21, max_score=0.4, level_dbfs=-31.5, state="running",
                     model="2025.11-anomaly", seq=seq).to_message()


def event(body: Any, *, properties: dict[str, str] | None = None, device: str = "edge-01") -> nt.RawEvent:
    """A message as IoT Hub delivers it: JSON bytes, the module's application properties, system properties."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    props = message_properties(body) if properties is None else properties
    return nt.RawEvent(body=raw, properties=props,
                       system={"connection-device-id": device, "connection-module-id": "audioclassifier"})


def test_alert_becomes_a_teams_card_with_the_clip_link(webhook: Webhook) -> None:
    report = nt.Notifier(settings(webhook.url)).handle([event(alert())])

    assert (report.alerts, report.sent, report.failed) == (1, 1, [])
    assert len(webhook.requests) == 1
    req = webhook.requests[0]
    assert req["path"] == f"/webhook/{TOKEN}"
    assert req["headers"]["Content-Type"].startswith("application/json")
    msg = webhook.bodies()[0]
    assert msg["type"] == "message"
    (att,) = msg["attachments"]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard"
    facts = {f["title"]: f["value"] for f in next(b for b in card["body"] if b["type"] == "FactSet")["facts"]}
    assert facts["Machine"] == "pump-3"
    assert facts["Sound"] == "bearing"
    assert facts["Score"] == "0.912 (threshold 0.73)"
    assert facts["Time"] == "2025-11-21 04:40:00 UTC"
    assert facts["Device"] == "edge-01"
    assert facts["Alert no."] == "7"
    (action,) = card["actions"]
    assert action["type"] == "Action.OpenUrl"
    assert action["url"] == f"{CLIP_BASE}/pump-3/2025-11-21/044000-bearing.wav?{SAS}"
    assert "pump-3 sounds like bearing" in msg["summary"]


HEALTH = {"index": 52, "state": "watch", "trend_per_day": -12.4, "since": "2025-11-21T04:20:00.000Z", "windows": 900}
EXPLANATION = {"summary": "+9 dB at 2.1-4.3 kHz, impulsive", "reference": {"source": "learned", "windows": 280},
               "bands": [{"low_hz": 2100.0, "high_hz": 4300.0, "level_db": 9.2, "variability_db": 4.1,
                          "departure": 11.5, "kind": "impulsive"}]}


def test_the_card_says_what_changed_in_the_sound_and_how_the_machine_is_doing(webhook: Webhook) -> None:
    body = Alert(machine="pump-3", label="anomaly", score=2.5, threshold=2.13, window_start=T0, window_end=T0 + 2,
                 audio_offset_seconds=120.0, model="2025.11-anomaly", seq=8, clip=None, health=HEALTH,
                 explanation=EXPLANATION).to_message()
    nt.Notifier(settings(webhook.url)).handle([event(body)])
    msg = webhook.bodies()[0]
    card = msg["attachments"][0]["content"]
    facts = {f["title"]: f["value"] for f in next(b for b in card["body"] if b["type"] == "FactSet")["facts"]}
    assert facts["What changed"] == "+9 dB at 2.1-4.3 kHz, impulsive"
    assert facts["Health"] == "watch (index 52, falling 12 points a day)"
    assert msg["summary"].startswith("pump-3 sounds like anomaly (+9 dB at 2.1-4.3 kHz, impulsive): score 2.5")
    assert card["body"][0]["color"] == "Warning"  # watch; alarm (or no health) is Attention

    alarm = dict(body, health={**HEALTH, "state": "alarm", "index": 12, "trend_per_day": None}, seq=9)
    slack = settings(webhook.url, AUSCULT_WEBHOOK_FORMAT="slack")
    nt.Notifier(slack).handle([event(alarm)])
    fields = [f["text"] for f in webhook.bodies()[1]["blocks"][1]["fields"]]
    assert "*What changed*\n+9 dB at 2.1-4.3 kHz, impulsive" in fields and "*Health*\nalarm (index 12)" in fields


def test_an_unreadable_health_or_explanation_is_left_out_and_the_alert_still_goes(webhook: Webhook) -> None:
    body = dict(alert(), health={"index": "high", "state": "ok"}, explanation={"summary": 5})
    report = nt.Notifier(settings(webhook.url)).handle([event(body)])
    assert report.sent == 1 and report.malformed == 0
    card = webhook.bodies()[0]["attachments"][0]["content"]
    facts = {f["title"] for f in next(b for b in card["body"] if b["type"] == "FactSet")["facts"]}
    assert "Health" not in facts and "What changed" not in facts
    long = dict(alert(seq=10), explanation={"summary": "x " * 500})
    nt.Notifier(settings(webhook.url)).handle([event(long)])
    card = webhook.bodies()[1]["attachments"][0]["content"]
    facts = {f["title"]: f["value"] for f in next(b for b in card["body"] if b["type"] == "FactSet")["facts"]}
    assert len(facts["What changed"]) == 200 and facts["What changed"].endswith("...")


def test_slack_payload_escapes_names_and_links_the_clip(webhook: Webhook) -> None:
    s = settings(webhook.url, AUSCULT_WEBHOOK_FORMAT="slack", AUSCULT_CLIP_SAS="")
    nt.Notifier(s).handle([event(alert(machine="fan <B&C>", clip="clips/a b.wav"))])

    (msg,) = webhook.bodies()
    assert "fan &lt;B&amp;C&gt; sounds like bearing" in msg["text"]
    assert msg["blocks"][0]["type"] == "header"
    fields = [f["text"] for f in msg["blocks"][1]["fields"]]
    assert "*Machine*\nfan &lt;B&amp;C&gt;" in fields
    assert "*Score*\n0.912 (threshold 0.73)" in fields
    assert msg["blocks"][-1]["text"]["text"] == f"<{CLIP_BASE}/clips/a%20b.wav|Listen to the clip>"


def test_file_upload_clips_are_linked_under_the_device_id(webhook: Webhook) -> None:
    s = settings(webhook.url, AUSCULT_CLIP_DEVICE_PREFIX="true", AUSCULT_CLIP_SAS="")
    nt.Notifier(s).handle([event(alert(clip="pump-3/x.wav"), device="edge-01")])
    action = webhook.bodies()[0]["attachments"][0]["content"]["actions"][0]
    assert action["url"] == f"{CLIP_BASE}/edge-01/pump-3/x.wav"


def test_alert_without_clip_says_so(webhook: Webhook) -> None:
    nt.Notifier(settings(webhook.url)).handle([event(alert(clip=None))])
    card = webhook.bodies()[0]["attachments"][0]["content"]
    assert "actions" not in card
    assert any("No clip" in b.get("text", "") for b in card["body"])


def test_telemetry_and_other_messages_are_ignored(webhook: Webhook) -> None:
    events = [
        event(telemetry()),                                         # alert=false
        event(telemetry(), properties={}),                          # no properties: body type decides
        event({"temperature": 21.5}, properties={}, device="thermo"),  # another device's message
        event(b"\x00\x01binary", properties={}, device="camera"),   # not JSON, not ours
    ]
    report = nt.Notifier(settings(webhook.url)).handle(events)
    assert (report.events, report.ignored, report.alerts, report.malformed) == (4, 4, 0, 0)
    assert webhook.requests == []


def test_alert_without_properties_is_recognised_by_its_body(webhook: Webhook) -> None:
    report = nt.Notifier(settings(webhook.url)).handle([event(alert(), properties={})])
    assert report.sent == 1 and len(webhook.requests) == 1


def test_webhook_500_is_retried_then_succeeds(webhook: Webhook) -> None:
    webhook.script = [500, 503]
    report = nt.Notifier(settings(webhook.url)).handle([event(alert())])
    assert report.sent == 1 and report.failed == []
    assert len(webhook.requests) == 3
    assert webhook.bodies()[0] == webhook.bodies()[2]


def test_webhook_500_is_retried_then_reported_without_secrets(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    webhook.script = [500] * 10
    caplog.set_level(logging.INFO, logger="auscult.notify")
    n = nt.Notifier(settings(webhook.url))
    report = n.handle([event(alert(seq=1)), event(telemetry())])

    assert len(webhook.requests) == 4  # the first try and 3 retries
    assert report.sent == 0 and report.ignored == 1
    (failure,) = report.failed
    assert "pump-3 seq 1" in failure and "HTTP 500" in failure and "4 attempt" in failure
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "127.0.0.1" in errors[0].getMessage()
    for text in [caplog.text, failure]:
        assert TOKEN not in text and "SeCrEtSiGnAtUrE" not in text

    # Not remembered as delivered: the next attempt (the function's retry) posts it.
    webhook.script = []
    assert n.handle([event(alert(seq=1))]).sent == 1


def test_unreachable_webhook_is_reported_without_the_url(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    caplog.set_level(logging.INFO, logger="auscult.notify")
    report = nt.Notifier(settings(f"http://127.0.0.1:{port}/webhook/{TOKEN}")).handle([event(alert())])
    (failure,) = report.failed
    assert "unreachable" in failure
    assert TOKEN not in failure and TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not UTF-8 JSON"),
        (b"\xff\xfe\x00", "not UTF-8 JSON"),
        ([1, 2, 3], "JSON object"),
        ({**alert(), "score": None}, "'score'"),
        ({**alert(), "score": float("nan")}, "'score'"),
        ({**alert(), "machine": ""}, "'machine'"),
        ({**alert(), "window_start": "yesterday"}, "'window_start'"),
        ({**alert(), "seq": "7"}, "'seq'"),
        ({**alert(), "clip": 42}, "'clip'"),
    ],
)
def test_malformed_alert_is_skipped_with_a_log_line(webhook: Webhook, caplog: pytest.LogCaptureFixture,
                                                    body: Any, why: str) -> None:
    caplog.set_level(logging.INFO, logger="auscult.notify")
    bad = event(body, properties={"alert": "true", "label": "bearing"}, device="edge-07")
    report = nt.Notifier(settings(webhook.url)).handle([bad, event(alert(seq=8))])

    assert report.malformed == 1 and report.sent == 1  # the good one in the same batch still goes out
    assert len(webhook.requests) == 1
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "edge-07" in warning.getMessage() and why in warning.getMessage()


def test_redelivered_alert_is_not_posted_twice(webhook: Webhook) -> None:
    n = nt.Notifier(settings(webhook.url))
    first = n.handle([event(alert(seq=5)), event(alert(seq=6))])
    again = n.handle([event(alert(seq=5)), event(alert(seq=5, machine="pump-4"))])
    assert first.sent == 2
    assert again.duplicates == 1 and again.sent == 1  # same seq from another machine is another alert
    assert len(webhook.requests) == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "AUSCULT_WEBHOOK_URL is not set"),
        ({"AUSCULT_WEBHOOK_URL": "ftp://x/y"}, "http(s) URL"),
        ({"AUSCULT_WEBHOOK_URL": "https://x/y", "AUSCULT_WEBHOOK_FORMAT": "email"}, "auto, teams or slack"),
        ({"AUSCULT_WEBHOOK_URL": "https://x/y", "AUSCULT_CLIP_BASE_URL": f"{CLIP_BASE}?{SAS}"}, "AUSCULT_CLIP_SAS"),
        ({"AUSCULT_WEBHOOK_URL": "https://x/y", "AUSCULT_WEBHOOK_RETRIES": "many"}, "AUSCULT_WEBHOOK_RETRIES"),
        ({"AUSCULT_WEBHOOK_URL": "https://x/y", "AUSCULT_WEBHOOK_BACKOFF_SECONDS": "-1"}, ">= 0"),
        ({"AUSCULT_WEBHOOK_URL": "https://x/y", "AUSCULT_CLIP_DEVICE_PREFIX": "yes"}, "true or false"),
    ],
)
def test_bad_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(nt.ConfigError) as info:
        nt.NotifySettings.from_env(env)
    assert message in str(info.value)
    assert "SeCrEtSiGnAtUrE" not in str(info.value)


def test_settings_pick_the_format_and_hide_secrets() -> None:
    s = nt.NotifySettings.from_env({"AUSCULT_WEBHOOK_URL": f"https://hooks.slack.com/services/{TOKEN}",
                                    "AUSCULT_CLIP_SAS": f"?{SAS}"})
    assert s.webhook_format == "slack" and s.clip_sas == SAS and s.retries == 4
    assert TOKEN not in repr(s) and "SeCrEtSiGnAtUrE" not in repr(s)
    t = nt.NotifySettings.from_env({"AUSCULT_WEBHOOK_URL": "https://contoso.webhook.office.com/x"})
    assert t.webhook_format == "teams" and t.webhook_host == "contoso.webhook.office.com"


# --- The Functions adapter, with the real azure-functions converter -------------------------------

func = pytest.importorskip("azure.functions")


def host_batch(path: Path) -> list[Any]:
    """Decode a recorded trigger payload as the Python worker does for ``cardinality: many``."""
    from azure.functions import meta
    from azure.functions.eventhub import EventHubTriggerConverter

    rec = json.loads(path.read_text())
    trigger_metadata = {k: meta.Datum(json.dumps(v), "json") for k, v in rec["trigger_metadata"].items()}
    return EventHubTriggerConverter.decode(meta.Datum(json.dumps(rec["bodies"]), "json"),
                                           trigger_metadata=trigger_metadata)


def test_function_adapter_notifies_the_alerts_of_a_host_batch(webhook: Webhook) -> None:
    import function_app

    events = host_batch(REPO / "tests" / "data" / "notify_batch.json")
    assert len(events) == 3
    report = function_app.handle(events, nt.Notifier(settings(webhook.url)))

    assert (report.events, report.alerts, report.sent, report.ignored) == (3, 1, 1, 2)
    card = webhook.bodies()[0]["attachments"][0]["content"]
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Device"] == "press-line-2" and facts["Machine"] == "hydraulic-press"
    assert facts["Sound"] == "clogging"
    assert card["actions"][0]["url"] == f"{CLIP_BASE}/hydraulic-press/2025-11-21/044000-clogging.wav?{SAS}"


def test_function_raises_when_an_alert_is_not_delivered_so_the_platform_retries(webhook: Webhook) -> None:
    import function_app

    webhook.script = [500] * 10
    events = host_batch(REPO / "tests" / "data" / "notify_batch.json")
    with pytest.raises(function_app.NotificationError, match="1 alert") as info:
        function_app.handle(events, nt.Notifier(settings(webhook.url)))
    assert "hydraulic-press seq 41" in str(info.value) and TOKEN not in str(info.value)
    assert len(webhook.requests) == 4


def test_function_binding_reads_the_iot_hub_endpoint_in_batches_with_a_retry_policy() -> None:
    import function_app

    (fn,) = function_app.app.get_functions()
    (binding,) = json.loads(fn.get_function_json())["bindings"]
    assert binding["type"] == "eventHubTrigger" and binding["direction"] == "IN"
    assert binding["cardinality"].lower() == "many"
    assert binding["connection"] == "AUSCULT_EVENTHUB_CONNECTION"
    assert binding["eventHubName"] == "%AUSCULT_EVENTHUB_NAME%"
    assert binding["consumerGroup"] == "%AUSCULT_CONSUMER_GROUP%"
    retry = fn.get_settings_dict("retry_policy")
    assert retry and retry["strategy"] == "exponential_backoff" and int(retry["max_retry_count"]) > 0
    template = json.loads((REPO / "cloud" / "notify" / "local.settings.json.template").read_text())["Values"]
    for name in ["AUSCULT_EVENTHUB_CONNECTION", "AUSCULT_EVENTHUB_NAME", "AUSCULT_CONSUMER_GROUP",
                 "AUSCULT_WEBHOOK_URL", "AUSCULT_CLIP_BASE_URL", "AUSCULT_CLIP_SAS"]:
        assert name in template, name
