#!/usr/bin/env python3
"""sp_app.py: a small SAML 2.0 service-provider web application on pysaml2, for end-to-end tests
that drive a real browser through Latchkey (SP-initiated and IdP-initiated SSO).

It is written independently of Latchkey and of sp_verify.py: a plain pysaml2 SP, strict, on the
standard library's http.server, listening on loopback only.

Usage (with the e2e venv, e.g. e2e/.venv/bin/python):
  sp_app.py --idp-metadata FILE --entity-id ID --key SP_KEY.pem --cert SP_CERT.pem
            [--port N (default 0: any free port)] [--base-url URL] [--clock-skew SECONDS]
            [--want-response-signed]

  --base-url    how the browser reaches this SP (default http://127.0.0.1:<port>); the ACS is
                <base-url>/acs. Its host must be a loopback address.
  --idp-metadata is read when first needed and re-read whenever the file changes, so a test can
                start the SP (to learn its port), register it at the IdP, and only then write the
                IdP metadata file (Latchkey's metadata is per app).

On start it prints ONE JSON line on stdout, then serves until SIGTERM/SIGINT (exit 0):
  {"port": N, "base_url": "...", "entity_id": "...", "acs": "<base>/acs", "login": "<base>/login"}

Routes:
  GET  /login[?relay_state=S]  an AuthnRequest (pysaml2 Saml2Client.prepare_for_authenticate),
                               HTTP-Redirect binding, signed with the SP key (RSA-SHA256,
                               AuthnRequestsSigned), 302 to the IdP's SSO URL from the metadata.
                               The request ID is kept as outstanding (for 10 minutes).
  POST /acs                    SAMLResponse (+ RelayState), HTTP-POST binding, verified by pysaml2
                               (parse_authn_request_response) with the outstanding request IDs:
                               signed Assertion required (and a signed Response with
                               --want-response-signed); keys only from the metadata; Audience =
                               entity id; Destination and SubjectConfirmationData Recipient = ACS;
                               InResponseTo must be an outstanding ID (each is used once), or
                               absent (unsolicited, IdP-initiated responses are allowed); Issuer =
                               the metadata's entityID; an Assertion ID is accepted only once.
                               200 HTML "Signed in as <name_id>" with the attributes (all escaped),
                               and an SP session cookie `sp_session`; or 403 HTML with the error.
  GET  /                       who this browser is signed in as at the SP (by `sp_session`).
  GET  /whoami                 JSON of the last verified identity (any browser), 404 before any:
                               {"name_id","name_id_format","session_index","attributes",
                                "issuer","in_response_to","relay_state","solicited","count"}
  GET  /logout                 forgets this browser's SP session (local logout only).
  GET  /healthz                "ok".
"""

import argparse
import hashlib
import html
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.xmldsig import SIG_RSA_SHA256

OUTSTANDING_TTL = 600  # seconds an AuthnRequest ID stays acceptable
MAX_BODY = 1 << 20  # largest form body read at /acs
REQUEST_TIMEOUT = 10  # seconds a connection may stay idle (the browser keeps some open)

log = logging.getLogger("sp_app")


