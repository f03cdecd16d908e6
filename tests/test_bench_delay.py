"""bench/delay.py, the forwarder section L puts in front of every path: it
adds the round trip to every exchange, and one more round trip before the
first bytes of a TCP connection (the handshake a loopback connect skips).
Only lower bounds are checked: a busy machine can make a round trip
slower, never faster."""

from __future__ import annotations

import socket
import sys
import threading
import time

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from delay import Delay  # noqa: E402

ONE_WAY = 0.1


def echo_server() -> tuple[socket.socket, socket.socket]:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", tcp.getsockname()[1]))

    def serve_tcp():
        while True:
            try:
                c, _ = tcp.accept()
            except OSError:
                return
            while data := c.recv(100):
                c.sendall(data)
            c.close()

    def serve_udp():
        while True:
            try:
                data, peer = udp.recvfrom(100)
            except OSError:
                return
            udp.sendto(data, peer)

    for f in (serve_tcp, serve_udp):
        threading.Thread(target=f, daemon=True).start()
    return tcp, udp


def test_tcp_pays_its_handshake_once_then_one_round_trip_per_exchange():
    tcp, udp = echo_server()
    d = Delay(("127.0.0.1", tcp.getsockname()[1]), ONE_WAY, udp=True)
    try:
        s = socket.create_connection(("127.0.0.1", d.port))
        times = []
        for _ in range(2):
            start = time.monotonic()
            s.sendall(b"ping")
            assert s.recv(100) == b"ping"
            times.append(time.monotonic() - start)
        s.close()
        # First exchange: the handshake's round trip and its own.
        assert times[0] >= 4 * ONE_WAY - 0.01, times
        assert times[1] >= 2 * ONE_WAY - 0.01, times

        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(5)
        start = time.monotonic()
        u.sendto(b"ping", ("127.0.0.1", d.port))
        assert u.recvfrom(100)[0] == b"ping"
        assert time.monotonic() - start >= 2 * ONE_WAY - 0.01
        u.close()
    finally:
        d.close()
        tcp.close()
        udp.close()
