//! Outbound Single Logout messages and the two browser bindings that carry IdP messages.
//!
//! LogoutRequest / LogoutResponse (SAML core 3.7) are written by the canonical writer. On the
//! HTTP-Redirect binding (SAML bindings 3.4.4) the XML itself is unsigned: the signature covers the
//! query string `SAMLRequest=…&RelayState=…&SigAlg=…` exactly as it appears in the URL. For the
//! HTTP-POST binding (bindings 3.5) a message is signed enveloped with [`sign_for_post`] and its form
//! value is [`post_binding_value`]; the HTTP layer writes the auto-submitting page that carries it.

use super::response::{insert_signature, status, write_status};
use super::xml::XmlWriter;
use super::{ALG_RSA_SHA256, MessageParam, NS_ASSERTION, NS_PROTOCOL, SamlError, SigningKey, saml_time};
use crate::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::Write;

/// A `<samlp:LogoutRequest>` to a session participant (SAML core 3.7.1), unsigned.
pub fn build_logout_request(
    id: &str,
    issue_instant: Timestamp,
    issuer: &str,
    destination: &str,
    name_id: &str,
    name_id_format: &str,
    session_index: Option<&str>,
) -> Result<String, SamlError> {
    for (field, value) in [("id", id), ("issuer", issuer), ("destination", destination)] {
        if value.is_empty() {
            return Err(SamlError::Empty(field));
        }
    }
    let instant = saml_time(issue_instant);
    let mut w = XmlWriter::new();
    w.start(
        "samlp:LogoutRequest",
        &[("samlp", NS_PROTOCOL)],
        &[("Destination", destination), ("ID", id), ("IssueInstant", &instant), ("Version", "2.0")],
    )?;
    // Siblings, so each declares `saml` where exc-c14n would render it.
    w.leaf("saml:Issuer", &[("saml", NS_ASSERTION)], &[], issuer)?;
    w.leaf("saml:NameID", &[("saml", NS_ASSERTION)], &[("Format", name_id_format)], name_id)?;
    if let Some(session_index) = session_index {
        w.leaf("samlp:SessionIndex", &[], &[], session_index)?;
    }
    w.end("samlp:LogoutRequest");
    Ok(w.into_string())
}

/// How a logout went, as a LogoutResponse tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutOutcome {
    Success,
    /// Not every session participant could be logged out. `PartialLogout` is a second-level code
    /// (SAML core 3.2.2.2), so it goes inside `Responder`: a top-level code of its own is malformed,
    /// and SP libraries refuse it (pysaml2 raises a generic status error, node-saml "Bad status
    /// code") instead of reporting a partial logout.
    Partial,
}

/// A `<samlp:LogoutResponse>` answering a LogoutRequest (SAML core 3.7.2), unsigned.
pub fn build_logout_response(
    id: &str,
    issue_instant: Timestamp,
    issuer: &str,
    destination: &str,
    in_response_to: &str,
    outcome: LogoutOutcome,
) -> Result<String, SamlError> {
    for (field, value) in [("id", id), ("issuer", issuer), ("destination", destination)] {
        if value.is_empty() {
            return Err(SamlError::Empty(field));
        }
    }
    let instant = saml_time(issue_instant);
    let mut attrs =
        vec![("Destination", destination), ("ID", id), ("IssueInstant", &instant), ("Version", "2.0")];
    if !in_response_to.is_empty() {
        attrs.push(("InResponseTo", in_response_to));
    }
    let mut w = XmlWriter::new();
    w.start("samlp:LogoutResponse", &[("samlp", NS_PROTOCOL)], &attrs)?;
    w.leaf("saml:Issuer", &[("saml", NS_ASSERTION)], &[], issuer)?;
    let (top, second) = match outcome {
        LogoutOutcome::Success => (status::SUCCESS, None),
        LogoutOutcome::Partial => (status::RESPONDER, Some(status::PARTIAL_LOGOUT)),
    };
    write_status(&mut w, top, second, None)?;
    w.end("samlp:LogoutResponse");
    Ok(w.into_string())
}

/// Signs a message built by this module (or [`super::response`]) for the HTTP-POST binding: the
/// `ds:Signature` goes right after the first `</saml:Issuer>` (schema order). Only for XML written by
/// the canonical writer, where escaped user data cannot contain that end tag.
pub fn sign_for_post(xml: &str, id: &str, key: &SigningKey) -> Result<String, SamlError> {
    const ISSUER_END: &str = "</saml:Issuer>";
    let at = xml.find(ISSUER_END).map(|i| i + ISSUER_END.len()).ok_or(SamlError::Empty("saml:Issuer"))?;
    insert_signature(xml, at, id, key)
}

