"""The module's IoT Hub side: durable outbox, long-lived hub connection, clip uploads, model OTA.

Used when the module runs under IoT Edge (``IOTEDGE_*``) or with ``EdgeHubConnectionString``;
otherwise the module stays in local mode. See docs/iot-hub.md.
"""

from . import redact as _redact

# Importing the hub turns on log redaction for the whole process: the Azure SDKs log SAS tokens
# and URLs at debug level, and no handler configured later may print them.
_redact.install()

from .client import HubClient, hub_configured  # noqa: E402
from .sink import HubSink  # noqa: E402

__all__ = ["HubClient", "HubSink", "hub_configured"]