class SamlSp:
    """The pysaml2 side: one Saml2Client, rebuilt whenever the IdP metadata file changes.
    Every method runs under one lock (pysaml2 objects are not meant for concurrent use)."""

    def __init__(self, args, acs):
        self.args = args
        self.acs = acs
        self.lock = threading.Lock()
        self.client = None
        self.idp_entity_id = None
        self.meta_digest = None
        self.outstanding = {}  # request id -> (created, relay_state)
        self.seen_assertions = {}  # assertion id -> time seen
        self.last_identity = None
        self.count = 0
        self.xmlsec = shutil.which("xmlsec1")
        if not self.xmlsec:
            raise SystemExit("sp_app.py: xmlsec1 not found on PATH (Debian package xmlsec1)")

    def _ensure_client(self):
        try:
            with open(self.args.idp_metadata, "rb") as f:
                data = f.read()
        except OSError as e:
            raise SpError(f"IdP metadata not readable yet: {e}") from e
        digest = hashlib.sha256(data).hexdigest()
        if self.client is not None and digest == self.meta_digest:
            return
        conf = SPConfig()
        conf.load(
            {
                "entityid": self.args.entity_id,
                "xmlsec_binary": self.xmlsec,
                "key_file": self.args.key,
                "cert_file": self.args.cert,
                "metadata": {"local": [self.args.idp_metadata]},
                # Top level: pysaml2 ignores it under service.sp.
                "accepted_time_diff": self.args.clock_skew,
                "only_use_keys_in_metadata": True,
                "delete_tmpfiles": True,
                "service": {
                    "sp": {
                        "endpoints": {"assertion_consumer_service": [(self.acs, BINDING_HTTP_POST)]},
                        "authn_requests_signed": True,
                        "want_assertions_signed": True,
                        "want_response_signed": self.args.want_response_signed,
                        "allow_unsolicited": True,
                    }
                },
            }
        )
        client = Saml2Client(conf)
        idps = list(client.metadata.identity_providers())
        if len(idps) != 1:
            raise SpError(f"the IdP metadata must describe exactly one IdP, found {len(idps)}")
        self.client, self.idp_entity_id, self.meta_digest = client, idps[0], digest
        log.info("loaded IdP metadata for %s", self.idp_entity_id)

    def _expire(self):
        now = time.time()
        for rid in [r for r, (t, _) in self.outstanding.items() if now - t > OUTSTANDING_TTL]:
            del self.outstanding[rid]
        for aid in [a for a, t in self.seen_assertions.items() if now - t > 2 * OUTSTANDING_TTL]:
            del self.seen_assertions[aid]

    def login_redirect(self, relay_state):
        """The IdP URL (HTTP-Redirect, signed) for a new AuthnRequest."""
        with self.lock:
            self._ensure_client()
            self._expire()
            req_id, info = self.client.prepare_for_authenticate(
                entityid=self.idp_entity_id,
                relay_state=relay_state,
                binding=BINDING_HTTP_REDIRECT,
                sign=True,
                sigalg=SIG_RSA_SHA256,
            )
            location = dict(info["headers"]).get("Location")
            if not location:
                raise SpError("pysaml2 produced no redirect location")
            self.outstanding[req_id] = (time.time(), relay_state)
            return req_id, location

    def consume(self, saml_response, relay_state, remote_addr):
        """Verifies a posted Response; returns the identity dict or raises SpError."""
        with self.lock:
            self._ensure_client()
            self._expire()
            outstanding = {rid: self.acs for rid in self.outstanding}
            try:
                # conv_info makes pysaml2 check SubjectConfirmationData/@Recipient against the ACS.
                resp = self.client.parse_authn_request_response(
                    saml_response, BINDING_HTTP_POST, outstanding=outstanding, conv_info={"remote_addr": remote_addr}
                )
            except Exception as e:  # noqa: BLE001 - every pysaml2 rejection is a 403 here
                raise SpError(f"{type(e).__name__}: {e}") from e
            if resp is None or resp.assertion is None:
                raise SpError("no verified assertion in the Response")
            r, a = resp.response, resp.assertion
            # What pysaml2 lets pass but a strict SP must not.
            if r.destination != self.acs:
                raise SpError(f"Destination mismatch: expected {self.acs}, got {r.destination or '(none)'}")
            if r.issuer is not None and r.issuer.text != self.idp_entity_id:
                raise SpError(f"Response Issuer is not the IdP: {r.issuer.text}")
            if a.issuer is None or a.issuer.text != self.idp_entity_id:
                raise SpError("Assertion Issuer is not the IdP")
            if r.in_response_to is not None:
                if r.in_response_to not in self.outstanding:
                    raise SpError(f"InResponseTo {r.in_response_to} is not an outstanding request")
                del self.outstanding[r.in_response_to]  # one Response per request
            if a.id in self.seen_assertions:
                raise SpError(f"Assertion {a.id} was already used")
            self.seen_assertions[a.id] = time.time()
            attributes = {}
            for st in a.attribute_statement:
                for at in st.attribute:
                    attributes.setdefault(at.name, []).extend((v.text or "") for v in at.attribute_value)
            name_id = a.subject.name_id
            self.count += 1
            identity = {
                "name_id": None if name_id is None else (name_id.text or ""),
                "name_id_format": None if name_id is None else name_id.format,
                "session_index": a.authn_statement[0].session_index if a.authn_statement else None,
                "attributes": attributes,
                "issuer": a.issuer.text,
                "in_response_to": r.in_response_to,
                "relay_state": relay_state,
                "solicited": r.in_response_to is not None,
                "count": self.count,
            }
            self.last_identity = identity
            return identity


