//! The `<samlp:Response>` Latchkey sends to a service provider's ACS, signed by construction.
//!
//! Shape (SAML profiles §4.1.4.2; docs/architecture.md, "SAML output"): one Assertion, always an
//! AuthnStatement with a SessionIndex, Destination = Recipient = the registered ACS URL, Audience = the SP
//! entity id, our entity id as Issuer of both the Response and the Assertion, `InResponseTo` only for
//! SP-initiated flows (never empty), RSA-SHA256 / SHA-256 only. Signing: the element is written without its
//! Signature, its bytes are digested as they are (they are already exc-c14n), the fixed SignedInfo is signed
//! with the inherited `xmlns:ds` added, and the `ds:Signature` is inserted right after the element's Issuer
//! (schema order, SAML core 2.3.3 and 3.2.2). The Assertion is signed first, so a Response signature covers
//! the signed Assertion.

use super::xml::XmlWriter;
use super::{
    ALG_ENVELOPED, ALG_EXC_C14N, ALG_RSA_SHA256, ALG_SHA256, NS_ASSERTION, NS_DSIG, NS_PROTOCOL, SamlError,
    SigningKey, saml_time,
};
use crate::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Top-level and second-level status codes (SAML core 3.2.2.2).
pub mod status {
    pub const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
    pub const REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
    pub const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
    pub const VERSION_MISMATCH: &str = "urn:oasis:names:tc:SAML:2.0:status:VersionMismatch";
    pub const AUTHN_FAILED: &str = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed";
    pub const INVALID_NAME_ID_POLICY: &str = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy";
    pub const NO_AUTHN_CONTEXT: &str = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext";
    pub const NO_PASSIVE: &str = "urn:oasis:names:tc:SAML:2.0:status:NoPassive";
    pub const REQUEST_DENIED: &str = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied";
    pub const UNSUPPORTED_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding";
    pub const PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";
}

/// Bearer subject confirmation (SAML profiles 3.3): the only method Web Browser SSO uses.
const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// One `saml:Attribute` (SAML core 2.7.3.1). Values are written untyped (no `xsi:type`), which every
/// SP library tested here accepts (`e2e/saml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    /// e.g. `urn:oasis:names:tc:SAML:2.0:attrname-format:basic` or `…:unspecified`.
    pub name_format: String,
    pub values: Vec<String>,
}

/// Everything a Response says. Ids and times are inputs so callers (and tests) control them; use
/// [`super::new_saml_id`] for fresh ids and "now" for `issue_instant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseParams {
    pub response_id: String,
    pub assertion_id: String,
    pub issue_instant: Timestamp,
    /// Our IdP entity id.
    pub issuer: String,
    /// The ACS URL the Response is POSTed to (`Response/@Destination`).
    pub destination: String,
    /// `SubjectConfirmationData/@Recipient`: the same registered ACS URL.
    pub recipient: String,
    /// The SP entity id (`AudienceRestriction/Audience`).
    pub audience: String,
    /// The AuthnRequest ID for SP-initiated SSO; `None` for IdP-initiated (then omitted, never empty).
    pub in_response_to: Option<String>,
    pub name_id: String,
    pub name_id_format: String,
    pub session_index: String,
    pub authn_instant: Timestamp,
    pub session_not_on_or_after: Option<Timestamp>,
    /// `Conditions/@NotBefore`; pass a slightly backdated value (node-saml and samlify allow no skew).
    pub not_before: Timestamp,
    /// `Conditions/@NotOnOrAfter` and `SubjectConfirmationData/@NotOnOrAfter`; keep it short.
    pub not_on_or_after: Timestamp,
    pub authn_context_class_ref: String,
    pub attributes: Vec<Attribute>,
    pub sign_response: bool,
    pub sign_assertion: bool,
}

