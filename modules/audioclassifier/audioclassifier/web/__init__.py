"""The live page and REST API (``--http-port``): served from the module process on its own thread.

:class:`WebServer` (:mod:`.server`) runs a Tornado application on its own asyncio loop in one
thread; blocking work (a status read, a recording scored, a clip encoded) goes to a two-thread
pool. The handlers (:mod:`.handlers`) read the runtime through a :class:`WebContext`: the
status (``getStatus``'s answer), the :class:`~audioclassifier.live.LiveFeed` the worker
publishes into, the clip folder and the model in force. ``/metrics`` is rendered by
:mod:`.metrics`; the page itself is ``static/`` (no external resources: a device may be offline).
Operators: docs/operator-guide.md; technicians: docs/technicians.md.
"""

from .server import WebContext, WebServer

__all__ = ["WebContext", "WebServer"]
