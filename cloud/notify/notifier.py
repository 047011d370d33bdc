"""Technician notifications from Auscult alerts: read IoT Hub events, keep the alerts, post to a webhook.

Free of azure-functions so it runs and is tested anywhere; ``function_app.py`` only adapts Event Hub
events to :class:`RawEvent`. Secrets (the webhook URL, which carries its token, and the clip SAS
token) are never logged: log lines name the webhook's host only.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.util.retry import Retry

__all__ = [
    "AlertNotice",
    "ConfigError",
    "Health",
    "MalformedEventError",
    "Notifier",
    "NotifySettings",
    "RawEvent",
    "Report",
    "WebhookError",
    "build_payload",
    "clip_link",
    "parse_event",
    "post_json",
]

log = logging.getLogger("auscult.notify")

FORMATS = ("teams", "slack")
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class ConfigError(ValueError):
    """A missing or invalid app setting; the message names the setting, never its secret value."""


class MalformedEventError(ValueError):
    """An event that claims to be an alert (or cannot tell) but whose body cannot be read as one."""


class WebhookError(RuntimeError):
    """The webhook refused or could not be reached, after the retries."""


def _setting(env: Mapping[str, str], name: str, default: str = "") -> str:
    return (env.get(name) or default).strip()


def _positive(env: Mapping[str, str], name: str, default: float, *, integer: bool = False) -> Any:
    raw = _setting(env, name)
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {'whole ' if integer else ''}number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class NotifySettings:
    """App settings of the notifier (see local.settings.json.template)."""

    webhook_url: str = field(repr=False)
    webhook_format: str = "teams"
    clip_base_url: str = ""
    clip_sas: str = field(default="", repr=False)
    clip_device_prefix: bool = False
    retries: int = 4
    backoff_seconds: float = 1.0
    timeout_seconds: float = 10.0

    @property
    def webhook_host(self) -> str:
        """The webhook's host: what logs may say about it."""
        return urlsplit(self.webhook_url).hostname or "?"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NotifySettings:
        """Read ``AUSCULT_WEBHOOK_URL`` (required) and the optional settings; ConfigError if bad."""
        url = _setting(env, "AUSCULT_WEBHOOK_URL")
        if not url:
            raise ConfigError("AUSCULT_WEBHOOK_URL is not set: the Teams or Slack incoming webhook URL")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError("AUSCULT_WEBHOOK_URL must be an http(s) URL")
        fmt = _setting(env, "AUSCULT_WEBHOOK_FORMAT", "auto").lower()
        if fmt == "auto":
            fmt = "slack" if parts.hostname.endswith("slack.com") else "teams"
        if fmt not in FORMATS:
            raise ConfigError(f"AUSCULT_WEBHOOK_FORMAT must be auto, teams or slack, got {fmt!r}")
        base = _setting(env, "AUSCULT_CLIP_BASE_URL")
        if base and urlsplit(base).scheme not in ("https", "http"):
            raise ConfigError("AUSCULT_CLIP_BASE_URL must be an http(s) URL (the clips container)")
        if base and urlsplit(base).query:
            raise ConfigError("AUSCULT_CLIP_BASE_URL must not carry a query: put the SAS token in AUSCULT_CLIP_SAS")
        prefix = _setting(env, "AUSCULT_CLIP_DEVICE_PREFIX", "false").lower()
        if prefix not in ("true", "false"):
            raise ConfigError(f"AUSCULT_CLIP_DEVICE_PREFIX must be true or false, got {prefix!r}")
        return cls(
            webhook_url=url,
            webhook_format=fmt,
            clip_base_url=base.rstrip("/"),
            clip_sas=_setting(env, "AUSCULT_CLIP_SAS").lstrip("?"),
            clip_device_prefix=prefix == "true",
            retries=_positive(env, "AUSCULT_WEBHOOK_RETRIES", 4, integer=True),
            backoff_seconds=_positive(env, "AUSCULT_WEBHOOK_BACKOFF_SECONDS", 1.0),
            timeout_seconds=_positive(env, "AUSCULT_WEBHOOK_TIMEOUT_SECONDS", 10.0) or 10.0,
        )