/// The HTTP-Redirect binding URL for `xml` (SAML bindings 3.4.4): raw DEFLATE, base64, URL-encoding,
/// then `SigAlg` (rsa-sha256) and `Signature` over `SAMLRequest=…&RelayState=…&SigAlg=…` as written. An
/// `endpoint` that already has a query gets the parameters appended with `&`.
pub fn redirect_binding_url(
    endpoint: &str,
    param: MessageParam,
    xml: &str,
    relay_state: Option<&str>,
    key: &SigningKey,
) -> Result<String, SamlError> {
    if relay_state.is_some_and(|r| r.len() > super::inbound::MAX_RELAY_STATE) {
        return Err(SamlError::RelayStateTooLong);
    }
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(xml.as_bytes()).map_err(|_| SamlError::Compression)?;
    let deflated = encoder.finish().map_err(|_| SamlError::Compression)?;

    let mut query = format!("{}={}", param.name(), url_encode(&STANDARD.encode(deflated)));
    if let Some(relay_state) = relay_state {
        query.push_str("&RelayState=");
        query.push_str(&url_encode(relay_state));
    }
    query.push_str("&SigAlg=");
    query.push_str(&url_encode(ALG_RSA_SHA256));
    let signature = key.sign_rsa_sha256(query.as_bytes())?;
    query.push_str("&Signature=");
    query.push_str(&url_encode(&STANDARD.encode(signature)));

    let separator = match endpoint.find('?') {
        None => "?",
        Some(_) if endpoint.ends_with('?') || endpoint.ends_with('&') => "",
        Some(_) => "&",
    };
    Ok(format!("{endpoint}{separator}{query}"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so the signed string is unambiguous.
fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The HTTP-POST binding form value: base64 of the XML, no DEFLATE (SAML bindings 3.5.4).
pub fn post_binding_value(xml: &str) -> String {
    STANDARD.encode(xml.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::inbound::{
        InboundLimits, SamlMessage, decode_post, decode_redirect, verify_enveloped_signature,
        verify_redirect_signature,
    };
    use crate::saml::interop_tests::snapshot;
    use crate::signing_keys::material::tests::test_key;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn request() -> String {
        build_logout_request(
            "_lo1",
            NOW,
            "https://idp.example.test",
            "https://sp.example.test/slo",
            "alice@example.test",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            Some("_sess-7"),
        )
        .unwrap()
    }

    #[test]
    fn golden_logout_messages() {
        snapshot("logout-request.golden.xml", &request());
        let response = build_logout_response(
            "_lr1",
            NOW,
            "https://idp.example.test",
            "https://sp.example.test/slo",
            "_their-req",
            LogoutOutcome::Success,
        )
        .unwrap();
        snapshot("logout-response.golden.xml", &response);
        let partial = build_logout_response(
            "_lr1",
            NOW,
            "https://idp.example.test",
            "https://sp.example.test/slo",
            "_their-req",
            LogoutOutcome::Partial,
        )
        .unwrap();
        let nested = format!(
            "<samlp:Status><samlp:StatusCode Value=\"{}\"><samlp:StatusCode Value=\"{}\"></samlp:StatusCode></samlp:StatusCode></samlp:Status>",
            status::RESPONDER,
            status::PARTIAL_LOGOUT
        );
        assert!(partial.contains(&nested), "PartialLogout is a second-level code: {partial}");
        let m = decode_post(&STANDARD.encode(&partial), &InboundLimits::default()).unwrap();
        let SamlMessage::LogoutResponse(r) = m.message else { panic!() };
        assert_eq!(
            (r.status_code.as_str(), r.sub_status_code.as_deref()),
            (status::RESPONDER, Some(status::PARTIAL_LOGOUT))
        );
    }

    #[test]
    fn redirect_url_round_trips_through_the_decoder_and_verifies() {
        let key = test_key();
        let limits = InboundLimits::default();
        for endpoint in
            ["https://sp.example.test/slo", "https://sp.example.test/slo?tenant=a b", "https://x.test/?"]
        {
            let url =
                redirect_binding_url(endpoint, MessageParam::SamlRequest, &request(), Some("r&s=t ü"), &key)
                    .unwrap();
            let query = url.strip_prefix(endpoint).unwrap().trim_start_matches(['?', '&']);
            assert!(url.starts_with(endpoint));
            let m = decode_redirect(query, &limits).unwrap();
            assert_eq!(m.relay_state.as_deref(), Some("r&s=t ü"));
            assert_eq!(m.decoded.xml, request());
            let SamlMessage::LogoutRequest(r) = &m.decoded.message else { panic!() };
            assert_eq!(r.session_indexes, vec!["_sess-7"]);
            assert_eq!(verify_redirect_signature(&m.signature.unwrap(), key.cert_der()), Ok(()));
        }
        let response = build_logout_response(
            "_lr1",
            NOW,
            "https://idp.example.test",
            "https://sp.example.test/slo",
            "",
            LogoutOutcome::Success,
        )
        .unwrap();
        assert!(!response.contains("InResponseTo"));
        let url =
            redirect_binding_url("https://sp.test/slo", MessageParam::SamlResponse, &response, None, &key)
                .unwrap();
        let m = decode_redirect(url.split_once('?').unwrap().1, &limits).unwrap();
        assert_eq!(m.param, MessageParam::SamlResponse);
        assert!(url.contains("SAMLResponse=") && !url.contains("RelayState"));
        assert_eq!(verify_redirect_signature(&m.signature.unwrap(), key.cert_der()), Ok(()));
    }

    #[test]
    fn relay_state_over_80_bytes_is_refused() {
        let key = test_key();
        let long = "x".repeat(81);
        assert_eq!(
            redirect_binding_url("https://sp.test", MessageParam::SamlRequest, &request(), Some(&long), &key),
            Err(SamlError::RelayStateTooLong)
        );
    }

    #[test]
    fn post_signed_logout_request_verifies_with_the_narrow_verifier() {
        let key = test_key();
        let signed = sign_for_post(&request(), "_lo1", &key).unwrap();
        assert!(signed.contains("</saml:Issuer><ds:Signature "));
        let decoded = decode_post(&post_binding_value(&signed), &InboundLimits::default()).unwrap();
        assert!(decoded.has_enveloped_signature);
        assert_eq!(decoded.verify_enveloped_signature(key.cert_der()), Ok(()));
        assert_eq!(verify_enveloped_signature(&signed, key.cert_der(), &InboundLimits::default()), Ok(()));
    }
}
