"""The module's IoT Hub side: durable outbox, long-lived hub connection, clip uploads, model OTA.

Used when the module runs under IoT Edge (``IOTEDGE_*``) or with ``EdgeHubConnectionString``
(:func:`audioclassifier.config.hub_configured`); otherwise the module stays in local mode.
:class:`HubApp` wires the parts (docs/architecture.md; operators: docs/iot-hub.md).
"""

from . import redact as _redact
from . import sdkjson as _sdkjson

# Importing the hub turns on log redaction for the whole process: the Azure SDKs log SAS tokens
# and URLs at debug level, and no handler configured later may print them. And the SDK's own
# parsing of incoming payloads is bounded (a deeply nested method payload got no answer).
_redact.install()
_sdkjson.install()

from .app import HubApp  # noqa: E402
from .client import HubClient  # noqa: E402

__all__ = ["HubApp", "HubClient"]
