#!/usr/bin/env python3
"""sp_verify.py: verify a SAML 2.0 Response (as POSTed to an ACS) the way a strict pysaml2
service provider would (signatures checked by libxmlsec1 through the `xmlsec1` binary). Twin of
sp-verify.mjs (node-saml, xml-crypto stack): same arguments, same JSON output, same contract.

Usage (with the e2e venv, e.g. e2e/.venv/bin/python):
  sp_verify.py --idp-metadata FILE --sp-entity-id ID --acs URL [--request-id ID]
               [--want-response-signed] [--clock-skew SECONDS]
               --response-file FILE          (the base64 SAMLResponse form value, as posted)
  sp_verify.py --batch FILE.jsonl
      one JSON object per line: {"idp_metadata","sp_entity_id","acs","request_id"?,
      "want_response_signed"?, "clock_skew"?, "response" (base64) | "response_file", "id"?}

Output: one JSON line per response:
  {"ok":true,"name_id","name_id_format","session_index","attributes":{name:[values]},
   "issuer","in_response_to"}            or {"ok":false,"error":"..."}   ("id" echoed in batch)
Exit code: 0 when every response verified, 1 otherwise, 2 on a usage error.

pysaml2 configuration: IdP metadata from the file only (keys from metadata only, KeyInfo is
ignored); want_assertions_signed (and want_response_signed with the flag); the ACS as the only
HTTP-POST return address (Destination); `conv_info` passed so that SubjectConfirmationData
Recipient is required and checked against the ACS; `outstanding` = {request id} when
--request-id is given, else allow_unsolicited; Audience = SP entity id; accepted_time_diff =
--clock-skew (default 1 s, pysaml2's default is 0). On top of pysaml2 this script requires what
pysaml2 lets pass but the contract forbids: a missing Destination, an InResponseTo on a Response
that should be unsolicited, and a Response Issuer other than the metadata's entityID.

Batch mode keeps one Saml2Client per distinct configuration (metadata content included) because
pysaml2 is slow to start. Each response is bounded by an alarm (--timeout, default 60 s) since
pysaml2 runs xmlsec1 without a timeout of its own.
"""

import argparse
import base64
import hashlib
import json
import logging
import shutil
import signal
import sys

from saml2 import BINDING_HTTP_POST
from saml2.client import Saml2Client
from saml2.config import SPConfig

BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"


class _Recorder(logging.Handler):
    """Keeps pysaml2's warnings and errors: several rejections (e.g. a Destination mismatch)
    surface only in its log, while the exception says something vaguer."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        try:
            self.messages.append(record.getMessage().split("\n")[0][:300])
        except Exception:  # noqa: BLE001 - a bad log record must not break verification
            pass


_recorder = _Recorder()
_saml2_log = logging.getLogger("saml2")
_saml2_log.addHandler(_recorder)
_saml2_log.setLevel(logging.WARNING)
_saml2_log.propagate = False


class _Timeout(BaseException):
    """BaseException, so that pysaml2's broad `except Exception` handlers cannot swallow it."""


def _on_alarm(_signum, _frame):
    raise _Timeout()


_clients = {}


def _client(idp_metadata, sp_entity_id, acs, want_response_signed, unsolicited, clock_skew):
    """A Saml2Client for this configuration (cached by value, metadata content included)."""
    with open(idp_metadata, "rb") as f:
        meta_hash = hashlib.sha256(f.read()).hexdigest()
    key = (idp_metadata, meta_hash, sp_entity_id, acs, want_response_signed, unsolicited, clock_skew)
    if key not in _clients:
        xmlsec = shutil.which("xmlsec1")
        if not xmlsec:
            raise RuntimeError("xmlsec1 not found on PATH (Debian package xmlsec1)")
        conf = SPConfig()
        conf.load(
            {
                "entityid": sp_entity_id,
                "xmlsec_binary": xmlsec,
                "metadata": {"local": [idp_metadata]},
                # Top-level key: under service.sp it would be silently ignored.
                "accepted_time_diff": clock_skew,
                "only_use_keys_in_metadata": True,
                "delete_tmpfiles": True,
                "service": {
                    "sp": {
                        "endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)]},
                        "want_assertions_signed": True,
                        "want_response_signed": want_response_signed,
                        "allow_unsolicited": unsolicited,
                        "authn_requests_signed": False,
                    }
                },
            }
        )
        client = Saml2Client(conf)
        idps = list(client.metadata.identity_providers())
        if len(idps) != 1:
            raise RuntimeError(f"metadata {idp_metadata}: expected exactly one IdP, found {len(idps)}")
        _clients[key] = (client, idps[0])
    return _clients[key]


def _text(el):
    return None if el is None else (el.text or "")


