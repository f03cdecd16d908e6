"""Single sign-on in a real browser: headless Chromium over wss.

1. SPNEGO. Chromium, unchanged, asks the system's GSSAPI library
   (libgssapi_krb5, which Debian's build links) for a ticket for HTTP/localhost when
   Apache with mod_auth_gssapi (the fixture of tests/test_gssapi_apps.py)
   answers 401 Negotiate. Chromium runs in the plugin's private mount
   namespace (`unshare -Urm` with the plugin bind-mounted over libkrb5's
   plugin directory, as for every client here), with the environment of a
   desktop session: KRB5_CONFIG naming only wss:// URLs, KRB5CCNAME holding
   a TGT from a prior kinit over wss. libkrb5 fetches the service ticket
   through the plugin and the proxy; the page shows REMOTE_USER. Without the
   plugin (no namespace) the same browser gets no ticket and the page stays
   401: the ticket came over wss.
2. The proxy's browser-facing endpoint. A page from a local web server opens
   `new WebSocket("wss://localhost:PORT/kdc", "binary")`, sends a real
   AS-REQ record (captured from MIT's kinit by a stand-in KDC) and shows the
   reply's message type. From an origin in the proxy's allow-list it gets
   KRB-ERROR 25 (PREAUTH_REQUIRED: the user requires preauth); from another
   origin the handshake is refused (403: the page sees a WebSocket closed
   without ever opening) and the proxy logs the refusal.
3. MS-KKDCP from a page: `fetch()` POSTs a KDC-PROXY-MESSAGE
   (`application/kerberos`) to /KdcProxy. Chromium sends a CORS preflight;
   from a listed origin it gets the KDC's answer, from another the preflight
   is refused (403) and the fetch fails without the POST being sent.

Chromium is driven through the DevTools protocol with the venv's
`websockets` (no chromedriver, no Selenium). It trusts the proxy's
certificate through `--ignore-certificate-errors-spki-list` naming exactly
the test server key's SPKI hash (which Chromium honours only with
`--user-data-dir`, given here): nothing on the machine is changed, no
policy directory is mounted. Its profile, HOME and caches are in the test's
temp dir (the fresh profile's Local State says it has met Negotiate before:
see Browser); everything listens on loopback; every process is stopped at
teardown.

KRB5_WSS_UPDATE_SCREENSHOT=1 copies the screenshot of the authenticated page
to docs/browser-sso.png (the README's picture).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from conftest import ROOT, free_ports, ns_command, tls_proxy_args, write_krb5_conf, wss_client
from test_gssapi_apps import apache_factory, service_env, services  # noqa: F401 (fixtures)

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's binary, without its wrapper script
SCREENSHOT = ROOT / "docs" / "browser-sso.png"

# The flags of issue 14: headless, offline (no background traffic, no
# component or sync services), a fresh profile per browser.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-default-browser-check", "--password-store=basic", "--window-size=1000,700",
]


def spki_hash(cert: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of `cert`, as Chromium's
    --ignore-certificate-errors-spki-list wants it (computed with openssl)."""
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                            check=True, capture_output=True).stdout
    return base64.b64encode(digest).decode()


# ---------------------------------------------------------------------------
# Chromium and the DevTools protocol