class SpError(Exception):
    pass


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px/1.4 system-ui,sans-serif;margin:24px;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
.error{{color:#a00}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def page(title, body):
    return PAGE.format(title=html.escape(title), body=body).encode("utf-8")


def identity_html(identity):
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(', '.join(v))}</td></tr>"
        for k, v in sorted(identity["attributes"].items())
    )
    flow = "SP-initiated" if identity["solicited"] else "IdP-initiated"
    rs = identity.get("relay_state")
    return (
        f'<p id="who">Signed in as <strong id="name-id">{html.escape(identity["name_id"] or "")}</strong></p>'
        f'<p id="flow">{flow}</p>'
        + (f'<p id="relay-state">RelayState: {html.escape(rs)}</p>' if rs else "")
        + f'<table id="attributes"><tr><th>Attribute</th><th>Values</th></tr>{rows}</table>'
        + '<p><a href="/logout">Sign out of this SP</a></p>'
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "latchkey-e2e-sp/1"
    timeout = REQUEST_TIMEOUT
    sp = None  # SamlSp, set in main
    sessions = {}  # sp_session cookie -> identity
    sessions_lock = threading.Lock()

    def log_message(self, fmt, *args):  # to stderr through logging, not raw
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status, body, ctype="text/html; charset=utf-8", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, message):
        log.warning("%s %s -> %d %s", self.command, self.path, status, message)
        body = page("Sign-in failed", f'<p class="error" id="error" role="alert">{html.escape(message)}</p>')
        self._send(status, body)

    def _session(self):
        cookies = self.headers.get("Cookie", "")
        for part in cookies.split(";"):
            k, _, v = part.strip().partition("=")
            if k == "sp_session":
                with self.sessions_lock:
                    return v, self.sessions.get(v)
        return None, None

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            if url.path == "/healthz":
                self._send(200, b"ok", "text/plain")
            elif url.path == "/login":
                relay_state = query.get("relay_state", [None])[0]
                req_id, location = self.sp.login_redirect(relay_state)
                log.info("AuthnRequest %s -> IdP", req_id)
                self._send(302, b"", headers=[("Location", location)])
            elif url.path == "/whoami":
                ident = self.sp.last_identity
                if ident is None:
                    self._send(404, b'{"error":"no verified identity yet"}', "application/json")
                else:
                    self._send(200, json.dumps(ident).encode(), "application/json")
            elif url.path == "/":
                _, ident = self._session()
                if ident:
                    self._send(200, page("Example SP", identity_html(ident)))
                else:
                    self._send(200, page("Example SP", '<p id="who">Not signed in.</p><p><a href="/login">Sign in</a></p>'))
            elif url.path == "/logout":
                sid, _ = self._session()
                if sid:
                    with self.sessions_lock:
                        self.sessions.pop(sid, None)
                self._send(200, page("Signed out", '<p id="who">Not signed in.</p>'),
                           headers=[("Set-Cookie", "sp_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")])
            else:
                self._send(404, page("Not found", "<p>Not found.</p>"))
        except SpError as e:
            self._error(500, str(e))

    def do_POST(self):  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/acs":
            self._send(404, page("Not found", "<p>Not found.</p>"))
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            self._error(400, f"expected a form post, got Content-Type {ctype or '(none)'}")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._error(400, "bad Content-Length")
            return
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"), keep_blank_values=True)
        saml_response = form.get("SAMLResponse", [None])[0]
        relay_state = form.get("RelayState", [None])[0]
        if not saml_response:
            self._error(400, "no SAMLResponse in the form")
            return
        try:
            identity = self.sp.consume(saml_response, relay_state, self.client_address[0])
        except SpError as e:
            self._error(403, str(e))
            return
        sid = secrets.token_urlsafe(24)
        with self.sessions_lock:
            self.sessions[sid] = identity
        log.info("signed in %s (%s)", identity["name_id"], "solicited" if identity["solicited"] else "unsolicited")
        self._send(200, page("Signed in", identity_html(identity)),
                   headers=[("Set-Cookie", f"sp_session={sid}; Path=/; HttpOnly; SameSite=Lax")])


def main():
    p = argparse.ArgumentParser(description="pysaml2 SP web app for Latchkey's e2e tests (loopback only)")
    p.add_argument("--idp-metadata", required=True)
    p.add_argument("--entity-id", required=True)
    p.add_argument("--key", required=True, help="SP private key (PEM) signing AuthnRequests")
    p.add_argument("--cert", required=True, help="SP certificate (PEM) matching --key")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--base-url", default=None)
    p.add_argument("--clock-skew", type=int, default=1)
    p.add_argument("--want-response-signed", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="sp_app: %(message)s")
    logging.getLogger("saml2").setLevel(logging.WARNING)
    for f in (args.key, args.cert):
        if not os.path.isfile(f):
            p.error(f"not a file: {f}")

    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    base_url = (args.base_url or f"http://127.0.0.1:{port}").rstrip("/")
    host = urllib.parse.urlsplit(base_url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        p.error(f"--base-url must be on a loopback address: {base_url}")
    acs = f"{base_url}/acs"
    Handler.sp = SamlSp(args, acs)

    def stop(_signum, _frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"port": port, "base_url": base_url, "entity_id": args.entity_id, "acs": acs, "login": f"{base_url}/login"}), flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
