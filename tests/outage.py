"""A TCP relay in front of the shared PostgreSQL server, for outage tests that must never
stop the server itself: the test points the ledger at the relay, then makes the relay
refuse connections (a server that is down) or swallow every byte (a server that hangs)."""

from __future__ import annotations

import select
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class Relay:
    """Forwards 127.0.0.1:`port` to the PostgreSQL server of `url` until told otherwise."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = urlunsplit(parts._replace(
            netloc=f"{parts.username + '@' if parts.username else ''}127.0.0.1:{self.port}"))
        self.mode = "forward"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed: connections are refused from now on
            with self._lock:
                self._sockets.append(client)
            if self.mode == "forward":
                upstream = socket.create_connection(self.target)
                with self._lock:
                    self._sockets.append(upstream)
                threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            # "hang": accepted, and never answered

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.mode == "forward":
                        peers[sock].sendall(data)
                    # "hang": read and dropped, so the peer's writes never block
        except (OSError, ValueError):  # ValueError: `refuse` closed a socket being watched
            return

    def hang(self) -> None:
        """Accept connections and take every byte, answer nothing: a server that hangs."""
        self.mode = "hang"

    def refuse(self) -> None:
        """Close every connection and the listening port: a server that is down."""
        self.mode = "refuse"
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        if self.mode != "refuse":
            self.refuse()
