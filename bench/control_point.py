"""The control point's cost (BENCHMARKS.md, "The control point"): user-space
instructions per exchange of the proxy under callgrind, against the canned
responder, 16 clients, with the audit, policy and throttle settings off and
on ("off": no principals in the audit lines, no policy, `--throttle false`;
"throttle": only the throttle, at its defaults; "on": all of them).

Counters are zeroed after a warm-up; the cost per exchange is the
difference of a 1.5 s and a 6 s window, so the 16 TLS handshakes of each
window cancel out. Run after `cargo build --release --workspace`:

    .venv/bin/python bench/control_point.py [VARIANT ...]
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402

work = Path(tempfile.mkdtemp(prefix="krb5-wss-control-"))
pki = B.make_pki(work)
resp = subprocess.Popen([str(B.LOADGEN_BIN), "responder", "--listen", "127.0.0.1:0", "--realm", B.REALM, "--max-seconds", "3600"], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
rport = int(resp.stdout.readline().split()[2].rsplit(":", 1)[1])
conf = work / "c.toml"
conf.write_text(f'[realms."{B.REALM}"]\nkdc = ["127.0.0.1:{rport}"]\nallow_clients = ["loadgen", "svc-*", "app-?"]\ndeny_clients = ["bad*", "guest"]\nallow_services = ["krbtgt/{B.REALM}", "postgres/*.example.com"]\ndeny_services = ["kadmin/*"]\n')
limits = ["--max-connections-per-address", "20000", "--max-requests-per-second", "1000000", "--idle-timeout", "300s"]
base = [str(B.PROXY_BIN), "--listen", "127.0.0.1:0", "--cert", str(pki["cert"]), "--key", str(pki["key"]), "--realm", f"{B.REALM}=127.0.0.1:{rport}", *limits]
variants = {"off": base + ["--audit-principals", "false", "--throttle", "false"], "throttle": base + ["--audit-principals", "false"], "text+principals": base, "json+principals": base + ["--log-format", "json"], "policy+text+principals": base + ["--config", str(conf)], "on": base + ["--config", str(conf), "--log-format", "json"]}
if len(sys.argv) > 1:
    variants = {k: v for k, v in variants.items() if k in sys.argv[1:]}
def count(t):
    return t.count(" exchange client=") + t.count('"event":"exchange"')
def loadgen(port, secs):
    out = subprocess.run([str(B.LOADGEN_BIN), "run", "--mode", "wss", "--target", f"wss://localhost:{port}/kdc", "--clients", "16", "--seconds", str(secs), "--warmup", "0.5", "--realm", B.REALM, "--principal", "loadgen", "--ca", str(pki["ca"])], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
res = {}
try:
    for k, cmd in variants.items():
        out = work / f"cg.{k}"
        for f in glob.glob(str(out) + "*"):
            os.remove(f)
        logf = work / f"log.{k}"
        p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd], stdout=subprocess.PIPE, stderr=open(logf, "w"), text=True, stdin=subprocess.DEVNULL)
        port = int(p.stdout.readline().split()[2].rsplit(":", 1)[1].split("/")[0])
        loadgen(port, 1.0)  # warm up
        pts = []
        for secs in (1.5, 6.0):
            subprocess.run(["callgrind_control", "--zero", str(p.pid)], check=True, capture_output=True)
            n0 = count(logf.read_text())
            loadgen(port, secs)
            time.sleep(0.3)
            for f in glob.glob(str(out) + ".*"):
                os.remove(f)
            subprocess.run(["callgrind_control", "--dump", str(p.pid)], check=True, capture_output=True)
            n1 = count(logf.read_text())
            d = [f for f in glob.glob(str(out) + ".*") if "Trigger: dump" in Path(f).read_text(errors="replace")[:4000]]
            total = sum(int(re.search(r"^(?:totals|summary): (\d+)", Path(f).read_text(errors="replace"), re.M).group(1)) for f in d)
            pts.append((total, n1 - n0))
        p.terminate(); p.wait()
        (a, na), (b, nb) = pts
        per = (b - a) / (nb - na)
        res[k] = (b, nb, per)
        print(k, "windows", pts, "Ir per exchange (difference of the windows)", round(per), flush=True)
    print()
    for k in res:
        print(k, "ratio to off", round(res[k][2] / res["off"][2], 3))
finally:
    resp.terminate()
    resp.wait()
    import shutil
    if os.environ.get("KRB5_WSS_KEEP"):
        print("kept", work)
    else:
        shutil.rmtree(work, ignore_errors=True)
