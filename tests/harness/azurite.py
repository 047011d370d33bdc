"""Azurite (the npm package) as the blob service, over HTTPS with the test CA.

.ci/run installs it into build/azurite; ``AZURITE_BLOB`` may name another ``azurite-blob``.
azure-storage-blob 12.31 speaks a newer service API version than Azurite 3.35 accepts, hence
``--skipApiVersionCheck``. Stopping and starting keeps the data (``--location``), like a storage
outage that ends.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

from harness.paths import REPO

from .certs import TlsFiles
from .procs import free_port, stop_process, wait_port

ACCOUNT = "auscult"
#: A fresh random key per test session, given to Azurite through AZURITE_ACCOUNTS: no storage
#: key (not even the emulator's published one) lives in the repository, and the secret scans
#: look for this one in every log and message.
ACCOUNT_KEY = base64.b64encode(os.urandom(64)).decode()


def azurite_path() -> str | None:
    for candidate in (os.environ.get("AZURITE_BLOB"), str(REPO / "build/azurite/node_modules/.bin/azurite-blob"),
                      shutil.which("azurite-blob")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Azurite:
    def __init__(self, workdir: Path, tls: TlsFiles) -> None:
        self.workdir = workdir
        self.tls = tls
        self.port = free_port()
        self.location = workdir / "azurite-data"
        self.location.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "azurite.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.endpoint};")

    def start(self) -> None:
        binary = azurite_path()
        if binary is None:
            raise RuntimeError("azurite is not installed (npm install --prefix build/azurite azurite; .ci/run does it)")
        cmd = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(self.location),
               "--skipApiVersionCheck", "--loose", "--silent", "--cert", str(self.tls.cert), "--key", str(self.tls.key)]
        with open(self.log, "ab") as log:
            env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{ACCOUNT_KEY}"}
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        wait_port(self.port, timeout=60, proc=self.proc, what="azurite")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def container(self, name: str):
        """A ContainerClient for checks (trusting the test CA)."""
        from azure.storage.blob import ContainerClient

        return ContainerClient.from_connection_string(self.connection_string, name, connection_verify=str(self.tls.ca))

    def blobs(self, container: str) -> dict[str, bytes]:
        """Every blob in ``container`` with its bytes ({} if the container does not exist)."""
        from azure.core.exceptions import ResourceNotFoundError

        c = self.container(container)
        try:
            return {b.name: c.download_blob(b.name).readall() for b in c.list_blobs()}
        except ResourceNotFoundError:
            return {}
