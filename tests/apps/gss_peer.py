#!/usr/bin/env python3
"""One side of a GSSAPI (krb5 mechanism) conversation, with python-gssapi.

    gss_peer.py initiate TARGET [--principal P]   # password in $GSS_PEER_PASSWORD
    gss_peer.py accept

The program is an ordinary GSSAPI application: it knows nothing about
krb5-wss. The initiator uses the default credentials (the ccache named by
KRB5CCNAME), or, with --principal, acquires them itself with a password
(gss_acquire_cred_with_password, so the AS exchange happens in this
process). The acceptor uses the keytab named by KRB5_KTNAME and never
talks to a KDC.

The peers talk through whoever runs them, one line per message on stdin and
stdout:

    TOKEN <base64>   a context-establishment token
    WRAP <base64>    a message protected with gss_wrap (confidentiality on)
    DONE <json>      the end: what this side saw (for the test, not the peer)

After the context is complete the initiator wraps a message, the acceptor
unwraps it and wraps a reply that quotes it, and the initiator unwraps that.
Errors go to stderr and end the program with status 1.
"""

from __future__ import annotations

import base64
import json
import os
import sys

import gssapi
import gssapi.raw

KRB5 = gssapi.MechType.kerberos
FLAGS = [
    gssapi.RequirementFlag.mutual_authentication,
    gssapi.RequirementFlag.confidentiality,
    gssapi.RequirementFlag.integrity,
    gssapi.RequirementFlag.replay_detection,
    gssapi.RequirementFlag.out_of_sequence_detection,
]


def send(kind: str, data: bytes) -> None:
    sys.stdout.write(f"{kind} {base64.b64encode(data).decode()}\n")
    sys.stdout.flush()


def recv(kind: str) -> bytes:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(f"gss_peer: peer went away while waiting for {kind}")
    got, _, payload = line.strip().partition(" ")
    if got != kind:
        raise SystemExit(f"gss_peer: expected {kind}, got {got!r}")
    return base64.b64decode(payload)


def done(**info) -> None:
    sys.stdout.write("DONE " + json.dumps(info, sort_keys=True) + "\n")
    sys.stdout.flush()


def initiate(target: str, principal: str | None) -> None:
    if principal:
        password = os.environ["GSS_PEER_PASSWORD"].encode()
        name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
        creds = gssapi.raw.acquire_cred_with_password(
            name, password, usage="initiate", mechs=[KRB5]).creds
    else:
        creds = gssapi.Credentials(usage="initiate", mechs=[KRB5])
    server = gssapi.Name(target, gssapi.NameType.hostbased_service)
    ctx = gssapi.SecurityContext(name=server, creds=creds, usage="initiate",
                                 mech=KRB5, flags=FLAGS)
    token = None
    while not ctx.complete:
        out = ctx.step(token)
        if out:
            send("TOKEN", out)
        if not ctx.complete:
            token = recv("TOKEN")

    message = b"hello from the initiator"
    send("WRAP", ctx.wrap(message, True).message)
    reply = ctx.unwrap(recv("WRAP"))
    if not reply.encrypted:
        raise SystemExit("gss_peer: the acceptor's reply was not encrypted")
    done(
        role="initiator",
        initiator=str(ctx.initiator_name),
        target=str(ctx.target_name),
        mech=ctx.mech.dotted_form,
        mutual=gssapi.RequirementFlag.mutual_authentication in ctx.actual_flags,
        reply=reply.message.decode(),
    )


def accept() -> None:
    creds = gssapi.Credentials(usage="accept", mechs=[KRB5])
    ctx = gssapi.SecurityContext(creds=creds, usage="accept")
    while not ctx.complete:
        out = ctx.step(recv("TOKEN"))
        if out:
            send("TOKEN", out)

    got = ctx.unwrap(recv("WRAP"))
    if not got.encrypted:
        raise SystemExit("gss_peer: the initiator's message was not encrypted")
    reply = f"acceptor got {got.message.decode()!r} from {ctx.initiator_name}"
    send("WRAP", ctx.wrap(reply.encode(), True).message)
    done(
        role="acceptor",
        initiator=str(ctx.initiator_name),
        target=str(ctx.target_name),
        mech=ctx.mech.dotted_form,
        message=got.message.decode(),
    )


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "initiate":
        principal = argv[argv.index("--principal") + 1] if "--principal" in argv else None
        initiate(argv[1], principal)
    elif argv == ["accept"]:
        accept()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except gssapi.exceptions.GSSError as e:
        print(f"gss_peer: {e}", file=sys.stderr)
        sys.exit(1)