@dataclass(frozen=True)
class RawEvent:
    """One IoT Hub message as the Event Hub-compatible endpoint delivers it.

    ``properties`` are the application properties (``alert``, ``label``, ``machine``); ``system``
    the ``iothub-*`` system properties without the prefix (``connection-device-id``, ...).
    """

    body: bytes | str
    properties: Mapping[str, Any] = field(default_factory=dict)
    system: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    """The machine's health the alert carries (the module's health index)."""

    index: int
    state: str  # ok | watch | alarm
    trend_per_day: float | None = None

    def describe(self) -> str:
        """``watch (index 52, falling 12 points a day)``."""
        text = f"{self.state} (index {self.index}"
        if self.trend_per_day is not None and abs(self.trend_per_day) >= 1:
            way = "falling" if self.trend_per_day < 0 else "rising"
            text += f", {way} {abs(self.trend_per_day):.0f} points a day"
        return text + ")"


HEALTH_STATES = ("ok", "watch", "alarm")
_MAX_EXPLANATION = 200


def _health(body: Mapping[str, Any]) -> Health | None:
    """The body's ``health``, or None when it has none or it is not one (an alert is sent regardless)."""
    h = body.get("health")
    if not isinstance(h, Mapping):
        return None
    index, state, trend = h.get("index"), h.get("state"), h.get("trend_per_day")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 100 or state not in HEALTH_STATES:
        return None
    ok_trend = isinstance(trend, (int, float)) and not isinstance(trend, bool) and math.isfinite(trend)
    return Health(index, str(state), float(trend) if ok_trend else None)


def _explanation(body: Mapping[str, Any]) -> str | None:
    """The body's explanation summary, bounded; None when it has none."""
    e = body.get("explanation")
    summary = e.get("summary") if isinstance(e, Mapping) else None
    if not isinstance(summary, str) or not summary.strip():
        return None
    summary = " ".join(summary.split())
    return summary if len(summary) <= _MAX_EXPLANATION else summary[: _MAX_EXPLANATION - 3] + "..."


@dataclass(frozen=True)
class AlertNotice:
    """An alert, read and checked, ready to be worded for a technician."""

    machine: str
    label: str
    score: float
    threshold: float | None
    window_start: datetime
    seq: int | None
    clip: str | None = None
    model: str | None = None
    device: str | None = None
    module: str | None = None
    health: Health | None = None
    explanation: str | None = None  # the module's one-line summary: "+9 dB at 2.1-4.3 kHz, impulsive"

    @property
    def key(self) -> tuple[Any, ...]:
        """What identifies one alert across redeliveries (the module's outbox sends at least once)."""
        return (self.device, self.module, self.machine, self.seq, self.window_start)


def _flag(properties: Mapping[str, Any]) -> str | None:
    for k, v in properties.items():
        if str(k).lower() == "alert":
            return str(v).strip().lower()
    return None