class Browser:
    """Headless Chromium with a DevTools page session.

    Started (with `plugin_dir`) inside the plugin's mount namespace, so its
    network service's libkrb5 loads the plugin; in its own session, so
    stopping it stops every process it forked."""

    def __init__(self, workdir: Path, env: dict[str, str], plugin_dir: Path | None,
                 spki: str):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        profile = workdir / "profile"
        home = workdir / "home"
        for d in (profile, home):
            d.mkdir()
        # Chromium on Linux refuses the first Negotiate challenge a profile
        # ever meets: it then records net.received_http_auth_negotiate_headers
        # in Local State and restarts its network service without the
        # network sandbox (which GSSAPI cannot live in), and only later
        # challenges work. The fresh profile starts as one that has met
        # Negotiate before, as a user's desktop profile would.
        (profile / "Local State").write_text(
            json.dumps({"net": {"received_http_auth_negotiate_headers": True}}))
        env = dict(env, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                   XDG_CACHE_HOME=str(home / ".cache"))
        cmd = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               "--auth-server-allowlist=localhost",
               f"--ignore-certificate-errors-spki-list={spki}",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
               "about:blank"]
        self.log_path = workdir / "chromium.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(ns_command(cmd, plugin_dir), env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self.ws = None
        try:
            self.ws = self._stack.enter_context(
                ws_connect(self._page_ws_url(profile), max_size=None, open_timeout=10))
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.stop()
            raise

    def _page_ws_url(self, profile: Path) -> str:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}\n{self.log()}")
            if active.exists() and len(active.read_text().splitlines()) >= 2:
                port = int(active.read_text().splitlines()[0])
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                            timeout=5) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError(f"chromium's DevTools did not come up\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, timeout: float = 20, **params) -> dict:
        """One DevTools command; events that arrive meanwhile are dropped."""
        assert self.ws is not None
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method} in {timeout}s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def eval(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20):
        """Polls `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{expression!r} still false after {timeout}s; page: "
                             f"{self.eval('document.documentElement.outerHTML')}")

    def open(self, url: str, timeout: float = 30) -> int:
        """Navigates to `url`; returns the HTTP status of the loaded document."""
        r = self.call("Page.navigate", url=url)
        assert not r.get("errorText"), (url, r)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
                      timeout)
        return self.eval("performance.getEntriesByType('navigation')[0].responseStatus")

    def text(self, selector: str = "body") -> str:
        return self.eval(f"document.querySelector({json.dumps(selector)}).innerText")

    def screenshot(self, path: Path, width: int = 880) -> None:
        """A PNG of the whole page, `width` CSS pixels wide."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=200,
                  deviceScaleFactor=1, mobile=False)
        height = self.eval("Math.ceil(document.documentElement.scrollHeight)")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        r = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(r["data"]))

    def stop(self) -> None:
        self._stack.close()
        self.ws = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        # Whatever of its session is left (helpers, crashpad).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()


@pytest.fixture
def browser_factory(pki):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium")
    spki = spki_hash(pki.server_cert)
    started: list[Browser] = []

    def start(workdir: Path, env: dict[str, str], plugin_dir: Path | None) -> Browser:
        b = Browser(workdir, env, plugin_dir, spki)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def desktop_env(client, trace: Path) -> dict[str, str]:
    """A desktop session's environment: the client's KRB5_CONFIG (wss URLs
    only) and KRB5CCNAME (the TGT from kinit), and a libkrb5 trace file."""
    env = {k: client.env[k] for k in ("PATH", "LANG", "KRB5_CONFIG", "KRB5CCNAME",
                                      "KRB5RCACHEDIR", "KRB5_WSS_LOG")}
    env["KRB5_TRACE"] = str(trace)
    return env


