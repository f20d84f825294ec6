//! SAML 2.0 identity-provider messages as pure data: what Latchkey writes, signs and accepts.
//!
//! This module owns the wire format only. Outbound XML is written canonical by construction and signed over
//! the exact bytes written (never re-parsed, never re-serialized; docs/architecture.md, "SAML output").
//! Inbound messages from service providers are untrusted: size caps come before decoding, inflation is
//! capped, DTDs, comments and processing instructions are refused, and signatures are checked with keys from
//! SP configuration only (docs/architecture.md, "SAML input"). Deciding *whether* a request is acceptable
//! (registered ACS, replay cache, issue-instant window) belongs to the use cases that call this module.

pub mod grant;
pub mod inbound;
pub mod logout;
pub mod metadata;
pub mod response;
pub mod test_sp;
pub mod xml;

mod c14n;
#[cfg(test)]
mod interop_tests;

pub use crate::signing_keys::{GeneratedKey, SigningKey};

use crate::Timestamp;

/// SAML 2.0 protocol namespace (`samlp:`). SAML core 3.
pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// SAML 2.0 assertion namespace (`saml:`). SAML core 2.
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML 2.0 metadata namespace (`md:`). SAML metadata 2.
pub const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// XML Signature namespace (`ds:`). XMLDSig core 4.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// HTTP-Redirect binding URI. SAML bindings 3.4.
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// HTTP-POST binding URI. SAML bindings 3.5.
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// The only signature algorithm Latchkey emits (RFC 6931 §2.3.2; SHA-1 is neither written nor
/// accepted, and SP libraries such as python3-saml refuse it by default).
pub const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// Accepted on input (HTTP-Redirect SigAlg) next to rsa-sha256.
pub const ALG_RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
/// Digest algorithm for References. XMLEnc 5.7.2.
pub const ALG_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// Exclusive XML canonicalization without comments.
pub const ALG_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// Enveloped-signature transform. XMLDSig core 6.6.4.
pub const ALG_ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Which query parameter or form field carries a message (SAML bindings 3.4.4, 3.5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageParam {
    /// `SAMLRequest`: AuthnRequest, LogoutRequest.
    SamlRequest,
    /// `SAMLResponse`: Response, LogoutResponse.
    SamlResponse,
}

impl MessageParam {
    pub fn name(self) -> &'static str {
        match self {
            MessageParam::SamlRequest => "SAMLRequest",
            MessageParam::SamlResponse => "SAMLResponse",
        }
    }
}

/// Errors while building or signing outbound SAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamlError {
    /// User or configuration data holds a character XML 1.0 cannot carry (XML 1.0 §2.2 `Char`).
    #[error("{field}: character U+{codepoint:04X} is not allowed in XML 1.0")]
    InvalidXmlChar { field: &'static str, codepoint: u32 },
    /// The signing key could not be used.
    #[error(transparent)]
    Key(#[from] crate::signing_keys::KeyMaterialError),
    /// The element to sign could not be split where its signature goes.
    #[error("the element cannot carry a signature there")]
    Signing,
    /// A Response where neither the Response nor the Assertion is signed would be accepted by no SP.
    #[error("at least one of the Response and the Assertion must be signed")]
    NothingSigned,
    /// RelayState is limited to 80 bytes. SAML bindings 3.4.3, 3.5.3.
    #[error("RelayState longer than 80 bytes")]
    RelayStateTooLong,
    /// A value that must not be empty (an id, an issuer) was empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Raw DEFLATE of an outbound message failed.
    #[error("compression failed")]
    Compression,
}

/// A fresh SAML ID (see [`crate::ids::new_xml_id`]): 160 bits make collisions, which
/// Shibboleth's replay cache would reject, practically impossible.
pub fn new_saml_id() -> String {
    crate::ids::new_xml_id()
}

/// SAML's `xs:dateTime` rendering: `YYYY-MM-DDThh:mm:ssZ`, UTC, fractions dropped (SAML core
/// 1.3.3). Sub-second precision is truncated, never rounded up.
pub fn saml_time(t: Timestamp) -> String {
    let seconds = t.millis().div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        // Out of the calendar range: only reachable with a corrupt stored value.
        Err(_) => "1970-01-01T00:00:00Z".to_owned(),
    }
}

/// Parses an inbound `xs:dateTime`. SAML core 1.3.3 wants UTC; a value without a zone is read as UTC.
pub fn parse_saml_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    let has_zone = text.ends_with('Z') || text.ends_with('z') || {
        // A trailing `+hh:mm` or `-hh:mm` offset after the time part.
        let bytes = text.as_bytes();
        bytes.len() > 6 && matches!(bytes[bytes.len() - 6], b'+' | b'-') && bytes[bytes.len() - 3] == b':'
    };
    if has_zone { Timestamp::parse_iso(text) } else { Timestamp::parse_iso(&format!("{text}Z")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ncnames_with_160_bits() {
        let id = new_saml_id();
        assert_eq!(id.len(), 41);
        assert!(id.starts_with('_'));
        assert!(id[1..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_saml_id());
    }

    #[test]
    fn times_have_no_fraction() {
        assert_eq!(saml_time(Timestamp(1_446_545_757_999)), "2015-11-03T10:15:57Z");
        assert_eq!(parse_saml_time("2015-11-03T10:15:57Z"), Some(Timestamp(1_446_545_757_000)));
        assert_eq!(parse_saml_time("2015-11-03T10:15:57.5"), Some(Timestamp(1_446_545_757_500)));
        assert_eq!(parse_saml_time("2015-11-03T12:15:57+02:00"), Some(Timestamp(1_446_545_757_000)));
        assert_eq!(parse_saml_time("soon"), None);
    }
}
