//! Tests that pin the outbound wire format and check it with independent implementations.
//!
//! Golden bytes pin the exact Response (fixed TEST ONLY key, clock and ids; `UPDATE_SNAPSHOTS=1` rewrites
//! them). xmlsec1 (libxmlsec1) verifies every signature variant, and lxml (libxml2) checks the
//! canonical-by-construction claim on random Unicode input (docs/architecture.md, "SAML output"). When those
//! tools are missing the tests print SKIPPED, unless `LATCHKEY_REQUIRE_XMLSEC` is set (CI sets it), in which
//! case they fail. Debian packages: `xmlsec1 python3-lxml`.

use super::response::{
    Attribute, ErrorResponseParams, ResponseParams, build_error_response, build_response, status,
};
use crate::Timestamp;
use crate::signing_keys::material::tests::test_key;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn fixture() -> ResponseParams {
    let now = Timestamp(1_700_000_000_000); // 2023-11-14T22:13:20Z
    ResponseParams {
        response_id: "_8f7d6c5b4a3928171605f4e3d2c1b0a998877665".into(),
        assertion_id: "_0a1b2c3d4e5f60718293a4b5c6d7e8f901234567".into(),
        issue_instant: now,
        issuer: "https://idp.example.test/app/exk1/sso/saml".into(),
        destination: "https://sp.example.test/acs".into(),
        recipient: "https://sp.example.test/acs".into(),
        audience: "https://sp.example.test/metadata".into(),
        in_response_to: Some("_req-42".into()),
        name_id: "alice@example.test".into(),
        name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into(),
        session_index: "_sess-7".into(),
        authn_instant: now.plus_seconds(-30),
        session_not_on_or_after: Some(now.plus_seconds(8 * 3600)),
        not_before: now.plus_seconds(-60),
        not_on_or_after: now.plus_seconds(300),
        authn_context_class_ref: "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport".into(),
        attributes: vec![
            Attribute {
                name: "email".into(),
                name_format: "urn:oasis:names:tc:SAML:2.0:attrname-format:basic".into(),
                values: vec!["alice@example.test".into()],
            },
            Attribute {
                name: "groups".into(),
                name_format: "urn:oasis:names:tc:SAML:2.0:attrname-format:basic".into(),
                values: vec!["R&D <core>".into(), "\"quoted\"\ttab".into()],
            },
        ],
        sign_response: true,
        sign_assertion: true,
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/saml")
}

/// Compares with (or, under `UPDATE_SNAPSHOTS=1`, rewrites) `tests/data/saml/<name>`.
pub(crate) fn snapshot(name: &str, actual: &str) {
    let path = data_dir().join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(data_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1 to create)", path.display()));
    assert_eq!(actual, expected, "snapshot {name} differs; UPDATE_SNAPSHOTS=1 rewrites it if intended");
}

/// A fresh scratch directory (no tempfile dependency in the core crate).
pub(crate) fn scratch_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "latchkey-saml-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether an external checker may be skipped: only when `LATCHKEY_REQUIRE_XMLSEC` is unset.
pub(crate) fn skip(tool: &str) {
    if std::env::var_os("LATCHKEY_REQUIRE_XMLSEC").is_some() {
        panic!("{tool} is required (LATCHKEY_REQUIRE_XMLSEC is set) but not available");
    }
    eprintln!("SKIPPED: {tool} not available (apt-get install xmlsec1 python3-lxml)");
}

pub(crate) fn xmlsec1_available() -> bool {
    Command::new("xmlsec1").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A Python interpreter that can import lxml: `LATCHKEY_PYTHON`, else `python3`, else Debian's.
pub(crate) fn python_with_lxml() -> Option<String> {
    let candidates = std::env::var("LATCHKEY_PYTHON")
        .into_iter()
        .chain(["python3".to_owned(), "/usr/bin/python3".to_owned()]);
    candidates.into_iter().find(|python| {
        Command::new(python).args(["-c", "import lxml.etree"]).output().is_ok_and(|o| o.status.success())
    })
}

/// Runs `xmlsec1 --verify` on `xml`, starting at the Signature selected by `xpath`.
fn xmlsec_verify(dir: &Path, name: &str, xml: &str, signature_xpath: &str) -> Result<(), String> {
    let file = dir.join(name);
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(dir.join("cert.pem"))
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"])
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:Response"])
        .args(["--node-xpath", signature_xpath])
        .arg(&file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

const RESPONSE_SIG: &str = "/*[local-name()='Response']/*[local-name()='Signature']";
const ASSERTION_SIG: &str =
    "/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']";

#[test]
fn golden_response_bytes() {
    let key = test_key();
    let p = fixture();
    snapshot("response-signed-both.golden.xml", &build_response(&p, &key).unwrap());
    let assertion_only = ResponseParams { sign_response: false, in_response_to: None, ..fixture() };
    snapshot(
        "response-assertion-signed-idp-initiated.golden.xml",
        &build_response(&assertion_only, &key).unwrap(),
    );
    let error = ErrorResponseParams {
        id: "_e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0".into(),
        issue_instant: p.issue_instant,
        issuer: p.issuer.clone(),
        destination: p.destination.clone(),
        in_response_to: Some("_req-42".into()),
        top_status: status::RESPONDER.into(),
        second_status: Some(status::NO_PASSIVE.into()),
        message: Some("no session".into()),
    };
    snapshot("error-response-nopassive.golden.xml", &build_error_response(&error, &key).unwrap());
}

#[test]
fn xmlsec1_verifies_every_signature_variant() {
    if !xmlsec1_available() {
        return skip("xmlsec1");
    }
    let key = test_key();
    let dir = scratch_dir("xmlsec");
    std::fs::write(dir.join("cert.pem"), key.cert_pem()).unwrap();
    let mut failures = Vec::new();
    let cases = [
        ("assertion.xml", false, true, vec![ASSERTION_SIG]),
        ("response.xml", true, false, vec![RESPONSE_SIG]),
        ("both.xml", true, true, vec![RESPONSE_SIG, ASSERTION_SIG]),
    ];
    for (name, sign_response, sign_assertion, xpaths) in cases {
        let p = ResponseParams { sign_response, sign_assertion, ..fixture() };
        let xml = build_response(&p, &key).unwrap();
        for xpath in xpaths {
            failures.extend(xmlsec_verify(&dir, name, &xml, xpath).err());
        }
        // A changed byte inside the signed content must fail (the check is not vacuous).
        let tampered = xml.replace("alice@example.test</saml:NameID>", "mallory@example.test</saml:NameID>");
        let xpath = if sign_assertion { ASSERTION_SIG } else { RESPONSE_SIG };
        assert!(
            xmlsec_verify(&dir, "tampered.xml", &tampered, xpath).is_err(),
            "{name}: tampering undetected"
        );
    }
    let error = ErrorResponseParams {
        id: "_e1".into(),
        issue_instant: Timestamp(1_700_000_000_000),
        issuer: "https://idp.example.test".into(),
        destination: "https://sp.example.test/acs".into(),
        in_response_to: None,
        top_status: status::REQUESTER.into(),
        second_status: Some(status::INVALID_NAME_ID_POLICY.into()),
        message: Some("<nope> & \"no\"".into()),
    };
    let xml = build_error_response(&error, &key).unwrap();
    failures.extend(xmlsec_verify(&dir, "error.xml", &xml, RESPONSE_SIG).err());
    std::fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "xmlsec1 rejected: {failures:#?}");
}

/// lxml's view of case `i`: the Assertion with its Signature removed, canonicalized (exclusive, no
/// comments) must equal our bytes and hash to our DigestValue; SignedInfo canonicalized on its own must
/// equal what we signed. One Python process checks the whole batch.
const LXML_CHECK: &str = r#"
import base64, hashlib, sys, pathlib
from lxml import etree
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
d = pathlib.Path(sys.argv[1])
for i in range(int(sys.argv[2])):
    try:
        root = etree.fromstring((d / f"{i}.xml").read_bytes())
        a = root.find(f"{{{SAML}}}Assertion")
        sig = a.find(f"{{{DS}}}Signature")
        si = etree.tostring(sig.find(f"{{{DS}}}SignedInfo"), method="c14n", exclusive=True, with_comments=False)
        digest = sig.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference/{{{DS}}}DigestValue").text
        a.remove(sig)
        c = etree.tostring(a, method="c14n", exclusive=True, with_comments=False)
        problems = []
        if c != (d / f"{i}.assertion").read_bytes():
            problems.append("assertion c14n differs: " + repr(c))
        if base64.b64encode(hashlib.sha256(c).digest()).decode() != digest:
            problems.append("digest differs")
        if si != (d / f"{i}.signedinfo").read_bytes():
            problems.append("SignedInfo c14n differs: " + repr(si))
        print(i, "FAIL " + "; ".join(problems) if problems else "OK")
    except Exception as e:
        print(i, "FAIL exception", repr(e))
"#;

/// Cuts `[start_pat … end_pat]` (first match at or after `from`) out of `s`; returns (removed, rest).
fn cut(s: &str, from: usize, start_pat: &str, end_pat: &str) -> (String, String) {
    let start = from + s[from..].find(start_pat).unwrap();
    let end = start + s[start..].find(end_pat).unwrap() + end_pat.len();
    (s[start..end].to_owned(), format!("{}{}", &s[..start], &s[end..]))
}

/// A character biased towards what breaks naive XML writers, else any Unicode scalar XML allows.
fn xml_char() -> impl proptest::strategy::Strategy<Value = char> {
    use proptest::prelude::*;
    prop_oneof![
        3 => prop::sample::select(vec!['<', '&', '>', '"', '\'', '\t', '\r', '\n', ' ', '\u{10348}', '\u{FFFD}', 'é', ']']),
        5 => any::<char>(),
    ]
    .prop_map(|c| if super::xml::check_xml_chars("c", c.encode_utf8(&mut [0; 4])).is_ok() { c } else { '?' })
}

#[test]
fn property_assertion_bytes_are_lxml_exclusive_c14n() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let key = test_key();
    let text = || prop::collection::vec(xml_char(), 0..24).prop_map(|v| v.into_iter().collect::<String>());
    let strategy = (text(), prop::collection::vec(prop::collection::vec(text(), 1..3), 0..3), text());
    let mut runner = TestRunner::deterministic();
    let dir = scratch_dir("lxml");
    let cases = 64;
    let mut inputs = Vec::new();
    for i in 0..cases {
        let (name_id, values, attr_name) = strategy.new_tree(&mut runner).unwrap().current();
        let attributes = values
            .into_iter()
            .map(|values| Attribute { name: attr_name.clone(), name_format: attr_name.clone(), values })
            .collect();
        let p =
            ResponseParams { name_id: name_id.clone(), attributes, sign_response: i % 2 == 0, ..fixture() };
        let xml = build_response(&p, &key).unwrap();
        let assertion_at = xml.find("<saml:Assertion ").unwrap();
        let (signature, without_sig) = cut(&xml, assertion_at, "<ds:Signature ", "</ds:Signature>");
        let (assertion, _) = cut(&without_sig, assertion_at, "<saml:Assertion ", "</saml:Assertion>");
        let (signed_info, _) = cut(&signature, 0, "<ds:SignedInfo>", "</ds:SignedInfo>");
        let signed_info = signed_info.replacen(
            "<ds:SignedInfo>",
            "<ds:SignedInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">",
            1,
        );
        std::fs::write(dir.join(format!("{i}.xml")), &xml).unwrap();
        std::fs::write(dir.join(format!("{i}.assertion")), &assertion).unwrap();
        std::fs::write(dir.join(format!("{i}.signedinfo")), &signed_info).unwrap();
        inputs.push(name_id);
    }
    let Some(python) = python_with_lxml() else {
        std::fs::remove_dir_all(&dir).ok();
        return skip("python3-lxml");
    };
    let out =
        Command::new(python).args(["-c", LXML_CHECK]).arg(&dir).arg(cases.to_string()).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<_> = report.lines().filter(|l| !l.ends_with(" OK")).collect();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report.lines().count(), cases, "{report}");
    assert!(failures.is_empty(), "lxml disagrees (inputs under {}): {failures:#?}", dir.display());
    std::fs::remove_dir_all(&dir).ok();
}

/// The TEST ONLY private key as PEM, for xmlsec1.
fn test_key_pem() -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(include_bytes!("../../tests/data/saml-test-key.pk8"));
    let lines: Vec<String> =
        b64.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// A Signature template for xmlsec1 to fill (`ds` bound to `ds_prefix`, or the default namespace).
fn signature_template(ds_prefix: &str, id: &str, prefix_list: Option<&str>) -> String {
    let p = if ds_prefix.is_empty() { String::new() } else { format!("{ds_prefix}:") };
    let decl = if ds_prefix.is_empty() { String::from("xmlns") } else { format!("xmlns:{ds_prefix}") };
    let inclusive = prefix_list
        .map(|l| format!("<ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"{l}\"/>"))
        .unwrap_or_default();
    format!(
        "<{p}Signature {decl}=\"http://www.w3.org/2000/09/xmldsig#\">\n  <{p}SignedInfo>\n    \
         <{p}CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\n    \
         <{p}SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>\n    \
         <{p}Reference URI=\"#{id}\"><{p}Transforms>\
         <{p}Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <{p}Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\">{inclusive}</{p}Transform>\
         </{p}Transforms><{p}DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\
         <{p}DigestValue/></{p}Reference>\n  </{p}SignedInfo>\n  <{p}SignatureValue/>\n\
         <{p}KeyInfo><{p}KeyName>sp</{p}KeyName></{p}KeyInfo></{p}Signature>"
    )
}

/// Differential test of the narrow verifier: SP-style POST messages signed by xmlsec1 (libxmlsec1 and
/// libxml2's c14n), written with the XML features our own writer never uses (pretty printing, single
/// quotes, self-closing tags, character references, CDATA, default namespaces, unused and redeclared
/// prefixes, prefixed attributes, `xml:lang`, InclusiveNamespaces), must verify; one changed byte of
/// content must not.
#[test]
fn narrow_verifier_accepts_what_xmlsec1_signs() {
    use super::inbound::{InboundError, InboundLimits, decode_post, verify_enveloped_signature};
    if !xmlsec1_available() {
        return skip("xmlsec1");
    }
    let key = test_key();
    let dir = scratch_dir("xmlsec-sign");
    std::fs::write(dir.join("key.pem"), test_key_pem()).unwrap();
    let root_open = "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
        xmlns:saml='urn:oasis:names:tc:SAML:2.0:assertion' xmlns:unused=\"urn:unused\" \
        xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" \
        Version='2.0' ID=\"_t1\" IssueInstant=\"2024-05-01T10:00:00Z\" Destination=\"https://idp.example.test/sso\" \
        AssertionConsumerServiceURL=\"https://sp.example.test/acs?a=1&amp;b=&#9;tab&#10;nl&#13;cr &quot;q&quot; &lt;&gt;\" \
        xml:lang=\"en\">";
    let body = "\n  <samlp:Extensions>\n    <ext:Thing xmlns:ext=\"urn:ext\" xmlns=\"urn:default\" b=\"2\" a=\"1\" ext:z=\"3\">\
        <Inner xsi:type=\"xs:string\">text &amp; &#xD; <![CDATA[<raw> & ]]> \u{10348} é</Inner><NoNs xmlns=\"\"/>\
        <ext:Re xmlns:ext=\"urn:ext2\"/></ext:Thing>\n  </samlp:Extensions>\n  \
        <samlp:NameIDPolicy AllowCreate=\"true\" Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified\"/>\n\
        </samlp:AuthnRequest>\n";
    let issuer = "\n  <saml:Issuer>https://sp.example.test/metadata</saml:Issuer>\n  ";
    let cases = [
        ("ds-prefixed", signature_template("ds", "_t1", None)),
        ("ds-default-ns", signature_template("", "_t1", None)),
        ("prefix-list", signature_template("dsig", "_t1", Some("xs xsi #default"))),
    ];
    let limits = InboundLimits::default();
    let mut failures = Vec::new();
    for (name, template) in cases {
        let xml = format!("{root_open}{issuer}{template}{body}");
        let template_path = dir.join(format!("{name}.tmpl.xml"));
        let signed_path = dir.join(format!("{name}.xml"));
        std::fs::write(&template_path, &xml).unwrap();
        let out = Command::new("xmlsec1")
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(dir.join("key.pem"))
            .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:AuthnRequest"])
            .arg("--output")
            .arg(&signed_path)
            .arg(&template_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "xmlsec1 --sign {name}: {}", String::from_utf8_lossy(&out.stderr));
        let signed = std::fs::read_to_string(&signed_path).unwrap();
        if let Err(e) = verify_enveloped_signature(&signed, key.cert_der(), &limits) {
            failures.push(format!("{name}: {e}"));
        }
        let decoded = {
            use base64::Engine;
            decode_post(&base64::engine::general_purpose::STANDARD.encode(&signed), &limits).unwrap()
        };
        assert!(decoded.has_enveloped_signature);
        if let Err(e) = decoded.verify_enveloped_signature(key.cert_der()) {
            failures.push(format!("{name} via DecodedMessage: {e}"));
        }
        let tampered =
            signed.replace("https://sp.example.test/metadata", "https://evil.example.test/metadata");
        assert_eq!(
            verify_enveloped_signature(&tampered, key.cert_der(), &limits),
            Err(InboundError::DigestMismatch),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "our verifier rejected xmlsec1 signatures: {failures:#?}");
}

#[test]
fn xmlsec1_verifies_a_post_signed_logout_request() {
    if !xmlsec1_available() {
        return skip("xmlsec1");
    }
    let key = test_key();
    let xml = super::logout::build_logout_request(
        "_lo1",
        Timestamp(1_700_000_000_000),
        "https://idp.example.test",
        "https://sp.example.test/slo",
        "al&ce <\"x\">\t\r\n",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        Some("_s"),
    )
    .unwrap();
    let signed = super::logout::sign_for_post(&xml, "_lo1", &key).unwrap();
    let dir = scratch_dir("xmlsec-logout");
    std::fs::write(dir.join("cert.pem"), key.cert_pem()).unwrap();
    let file = dir.join("logout.xml");
    std::fs::write(&file, &signed).unwrap();
    let out = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(dir.join("cert.pem"))
        .args(["--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:protocol:LogoutRequest"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
