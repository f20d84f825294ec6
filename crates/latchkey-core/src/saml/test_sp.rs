//! The built-in test service provider's side of SSO: build an AuthnRequest for the HTTP-Redirect
//! binding, and read a Response the way a strict SP does (signature by the IdP's published
//! certificate, Destination, Issuer, Audience, Recipient, validity window, InResponseTo).
//!
//! It exists for the demo (`serve --demo`) and for operators checking an installation; real SPs
//! use their own libraries. The signature check is the narrow enveloped-signature verifier of
//! [`super::inbound`], applied to the Assertion (Latchkey always signs it); every field is then
//! read from the same text by the same parser.

use std::io::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use roxmltree::{Document, Node, ParsingOptions};

use super::inbound::{InboundLimits, verify_enveloped_signature};
use super::{NS_ASSERTION, NS_PROTOCOL, new_saml_id, parse_saml_time, saml_time};
use crate::Timestamp;

/// What the SP expects of a Response.
pub struct Expectations<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The IdP's signing certificates (DER), from its metadata.
    pub idp_certificates: &'a [Vec<u8>],
    pub now: Timestamp,
    /// Clock skew tolerated on validity windows, in seconds.
    pub skew_seconds: i64,
}

/// Who arrived, as the SP read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub in_response_to: Option<String>,
    pub attributes: Vec<(String, Vec<String>)>,
    /// The Assertion's `ID` and when it stops being valid: an SP keeps the ids it accepted until
    /// then, to refuse the same Assertion posted again (SAML Profiles §4.1.4.5).
    pub assertion_id: String,
    pub valid_until: Timestamp,
}

/// An AuthnRequest for the HTTP-Redirect binding (unsigned), and its ID.
pub fn authn_request_url(
    sso_url: &str,
    sp_entity_id: &str,
    acs_url: &str,
    now: Timestamp,
) -> Result<(String, String), String> {
    let id = new_saml_id();
    let mut xml = String::new();
    xml.push_str("<samlp:AuthnRequest xmlns:samlp=\"");
    xml.push_str(NS_PROTOCOL);
    xml.push_str("\" xmlns:saml=\"");
    xml.push_str(NS_ASSERTION);
    xml.push_str("\" AssertionConsumerServiceURL=\"");
    super::xml::escape_attr(&mut xml, acs_url);
    xml.push_str("\" Destination=\"");
    super::xml::escape_attr(&mut xml, sso_url);
    xml.push_str("\" ID=\"");
    xml.push_str(&id);
    xml.push_str("\" IssueInstant=\"");
    xml.push_str(&saml_time(now));
    xml.push_str(
        "\" ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Version=\"2.0\"><saml:Issuer>",
    );
    super::xml::escape_text(&mut xml, sp_entity_id);
    xml.push_str("</saml:Issuer></samlp:AuthnRequest>");
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(xml.as_bytes()).map_err(|e| e.to_string())?;
    let deflated = encoder.finish().map_err(|e| e.to_string())?;
    let encoded: String = url_encode(&STANDARD.encode(deflated));
    let separator = if sso_url.contains('?') { '&' } else { '?' };
    Ok((format!("{sso_url}{separator}SAMLRequest={encoded}"), id))
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == name)
}

fn require<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Result<Node<'a, 'i>, String> {
    child(node, ns, name).ok_or_else(|| format!("missing {name}"))
}

fn text(node: Node<'_, '_>) -> String {
    node.text().unwrap_or_default().to_owned()
}

fn time_attr(node: Node<'_, '_>, name: &str) -> Result<Option<Timestamp>, String> {
    match node.attribute(name) {
        None => Ok(None),
        Some(v) => parse_saml_time(v).map(Some).ok_or_else(|| format!("{name} is not a SAML time")),
    }
}