def _text(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    v = body.get(name)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip():
        raise MalformedEventError(f"{name!r} must be a non-empty string, got {v!r}")
    return v.strip()


def _number(body: Mapping[str, Any], name: str, *, required: bool = True) -> float | None:
    v = body.get(name)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise MalformedEventError(f"{name!r} must be a finite number, got {v!r}")
    return float(v)


def _time(body: Mapping[str, Any], name: str) -> datetime:
    v = body.get(name)
    if not isinstance(v, str):
        raise MalformedEventError(f"{name!r} must be an ISO-8601 time, got {v!r}")
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedEventError(f"{name!r} must be an ISO-8601 time, got {v!r}") from None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def parse_event(event: RawEvent) -> AlertNotice | None:
    """The alert carried by ``event``; None for any other message (telemetry, status, ...).

    The ``alert`` application property decides (IoT Hub routing uses the same one); without it,
    the body's ``type`` does (``anomaly`` is an alert). An alert whose body cannot be read raises
    :class:`MalformedEventError` so the caller can skip it with a log line.
    """
    flag = _flag(event.properties)
    if flag is not None and flag != "true":
        return None
    raw = event.body
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else str(raw)
        body = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        if flag is None:
            return None  # not ours: another device's non-JSON message
        raise MalformedEventError(f"body is not UTF-8 JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(body, dict):
        if flag is None:
            return None
        raise MalformedEventError(f"body must be a JSON object, got {type(body).__name__}")
    if flag is None and body.get("type") != "anomaly":
        return None
    seq = body.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise MalformedEventError(f"'seq' must be an integer, got {seq!r}")
    clip = body.get("clip")
    if clip is not None and (not isinstance(clip, str) or not clip.strip()):
        raise MalformedEventError(f"'clip' must be a blob name or null, got {clip!r}")
    system = event.system or {}
    return AlertNotice(
        machine=_text(body, "machine"),
        label=_text(body, "label"),
        score=_number(body, "score"),
        threshold=_number(body, "threshold", required=False),
        window_start=_time(body, "window_start"),
        seq=seq,
        clip=clip.strip() if clip else None,
        model=_text(body, "model", required=False),
        device=str(system["connection-device-id"]) if system.get("connection-device-id") else None,
        module=str(system["connection-module-id"]) if system.get("connection-module-id") else None,
        health=_health(body),
        explanation=_explanation(body),
    )


def clip_link(settings: NotifySettings, clip: str | None, device: str | None = None) -> str | None:
    """The clip's URL: the clips container's URL, the blob name, and the SAS token if one is set.

    With IoT Hub file upload the hub stores the blob under ``<device id>/<name>``
    (``AUSCULT_CLIP_DEVICE_PREFIX=true``).
    """
    if not clip or not settings.clip_base_url:
        return None
    name = clip.lstrip("/")
    if settings.clip_device_prefix and device:
        name = f"{device}/{name}"
    url = f"{settings.clip_base_url}/{quote(name, safe='/')}"
    return f"{url}?{settings.clip_sas}" if settings.clip_sas else url


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def _score(notice: AlertNotice) -> str:
    s = f"{notice.score:.3g}"
    return s if notice.threshold is None else f"{s} (threshold {notice.threshold:.3g})"


def summary(notice: AlertNotice) -> str:
    """One line a technician can read on a phone's lock screen (with what changed in the sound)."""
    what = f" ({notice.explanation})" if notice.explanation else ""
    return (f"{notice.machine} sounds like {notice.label!s}{what}: score {_score(notice)} "
            f"at {_when(notice.window_start)}")


def _facts(notice: AlertNotice) -> list[tuple[str, str]]:
    facts = [("Machine", notice.machine), ("Sound", notice.label)]
    if notice.explanation:
        facts.append(("What changed", notice.explanation))
    if notice.health:
        facts.append(("Health", notice.health.describe()))
    facts += [("Score", _score(notice)), ("Time", _when(notice.window_start))]
    if notice.device:
        facts.append(("Device", notice.device))
    if notice.model:
        facts.append(("Model", notice.model))
    if notice.seq is not None:
        facts.append(("Alert no.", str(notice.seq)))
    return facts


def _slack_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_payload(notice: AlertNotice, fmt: str, link: str | None) -> dict[str, Any]:
    """The webhook body: an Adaptive Card message for Teams (incoming webhook or Workflows), or Slack blocks."""
    title = f"Auscult alert: {notice.machine}"
    if fmt == "teams":
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
                 "color": "Warning" if notice.health and notice.health.state != "alarm" else "Attention",
                 "wrap": True},
                {"type": "TextBlock", "text": summary(notice), "wrap": True},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(notice)]},
            ],
        }
        if link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Listen to the clip", "url": link}]
        else:
            card["body"].append({"type": "TextBlock", "text": "No clip was uploaded for this alert.",
                                 "isSubtle": True, "wrap": True})
        return {"type": "message", "summary": summary(notice), "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    if fmt == "slack":
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"}
                                           for k, v in _facts(notice)][:10]},
        ]
        clip_text = f"<{link}|Listen to the clip>" if link else "No clip was uploaded for this alert."
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip_text}})
        return {"text": _slack_escape(summary(notice)), "blocks": blocks}
    raise ValueError(f"unknown webhook format {fmt!r}")