/// Builds the complete, signed `<samlp:Response>` (no XML declaration; it is signed content).
pub fn build_response(p: &ResponseParams, key: &SigningKey) -> Result<String, SamlError> {
    if !p.sign_response && !p.sign_assertion {
        return Err(SamlError::NothingSigned);
    }
    for (field, value) in [
        ("response_id", &p.response_id),
        ("assertion_id", &p.assertion_id),
        ("issuer", &p.issuer),
        ("destination", &p.destination),
        ("audience", &p.audience),
    ] {
        if value.is_empty() {
            return Err(SamlError::Empty(field));
        }
    }
    let assertion = build_assertion(p, key)?;

    let instant = saml_time(p.issue_instant);
    let mut w = XmlWriter::new();
    let mut attrs = vec![
        ("Destination", p.destination.as_str()),
        ("ID", p.response_id.as_str()),
        ("IssueInstant", instant.as_str()),
        ("Version", "2.0"),
    ];
    if let Some(irt) = non_empty(&p.in_response_to) {
        attrs.push(("InResponseTo", irt));
    }
    w.start("samlp:Response", &[("samlp", NS_PROTOCOL)], &attrs)?;
    // The Issuer is not inside the Assertion, so it declares `saml` itself (exc-c14n renders it here).
    w.leaf("saml:Issuer", &[("saml", NS_ASSERTION)], &[], &p.issuer)?;
    let head_len = w.as_str().len();
    w.start("samlp:Status", &[], &[])?;
    w.empty("samlp:StatusCode", &[], &[("Value", status::SUCCESS)])?;
    w.end("samlp:Status");
    w.raw(&assertion);
    w.end("samlp:Response");
    let response = w.into_string();
    if p.sign_response { insert_signature(&response, head_len, &p.response_id, key) } else { Ok(response) }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn build_assertion(p: &ResponseParams, key: &SigningKey) -> Result<String, SamlError> {
    let instant = saml_time(p.issue_instant);
    let not_before = saml_time(p.not_before);
    let not_on_or_after = saml_time(p.not_on_or_after);
    let authn_instant = saml_time(p.authn_instant);
    let session_end = p.session_not_on_or_after.map(saml_time);

    let mut w = XmlWriter::new();
    w.start(
        "saml:Assertion",
        &[("saml", NS_ASSERTION)],
        &[("ID", &p.assertion_id), ("IssueInstant", &instant), ("Version", "2.0")],
    )?;
    w.leaf("saml:Issuer", &[], &[], &p.issuer)?;
    let head_len = w.as_str().len();

    // SAML core 2.4, profiles 4.1.4.2: bearer confirmation bound to the ACS and the request.
    w.start("saml:Subject", &[], &[])?;
    w.leaf("saml:NameID", &[], &[("Format", &p.name_id_format)], &p.name_id)?;
    w.start("saml:SubjectConfirmation", &[], &[("Method", CM_BEARER)])?;
    let mut scd = vec![("NotOnOrAfter", not_on_or_after.as_str()), ("Recipient", p.recipient.as_str())];
    if let Some(irt) = non_empty(&p.in_response_to) {
        scd.push(("InResponseTo", irt));
    }
    w.empty("saml:SubjectConfirmationData", &[], &scd)?;
    w.end("saml:SubjectConfirmation");
    w.end("saml:Subject");

    // SAML core 2.5.
    w.start("saml:Conditions", &[], &[("NotBefore", &not_before), ("NotOnOrAfter", &not_on_or_after)])?;
    w.start("saml:AudienceRestriction", &[], &[])?;
    w.leaf("saml:Audience", &[], &[], &p.audience)?;
    w.end("saml:AudienceRestriction");
    w.end("saml:Conditions");

    // SAML core 2.7.2; SessionIndex is what LogoutRequests name later (profiles 4.4).
    let mut authn =
        vec![("AuthnInstant", authn_instant.as_str()), ("SessionIndex", p.session_index.as_str())];
    if let Some(end) = &session_end {
        authn.push(("SessionNotOnOrAfter", end.as_str()));
    }
    w.start("saml:AuthnStatement", &[], &authn)?;
    w.start("saml:AuthnContext", &[], &[])?;
    w.leaf("saml:AuthnContextClassRef", &[], &[], &p.authn_context_class_ref)?;
    w.end("saml:AuthnContext");
    w.end("saml:AuthnStatement");

    // SAML core 2.7.3: an AttributeStatement needs at least one Attribute, so none is written if empty.
    if !p.attributes.is_empty() {
        w.start("saml:AttributeStatement", &[], &[])?;
        for attribute in &p.attributes {
            w.start(
                "saml:Attribute",
                &[],
                &[("Name", &attribute.name), ("NameFormat", &attribute.name_format)],
            )?;
            for value in &attribute.values {
                w.leaf("saml:AttributeValue", &[], &[], value)?;
            }
            w.end("saml:Attribute");
        }
        w.end("saml:AttributeStatement");
    }
    w.end("saml:Assertion");
    let assertion = w.into_string();
    if p.sign_assertion {
        insert_signature(&assertion, head_len, &p.assertion_id, key)
    } else {
        Ok(assertion)
    }
}

/// Parameters of a Response that carries only a status (an error, or a refusal such as `NoPassive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponseParams {
    pub id: String,
    pub issue_instant: Timestamp,
    pub issuer: String,
    pub destination: String,
    pub in_response_to: Option<String>,
    /// One of the top-level codes in [`status`] (`REQUESTER`, `RESPONDER`, `VERSION_MISMATCH`).
    pub top_status: String,
    /// An optional second-level code (e.g. [`status::NO_PASSIVE`]).
    pub second_status: Option<String>,
    /// Optional human-readable `StatusMessage`; it reaches the SP, so say nothing internal.
    pub message: Option<String>,
}