def verify(
    idp_metadata,
    sp_entity_id,
    acs,
    response,
    request_id=None,
    want_response_signed=False,
    clock_skew=1,
):
    """Verifies one base64 SAMLResponse; returns the result dict (raises on rejection)."""
    for name, v in (("idp_metadata", idp_metadata), ("sp_entity_id", sp_entity_id), ("acs", acs), ("response", response)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"missing {name}")
    request_id = request_id or None
    b64 = "".join(response.split())  # tolerate line-wrapped base64
    base64.b64decode(b64, validate=True)  # fail early and clearly on a mangled form value
    client, idp_entity_id = _client(
        idp_metadata, sp_entity_id, acs, bool(want_response_signed), request_id is None, int(clock_skew)
    )
    outstanding = {request_id: acs} if request_id else {}
    # conv_info makes pysaml2 check SubjectConfirmationData/@Recipient (against the return
    # addresses, i.e. the ACS); without it the Recipient is not checked at all. No "entity_id"
    # key: that would also accept Recipient == that value.
    resp = client.parse_authn_request_response(
        b64, BINDING_HTTP_POST, outstanding=outstanding, conv_info={"remote_addr": "0.0.0.0"}
    )
    if resp is None or resp.assertion is None:
        raise ValueError("pysaml2 returned no verified assertion")

    r = resp.response
    if r.destination != acs:
        raise ValueError(f"Destination mismatch: expected {acs}, got {r.destination or '(none)'}")
    if r.issuer is not None and r.issuer.text != idp_entity_id:
        raise ValueError(f"Response Issuer mismatch: expected {idp_entity_id}, got {r.issuer.text}")
    a = resp.assertion
    issuer = _text(a.issuer)
    if issuer != idp_entity_id:
        raise ValueError(f"Assertion Issuer mismatch: expected {idp_entity_id}, got {issuer}")
    if request_id is None:
        if r.in_response_to is not None:
            raise ValueError(f'unsolicited Response expected, but it has InResponseTo="{r.in_response_to}"')
        for sc in a.subject.subject_confirmation:
            scd = sc.subject_confirmation_data
            if scd is not None and scd.in_response_to is not None:
                raise ValueError(
                    f'unsolicited Response expected, but SubjectConfirmationData has InResponseTo="{scd.in_response_to}"'
                )
    elif r.in_response_to != request_id:
        raise ValueError(f"InResponseTo mismatch: expected {request_id}, got {r.in_response_to or '(none)'}")

    if len(a.authn_statement) != 1:
        raise ValueError(f"expected exactly one AuthnStatement, found {len(a.authn_statement)}")

    attributes = {}
    for st in a.attribute_statement:
        for at in st.attribute:
            attributes.setdefault(at.name, []).extend((v.text or "") for v in at.attribute_value)

    name_id = a.subject.name_id
    return {
        "ok": True,
        "name_id": _text(name_id),
        "name_id_format": None if name_id is None else name_id.format,
        "session_index": a.authn_statement[0].session_index,
        "attributes": attributes,
        "issuer": issuer,
        "in_response_to": r.in_response_to,
    }


def verify_safely(timeout, **kwargs):
    """verify() that never raises: errors become {"ok": false, "error": ...}."""
    _recorder.messages.clear()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(max(1, int(timeout)))
    try:
        return verify(**kwargs)
    except _Timeout:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    except Exception as e:  # noqa: BLE001 - every rejection is reported as data
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
        logged = [m for m in _recorder.messages if m]
        if logged:
            msg += " [pysaml2 log: " + " | ".join(logged[-3:]) + "]"
        return {"ok": False, "error": msg}
    finally:
        signal.alarm(0)


def _from_batch_object(o):
    if not isinstance(o, dict):
        raise ValueError("batch line is not a JSON object")
    response = o.get("response")
    if response is None and o.get("response_file"):
        with open(o["response_file"], encoding="utf-8") as f:
            response = f.read()
    return {
        "idp_metadata": o.get("idp_metadata"),
        "sp_entity_id": o.get("sp_entity_id"),
        "acs": o.get("acs"),
        "request_id": o.get("request_id"),
        "want_response_signed": bool(o.get("want_response_signed", False)),
        "clock_skew": o.get("clock_skew", 1),
        "response": response,
    }


def _print(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--idp-metadata")
    p.add_argument("--sp-entity-id")
    p.add_argument("--acs")
    p.add_argument("--request-id")
    p.add_argument("--want-response-signed", action="store_true")
    p.add_argument("--clock-skew", type=float, default=1, help="seconds (default 1)")
    p.add_argument("--response-file")
    p.add_argument("--batch", help="JSON-lines file, one response per line")
    p.add_argument("--timeout", type=float, default=60, help="seconds per response (default 60)")
    args = p.parse_args(argv)

    if args.batch:
        all_ok = True
        with open(args.batch, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
        for line in lines:
            rid = None
            try:
                o = json.loads(line)
                rid = o.get("id") if isinstance(o, dict) else None
                out = verify_safely(args.timeout, **_from_batch_object(o))
            except Exception as e:  # noqa: BLE001 - a bad line is reported, the rest go on
                out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            if rid is not None:
                out = {"id": rid, **out}
            all_ok = all_ok and out["ok"]
            _print(out)
        return 0 if all_ok else 1

    missing = [n for n in ("idp_metadata", "sp_entity_id", "acs", "response_file") if not getattr(args, n)]
    if missing:
        p.error("missing " + ", ".join("--" + m.replace("_", "-") for m in missing))
    with open(args.response_file, encoding="utf-8") as f:
        response = f.read()
    out = verify_safely(
        args.timeout,
        idp_metadata=args.idp_metadata,
        sp_entity_id=args.sp_entity_id,
        acs=args.acs,
        response=response,
        request_id=args.request_id,
        want_response_signed=args.want_response_signed,
        clock_skew=args.clock_skew,
    )
    _print(out)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