def post_json(pool: urllib3.PoolManager, settings: NotifySettings, payload: Mapping[str, Any]) -> int:
    """POST ``payload``; retry refusals and outages with backoff (urllib3's Retry); the final status.

    Raises WebhookError, worded without the URL (it carries the webhook's token).
    """
    retry = Retry(
        total=settings.retries,
        backoff_factor=settings.backoff_seconds,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=True,
    )
    try:
        resp = pool.request(
            "POST", settings.webhook_url, body=json.dumps(payload).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
            retries=retry, timeout=urllib3.Timeout(total=settings.timeout_seconds),
        )
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WebhookError(
            f"webhook at {settings.webhook_host} unreachable after {settings.retries} retries: "
            f"{reason.__class__.__name__}") from None
    if not 200 <= resp.status < 300:
        attempts = len(resp.retries.history) + 1 if resp.retries is not None else 1
        raise WebhookError(f"webhook at {settings.webhook_host} answered HTTP {resp.status} "
                           f"after {attempts} attempt(s)")
    return resp.status


@dataclass
class Report:
    """What one batch of events came to."""

    events: int = 0
    alerts: int = 0
    sent: int = 0
    ignored: int = 0
    malformed: int = 0
    duplicates: int = 0
    failed: list[str] = field(default_factory=list)


class _HideSecrets(logging.Filter):
    """Masks given strings in records of a third-party logger (urllib3 logs request paths on retry)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets.extend(s for s in secrets if s and s not in self.secrets)
        self.secrets.sort(key=len, reverse=True)  # longest first, so a part never masks half a whole

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            for s in self.secrets:
                text = text.replace(s, "***")
            record.msg, record.args = text, ()
        return True


# urllib3's loggers that may print a request's path (the webhook's token) or URL.
_HIDE = _HideSecrets()
for _name in ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry", "urllib3.response"):
    logging.getLogger(_name).addFilter(_HIDE)


class Notifier:
    """Turns batches of events into webhook posts; remembers what it delivered to drop redeliveries."""

    def __init__(self, settings: NotifySettings, *, remember: int = 4096) -> None:
        self.settings = settings
        parts = urlsplit(settings.webhook_url)
        secret_path = parts.path + (f"?{parts.query}" if parts.query else "")
        _HIDE.add([secret_path if len(secret_path) > 1 else "", parts.query, settings.clip_sas])
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=2)
        self._delivered: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._remember = remember

    def handle(self, events: Iterable[RawEvent]) -> Report:
        """Notify every alert in ``events``; malformed ones are skipped with a warning, failures reported."""
        report = Report()
        for event in events:
            report.events += 1
            device = (event.system or {}).get("connection-device-id", "?")
            try:
                notice = parse_event(event)
            except MalformedEventError as exc:
                report.malformed += 1
                log.warning("skipping malformed alert from device %s: %s", device, exc)
                continue
            if notice is None:
                report.ignored += 1
                continue
            report.alerts += 1
            if notice.key in self._delivered:
                report.duplicates += 1
                log.info("alert %s/%s seq %s already notified; dropping the redelivery",
                         notice.device, notice.machine, notice.seq)
                continue
            payload = build_payload(notice, self.settings.webhook_format, clip_link(self.settings, notice.clip, notice.device))
            try:
                post_json(self._pool, self.settings, payload)
            except WebhookError as exc:
                report.failed.append(f"{notice.machine} seq {notice.seq}: {exc}")
                log.error("could not notify alert %s/%s seq %s: %s", notice.device, notice.machine, notice.seq, exc)
                continue
            report.sent += 1
            self._delivered[notice.key] = None
            while len(self._delivered) > self._remember:
                self._delivered.popitem(last=False)
            log.info("notified %s (%s) about %s: %s, score %.3g", self.settings.webhook_host,
                     self.settings.webhook_format, notice.machine, notice.label, notice.score)
        return report