/// Reads a base64 `SAMLResponse` form value as a strict SP would.
pub fn read_response(b64: &str, expect: &Expectations<'_>) -> Result<Arrival, String> {
    let limits = InboundLimits::default();
    if b64.len() > limits.max_post_bytes {
        return Err("the SAMLResponse is too large".to_owned());
    }
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = STANDARD.decode(compact).map_err(|_| "the SAMLResponse is not base64".to_owned())?;
    let xml = String::from_utf8(bytes).map_err(|_| "the SAMLResponse is not UTF-8".to_owned())?;
    let options =
        ParsingOptions { allow_dtd: false, nodes_limit: limits.max_nodes, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(&xml, options).map_err(|e| format!("malformed XML: {e}"))?;
    let response = doc.root_element();
    if response.tag_name().namespace() != Some(NS_PROTOCOL) || response.tag_name().name() != "Response" {
        return Err("the document is not a SAML Response".to_owned());
    }
    let assertions: Vec<Node> = response
        .children()
        .filter(|n| {
            n.is_element()
                && n.tag_name().namespace() == Some(NS_ASSERTION)
                && n.tag_name().name() == "Assertion"
        })
        .collect();
    let [assertion] = assertions.as_slice() else {
        return Err("the Response must carry exactly one Assertion".to_owned());
    };
    // The Assertion's signature before anything is read from it, as SPs that want signed
    // assertions check it: over the exact bytes of the one Assertion that is then read (a signed
    // Assertion declares the namespaces it uses, so it stands alone as a document).
    let signed = &xml[assertion.range()];
    let verified =
        expect.idp_certificates.iter().any(|cert| verify_enveloped_signature(signed, cert, &limits).is_ok());
    if !verified {
        return Err("the Assertion is not signed by the IdP's certificate".to_owned());
    }
    if response.attribute("Destination") != Some(expect.acs_url) {
        return Err("the Destination is not this ACS".to_owned());
    }
    if text(require(response, NS_ASSERTION, "Issuer")?) != expect.idp_entity_id {
        return Err("the Response Issuer is not the IdP".to_owned());
    }
    let status = require(require(response, NS_PROTOCOL, "Status")?, NS_PROTOCOL, "StatusCode")?;
    if status.attribute("Value") != Some("urn:oasis:names:tc:SAML:2.0:status:Success") {
        return Err(format!("the IdP answered {}", status.attribute("Value").unwrap_or("no status")));
    }
    if text(require(*assertion, NS_ASSERTION, "Issuer")?) != expect.idp_entity_id {
        return Err("the Assertion Issuer is not the IdP".to_owned());
    }
    let subject = require(*assertion, NS_ASSERTION, "Subject")?;
    let name_id = require(subject, NS_ASSERTION, "NameID")?;
    let confirmation = require(subject, NS_ASSERTION, "SubjectConfirmation")?;
    let data = require(confirmation, NS_ASSERTION, "SubjectConfirmationData")?;
    if data.attribute("Recipient") != Some(expect.acs_url) {
        return Err("the Recipient is not this ACS".to_owned());
    }
    let skew = expect.skew_seconds;
    let now = expect.now;
    if time_attr(data, "NotOnOrAfter")?.is_none_or(|t| now.plus_seconds(-skew) >= t) {
        return Err("the subject confirmation has expired".to_owned());
    }
    let conditions = require(*assertion, NS_ASSERTION, "Conditions")?;
    let not_on_or_after = time_attr(conditions, "NotOnOrAfter")?;
    if time_attr(conditions, "NotBefore")?.is_some_and(|t| now.plus_seconds(skew) < t)
        || not_on_or_after.is_none_or(|t| now.plus_seconds(-skew) >= t)
    {
        return Err("the Assertion is not valid now".to_owned());
    }
    let assertion_id = assertion.attribute("ID").ok_or("the Assertion has no ID")?.to_owned();
    let valid_until = not_on_or_after.unwrap_or(now).plus_seconds(skew);
    let audience =
        require(require(conditions, NS_ASSERTION, "AudienceRestriction")?, NS_ASSERTION, "Audience")?;
    if text(audience) != expect.sp_entity_id {
        return Err("the Audience is not this SP".to_owned());
    }
    let in_response_to = response.attribute("InResponseTo").map(str::to_owned);
    if data.attribute("InResponseTo").map(str::to_owned) != in_response_to {
        return Err("InResponseTo differs between the Response and the subject confirmation".to_owned());
    }
    let session_index = child(*assertion, NS_ASSERTION, "AuthnStatement")
        .and_then(|s| s.attribute("SessionIndex"))
        .map(str::to_owned);
    let mut attributes = Vec::new();
    if let Some(statement) = child(*assertion, NS_ASSERTION, "AttributeStatement") {
        for attribute in statement.children().filter(|n| n.is_element() && n.tag_name().name() == "Attribute")
        {
            let values = attribute
                .children()
                .filter(|n| n.is_element() && n.tag_name().name() == "AttributeValue")
                .map(text)
                .collect();
            attributes.push((attribute.attribute("Name").unwrap_or_default().to_owned(), values));
        }
    }
    Ok(Arrival {
        name_id: text(name_id),
        name_id_format: name_id.attribute("Format").map(str::to_owned),
        session_index,
        in_response_to,
        attributes,
        assertion_id,
        valid_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::SigningKey;
    use crate::saml::response::{Attribute, ResponseParams, build_response};

    fn params(sign_response: bool) -> ResponseParams {
        ResponseParams {
            response_id: new_saml_id(),
            assertion_id: new_saml_id(),
            issue_instant: Timestamp(1_800_000_000_000),
            issuer: "https://idp.example".into(),
            destination: "https://sp.example/acs".into(),
            recipient: "https://sp.example/acs".into(),
            audience: "https://sp.example".into(),
            in_response_to: Some("_req".into()),
            name_id: "ada@example.com".into(),
            name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into(),
            session_index: "_s1".into(),
            authn_instant: Timestamp(1_800_000_000_000),
            session_not_on_or_after: None,
            not_before: Timestamp(1_799_999_940_000),
            not_on_or_after: Timestamp(1_800_000_300_000),
            authn_context_class_ref: "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
                .into(),
            attributes: vec![Attribute {
                name: "email".into(),
                name_format: "urn:oasis:names:tc:SAML:2.0:attrname-format:basic".into(),
                values: vec!["ada@example.com".into()],
            }],
            sign_response,
            sign_assertion: true,
        }
    }

    #[test]
    fn reads_a_signed_response_and_refuses_what_a_strict_sp_refuses() {
        let (key, _) = SigningKey::generate("idp", 30).unwrap();
        let (other, _) = SigningKey::generate("other", 30).unwrap();
        let certs = vec![key.cert_der().to_vec()];
        let expect = |now: i64| Expectations {
            idp_entity_id: "https://idp.example",
            sp_entity_id: "https://sp.example",
            acs_url: "https://sp.example/acs",
            idp_certificates: &certs,
            now: Timestamp(now),
            skew_seconds: 5,
        };
        let good = STANDARD.encode(build_response(&params(true), &key).unwrap());
        let arrival = read_response(&good, &expect(1_800_000_001_000)).unwrap();
        assert_eq!(arrival.name_id, "ada@example.com");
        assert_eq!(arrival.in_response_to.as_deref(), Some("_req"));
        assert_eq!(arrival.attributes, vec![("email".to_owned(), vec!["ada@example.com".to_owned()])]);
        assert!(read_response(&good, &expect(1_800_000_400_000)).is_err(), "expired");
        let by_other = STANDARD.encode(build_response(&params(true), &other).unwrap());
        assert!(read_response(&by_other, &expect(1_800_000_001_000)).is_err(), "wrong key");
        let tampered = STANDARD.encode(
            build_response(&params(true), &key)
                .unwrap()
                .replace("ada@example.com</saml:NameID>", "eve@example.com</saml:NameID>"),
        );
        assert!(read_response(&tampered, &expect(1_800_000_001_000)).is_err(), "tampered");
        let mut wrong_audience = params(true);
        wrong_audience.audience = "https://elsewhere".into();
        let wrong = STANDARD.encode(build_response(&wrong_audience, &key).unwrap());
        assert!(read_response(&wrong, &expect(1_800_000_001_000)).is_err(), "audience");
        assert!(read_response("%%%", &expect(1_800_000_001_000)).is_err());
        let assertion_only = STANDARD.encode(build_response(&params(false), &key).unwrap());
        assert!(
            read_response(&assertion_only, &expect(1_800_000_001_000)).is_ok(),
            "the Assertion's signature is enough"
        );
        let response_only = ResponseParams { sign_assertion: false, ..params(true) };
        let response_only = STANDARD.encode(build_response(&response_only, &key).unwrap());
        let refused = read_response(&response_only, &expect(1_800_000_001_000)).unwrap_err();
        assert!(refused.contains("Assertion is not signed"), "{refused}");
    }

    #[test]
    fn authn_request_url_carries_a_deflated_request() {
        let (url, id) = authn_request_url(
            "https://idp.example/sso",
            "https://sp.example",
            "https://sp.example/acs",
            Timestamp(0),
        )
        .unwrap();
        let query = url.split_once('?').unwrap().1;
        let decoded = super::super::inbound::decode_redirect(query, &InboundLimits::default()).unwrap();
        assert_eq!(decoded.decoded.message.id(), id);
        assert_eq!(decoded.decoded.message.issuer(), "https://sp.example");
    }
}
