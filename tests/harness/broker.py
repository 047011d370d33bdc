"""Mosquitto over TLS, reached on 127.0.0.1:8883 (where the SDK connects), playing edgeHub.

The Azure IoT SDK always connects to port 8883 of the gateway host. Mosquitto itself listens on
a private port; a small TCP gate on 8883 relays to it. On a (re)start the gate opens only after
the hub responder (which connects to the private port) has subscribed again, so the module can
never publish into a broker that has nobody behind it yet, which edgeHub (which stores and
forwards) never does either. The broker runs without persistence: stopping it loses every MQTT
session, like an edgeHub restart that lost its state, which the re-subscription tests need.
"""

from __future__ import annotations

import getpass
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from .certs import TlsFiles
from .procs import free_port, port_open, stop_process, wait_port

MQTT_PORT = 8883


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)


class Gate:
    """A TCP relay from ``port`` to ``target_port``; closing it refuses and drops connections."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), name="mqtt-gate", daemon=True).start()

    def close(self) -> None:
        server, self._server = self._server, None
        if server:
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() and frees the port
            except OSError:
                pass
            server.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 0.5)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    peer[s].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._conns -= {a, b}
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


class Mosquitto:
    def __init__(self, workdir: Path, tls: TlsFiles, port: int = MQTT_PORT) -> None:
        self.workdir = workdir
        self.tls = tls
        self.port = port  # what modules connect to (the gate)
        self.internal_port = free_port()  # what the hub responder connects to
        self.before_open: Callable[[], None] | None = None
        self.after_stop: Callable[[], None] | None = None
        self.proc: subprocess.Popen | None = None
        self.gate = Gate(port, self.internal_port)
        self.log = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.internal_port} 127.0.0.1\n"
            f"cafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n"
            f"user {getpass.getuser()}\n"  # as root, stay root: the certificates are in a private tmp folder
            "allow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
            "log_type notice\n"  # "New client connected ... u'<user name>'": the model-id a module announces
            "max_queued_messages 100000\n")

    def start(self) -> None:
        binary = mosquitto_path()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto; .ci/run does it)")
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use: another broker is running")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.internal_port, proc=self.proc, what="mosquitto")
        if self.before_open:
            self.before_open()
        self.gate.open()

    def stop(self) -> None:
        self.gate.close()
        stop_process(self.proc)
        self.proc = None
        if self.after_stop:
            self.after_stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def connect_user_names(self) -> list[str]:
        """The MQTT user names of the clients that connected (the broker logs them): a Plug and Play
        module announces its model there (``...&model-id=dtmi%3A...``)."""
        import re

        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return re.findall(r"New client connected from \S+ as \S+ \([^)]*u'([^']*)'\)", text)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
