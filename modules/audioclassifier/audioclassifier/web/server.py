"""The web server's thread, its Tornado application and what the handlers share (:class:`WebContext`).

The socket is bound in the caller's thread (:meth:`WebServer.start`), so a port in use is an
error at start, not a silent failure later; the asyncio loop then runs on the ``web`` thread
until :meth:`WebServer.close`. Nothing here touches the audio worker: the handlers read
snapshots (status, the live feed) and score uploads with the model in force, one at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from audioclassifier.live import LiveFeed

__all__ = ["STATIC_DIR", "WebContext", "WebServer", "make_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Seconds a status read is reused for (every page and scrape within it shares one read).
STATUS_CACHE_SECONDS = 1.0
#: Live pages (event streams) served at once; more get 503.
MAX_STREAMS = 8


@dataclass
class WebContext:
    """What the handlers read: ``status`` (getStatus's answer), the live ``feed``, the clip folder,
    ``in_force`` (a :class:`~audioclassifier.runtime.InForce`), the token (empty: none) and limits."""

    status: Callable[[], dict[str, Any]]
    feed: LiveFeed
    clip_dir: Path
    in_force: Callable[[], Any]
    token: str = field(default="", repr=False)
    loopback_only: bool = True
    max_upload_bytes: int = 20 * 2**20
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="web-work"))
    streams: int = 0
    scoring: bool = False
    requests: dict[str, int] = field(default_factory=dict)  # per status class, for /metrics
    _status: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)
    _status_lock: asyncio.Lock | None = field(default=None, repr=False)

    @property
    def session(self) -> str:
        """The cookie value a logged-in browser carries: derived from the token, not the token."""
        return hmac.new(self.token.encode(), b"auscult-web-session", hashlib.sha256).hexdigest() if self.token else ""

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the web's worker threads (never on the loop, never on the audio worker)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def read_status(self) -> dict[str, Any]:
        """The status, read at most once per :data:`STATUS_CACHE_SECONDS` whoever asks."""
        if self._status_lock is None:
            self._status_lock = asyncio.Lock()
        async with self._status_lock:
            now = time.monotonic()
            if self._status is None or now - self._status[0] >= STATUS_CACHE_SECONDS:
                self._status = (now, await self.run(self.status))
            return self._status[1]


def make_app(ctx: WebContext) -> tornado.web.Application:
    """The routes (see docs/reference.md, "Live page and REST API")."""
    from . import handlers as h

    return tornado.web.Application([
        (r"/", h.PageHandler),
        (r"/login", h.LoginHandler),
        (r"/static/(.*)", h.StaticHandler, {"path": str(STATIC_DIR)}),
        (r"/api/status", h.StatusHandler),
        (r"/api/alerts", h.AlertsHandler),
        (r"/api/clips/(.+)", h.ClipHandler),
        (r"/api/events", h.EventsHandler),
        (r"/api/score", h.ScoreHandler),
        (r"/metrics", h.MetricsHandler),
    ], ctx=ctx, default_handler_class=h.NotFoundHandler, log_function=h.log_request, compress_response=False,
        static_hash_cache=True, serve_traceback=False)


class WebServer:
    """The page and API on ``bind``:``port`` (see the module docstring)."""

    def __init__(self, ctx: WebContext, *, port: int, bind: str = "127.0.0.1") -> None:
        self.ctx = ctx
        self.requested = (bind, port)
        self.port = 0
        self._sockets: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        """Bind (raises OSError: port in use, address not here), then serve on the ``web`` thread."""
        bind, port = self.requested
        self._sockets = tornado.netutil.bind_sockets(port, address=bind)
        self.port = int(self._sockets[0].getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self.error is not None:
            raise OSError(f"the web server did not start: {self.error}")
        shown = f"[{bind}]" if ":" in bind else bind
        log.info("live page on http://%s:%d/ (%s)", shown, self.port,
                 "token required" if self.ctx.token else "loopback only, no token")

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            log.exception("web server stopped")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = tornado.httpserver.HTTPServer(make_app(self.ctx), max_body_size=self.ctx.max_upload_bytes * 2 + 2**20,
                                               idle_connection_timeout=120, body_timeout=120)
        server.add_sockets(self._sockets)
        self._ready.set()
        await self._stop.wait()
        server.stop()
        try:
            await asyncio.wait_for(server.close_all_connections(), 5)
        except asyncio.TimeoutError:
            log.warning("web: connections still open at close")

    def close(self) -> None:
        """Stop serving (open pages are disconnected) and release the port."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop already ended
                pass
            self._thread.join(10)
        self.ctx.executor.shutdown(wait=False, cancel_futures=True)
        for s in self._sockets:
            s.close()
