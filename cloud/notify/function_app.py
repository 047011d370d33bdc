"""Azure Functions app (Python v2 model): notify technicians of Auscult alerts.

Triggered by batches from the IoT Hub's built-in Event Hub-compatible endpoint (or an Event Hubs
endpoint that an IoT Hub route ``alert = 'true'`` feeds), it keeps the alerts and posts each one to
a Teams or Slack webhook (notifier.py holds the logic). A batch in which a post still fails after
the HTTP retries raises, so the function's retry policy runs it again; alerts already delivered
are remembered and not posted twice.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any

import azure.functions as func
from notifier import Notifier, NotifySettings, RawEvent, Report

app = func.FunctionApp()
log = logging.getLogger("auscult.notify")


class NotificationError(RuntimeError):
    """Some alerts of a batch could not be delivered (the function's retry policy runs it again)."""


@functools.cache
def get_notifier() -> Notifier:
    """One notifier per worker process, from the app settings (it remembers what it delivered)."""
    return Notifier(NotifySettings.from_env(os.environ))


def _properties(event: func.EventHubEvent, index: int) -> dict[str, Any]:
    """The application properties of the ``index``-th event of a batch (or of a single event)."""
    meta = event.metadata or {}
    many = meta.get("PropertiesArray")
    if isinstance(many, list):
        props = many[index] if index < len(many) else None
    else:
        props = meta.get("Properties")
    return dict(props) if isinstance(props, dict) else {}


def to_raw_events(events: Sequence[func.EventHubEvent] | func.EventHubEvent) -> list[RawEvent]:
    """Adapt what the Functions host delivers (one event or a batch) to notifier.RawEvent."""
    batch = [events] if isinstance(events, func.EventHubEvent) else list(events)
    return [RawEvent(body=e.get_body(), properties=_properties(e, i), system=dict(e.iothub_metadata or {}))
            for i, e in enumerate(batch)]


def handle(events: Sequence[func.EventHubEvent] | func.EventHubEvent, target: Notifier | None = None) -> Report:
    """Notify the alerts among ``events``; raise NotificationError if any could not be delivered."""
    report = (target or get_notifier()).handle(to_raw_events(events))
    log.info("batch of %d: %d alert(s), %d sent, %d ignored, %d malformed, %d duplicate(s), %d failed",
             report.events, report.alerts, report.sent, report.ignored, report.malformed,
             report.duplicates, len(report.failed))
    if report.failed:
        raise NotificationError(f"{len(report.failed)} alert(s) not delivered: " + "; ".join(report.failed))
    return report


@app.function_name(name="auscult_alerts")
@app.retry(strategy="exponential_backoff", max_retry_count="5",
           minimum_interval="00:00:10", maximum_interval="00:05:00")
@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%AUSCULT_EVENTHUB_NAME%",
    connection="AUSCULT_EVENTHUB_CONNECTION",
    consumer_group="%AUSCULT_CONSUMER_GROUP%",
    cardinality="many",
)
def auscult_alerts(events: list[func.EventHubEvent]) -> None:
    handle(events)
