"""A real TCP forwarder in front of a server, whose behaviour a test switches as a server's
failures would look to a client:

- `forward`: pass bytes both ways;
- `hang`: accept connections and never answer (a time-out);
- `refuse`: close every new connection at once (an unreachable server).

Switching cuts the connections open so far; `stop()` also closes the listening socket (in-flight
requests fail, new connections are refused), exactly what a client sees of a killed server."""

from __future__ import annotations

import contextlib
import socket
import threading

MODES = ("forward", "hang", "refuse")


class TCPProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.mode = "forward"
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(128)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.forwarded = 0  # connections passed on to the server
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                _close(client)
                continue
            with self._lock:
                self._socks.append(client)
            if self.mode == "hang":
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._socks.append(upstream)
                self.forwarded += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def switch(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            _close(s)

    def stop(self) -> None:
        self.switch("refuse")
        self.listener.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