# ---------------------------------------------------------------------------
# 1. SPNEGO to Apache + mod_auth_gssapi

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>krb5-wss: signed in</title>
<style>
 body { font: 16px/1.5 sans-serif; margin: 40px; color: #222; }
 h1 { font-size: 24px; margin: 0 0 16px; }
 .user { font: bold 22px monospace; color: #0b6e2e; }
 table { border-collapse: collapse; margin: 16px 0; }
 td { padding: 4px 16px 4px 0; vertical-align: top; }
 td:first-child { color: #666; font-family: monospace; }
 p.note { color: #555; max-width: 760px; }
</style></head>
<body>
<h1>Signed in with Kerberos (SPNEGO)</h1>
<table>
<tr><td>REMOTE_USER</td><td id="user" class="user"><!--#echo var="REMOTE_USER" --></td></tr>
<tr><td>AUTH_TYPE</td><td id="auth"><!--#echo var="AUTH_TYPE" --></td></tr>
<tr><td>GSS_NAME</td><td id="gss"><!--#echo var="GSS_NAME" --></td></tr>
<tr><td>page</td><td>http://<!--#echo var="HTTP_HOST" --><!--#echo var="REQUEST_URI" --></td></tr>
<tr><td>server</td><td>Apache httpd + mod_auth_gssapi, service HTTP/localhost</td></tr>
</table>
<p class="note">Chromium, unchanged, asked the system's GSSAPI library for a
ticket for HTTP/localhost. libkrb5 fetched it through the krb5-wss plugin, over
a TLS WebSocket (wss://) to <span style="white-space: nowrap">krb5-wss-proxy</span>: this machine's krb5.conf names no
KDC address, only wss:// URLs.</p>
</body></html>
"""


def chromium_visit(realm, services, proxy, pki, plugin_dir, apache_factory, browser_factory,
                   tmp_path, plugin: bool):
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "client")
    apache = apache_factory(tmp_path / "apache", services["HTTP"],
                            service_env(client, services["HTTP"], tmp_path / "apache-env"))
    (apache.dir / "htdocs" / "private" / "whoami.shtml").write_text(PAGE)
    r = client.kinit()  # over wss, with the plugin
    assert r.returncode == 0, r.output
    trace = tmp_path / "chromium-krb5.trace"
    tgs_before = len([l for l in proxy.log().splitlines() if "type=TGS-REQ " in l])
    browser = browser_factory(tmp_path / "chromium", desktop_env(client, trace),
                              plugin_dir if plugin else None)
    status = browser.open(apache.url("/private/whoami.shtml"))
    tgs = [l for l in proxy.log().splitlines() if "type=TGS-REQ " in l][tgs_before:]
    return client, apache, browser, status, trace, tgs


def test_chromium_negotiate_gets_its_ticket_over_wss(realm, services, start_proxy, pki,
                                                     plugin_dir, apache_factory,
                                                     browser_factory, tmp_path):
    proxy = start_proxy(tls_proxy_args(pki, realm))
    client, apache, browser, status, trace, tgs = chromium_visit(
        realm, services, proxy, pki, plugin_dir, apache_factory, browser_factory, tmp_path,
        plugin=True)
    why = f"{apache.logs()}\n--- chromium:\n{browser.log()}"
    assert status == 200, why
    # The page shows who mod_auth_gssapi authenticated: the kinit user.
    assert browser.text("#user") == realm.user, browser.text() + why
    assert browser.text("#auth") == "Negotiate", browser.text()
    assert f'user={realm.user} "GET /private/whoami.shtml HTTP/1.1" 200' in apache.access_log(), why

    shot = tmp_path / "browser-sso.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("KRB5_WSS_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)

    # The proxy carried exactly one TGS-REQ meanwhile, for HTTP/localhost
    # (its audit line names the service), and the KDC saw it.
    assert len(tgs) == 1 and f"realm={realm.name}" in tgs[0], proxy.log()
    assert " sname=HTTP/localhost " in tgs[0], tgs[0]
    kdc_log = (Path(realm.k5.tmpdir) / "kdc.log").read_text()
    tgs_kdc = [l for l in kdc_log.splitlines() if "TGS_REQ" in l]
    assert len(tgs_kdc) >= 1 and f"HTTP/localhost@{realm.name}" in tgs_kdc[-1], kdc_log
    text = trace.read_text()
    assert re.search(rf"Getting credentials {re.escape(realm.user)} -> HTTP/localhost@", text), text
    assert re.search(rf"krb5-wss: realm {re.escape(realm.name)} kdc: TGS-REQ exchange over "
                     rf"wss://localhost:{proxy.port}/kdc", text), text
    # ... and no direct contact with the KDC: its port appears nowhere in
    # the trace of the browser's libkrb5 (no UDP or TCP request to it).
    kdc_port = realm.kdc_addr.rsplit(":", 1)[1]
    assert not re.search(rf"127\.0\.0\.1:{kdc_port}\b", text), text
    # The ticket is in the desktop session's ccache, where Chromium's
    # libkrb5 stored it.
    r = client.run(["klist"], plugin_dir=None)
    assert f"HTTP/localhost@{realm.name}" in r.stdout, r.output


def test_chromium_negotiate_without_the_plugin_is_refused(realm, services, start_proxy, pki,
                                                          plugin_dir, apache_factory,
                                                          browser_factory, tmp_path):
    proxy = start_proxy(tls_proxy_args(pki, realm))
    client, apache, browser, status, trace, tgs = chromium_visit(
        realm, services, proxy, pki, plugin_dir, apache_factory, browser_factory, tmp_path,
        plugin=False)
    # Same TGT, same krb5.conf (wss URLs only), no plugin: libkrb5 finds no
    # KDC, Chromium has no token to send, mod_auth_gssapi says 401.
    assert status == 401, f"{apache.logs()}\n--- chromium:\n{browser.log()}"
    assert realm.user not in browser.text()
    assert tgs == [], proxy.log()
    assert " 200" not in apache.access_log(), apache.logs()
    # Chromium did ask its libkrb5 for the ticket (Negotiate is on; the
    # 401 is for want of a ticket), and libkrb5 ran without the plugin.
    text = trace.read_text() if trace.exists() else ""
    assert re.search(r"Requesting tickets for HTTP/localhost@", text), text
    assert "krb5-wss" not in text, text
    r = client.run(["klist"], plugin_dir=None)
    assert "HTTP/localhost" not in r.stdout, r.output


# ---------------------------------------------------------------------------
# 2. The browser-facing endpoint: a page's own WebSocket to the proxy


def capture_as_req(realm, workdir: Path) -> bytes:
    """MIT's kinit's first AS-REQ, as the framed record it sends over TCP:
    a stand-in KDC on loopback (krb5.conf: kdc = 127.0.0.1:PORT, TCP only)
    records it and hangs up, so kinit fails without sending anything else."""
    workdir.mkdir(parents=True, exist_ok=True)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    port = listener.getsockname()[1]
    got: list[bytes] = []

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data = b""
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            got.append(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    conf = write_krb5_conf(workdir / "krb5.conf", realm.name,
                           {realm.name: {"kdc": f"127.0.0.1:{port}"}},
                           {"udp_preference_limit": "1"})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "KRB5_CONFIG": str(conf), "KRB5CCNAME": f"FILE:{workdir / 'ccache'}"}
    try:
        subprocess.run(["kinit", realm.user], env=env, input="\n", capture_output=True,
                       text=True, timeout=30)
        t.join(20)
    finally:
        listener.close()
    assert got, "kinit sent nothing to the stand-in KDC"
    record = got[0]
    assert len(record) == 4 + int.from_bytes(record[:4], "big"), record
    assert record[4] == 0x6A, record[:8]  # [APPLICATION 10] AS-REQ
    return record


ENDPOINT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>krb5-wss endpoint</title></head>
<body>
<p>WebSocket to <code id="url">$URL</code>: <b id="result">pending</b></p>
<pre id="events"></pre>
<script>
"use strict";
const record = Uint8Array.from(atob("$RECORD"), c => c.charCodeAt(0));
const events = m => { document.getElementById("events").textContent += m + "\\n"; };
const done = r => { document.getElementById("result").textContent = r; document.title = "done"; };
// DER: returns [length, offset of the contents] for the length at m[i].
function derLength(m, i) {
  if (m[i] < 0x80) return [m[i], i + 1];
  let n = m[i] & 0x7f, len = 0;
  for (let k = 1; k <= n; k++) len = len * 256 + m[i + k];
  return [len, i + 1 + n];
}
// The message type of a KDC reply (a DER message, without the framing).
function describe(m) {
  if (m[0] === 0x6b) return "AS-REP";
  if (m[0] !== 0x7e) return "unexpected tag 0x" + m[0].toString(16);
  let [, seq] = derLength(m, 1);            // [APPLICATION 30]
  let [seqLen, i] = derLength(m, seq + 1);  // SEQUENCE
  const end = i + seqLen;
  while (i < end) {
    const tag = m[i];
    const [len, body] = derLength(m, i + 1);
    if (tag === 0xa6) {                      // error-code [6] Int32
      const [ilen, v] = derLength(m, body + 1);
      let code = (m[v] & 0x80) ? -1 : 0;
      for (let k = 0; k < ilen; k++) code = code * 256 + m[v + k];
      return "KRB-ERROR " + code;
    }
    i = body + len;
  }
  return "KRB-ERROR without error-code";
}
let opened = false, reply = new Uint8Array(0);
const ws = new WebSocket("$URL", "binary");
ws.binaryType = "arraybuffer";
ws.onopen = () => { opened = true; events("open protocol=" + ws.protocol); ws.send(record); };
ws.onerror = () => events("error");
ws.onmessage = e => {
  const more = new Uint8Array(e.data), all = new Uint8Array(reply.length + more.length);
  all.set(reply); all.set(more, reply.length); reply = all;
  if (reply.length < 4) return;
  const len = ((reply[0] << 24) | (reply[1] << 16) | (reply[2] << 8) | reply[3]) >>> 0;
  if (reply.length < 4 + len) return;
  events("reply " + len + " bytes");
  done(describe(reply.subarray(4, 4 + len)));
  ws.close(1000);
};
ws.onclose = e => {
  events("close code=" + e.code);
  if (!opened) done("refused: closed (" + e.code + ") without opening");
};
</script>
</body></html>
"""


class PageServer:
    """Python's http.server on 127.0.0.1, serving one directory."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_ports(1)), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def page_servers():
    started: list[PageServer] = []

    def start(directory: Path) -> PageServer:
        s = PageServer(directory)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def test_browser_page_talks_to_the_proxy_only_from_an_allowed_origin(
        realm, start_proxy, pki, browser_factory, page_servers, tmp_path):
    record = capture_as_req(realm, tmp_path / "capture")
    site = tmp_path / "site"
    site.mkdir()
    allowed, other = page_servers(site), page_servers(site)
    allowed_origin = f"http://127.0.0.1:{allowed.port}"
    other_origin = f"http://localhost:{other.port}"  # another origin, not listed
    proxy = start_proxy(tls_proxy_args(pki, realm, "--allow-origin", allowed_origin))
    url = proxy.url("/kdc")
    (site / "kdc.html").write_text(ENDPOINT_PAGE.replace("$URL", url).replace(
        "$RECORD", base64.b64encode(record).decode()))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    browser = browser_factory(tmp_path / "chromium", env, None)

    # The listed origin: the handshake succeeds, the KDC's answer comes back.
    assert browser.open(f"{allowed_origin}/kdc.html") == 200
    result = browser.wait_for("document.title === 'done' && "
                              "document.getElementById('result').textContent")
    events = browser.text("#events")
    assert result == "KRB-ERROR 25", (result, events, proxy.log())  # PREAUTH_REQUIRED
    assert "open protocol=binary" in events, events
    log = proxy.log()
    assert re.search(rf"exchange client=127\.0\.0\.1:\d+ service=kdc transport=websocket "
                     rf"realm={re.escape(realm.name)} type=AS-REQ .*result=ok", log), log

    # Another origin: refused at the handshake, the page never sees it open.
    assert browser.open(f"{other_origin}/kdc.html") == 200
    result = browser.wait_for("document.title === 'done' && "
                              "document.getElementById('result').textContent")
    events = browser.text("#events")
    assert result.startswith("refused: closed (1006)"), (result, events, proxy.log())
    assert "open protocol" not in events, events
    refusals = [l for l in proxy.log().splitlines() if "origin not allowed" in l]
    assert len(refusals) == 1, proxy.log()
    assert "http=403" in refusals[0] and f"origin={other_origin}" in refusals[0], refusals
    exchanges = [l for l in proxy.log().splitlines() if "exchange client=" in l]
    assert len(exchanges) == 1, proxy.log()


KKDCP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>krb5-wss MS-KKDCP</title></head>
<body>
<p>fetch() POST to <code id="url">$URL</code>: <b id="result">pending</b></p>
<script>
"use strict";
const body = Uint8Array.from(atob("$MESSAGE"), c => c.charCodeAt(0));
const done = r => { document.getElementById("result").textContent = r; document.title = "done"; };
fetch("$URL", {method: "POST", headers: {"Content-Type": "application/kerberos"}, body})
  .then(r => r.arrayBuffer().then(b => {
    const bytes = new Uint8Array(b);
    let s = "";
    for (const x of bytes) s += String.fromCharCode(x);
    done("status " + r.status + " " + btoa(s));
  }))
  .catch(e => done("refused: " + e));
</script>
</body></html>
"""


def test_browser_fetch_to_kkdcp_only_from_an_allowed_origin(
        realm, start_proxy, pki, browser_factory, page_servers, tmp_path):
    """A page's fetch() POST of application/kerberos to /KdcProxy: Chromium
    sends a CORS preflight; from a listed origin it gets the KDC's answer,
    from another the preflight is refused and the page sees a failed fetch."""
    from test_kkdcp import parse_proxy_message, proxy_message

    record = capture_as_req(realm, tmp_path / "capture")
    message = proxy_message(record[4:], realm.name)
    site = tmp_path / "site"
    site.mkdir()
    allowed, other = page_servers(site), page_servers(site)
    allowed_origin = f"http://127.0.0.1:{allowed.port}"
    other_origin = f"http://localhost:{other.port}"
    proxy = start_proxy(tls_proxy_args(pki, realm, "--allow-origin", allowed_origin))
    (site / "kkdcp.html").write_text(KKDCP_PAGE.replace("$URL", proxy.url("/KdcProxy", scheme="https"))
                                     .replace("$MESSAGE", base64.b64encode(message).decode()))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    browser = browser_factory(tmp_path / "chromium", env, None)

    assert browser.open(f"{allowed_origin}/kkdcp.html") == 200
    result = browser.wait_for("document.title === 'done' && "
                              "document.getElementById('result').textContent")
    assert result.startswith("status 200 "), (result, proxy.log())
    reply = parse_proxy_message(base64.b64decode(result.split()[2]))
    assert reply[0] == 0x7E, reply[:8]  # KRB-ERROR (PREAUTH_REQUIRED)
    log = proxy.log()
    assert re.search(r"http client=\S+ method=OPTIONS path=\"/KdcProxy\"", log), log
    assert re.search(rf"exchange client=127\.0\.0\.1:\d+ service=kdc transport=kkdcp "
                     rf"realm={re.escape(realm.name)} type=AS-REQ .*result=ok", log), log

    assert browser.open(f"{other_origin}/kkdcp.html") == 200
    result = browser.wait_for("document.title === 'done' && "
                              "document.getElementById('result').textContent")
    assert result.startswith("refused: TypeError"), (result, proxy.log())
    refusals = [l for l in proxy.log().splitlines() if "origin not allowed" in l]
    assert len(refusals) == 1 and f"origin={other_origin}" in refusals[0], proxy.log()
    exchanges = [l for l in proxy.log().splitlines() if "exchange client=" in l]
    assert len(exchanges) == 1, proxy.log()
