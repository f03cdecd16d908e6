"""Stand-in upstream servers on loopback for the proxy tests: a KDC that
accepts and never answers, and one that answers late. Each runs in a
thread, serves a bounded number of connections, and is closed by the test
(context managers)."""

from __future__ import annotations

import socket
import threading
import time


class _Server:
    def __init__(self, max_connections: int = 64):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.accepted = 0
        self._max = max_connections
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._serving: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        for t in self._serving:
            t.join(5)
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()

    def _loop(self) -> None:
        while not self._stop.is_set() and self.accepted < self._max:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._serve_guarded, args=(conn,), daemon=True)
            self._serving.append(t)
            t.start()

    def _serve_guarded(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except (OSError, ValueError):  # ssl.SSLError is an OSError
            pass

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class SilentKdc(_Server):
    """Accepts TCP connections, reads what comes, never answers."""

    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return


class LateKdc(_Server):
    """Reads one framed request, waits `delay` seconds, answers `reply`
    (raw bytes, framing included)."""

    def __init__(self, delay: float, reply: bytes):
        super().__init__()
        self.delay = delay
        self.reply = reply

    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            header = conn.recv(4)
            n = int.from_bytes(header, "big")
            got = b""
            while len(got) < n:
                chunk = conn.recv(n - len(got))
                if not chunk:
                    return
                got += chunk
            time.sleep(self.delay)
            conn.sendall(self.reply)
        except OSError:
            pass


class TcpOnlyKdc(_Server):
    """A KDC reachable over TCP only: each TCP connection is passed to the
    real KDC at `upstream` (one framed request, one reply), while a UDP
    socket on the same port takes datagrams and never answers, as a
    firewall that drops UDP would. With `udp_answers_every` n, every n-th
    datagram (the n-th, 2n-th, ...) is passed to the real KDC's UDP port
    and its reply sent back: a lossy path, or a KDC too busy for some.
    `datagrams` counts what UDP received, `udp_answered` what it answered."""

    def __init__(self, upstream: tuple[str, int], udp_answers_every: int = 0):
        super().__init__()
        self.upstream = upstream
        self.udp_answers_every = udp_answers_every
        self.datagrams = 0
        self.udp_answered = 0
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self._udp_thread = threading.Thread(target=self._swallow, daemon=True)

    def __enter__(self):
        self._udp_thread.start()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._udp_thread.join(5)
        self.udp.close()

    def _swallow(self) -> None:
        while not self._stop.is_set():
            try:
                request, sender = self.udp.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.datagrams += 1
            every = self.udp_answers_every
            if every and self.datagrams % every == 0:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as kdc:
                    kdc.settimeout(5)
                    kdc.sendto(request, self.upstream)
                    self.udp.sendto(kdc.recv(65536), sender)
                self.udp_answered += 1

    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with socket.create_connection(self.upstream, timeout=5) as kdc:
            header = _recv_exactly(conn, 4)
            kdc.sendall(header + _recv_exactly(conn, int.from_bytes(header, "big")))
            reply_header = _recv_exactly(kdc, 4)
            conn.sendall(reply_header + _recv_exactly(kdc, int.from_bytes(reply_header, "big")))


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = conn.recv(n - len(got))
        if not chunk:
            raise OSError("closed early")
        got += chunk
    return got
