"""A loopback TCP proxy a test can cut, to drop real connections the way a network blip does.

`cut(seconds)` resets every connection through it (RST, as a dropped route looks to the
peers once they write) and refuses new ones for that long; then it forwards again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time


class TcpProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port> on one thread."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.cuts = 0
        self._peers: dict[socket.socket, socket.socket] = {}
        self._down_until = 0.0
        self._cut_now = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self._thread.start()

    def url(self, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def cut(self, seconds: float) -> None:
        """Reset every live connection now and refuse new ones for `seconds`."""
        self._down_until = time.monotonic() + seconds
        self._cut_now.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                if self._cut_now.is_set():
                    self._cut_now.clear()
                    self.cuts += 1
                    for sock in list(self._peers):
                        self._drop(selector, sock)
                for key, _ in selector.select(0.02):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept(selector)
                    elif sock in self._peers:
                        self._forward(selector, sock)
        finally:
            for sock in list(self._peers):
                self._drop(selector, sock)
            self._listener.close()
            selector.close()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        client, _ = self._listener.accept()
        if time.monotonic() < self._down_until:
            _reset(client)
            return
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            _reset(client)
            return
        for sock, peer in ((client, server), (server, client)):
            sock.setblocking(True)
            sock.settimeout(5)
            self._peers[sock] = peer
            selector.register(sock, selectors.EVENT_READ)

    def _forward(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
            if data:
                self._peers[sock].sendall(data)
                return
        except OSError:
            self._drop(selector, sock)
            return
        self._drop(selector, sock, reset=False)  # an orderly end: pass it on as one

    def _drop(
        self, selector: selectors.BaseSelector, sock: socket.socket, reset: bool = True
    ) -> None:
        peer = self._peers.pop(sock, None)
        for each in (sock, peer):
            if each is None:
                continue
            self._peers.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(each)
            if reset:
                _reset(each)
            else:
                each.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: the peer sees the connection broken, not ended."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
