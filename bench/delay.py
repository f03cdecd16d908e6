"""A delaying forwarder for the benchmarks: what a network with a round
trip time adds, on loopback (these kernels have no netem).

`Delay(target, one_way_s, udp=...)` listens on 127.0.0.1 (TCP, and UDP when
asked, on one port) and forwards to `target`; every chunk of bytes (TCP)
or datagram (UDP) is delivered `one_way_s` after it arrived, in each
direction, in order. So a path through it gains 2 × one_way_s per round
trip, exactly as a WAN link would add latency (not bandwidth limits or
loss). Threads only; `close()` stops everything it started.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time


class _Scheduler:
    """Delivers (due, send) callbacks in due order on one thread."""

    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def at(self, due: float, send) -> None:
        with self._cv:
            heapq.heappush(self._heap, (due, next(self._seq), send))
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic())
                    self._cv.wait(timeout)
                if self._stop:
                    return
                _, _, send = heapq.heappop(self._heap)
            try:
                send()
            except OSError:
                pass

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(2)


class Delay:
    def __init__(self, target: tuple[str, int], one_way_s: float, udp: bool = False):
        self.target = target
        self.delay = one_way_s
        self._sched = _Scheduler()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.tcp.listen(256)
        self.tcp.settimeout(0.2)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self.udp = None
        if udp:
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", self.port))
            self.udp.settimeout(0.2)
            self._udp_peers: dict = {}
            self._threads.append(threading.Thread(target=self._udp_in, daemon=True))
        for t in self._threads:
            t.start()

    # -- TCP ---------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (socket.timeout, OSError):
                continue
            try:
                up = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            for s in (conn, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
                self._socks.append(s)
            for a, b in ((conn, up), (up, conn)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            due = time.monotonic() + self.delay
            if not data:
                self._sched.at(due, lambda: dst.shutdown(socket.SHUT_WR))
                return
            self._sched.at(due, lambda d=data: dst.sendall(d))

    # -- UDP ---------------------------------------------------------------

    def _udp_in(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self.udp.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            up = self._udp_peers.get(client)
            if up is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.connect(self.target)
                up.settimeout(0.2)
                self._udp_peers[client] = up
                self._socks.append(up)
                threading.Thread(target=self._udp_back, args=(up, client), daemon=True).start()
            self._sched.at(time.monotonic() + self.delay, lambda d=data, u=up: u.send(d))

    def _udp_back(self, up: socket.socket, client) -> None:
        while not self._stop.is_set():
            try:
                data = up.recv(65536)
            except (socket.timeout, OSError):
                continue
            self._sched.at(time.monotonic() + self.delay,
                           lambda d=data: self.udp.sendto(d, client))

    def close(self) -> None:
        self._stop.set()
        self._sched.close()
        for s in [self.tcp, *( [self.udp] if self.udp else []), *self._socks]:
            try:
                s.close()
            except OSError:
                pass
