"""A TCP proxy on loopback, for faults a healthy API server never shows: cut connections, stalled streams.

It forwards bytes unchanged (TLS passes through: the client still talks to the real server's
certificate for 127.0.0.1). `drop()` closes every open connection at once, as a load balancer
or a NAT that forgot them would; `stall(True)` keeps connections open but forwards nothing, in
either direction, as a half-open peer does, until `stall(False)`.
"""
from __future__ import annotations

import select
import socket
import threading


class TCPProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1"):
        self.upstream = upstream
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.accepted = 0
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, name="tcpproxy-accept", daemon=True).start()

    def drop(self) -> None:
        with self.lock:
            connections, self.connections = self.connections, set()
        for conn in connections:
            _close(conn)

    def stall(self, stalled: bool) -> None:
        if stalled:
            self.flowing.clear()
        else:
            self.flowing.set()

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()
        _close(self.listener)
        self.drop()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)  # upstream down: the client sees a reset, as it would without us
                continue
            server.settimeout(None)
            with self.lock:
                self.accepted += 1
                self.connections |= {client, server}
            threading.Thread(target=self._pump, args=(client, server), name="tcpproxy-pump", daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self.closed.is_set():
                self.flowing.wait()
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                for sock in readable:
                    if not self.flowing.is_set():
                        break  # stalled between select and read: hold the bytes in the kernel buffers
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # dropped under us (closed fd), or the peer reset
            return
        finally:
            with self.lock:
                self.connections -= {client, server}
            _close(client)
            _close(server)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
