//! Independent service providers for the in-process SAML tests: every Response these tests
//! produce is handed to pysaml2 (libxmlsec1) and to @node-saml/node-saml (xml-crypto) through
//! the command-line verifiers in `e2e/saml/`, configured strictly (signed assertions, audience,
//! destination, recipient, InResponseTo).
//!
//! The tools need `e2e/.venv` and `e2e/node_modules` (`scripts/test` installs them first). When
//! they are missing the check prints SKIPPED, unless `LATCHKEY_REQUIRE_SAML_VERIFIERS=1` (CI), which
//! makes it fail.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

fn tools_missing() -> Option<String> {
    let e2e = e2e_dir();
    let python = e2e.join(".venv/bin/python");
    if !python.exists() {
        return Some(format!("{} not found (run e2e/run once, or ./scripts/test)", python.display()));
    }
    if !e2e.join("node_modules/@node-saml/node-saml").exists() {
        return Some("e2e/node_modules lacks @node-saml/node-saml (run e2e/run once)".to_owned());
    }
    if Command::new("xmlsec1").arg("--version").output().is_err() {
        return Some("xmlsec1 not found (Debian package xmlsec1)".to_owned());
    }
    None
}

/// What an SP expects of a Response.
pub struct Expect<'a> {
    pub metadata: &'a str,
    pub sp_entity_id: &'a str,
    pub acs: &'a str,
    pub request_id: Option<&'a str>,
    pub want_response_signed: bool,
}

/// Runs both verifiers on `response_b64`; returns their JSON verdicts (pysaml2, node-saml), or
/// `None` when the tools are not installed here (and not required).
pub fn verify_with_both(expect: &Expect<'_>, response_b64: &str) -> Option<(Value, Value)> {
    if let Some(why) = tools_missing() {
        assert!(
            std::env::var("LATCHKEY_REQUIRE_SAML_VERIFIERS").is_err(),
            "SAML verifiers required but unavailable: {why}"
        );
        eprintln!("SAML SP verification SKIPPED: {why}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let metadata = dir.path().join("idp.xml");
    std::fs::write(&metadata, expect.metadata).unwrap();
    let mut item = json!({
        "idp_metadata": metadata.display().to_string(),
        "sp_entity_id": expect.sp_entity_id,
        "acs": expect.acs,
        "want_response_signed": expect.want_response_signed,
        "response": response_b64,
        "clock_skew": 5,
    });
    if let Some(id) = expect.request_id {
        item["request_id"] = json!(id);
    }
    let batch = dir.path().join("batch.jsonl");
    std::fs::write(&batch, format!("{item}\n")).unwrap();
    let e2e = e2e_dir();
    let run = |program: PathBuf, script: &str| -> Value {
        let out = Command::new(program)
            .arg(e2e.join("saml").join(script))
            .arg("--batch")
            .arg(&batch)
            .output()
            .unwrap_or_else(|e| panic!("{script}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("{script} printed nothing: {}", String::from_utf8_lossy(&out.stderr)));
        serde_json::from_str(line).unwrap()
    };
    let pysaml2 = run(e2e.join(".venv/bin/python"), "sp_verify.py");
    let node_saml = run(PathBuf::from("node"), "sp-verify.mjs");
    Some((pysaml2, node_saml))
}

/// Asserts both SPs accept the Response, and returns node-saml's reading of it.
pub fn assert_accepted(expect: &Expect<'_>, response_b64: &str) -> Option<Value> {
    let (pysaml2, node_saml) = verify_with_both(expect, response_b64)?;
    assert_eq!(pysaml2["ok"], true, "pysaml2 refused: {pysaml2}");
    assert_eq!(node_saml["ok"], true, "node-saml refused: {node_saml}");
    assert_eq!(pysaml2["name_id"], node_saml["name_id"], "both SPs read one identity");
    Some(node_saml)
}