/// A signed `<samlp:Response>` with a non-success Status and no Assertion (SAML core 3.2.2).
pub fn build_error_response(p: &ErrorResponseParams, key: &SigningKey) -> Result<String, SamlError> {
    for (field, value) in [("id", &p.id), ("issuer", &p.issuer), ("destination", &p.destination)] {
        if value.is_empty() {
            return Err(SamlError::Empty(field));
        }
    }
    let instant = saml_time(p.issue_instant);
    let mut w = XmlWriter::new();
    let mut attrs = vec![
        ("Destination", p.destination.as_str()),
        ("ID", p.id.as_str()),
        ("IssueInstant", instant.as_str()),
        ("Version", "2.0"),
    ];
    if let Some(irt) = non_empty(&p.in_response_to) {
        attrs.push(("InResponseTo", irt));
    }
    w.start("samlp:Response", &[("samlp", NS_PROTOCOL)], &attrs)?;
    w.leaf("saml:Issuer", &[("saml", NS_ASSERTION)], &[], &p.issuer)?;
    let head_len = w.as_str().len();
    write_status(&mut w, &p.top_status, p.second_status.as_deref(), p.message.as_deref())?;
    w.end("samlp:Response");
    insert_signature(w.as_str(), head_len, &p.id, key)
}

/// `<samlp:Status>` with an optional nested second-level code and message (SAML core 3.2.2.1).
pub(crate) fn write_status(
    w: &mut XmlWriter,
    top: &str,
    second: Option<&str>,
    message: Option<&str>,
) -> Result<(), SamlError> {
    w.start("samlp:Status", &[], &[])?;
    w.start("samlp:StatusCode", &[], &[("Value", top)])?;
    if let Some(second) = second {
        w.empty("samlp:StatusCode", &[], &[("Value", second)])?;
    }
    w.end("samlp:StatusCode");
    if let Some(message) = message {
        w.leaf("samlp:StatusMessage", &[], &[], message)?;
    }
    w.end("samlp:Status");
    Ok(())
}

/// Signs the canonical element `element` (written without a Signature) and returns it with the
/// `ds:Signature` inserted at byte offset `at` (right after its Issuer). The digest is over `element`
/// as is: the enveloped-signature transform removes exactly what is inserted.
pub(crate) fn insert_signature(
    element: &str,
    at: usize,
    id: &str,
    key: &SigningKey,
) -> Result<String, SamlError> {
    let (head, tail) = match (element.get(..at), element.get(at..)) {
        (Some(head), Some(tail)) => (head, tail),
        _ => return Err(SamlError::Signing),
    };
    let digest = STANDARD.encode(Sha256::digest(element.as_bytes()));
    let signed_info = signed_info(id, &digest)?;
    // XMLDSig §4.4.3 / exc-c14n: canonicalized on its own, SignedInfo renders the `ds` declaration it
    // inherits from ds:Signature, so that is what is signed; the document copy omits it.
    let to_sign =
        signed_info.replacen("<ds:SignedInfo>", &format!("<ds:SignedInfo xmlns:ds=\"{NS_DSIG}\">"), 1);
    let signature_value = STANDARD.encode(key.sign_rsa_sha256(to_sign.as_bytes())?);

    let mut w = XmlWriter::new();
    w.raw(head);
    w.start("ds:Signature", &[("ds", NS_DSIG)], &[])?;
    w.raw(&signed_info);
    w.leaf("ds:SignatureValue", &[], &[], &signature_value)?;
    w.start("ds:KeyInfo", &[], &[])?;
    w.start("ds:X509Data", &[], &[])?;
    w.leaf("ds:X509Certificate", &[], &[], &key.cert_base64())?;
    w.end("ds:X509Data");
    w.end("ds:KeyInfo");
    w.end("ds:Signature");
    w.raw(tail);
    Ok(w.into_string())
}

