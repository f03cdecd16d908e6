"""A delaying forwarder for the benchmarks: what a network with a round
trip time adds, on loopback (these kernels have no netem).

`Delay(target, one_way_s, udp=...)` listens on 127.0.0.1 (TCP, and UDP when
asked, on one port) and forwards to `target`; every chunk of bytes (TCP)
or datagram (UDP) is delivered `one_way_s` after it arrived, in each
direction, in order. So a path through it gains 2 × one_way_s per round
trip, exactly as a WAN link would add latency (not bandwidth limits or
loss). Threads only; `close()` stops everything it started.

A TCP connect costs a round trip on a real network (SYN, SYN-ACK) before
the client can send, but the forwarder's own listener completes it on
loopback at once. So the bytes a client sends on a new connection before
anything has come back to it are delivered one more round trip later
(3 × one_way_s after they arrived), as if connect() had waited for the
SYN-ACK. Every client here speaks first and then waits for the server,
so this is the handshake's whole cost, paid once per connection, on
every path alike.
"""

from __future__ import annotations

import queue
import socket
import threading
import time


# A sleep overshoots by about 0.15 ms on these VMs: sleep until this much
# before the due time, then yield until it (a loop of time.sleep(0), which
# lets the other threads run).
_SPIN = 0.0003


class _Link:
    """One direction of one connection (or of a UDP flow): delivers
    (due, send) callbacks in order, each at its due time, on its own
    thread. Due times only grow along one direction, so a FIFO is the
    schedule; a thread per direction keeps one direction's wait from
    delaying another's delivery."""

    def __init__(self):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def at(self, due: float, send) -> None:
        self._q.put((due, send))

    def _run(self) -> None:
        while True:
            due, send = self._q.get()
            if send is None:
                return
            left = due - time.monotonic()
            if left > _SPIN:
                time.sleep(left - _SPIN)
            while time.monotonic() < due:
                time.sleep(0)
            try:
                send()
            except OSError:
                pass

    def close(self) -> None:
        self._q.put((0.0, None))


class Delay:
    def __init__(self, target: tuple[str, int], one_way_s: float, udp: bool = False):
        self.target = target
        self.delay = one_way_s
        self._links: list[_Link] = []
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
            answered = threading.Event()  # set once the client got a byte
            for a, b, up_dir in ((conn, up, True), (up, conn, False)):
                link = self._link()
                t = threading.Thread(target=self._pump, args=(a, b, up_dir, answered, link),
                                     daemon=True)
                t.start()

    def _link(self) -> _Link:
        link = _Link()
        self._links.append(link)
        return link

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool,
              answered: threading.Event, link: _Link) -> None:
        last_due = 0.0
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            due = time.monotonic() + self.delay
            if to_server and not answered.is_set():
                due += 2 * self.delay  # the TCP handshake's round trip
            due = last_due = max(due, last_due)
            if not data:
                link.at(due, lambda: dst.shutdown(socket.SHUT_WR))
                link.close()
                return
            if to_server:
                link.at(due, lambda d=data: dst.sendall(d))
            else:
                def deliver(d=data):
                    answered.set()
                    dst.sendall(d)
                link.at(due, deliver)

    # -- UDP ---------------------------------------------------------------

    def _udp_in(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self.udp.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            peer = self._udp_peers.get(client)
            if peer is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.connect(self.target)
                up.settimeout(0.2)
                peer = self._udp_peers[client] = (up, self._link())
                self._socks.append(up)
                threading.Thread(target=self._udp_back, args=(up, client), daemon=True).start()
            up, link = peer
            link.at(time.monotonic() + self.delay, lambda d=data, u=up: u.send(d))

    def _udp_back(self, up: socket.socket, client) -> None:
        link = self._link()
        while not self._stop.is_set():
            try:
                data = up.recv(65536)
            except (socket.timeout, OSError):
                continue
            link.at(time.monotonic() + self.delay,
                    lambda d=data: self.udp.sendto(d, client))

    def close(self) -> None:
        self._stop.set()
        for link in self._links:
            link.close()
        for s in [self.tcp, *( [self.udp] if self.udp else []), *self._socks]:
            try:
                s.close()
            except OSError:
                pass
