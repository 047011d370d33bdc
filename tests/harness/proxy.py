"""A TCP relay that can stall: a network path that stops moving bytes (connections stay open).

Put it between the module and a server to hold an upload in flight (e.g. to kill the module
mid-upload), then :meth:`resume`. TLS passes through untouched. ``stall(after_bytes=n)`` lets
each connection send its first ``n`` bytes (the TLS handshake, the request's start) and holds
the rest, so the upload is really under way when it stops.
"""

from __future__ import annotations

import select
import socket
import threading

from .procs import free_port


class StallableProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.bytes_up = 0  # client -> server, including what is held while stalled
        self.connections = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._budget = 0
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def stall(self, after_bytes: int = 0) -> None:
        """Stop relaying client bytes beyond ``after_bytes`` per connection (held, not delivered)."""
        self._budget = after_bytes
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        held: dict[socket.socket, bytes] = {client: b"", upstream: b""}
        peer = {client: upstream, upstream: client}
        sent_up = 0
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.1)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return  # one side closed: drop the pair (held bytes die with it)
                    if s is client:
                        self.bytes_up += len(data)
                    held[s] += data
                for s, data in held.items():
                    if not data:
                        continue
                    if s is client and not self._flowing.is_set():
                        room = max(0, self._budget - sent_up)
                        data = data[:room]
                        if not data:
                            continue
                    peer[s].sendall(data)
                    held[s] = held[s][len(data):]
                    if s is client:
                        sent_up += len(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()