/// The fixed SignedInfo template (XMLDSig §4.4): exc-c14n, rsa-sha256, one Reference to `#id` with
/// enveloped-signature + exc-c14n transforms and a SHA-256 digest.
fn signed_info(id: &str, digest_b64: &str) -> Result<String, SamlError> {
    let uri = format!("#{id}");
    let mut w = XmlWriter::new();
    w.start("ds:SignedInfo", &[], &[])?;
    w.empty("ds:CanonicalizationMethod", &[], &[("Algorithm", ALG_EXC_C14N)])?;
    w.empty("ds:SignatureMethod", &[], &[("Algorithm", ALG_RSA_SHA256)])?;
    w.start("ds:Reference", &[], &[("URI", &uri)])?;
    w.start("ds:Transforms", &[], &[])?;
    w.empty("ds:Transform", &[], &[("Algorithm", ALG_ENVELOPED)])?;
    w.empty("ds:Transform", &[], &[("Algorithm", ALG_EXC_C14N)])?;
    w.end("ds:Transforms");
    w.empty("ds:DigestMethod", &[], &[("Algorithm", ALG_SHA256)])?;
    w.leaf("ds:DigestValue", &[], &[], digest_b64)?;
    w.end("ds:Reference");
    w.end("ds:SignedInfo");
    Ok(w.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::interop_tests::fixture;
    use crate::signing_keys::material::tests::test_key;

    #[test]
    fn idp_initiated_omits_in_response_to_and_empty_is_treated_as_none() {
        let key = test_key();
        for irt in [None, Some(String::new())] {
            let p = ResponseParams { in_response_to: irt, ..fixture() };
            let xml = build_response(&p, &key).unwrap();
            assert!(!xml.contains("InResponseTo"), "{xml}");
        }
        let xml = build_response(&fixture(), &key).unwrap();
        assert_eq!(
            xml.matches("InResponseTo=\"_req-42\"").count(),
            2,
            "Response and SubjectConfirmationData"
        );
    }

    #[test]
    fn one_assertion_signatures_after_issuers_and_authn_statement_present() {
        let key = test_key();
        let xml = build_response(&fixture(), &key).unwrap();
        assert!(!xml.starts_with("<?xml"));
        assert_eq!(xml.matches("<saml:Assertion ").count(), 1);
        assert_eq!(xml.matches("<ds:Signature ").count(), 2);
        assert!(xml.contains("</saml:Issuer><ds:Signature xmlns:ds="));
        assert!(xml.contains("SessionIndex=\"_sess-7\""));
        assert!(xml.contains("<saml:AttributeValue>R&amp;D &lt;core&gt;</saml:AttributeValue>"));
        assert!(xml.contains("<saml:AttributeValue>\"quoted\"\ttab</saml:AttributeValue>"));
        assert!(!xml.contains("/>"), "never self-closing");

        let only_response =
            build_response(&ResponseParams { sign_assertion: false, ..fixture() }, &key).unwrap();
        assert_eq!(only_response.matches("<ds:Signature ").count(), 1);
        assert!(only_response.starts_with("<samlp:Response"));
        let no_attributes =
            build_response(&ResponseParams { attributes: vec![], ..fixture() }, &key).unwrap();
        assert!(!no_attributes.contains("AttributeStatement"));
    }

    #[test]
    fn refuses_unsigned_and_invalid_characters() {
        let key = test_key();
        let unsigned = ResponseParams { sign_assertion: false, sign_response: false, ..fixture() };
        assert_eq!(build_response(&unsigned, &key), Err(SamlError::NothingSigned));
        let bad = ResponseParams { name_id: "a\u{1}".into(), ..fixture() };
        assert_eq!(
            build_response(&bad, &key),
            Err(SamlError::InvalidXmlChar { field: "saml:NameID", codepoint: 1 })
        );
        let empty = ResponseParams { assertion_id: String::new(), ..fixture() };
        assert_eq!(build_response(&empty, &key), Err(SamlError::Empty("assertion_id")));
    }
}
