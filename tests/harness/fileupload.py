"""The two IoT Hub file-upload endpoints, over TLS on 127.0.0.1:443 (where the SDK sends them).

``POST /devices/{id}/files`` answers with a SAS URI into Azurite (a real, signed, write-only
blob SAS), ``POST /devices/{id}/files/notifications`` records the device's notification. The
SDK uses ``https://<HostName>/...`` with the default port, so the device connection string in
tests says ``HostName=localhost`` and this server binds port 443 (tests run as root or skip).
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from .certs import TlsFiles

FILE_UPLOAD_PORT = 443
CONTAINER = "fileuploads"


class FileUploadHub:
    def __init__(self, tls: TlsFiles, azurite: Azurite, port: int = FILE_UPLOAD_PORT) -> None:
        self.tls = tls
        self.azurite = azurite
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.unauthorized = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        hub = self
        # Made once: the endpoints never call storage (it may be down in a test), as IoT Hub's don't.
        container = self.azurite.container(CONTAINER)
        if not container.exists():
            container.create_container()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet, and never print the SAS header
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?", 1)[0].strip("/").split("/")
                if not (self.headers.get("Authorization") or "").startswith("SharedAccessSignature sr="):
                    hub.unauthorized += 1
                    return self._reply(401, {"Message": "missing SAS authorization"})
                if len(path) == 3 and path[0] == "devices" and path[2] == "files":
                    return self._reply(200, hub._storage_info(path[1], body))
                if len(path) == 4 and path[0] == "devices" and path[2:] == ["files", "notifications"]:
                    hub.notifications.append({"device": path[1], **body})
                    return self._reply(204, None)
                return self._reply(404, {"Message": "not found"})

            def _reply(self, status: int, payload: Any) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, name="file-upload-hub", daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _storage_info(self, device: str, body: dict[str, Any]) -> dict[str, Any]:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        blob = f"{device}/{body['blobName']}"
        sas = generate_blob_sas(ACCOUNT, CONTAINER, blob, account_key=ACCOUNT_KEY,
                                permission=BlobSasPermissions(create=True, write=True),
                                expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        info = {"correlationId": uuid.uuid4().hex, "hostName": f"127.0.0.1:{self.azurite.port}/{ACCOUNT}",
                "containerName": CONTAINER, "blobName": blob, "sasToken": f"?{sas}"}
        self.requests.append({"device": device, "blobName": body["blobName"], "correlationId": info["correlationId"]})
        return info
