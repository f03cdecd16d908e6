"""Hostile and unlucky peers for the plugin's soundness tests, on loopback.

Each runs in threads, serves a bounded number of connections, records what
it saw (when a request arrived, when the client closed), and is stopped by
the test (context managers). They are what a slow, broken or malicious
server on the internet does to a client:

- HostileWss(mode="tls_drip"): answers the TLS ClientHello with a record
  header announcing 16 KiB, then drips the record one byte at a time.
- HostileWss(mode="upgrade_drip"): TLS completes; the HTTP 101 answer to the
  WebSocket upgrade is dripped one byte at a time.
- HostileWss(mode="reply_drip"): TLS and WebSocket complete; the reply to
  the first request is one binary frame whose payload is dripped.
- HostileWss(mode="pings"): TLS and WebSocket complete; after the request
  it sends large pings forever, never a reply, and never reads the pongs
  (a small receive buffer: the client's pong writes soon block).
- DelayedForwarder: accepts, waits `delay` seconds, then forwards the
  connection to a real server (a very slow network path).
"""

from __future__ import annotations

import base64
import hashlib
import select
import socket
import ssl
import struct
import time

from standins import _Server

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _peer_closed(s) -> bool:
    """True when the peer has closed (EOF or reset); reads and drops data."""
    try:
        readable, _, _ = select.select([s], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    try:
        s.setblocking(False)
        data = s.recv(65536)
        return data == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True
    finally:
        try:
            s.setblocking(True)
        except OSError:
            pass


class HostileWss(_Server):
    """A WebSocket server that misbehaves as `mode` says (module doc)."""

    def __init__(self, mode: str, cert: str | None = None, key: str | None = None,
                 gap: float = 0.3):
        super().__init__()
        if mode == "pings":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        self.mode = mode
        self.gap = gap
        self.ctx = None
        if mode != "tls_drip":
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
        # Of the FIRST connection only (later ones are not recorded).
        self.request_at: float | None = None
        self.closed_at: float | None = None
        self.dripped = 0

    def _requested(self) -> None:
        if self.request_at is None:
            self.request_at = time.monotonic()

    def _closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()

    def _drip(self, s, data: bytes) -> None:
        """Sends `data` one byte per gap, watching for the client closing."""
        next_byte = time.monotonic()
        i = 0
        while not self._stop.is_set() and i < len(data):
            if _peer_closed(s):
                self._closed()
                return
            if time.monotonic() >= next_byte:
                s.sendall(data[i:i + 1])
                self.dripped += 1
                i += 1
                next_byte += self.gap
            time.sleep(0.02)

    def serve(self, conn: socket.socket) -> None:
        if self.mode == "tls_drip":
            conn.recv(65536)  # the ClientHello
            conn.sendall(b"\x16\x03\x03\x40\x00")
            self._drip(conn, b"\x00" * 16384)
            return
        s = self.ctx.wrap_socket(conn, server_side=True)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                return
            head += chunk
        key = ""
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                    "Sec-WebSocket-Protocol: binary\r\n\r\n").encode()
        if self.mode == "upgrade_drip":
            self._requested()
            self._drip(s, response)
            return
        s.sendall(response)
        self._read_frame(s)
        self._requested()
        if self.mode == "reply_drip":
            # One binary frame: a 4-byte record length (200) and 200 bytes.
            payload = struct.pack(">I", 200) + b"\x30" * 200
            s.sendall(bytes([0x82, 126]) + struct.pack(">H", len(payload)))
            self._drip(s, payload)
        elif self.mode == "pings":
            ping = bytes([0x89, 125]) + b"p" * 125
            while not self._stop.is_set():
                try:
                    s.sendall(ping)
                except (OSError, ssl.SSLError):
                    self._closed()
                    return
                time.sleep(0.0005)

    @staticmethod
    def _read_frame(s) -> bytes:
        def need(n):
            out = b""
            while len(out) < n:
                chunk = s.recv(n - len(out))
                if not chunk:
                    raise ValueError("closed")
                out += chunk
            return out

        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", need(8))[0]
        mask = need(4) if b1 & 0x80 else b"\0\0\0\0"
        data = need(n)
        return bytes(c ^ mask[i % 4] for i, c in enumerate(data))


class DelayedForwarder(_Server):
    """Accepts, waits `delay` seconds, then pipes to 127.0.0.1:`port`."""

    def __init__(self, port: int, delay: float):
        super().__init__()
        self.target = port
        self.delay = delay

    def serve(self, conn: socket.socket) -> None:
        if self._stop.wait(self.delay):
            return
        up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        self._conns.append(up)
        socks = [conn, up]
        while not self._stop.is_set():
            readable, _, _ = select.select(socks, [], [], 0.1)
            for r in readable:
                data = r.recv(65536)
                if not data:
                    return
                (up if r is conn else conn).sendall(data)
