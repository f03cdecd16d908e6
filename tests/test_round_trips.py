"""Round trips: what a new connection costs on a real network.

`Turns` is a forwarder that passes a connection's bytes in turns, as a
long link would: whatever the client sends until it has been quiet for a
moment goes to the server at once, then whatever the server sends back
until it is quiet goes to the client, and so on. Every client turn is one
round trip the client had to wait for, whatever the link's delay, so the
count is exact where a timing would only be a guess.
"""

from __future__ import annotations

import socket
import threading

from conftest import tls_proxy_args, wss_client, write_krb5_conf, client_env, run

QUIET = 0.3        # a side silent this long has finished its turn
FIRST_BYTE = 15.0  # how long a side may think before its turn begins


class Turns:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        # One list per connection: the bytes of each client turn.
        self.connections: list[list[int]] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.target, timeout=5)
            turns: list[int] = []
            self.connections.append(turns)
            t = threading.Thread(target=self._serve, args=(conn, up, turns), daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _turn(src: socket.socket) -> bytes | None:
        """One side's turn: None when it closed without sending."""
        src.settimeout(FIRST_BYTE)
        try:
            data = src.recv(65536)
        except OSError:
            return None
        if not data:
            return None
        src.settimeout(QUIET)
        while True:
            try:
                more = src.recv(65536)
            except socket.timeout:
                return data
            except OSError:
                return data
            if not more:
                return data
            data += more

    def _serve(self, client: socket.socket, server: socket.socket, turns: list[int]) -> None:
        try:
            while True:
                data = self._turn(client)
                if data is None:
                    return
                turns.append(len(data))
                server.sendall(data)
                reply = self._turn(server)
                if reply is None:
                    return
                client.sendall(reply)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for t in self._threads[1:]:
            t.join(timeout=FIRST_BYTE + 5)


def exchange_turns(turns: list[int]) -> list[int]:
    """A connection's turns without a last one that only closed it (the
    WebSocket close frame at exit: a TLS record of under 64 bytes)."""
    return turns[:-1] if len(turns) > 1 and turns[-1] < 64 else turns


def test_a_new_wss_connection_costs_tls_plus_one_round_trip_per_exchange(
        start_proxy, pki, realm, plugin_dir, tmp_path):
    """kinit (two AS exchanges: preauth required, then the answer) over a
    new wss connection waits for three client turns: the TLS hello, the
    upgrade carrying the first AS-REQ, the second AS-REQ. Counting the TCP
    handshake, that is four round trips, as many as kinit costs over
    direct TCP (two connections, each a handshake and an exchange). The
    upgrade used to cost a turn of its own (four turns): the first request
    waited for the 101."""
    proxy = start_proxy(tls_proxy_args(pki, realm))
    turns = Turns(("127.0.0.1", proxy.port))
    try:
        client = wss_client(realm, turns.port, pki, plugin_dir, tmp_path / "c")
        r = client.kinit()
        assert r.returncode == 0, r.output
        assert "carried in the upgrade" in r.stderr, r.stderr
    finally:
        turns.close()
    assert len(turns.connections) == 1, turns.connections
    assert len(exchange_turns(turns.connections[0])) == 3, turns.connections

    # The floor, through the same forwarder: direct TCP to the KDC.
    kdc_port = int(realm.kdc_addr.rsplit(":", 1)[1])
    direct = Turns(("127.0.0.1", kdc_port))
    try:
        work = tmp_path / "d"
        work.mkdir()
        conf = write_krb5_conf(work / "krb5.conf", realm.name,
                               {realm.name: {"kdc": f"127.0.0.1:{direct.port}"}},
                               {"udp_preference_limit": "1"})
        r = run(["kinit", realm.user], client_env(work, conf), input=realm.password + "\n",
                plugin_dir=None)
        assert r.returncode == 0, r.output
    finally:
        direct.close()
    assert [len(t) for t in direct.connections] == [1, 1], direct.connections
    wss_round_trips = len(turns.connections) + len(exchange_turns(turns.connections[0]))
    direct_round_trips = len(direct.connections) + sum(len(t) for t in direct.connections)
    assert wss_round_trips == direct_round_trips == 4


# ---------------------------------------------------------------------------
# The proxy's side of the carried request, as a hostile client would use it


def _carrying(proxy, pki, record: bytes | None, value: str | None = None):
    import base64

    from test_proxy import client_ssl
    from websockets.asyncio.client import connect
    header = value if value is not None else base64.b64encode(record).decode()
    return connect(proxy.url("/kdc"), ssl=client_ssl(pki), subprotocols=["binary"],
                   compression=None, open_timeout=5, close_timeout=5,
                   additional_headers={"Krb5-Wss-Request": header})


def test_the_proxy_answers_a_carried_request_first_and_checks_it_like_any(
        start_proxy, pki, realm):
    import asyncio

    import websockets
    from test_proxy import as_req, assert_preauth_required, expect_close, frame, recv, user_of
    from test_proxy import wait_for_log
    proxy = start_proxy(tls_proxy_args(pki, realm))

    async def go():
        # Carried: acknowledged, answered first, and the connection goes on.
        async with _carrying(proxy, pki, frame(as_req(user_of(realm), realm.name))) as ws:
            assert ws.response.headers["Krb5-Wss-Request"] == "accepted"
            assert_preauth_required(await recv(ws))
            await ws.send(frame(as_req(user_of(realm), realm.name, nonce=7)))
            assert_preauth_required(await recv(ws))
        # A carried record that is not a Kerberos request: refused like a
        # message would be (4400), never forwarded.
        async with _carrying(proxy, pki, frame(b"\x30\x03\x02\x01\x05")) as ws:
            await expect_close(ws, 4400)
        # A request for a realm the proxy does not serve: 4403.
        async with _carrying(proxy, pki, frame(as_req("u", "ELSEWHERE.ORG"))) as ws:
            await expect_close(ws, 4403)
        # A header that is not base64, or too long: HTTP 400, no upgrade.
        for bad in ["not base64!", "QUFB" * 1025]:
            try:
                async with _carrying(proxy, pki, None, bad):
                    raise AssertionError(f"upgraded with {bad[:20]!r}")
            except websockets.InvalidStatus as e:
                assert e.response.status_code == 400, e

    asyncio.run(go())
    wait_for_log(proxy, r"refused client=127\.0\.0\.1:\d+ service=kdc transport=websocket close=4400 ")
    wait_for_log(proxy, r"refused client=127\.0\.0\.1:\d+ service=kdc transport=websocket close=4403 ")
