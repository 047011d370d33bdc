"""The page's and the API's request handlers (routes: :func:`.server.make_app`).

Every request is checked first (:meth:`BaseHandler.prepare`): with a token configured it must
carry it (``Authorization: Bearer <token>``, or the session cookie the page's login sets),
else 401; without one (loopback only) the ``Host`` must be a loopback name, so a web page
elsewhere cannot reach the module through the browser's own loopback (DNS rebinding). Errors
are JSON ``{"error": reason}`` with a 4xx status; nothing a client sends can stop the module.
Request logs name the method, path and status only: never the query string or a header (the
token travels in them).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import io
import json
import logging
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.iostream
import tornado.web

from audioclassifier.audio_io import AudioFileError
from audioclassifier.clips import blob_name, safe_part
from audioclassifier.constraints import SETTINGS
from audioclassifier.live import DB_HI, DB_LO
from audioclassifier.scoring import score_recording

from .server import MAX_STREAMS, STATIC_DIR, WebContext

__all__ = ["dumps", "log_request"]

log = logging.getLogger("audioclassifier.web")

COOKIE = "auscult_session"
#: Seconds between two looks at the live feed by an open page, and between status pushes to it.
FEED_INTERVAL, STATUS_INTERVAL, PING_INTERVAL = 0.25, 2.0, 15.0
#: Window events a page gets when it connects (its score chart's history).
HISTORY_WINDOWS = 600
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _finite(value: Any) -> Any:
    """JSON data with NaN and infinities as null (browsers' JSON.parse refuses them), paths as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    try:  # numpy scalars
        return _finite(value.item())
    except AttributeError:
        return str(value)


def dumps(value: Any) -> str:
    return json.dumps(_finite(value), allow_nan=False, separators=(",", ":"))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One line per request: method, path (no query), status, time. 4xx/5xx at INFO, the rest at DEBUG."""
    status = handler.get_status()
    ctx: WebContext = handler.settings["ctx"]
    kind = f"{status // 100}xx"
    ctx.requests[kind] = ctx.requests.get(kind, 0) + 1
    level = logging.INFO if status >= 400 else logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, "web: %s %s %d (%.1f ms)", handler.request.method, handler.request.path[:200], status,
                1000.0 * handler.request.request_time())


def _host_is_loopback(host: str) -> bool:
    name = urlsplit("//" + host).hostname or ""
    return name in _LOOPBACK_HOSTS or name.startswith("127.")


class BaseHandler(tornado.web.RequestHandler):
    """Authentication, JSON errors, security headers, logs without the query string."""

    @property
    def ctx(self) -> WebContext:
        return self.settings["ctx"]

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Cache-Control", "no-store")
        self.clear_header("Server")

    def _request_summary(self) -> str:  # tornado's names the URI with its query: the token may be there
        return f"{self.request.method} {self.request.path[:200]}"

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # answered with its reason; the request line is logged by log_request
        log.error("web: %s failed", self._request_summary(), exc_info=(typ, value, tb))  # type: ignore[arg-type]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            reason = "internal error (see the module's log)"
        self.answer(status_code, {"error": reason})

    def answer(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(dumps(body))

    def authorized(self) -> bool:
        token = self.ctx.token
        if not token:
            return True
        auth = self.request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), token.encode()):
            return True
        cookie = self.get_cookie(COOKIE) or ""
        return hmac.compare_digest(cookie.encode(), self.ctx.session.encode())

    def prepare(self) -> None:
        if self.ctx.token:
            if not self.authorized():
                self.set_header("WWW-Authenticate", 'Bearer realm="auscult"')
                self.refuse(401, "this module's page and API need its token: Authorization: Bearer <token>, "
                                 "or log in on the page")
        elif self.ctx.loopback_only and not _host_is_loopback(self.request.host):
            self.refuse(403, "Host is not a loopback name: this server answers its own machine only")

    def refuse(self, status: int, reason: str) -> None:
        self.answer(status, {"error": reason})


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        if not self._finished:
            self.refuse(404, f"no such page: {self.request.path[:100]}")


class PageHandler(BaseHandler):
    """``/``: the live page. ``/?token=...`` logs a browser in (cookie) and drops the token from the URL."""

    def prepare(self) -> None:
        if not self.ctx.token:
            super().prepare()

    def get(self) -> None:
        ctx = self.ctx
        if ctx.token and not self.authorized():
            given = self.get_query_argument("token", "")
            if given and hmac.compare_digest(given.encode(), ctx.token.encode()):
                self._login()
                return
            self._login_page(401, "wrong token" if given else "")
            return
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
                                                   "style-src 'self'; script-src 'self'; connect-src 'self'")
        self.finish((STATIC_DIR / "index.html").read_bytes())

    def _login(self) -> None:
        self.set_cookie(COOKIE, self.ctx.session, httponly=True, samesite="Strict", path="/", expires_days=30)
        self.redirect("/", status=303)

    def _login_page(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", "default-src 'self'; style-src 'self'")
        note = f'<p class="bad">{message}</p>' if message else ""
        self.finish(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            'content="width=device-width, initial-scale=1"><title>Auscult: log in</title>'
            '<link rel="stylesheet" href="/static/style.css"></head><body><main class="login"><h1>Auscult</h1>'
            f'<p>This module\'s page needs its token (AUSCULT_HTTP_TOKEN).</p>{note}'
            '<form method="post" action="/login"><input type="password" name="token" autocomplete="current-password" '
            'aria-label="token" required><button type="submit">Open</button></form></main></body></html>')


class LoginHandler(PageHandler):
    """``POST /login`` (form field ``token``): sets the session cookie."""

    def get(self) -> None:
        self.redirect("/", status=303)

    def post(self) -> None:
        given = self.get_body_argument("token", "")
        if self.ctx.token and given and hmac.compare_digest(given.encode(), self.ctx.token.encode()):
            self._login()
        elif not self.ctx.token:
            self.redirect("/", status=303)
        else:
            self._login_page(401, "wrong token")


class StaticHandler(BaseHandler, tornado.web.StaticFileHandler):
    """The page's script and style sheet (behind the token, like everything)."""

    def set_default_headers(self) -> None:
        BaseHandler.set_default_headers(self)
        self.clear_header("Cache-Control")

    def prepare(self) -> None:
        BaseHandler.prepare(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        BaseHandler.write_error(self, status_code, **kwargs)


class StatusHandler(BaseHandler):
    """``/api/status``: what the ``getStatus`` method answers."""

    async def get(self) -> None:
        self.answer(200, await self.ctx.read_status())


class AlertsHandler(BaseHandler):
    """``/api/alerts``: the recent alerts, newest first, each with its clip's URL."""

    def get(self) -> None:
        self.answer(200, {"alerts": _with_urls(self.ctx.feed.alerts())})


def _with_urls(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**a, "clip_url": f"/api/clips/{a['clip']}" if a.get("clip") else None} for a in alerts]


class ClipHandler(BaseHandler):
    """``/api/clips/<name>``: a clip as ``audio/wav``, from the clip folder (local mode, or the
    spool until uploaded) or from the live feed's memory (recent alerts)."""

    async def get(self, name: str) -> None:
        if not name.endswith(".wav") or blob_name(name) != name:
            self.refuse(400, "not a clip name (<machine>/<YYYY-MM-DD>/<name>.wav)")
            return
        data = await self.ctx.run(self._read, name)
        if data is None:
            self.refuse(404, f"clip {name} is not on this device any more (uploaded, dropped or never written)")
            return
        self.set_header("Content-Type", "audio/wav")
        self.set_header("Content-Disposition", f'inline; filename="{safe_part(Path(name).name)}"')
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(data)

    def _read(self, name: str) -> bytes | None:
        root = self.ctx.clip_dir.resolve()
        path = (root / name).resolve()
        if path.is_relative_to(root) and path.is_file():
            try:
                return path.read_bytes()
            except OSError:  # removed (uploaded) meanwhile: try the memory
                pass
        held = self.ctx.feed.clip(name)
        if held is None:
            return None
        import soundfile as sf

        samples, rate = held
        buf = io.BytesIO()
        sf.write(buf, samples, rate, subtype="PCM_16", format="WAV")
        return buf.getvalue()


class MetricsHandler(BaseHandler):
    """``/metrics``: Prometheus text format (:mod:`.metrics`)."""

    async def get(self) -> None:
        from .metrics import CONTENT_TYPE, exposition

        status = await self.ctx.read_status()
        body = await self.ctx.run(exposition, status, self.ctx.feed.stats(), self._web_stats())
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(body)

    def _web_stats(self) -> dict[str, Any]:
        return {"streams": self.ctx.streams, "requests": dict(self.ctx.requests)}


class EventsHandler(BaseHandler):
    """``/api/events``: the live page's server-sent events.

    ``hello`` (on connect: recent windows and spectrogram, alerts, status), then ``windows``
    (new windows and their spectrogram columns) every :data:`FEED_INTERVAL` at most, ``alerts``
    when one arrives and ``status`` every :data:`STATUS_INTERVAL`. A slow page only waits for its
    own socket; what it misses meanwhile is bounded by the feed.
    """

    closed = False

    def on_connection_close(self) -> None:
        self.closed = True

    async def get(self) -> None:
        ctx = self.ctx
        if ctx.streams >= MAX_STREAMS:
            self.refuse(503, f"{MAX_STREAMS} live pages are open already")
            return
        ctx.streams += 1
        try:
            self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
            self.set_header("X-Accel-Buffering", "no")
            await self._stream(ctx)
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            ctx.streams -= 1

    async def _send(self, event: str, data: Any) -> None:
        self.write(f"event: {event}\ndata: {dumps(data)}\n\n")
        await self.flush()

    def _windows(self, seq: int, limit: int | None = None) -> tuple[dict[str, Any], int]:
        feed = self.ctx.feed
        events, columns, last = feed.since(seq, limit=limit)
        return {"windows": [e.to_dict() for e in events],
                "spectrogram": {"n_mels": feed.n_mels, "frame_seconds": feed.frame_seconds, "db_lo": DB_LO,
                                "db_hi": DB_HI, "columns": base64.b64encode(b"".join(columns)).decode("ascii")}}, last

    async def _stream(self, ctx: WebContext) -> None:
        loop = asyncio.get_running_loop()
        windows, seq = self._windows(0, HISTORY_WINDOWS)
        alert_seq = ctx.feed.alert_seq
        await self._send("hello", {**windows, "alerts": _with_urls(ctx.feed.alerts()),
                                   "status": await ctx.read_status()})
        last_status = last_write = loop.time()
        while not self.closed:
            await asyncio.sleep(FEED_INTERVAL)
            now = loop.time()
            if ctx.feed.seq != seq:
                windows, seq = self._windows(seq)
                await self._send("windows", windows)
                last_write = now
            if ctx.feed.alert_seq != alert_seq:
                alert_seq = ctx.feed.alert_seq
                await self._send("alerts", {"alerts": _with_urls(ctx.feed.alerts())})
                last_write = now
            if now - last_status >= STATUS_INTERVAL:
                await self._send("status", await ctx.read_status())
                last_status = last_write = now
            elif now - last_write >= PING_INTERVAL:
                self.write(": ping\n\n")
                await self.flush()
                last_write = now


def _query(handler: BaseHandler, name: str, default: Any) -> Any:
    """A query argument checked by the setting's own rule (:mod:`constraints`); 400 if refused."""
    text = handler.get_query_argument(name, None)
    if text is None or text == "":
        return default
    try:
        return SETTINGS[name].parse(text)
    except argparse.ArgumentTypeError as exc:
        raise tornado.web.HTTPError(400, f"{name}: {exc}") from None


@tornado.web.stream_request_body
class ScoreHandler(BaseHandler):
    """``POST /api/score``: a WAV/FLAC body scored with the model in force (:mod:`audioclassifier.scoring`).

    Query: ``hop_seconds`` and ``energy_gate_dbfs`` (default: the settings in force), ``name``.
    413 for a body over ``--http-max-upload-mb`` (declared too large: refused before it is read;
    larger than declared or chunked: read, dropped and refused), 400 for anything that is not a
    usable recording, 429 while another recording is being scored.
    """

    def prepare(self) -> None:
        super().prepare()
        self.size = 0
        self.parts: list[bytes] = []
        self.too_large = False
        if self._finished:
            return
        limit = self.ctx.max_upload_bytes
        declared = self.request.headers.get("Content-Length")
        if declared is not None:
            if not declared.isdigit():
                self.refuse(400, "Content-Length is not a number")
            elif int(declared) > limit:
                self.refuse(413, self._too_large_reason(int(declared)))

    def _too_large_reason(self, size: int) -> str:
        return (f"the recording is {size} bytes; at most {self.ctx.max_upload_bytes} are accepted "
                "(--http-max-upload-mb)")

    def data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.ctx.max_upload_bytes:
            self.too_large = True
            self.parts.clear()
        elif not self.too_large:
            self.parts.append(chunk)

    async def post(self) -> None:
        ctx = self.ctx
        if self.too_large:
            self.refuse(413, self._too_large_reason(self.size))
            return
        if not self.size:
            self.refuse(400, "empty body: send the WAV or FLAC file as the request body")
            return
        if ctx.scoring:
            self.set_header("Retry-After", "2")
            self.refuse(429, "another recording is being scored: try again in a moment")
            return
        in_force = ctx.in_force()
        settings = in_force.settings
        hop = _query(self, "hop_seconds", settings.hop_seconds)
        gate = _query(self, "energy_gate_dbfs", settings.energy_gate_dbfs)
        name = safe_part(self.get_query_argument("name", "upload"), fallback="upload")
        data, self.parts = b"".join(self.parts), []
        ctx.scoring = True
        try:
            result = await ctx.run(lambda: score_recording(
                data, name=name, model=in_force.model, threshold=in_force.threshold, hop_seconds=hop, gate_dbfs=gate,
                consecutive=settings.consecutive, cooldown_seconds=settings.cooldown_seconds,
                learned=in_force.learned, pause=0.0005))
        except AudioFileError as exc:
            self.refuse(400, f"not a usable recording: {exc.reason}")
            return
        except Exception as exc:  # noqa: BLE001 - e.g. the model was swapped while scoring: the module goes on
            log.warning("web: scoring an upload failed: %s: %s", type(exc).__name__, exc)
            self.refuse(503 if in_force.model is not ctx.in_force().model else 500,
                        f"scoring failed ({type(exc).__name__}); the model may have changed meanwhile: try again")
            return
        finally:
            ctx.scoring = False
        self.answer(200, result)
