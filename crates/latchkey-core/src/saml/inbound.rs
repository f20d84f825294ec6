//! Decoding untrusted messages from service providers: AuthnRequest, LogoutRequest, LogoutResponse.
//!
//! Everything here treats its input as hostile (docs/architecture.md, "SAML input"). The order is fixed: size
//! caps before any decoding, base64, capped raw-DEFLATE inflate (deflate-bomb safe), then one parser
//! (roxmltree: DTDs refused, node limit) whose tree is the only source of every field and of the signature
//! check. Comments and processing instructions are refused anywhere, because they are the raw material of
//! truncation and parser-differential attacks. Every failure is an [`InboundError`]; nothing here panics.
//!
//! What this module does *not* decide: whether the issuer is a registered SP, whether the ACS URL is
//! registered, replay and freshness windows, and whether a signature is required. The caller does,
//! with the typed result.

use super::c14n;
use super::{
    ALG_ENVELOPED, ALG_EXC_C14N, ALG_RSA_SHA256, ALG_RSA_SHA512, ALG_SHA256, MessageParam, NS_ASSERTION,
    NS_DSIG, NS_PROTOCOL, parse_saml_time,
};
use crate::Timestamp;
use crate::der;
use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA512, RsaParameters, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use roxmltree::{Document, Node, NodeType, ParsingOptions};
use sha2::{Digest, Sha256};
use std::io::Read;

/// RelayState may not exceed 80 bytes (SAML bindings 3.4.3, 3.5.3).
pub const MAX_RELAY_STATE: usize = 80;

/// The longest request ID accepted. It is echoed as `InResponseTo` and stored by SPs; real IDs are
/// 20–50 bytes, and a few hundred is what SP libraries keep in their request caches.
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// Size limits applied before and during decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundLimits {
    /// Longest raw (URL-encoded) query string accepted for HTTP-Redirect.
    pub max_query_bytes: usize,
    /// Longest base64 form value accepted for HTTP-POST.
    pub max_post_bytes: usize,
    /// Largest inflated XML (HTTP-Redirect) or decoded XML (HTTP-POST).
    pub max_xml_bytes: usize,
    /// Most XML nodes the parser will build.
    pub max_nodes: u32,
}

impl Default for InboundLimits {
    /// Generous for real requests (an AuthnRequest is about 1 KiB; a signed POST one a few KiB).
    fn default() -> Self {
        Self {
            max_query_bytes: 16 * 1024,
            max_post_bytes: 128 * 1024,
            max_xml_bytes: 64 * 1024,
            max_nodes: 2048,
        }
    }
}

/// Why an inbound message was refused. The Display text is safe to log and to show: it never echoes
/// the input, except a refused signature algorithm's URI, and only when it is short printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("query string longer than {limit} bytes")]
    QueryTooLong { limit: usize },
    #[error("POST value longer than {limit} bytes")]
    PostTooLarge { limit: usize },
    #[error("parameter {0} appears more than once")]
    DuplicateParameter(&'static str),
    #[error("neither SAMLRequest nor SAMLResponse is present")]
    MissingMessage,
    #[error("both SAMLRequest and SAMLResponse are present")]
    AmbiguousMessage,
    #[error("parameter {0} is not valid URL encoding")]
    BadUrlEncoding(&'static str),
    #[error("parameter {0} is not valid base64")]
    BadBase64(&'static str),
    #[error("the message is not valid raw DEFLATE data")]
    BadDeflate,
    #[error("the message inflates past {limit} bytes")]
    InflatedTooLarge { limit: usize },
    #[error("the decoded message is larger than {limit} bytes")]
    XmlTooLarge { limit: usize },
    #[error("the message is not UTF-8")]
    NotUtf8,
    #[error("RelayState is longer than 80 bytes")]
    RelayStateTooLong,
    #[error("RelayState is not UTF-8")]
    RelayStateNotUtf8,
    #[error("Signature and SigAlg must be both present or both absent")]
    SignatureIncomplete,
    #[error("DTDs are not accepted")]
    DtdRefused,
    #[error("the message has more than {limit} XML nodes")]
    TooManyNodes { limit: u32 },
    #[error("malformed XML: {0}")]
    MalformedXml(String),
    #[error("comments and processing instructions are not accepted")]
    CommentOrProcessingInstruction,
    #[error("the root element is not in the SAML 2.0 protocol namespace")]
    WrongNamespace,
    #[error("unexpected root element {0}")]
    UnexpectedRoot(String),
    #[error("{param} cannot carry a {root}")]
    WrongParameter { param: &'static str, root: &'static str },
    #[error("unsupported SAML version (want 2.0)")]
    VersionMismatch,
    #[error("missing attribute {0}")]
    MissingAttribute(&'static str),
    #[error("missing element {0}")]
    MissingElement(&'static str),
    #[error("element {0} appears more than once")]
    DuplicateElement(&'static str),
    #[error("attribute {0} has an invalid value")]
    InvalidAttribute(&'static str),
    #[error(
        "the request ID is not an xs:ID (an XML name without ':') of at most {MAX_REQUEST_ID_BYTES} bytes"
    )]
    InvalidRequestId,
    #[error("a signed message must carry a Destination")]
    SignedWithoutDestination,
    #[error("encrypted identifiers are not supported")]
    EncryptedIdNotSupported,
    #[error("the signature algorithm {alg} is not accepted ({accepted} only)")]
    SigAlgRefused { alg: String, accepted: &'static str },
    #[error("the SP certificate is not a usable RSA X.509 certificate")]
    BadCertificate,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("no enveloped signature")]
    NoSignature,
    #[error("signature structure not accepted: {0}")]
    SignatureStructure(&'static str),
    #[error("the signed content does not match its digest")]
    DigestMismatch,
}

/// A SAML `AuthnRequest` (SAML core 3.4.1), as far as Web Browser SSO needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequest {
    pub id: String,
    pub issuer: String,
    pub issue_instant: Timestamp,
    pub destination: Option<String>,
    /// Must equal a registered ACS URL exactly, or be ignored/refused (saml-profiles 4.1.4.1).
    pub acs_url: Option<String>,
    pub acs_index: Option<u16>,
    pub protocol_binding: Option<String>,
    pub force_authn: bool,
    pub is_passive: bool,
    pub name_id_policy_format: Option<String>,
    pub allow_create: bool,
    /// `RequestedAuthnContext/AuthnContextClassRef` values, in order.
    pub requested_authn_context: Vec<String>,
    /// `RequestedAuthnContext/@Comparison` (`exact` when absent, SAML core 3.3.2.2.1).
    pub requested_authn_context_comparison: Option<String>,
}

/// A SAML `LogoutRequest` (SAML core 3.7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub id: String,
    pub issuer: String,
    pub issue_instant: Timestamp,
    pub destination: Option<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_indexes: Vec<String>,
    pub not_on_or_after: Option<Timestamp>,
}

/// A SAML `LogoutResponse` (SAML core 3.7.2) answering one of our LogoutRequests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    pub id: String,
    pub issuer: String,
    pub issue_instant: Timestamp,
    pub in_response_to: Option<String>,
    /// The top-level `StatusCode/@Value`.
    pub status_code: String,
    /// The nested second-level `StatusCode/@Value`, if any.
    pub sub_status_code: Option<String>,
    pub destination: Option<String>,
}

/// The messages an IdP accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamlMessage {
    AuthnRequest(AuthnRequest),
    LogoutRequest(LogoutRequest),
    LogoutResponse(LogoutResponse),
}

impl SamlMessage {
    pub fn id(&self) -> &str {
        match self {
            SamlMessage::AuthnRequest(m) => &m.id,
            SamlMessage::LogoutRequest(m) => &m.id,
            SamlMessage::LogoutResponse(m) => &m.id,
        }
    }

    pub fn issuer(&self) -> &str {
        match self {
            SamlMessage::AuthnRequest(m) => &m.issuer,
            SamlMessage::LogoutRequest(m) => &m.issuer,
            SamlMessage::LogoutResponse(m) => &m.issuer,
        }
    }
}

/// A parsed message and the XML it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedMessage {
    pub message: SamlMessage,
    /// The decoded XML text; [`DecodedMessage::verify_enveloped_signature`] re-reads it with the same
    /// parser and options, so fields and signature come from identical trees.
    pub xml: String,
    /// Whether the root carries an enveloped `ds:Signature` child (checked by the caller's policy).
    pub has_enveloped_signature: bool,
    limits: InboundLimits,
}

impl DecodedMessage {
    /// Verifies the enveloped XML signature (POST binding) with the SP certificate from configuration;
    /// see [`verify_enveloped_signature`].
    pub fn verify_enveloped_signature(&self, sp_cert_der: &[u8]) -> Result<(), InboundError> {
        verify_enveloped_signature(&self.xml, sp_cert_der, &self.limits)
    }
}

/// The HTTP-Redirect binding signature of a message (SAML bindings 3.4.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectSignature {
    /// The decoded SigAlg URI.
    pub sig_alg: String,
    /// The decoded signature bytes.
    pub signature: Vec<u8>,
    /// `SAMLRequest=…&RelayState=…&SigAlg=…` from the raw, still URL-encoded values as received.
    pub signed_content: String,
}

/// A message received with the HTTP-Redirect binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectMessage {
    pub param: MessageParam,
    pub decoded: DecodedMessage,
    /// Opaque; echo it back unchanged, never use it as a redirect target.
    pub relay_state: Option<String>,
    /// `None` when the query carries no Signature; the caller decides whether one is required.
    pub signature: Option<RedirectSignature>,
}

#[derive(Default)]
struct RawParams<'q> {
    request: Option<&'q str>,
    response: Option<&'q str>,
    relay_state: Option<&'q str>,
    sig_alg: Option<&'q str>,
    signature: Option<&'q str>,
}

fn set_once<'q>(slot: &mut Option<&'q str>, value: &'q str, name: &'static str) -> Result<(), InboundError> {
    if slot.replace(value).is_some() {
        return Err(InboundError::DuplicateParameter(name));
    }
    Ok(())
}

/// Decodes an HTTP-Redirect query string (without the leading `?`): SAML bindings 3.4.4.
pub fn decode_redirect(raw_query: &str, limits: &InboundLimits) -> Result<RedirectMessage, InboundError> {
    if raw_query.len() > limits.max_query_bytes {
        return Err(InboundError::QueryTooLong { limit: limits.max_query_bytes });
    }
    let mut raw = RawParams::default();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Repeated parameters are refused: which copy is signed and which is used would be ambiguous.
        match key {
            "SAMLRequest" => set_once(&mut raw.request, value, "SAMLRequest")?,
            "SAMLResponse" => set_once(&mut raw.response, value, "SAMLResponse")?,
            "RelayState" => set_once(&mut raw.relay_state, value, "RelayState")?,
            "SigAlg" => set_once(&mut raw.sig_alg, value, "SigAlg")?,
            "Signature" => set_once(&mut raw.signature, value, "Signature")?,
            _ => {}
        }
    }
    let (param, raw_message) = match (raw.request, raw.response) {
        (Some(v), None) => (MessageParam::SamlRequest, v),
        (None, Some(v)) => (MessageParam::SamlResponse, v),
        (Some(_), Some(_)) => return Err(InboundError::AmbiguousMessage),
        (None, None) => return Err(InboundError::MissingMessage),
    };
    let relay_state = match raw.relay_state {
        None => None,
        Some(v) => {
            let bytes = url_decode(v).ok_or(InboundError::BadUrlEncoding("RelayState"))?;
            let text = String::from_utf8(bytes).map_err(|_| InboundError::RelayStateNotUtf8)?;
            check_relay_state(&text)?;
            Some(text)
        }
    };
    let signature = match (raw.sig_alg, raw.signature) {
        (None, None) => None,
        (Some(sig_alg), Some(signature)) => {
            let sig_alg = url_decode(sig_alg)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(InboundError::BadUrlEncoding("SigAlg"))?;
            let signature = url_decode(signature).ok_or(InboundError::BadUrlEncoding("Signature"))?;
            let signature = decode_base64(&signature).ok_or(InboundError::BadBase64("Signature"))?;
            // SAML bindings 3.4.4.1: the octets signed are the parameters as they appear in the URL.
            let mut signed_content = format!("{}={raw_message}", param.name());
            if let Some(relay) = raw.relay_state {
                signed_content.push_str("&RelayState=");
                signed_content.push_str(relay);
            }
            signed_content.push_str("&SigAlg=");
            signed_content.push_str(raw.sig_alg.unwrap_or_default());
            Some(RedirectSignature { sig_alg, signature, signed_content })
        }
        _ => return Err(InboundError::SignatureIncomplete),
    };

    let encoded = url_decode(raw_message).ok_or(InboundError::BadUrlEncoding(param.name()))?;
    let deflated = decode_base64(&encoded).ok_or(InboundError::BadBase64(param.name()))?;
    let xml = inflate_capped(&deflated, limits.max_xml_bytes)?;
    let decoded = parse_message(xml, limits)?;
    match (param, &decoded.message) {
        (MessageParam::SamlRequest, SamlMessage::LogoutResponse(_)) => {
            return Err(InboundError::WrongParameter { param: "SAMLRequest", root: "LogoutResponse" });
        }
        (MessageParam::SamlResponse, SamlMessage::AuthnRequest(_) | SamlMessage::LogoutRequest(_)) => {
            return Err(InboundError::WrongParameter { param: "SAMLResponse", root: "request" });
        }
        _ => {}
    }
    if signature.is_some() && is_without_destination(&decoded.message) {
        return Err(InboundError::SignedWithoutDestination);
    }
    Ok(RedirectMessage { param, decoded, relay_state, signature })
}

/// Decodes an HTTP-POST form value (`SAMLRequest` or `SAMLResponse`, already form-decoded by the HTTP
/// layer): size cap, base64, no inflate (SAML bindings 3.5.4).
pub fn decode_post(b64: &str, limits: &InboundLimits) -> Result<DecodedMessage, InboundError> {
    if b64.len() > limits.max_post_bytes {
        return Err(InboundError::PostTooLarge { limit: limits.max_post_bytes });
    }
    let bytes = decode_base64(b64.as_bytes()).ok_or(InboundError::BadBase64("SAMLRequest/SAMLResponse"))?;
    if bytes.len() > limits.max_xml_bytes {
        return Err(InboundError::XmlTooLarge { limit: limits.max_xml_bytes });
    }
    let xml = String::from_utf8(bytes).map_err(|_| InboundError::NotUtf8)?;
    parse_message(xml, limits)
}

/// RelayState rule for either binding: at most 80 bytes (SAML bindings 3.4.3, 3.5.3).
pub fn check_relay_state(relay_state: &str) -> Result<(), InboundError> {
    if relay_state.len() > MAX_RELAY_STATE {
        return Err(InboundError::RelayStateTooLong);
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn url_decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// Standard base64, padding optional, line breaks ignored. A space is read as `+`: SPs that forget to
/// URL-encode `+` are common, and a space never occurs in base64 otherwise.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let cleaned: Vec<u8> = text
        .iter()
        .filter(|b| !matches!(b, b'\r' | b'\n' | b'\t'))
        .map(|&b| if b == b' ' { b'+' } else { b })
        .collect();
    LENIENT.decode(cleaned).ok()
}

/// Raw DEFLATE (RFC 1951, no zlib header: SAML bindings 3.4.4.1) with a hard output cap: reading
/// stops one byte past the limit, so a bomb costs at most `limit + 1` bytes of memory.
fn inflate_capped(deflated: &[u8], limit: usize) -> Result<String, InboundError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|_| InboundError::BadDeflate)?;
    if out.len() > limit {
        return Err(InboundError::InflatedTooLarge { limit });
    }
    String::from_utf8(out).map_err(|_| InboundError::NotUtf8)
}

/// The one parser configuration used for every inbound document (fields and signature alike).
pub(crate) fn parse_document<'x>(xml: &'x str, limits: &InboundLimits) -> Result<Document<'x>, InboundError> {
    let options =
        ParsingOptions { allow_dtd: false, nodes_limit: limits.max_nodes, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(xml, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => InboundError::DtdRefused,
        roxmltree::Error::NodesLimitReached => InboundError::TooManyNodes { limit: limits.max_nodes },
        other => InboundError::MalformedXml(other.to_string()),
    })?;
    if doc.descendants().any(|n| matches!(n.node_type(), NodeType::Comment | NodeType::PI)) {
        return Err(InboundError::CommentOrProcessingInstruction);
    }
    Ok(doc)
}

/// Parses an inbound protocol message (the common part of both bindings).
pub fn parse_message(xml: String, limits: &InboundLimits) -> Result<DecodedMessage, InboundError> {
    let doc = parse_document(&xml, limits)?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(NS_PROTOCOL) {
        return Err(InboundError::WrongNamespace);
    }
    // SAML core 3.2.2: a Version other than 2.0 is answered with VersionMismatch by the caller.
    if root.attribute("Version") != Some("2.0") {
        return Err(InboundError::VersionMismatch);
    }
    let id = required_attr(root, "ID")?;
    let issue_instant =
        time_attr(root, "IssueInstant")?.ok_or(InboundError::MissingAttribute("IssueInstant"))?;
    let issuer = single_child(root, NS_ASSERTION, "Issuer")?
        .map(|n| element_text(n, "Issuer"))
        .transpose()?
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or(InboundError::MissingElement("Issuer"))?;
    let destination = root.attribute("Destination").map(str::to_owned);
    let message = match root.tag_name().name() {
        "AuthnRequest" => {
            check_request_id(&id)?;
            SamlMessage::AuthnRequest(authn_request(root, id, issuer, issue_instant, destination)?)
        }
        "LogoutRequest" => {
            check_request_id(&id)?;
            SamlMessage::LogoutRequest(logout_request(root, id, issuer, issue_instant, destination)?)
        }
        "LogoutResponse" => {
            let (status_code, sub_status_code) = status(root)?;
            SamlMessage::LogoutResponse(LogoutResponse {
                id,
                issuer,
                issue_instant,
                in_response_to: root.attribute("InResponseTo").map(str::to_owned),
                status_code,
                sub_status_code,
                destination,
            })
        }
        other => return Err(InboundError::UnexpectedRoot(other.chars().take(64).collect())),
    };
    let has_enveloped_signature = root.children().any(|n| is_element(n, NS_DSIG, "Signature"));
    if has_enveloped_signature && is_without_destination(&message) {
        return Err(InboundError::SignedWithoutDestination);
    }
    Ok(DecodedMessage { message, xml, has_enveloped_signature, limits: *limits })
}

/// SAML bindings 3.4.5.2 and 3.5.5.2: a signed message MUST carry its Destination, so that a
/// request signed for another endpoint cannot be replayed here. Checked by the decoders for the
/// binding's own signature (Redirect) and for an enveloped one (either binding).
fn is_without_destination(message: &SamlMessage) -> bool {
    match message {
        SamlMessage::AuthnRequest(r) => r.destination.is_none(),
        SamlMessage::LogoutRequest(r) => r.destination.is_none(),
        SamlMessage::LogoutResponse(r) => r.destination.is_none(),
    }
}

/// A request's ID is echoed as `InResponseTo`, which SPs check against the schema: it must be an
/// xs:ID (XML Schema 2 §3.3.8), that is an NCName (Namespaces in XML 1.0 §3), and not huge.
fn check_request_id(id: &str) -> Result<(), InboundError> {
    if id.len() > MAX_REQUEST_ID_BYTES || !is_ncname(id) {
        return Err(InboundError::InvalidRequestId);
    }
    Ok(())
}

/// An XML `Name` (XML 1.0 fifth edition §2.3, productions 4, 4a and 5) without `:`.
fn is_ncname(value: &str) -> bool {
    fn is_start_char(c: char) -> bool {
        matches!(c,
            'A'..='Z' | '_' | 'a'..='z'
            | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
            | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
            | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
            | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
    }
    fn is_name_char(c: char) -> bool {
        is_start_char(c)
            || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
    }
    let mut chars = value.chars();
    chars.next().is_some_and(is_start_char) && chars.all(is_name_char)
}

fn authn_request(
    root: Node,
    id: String,
    issuer: String,
    issue_instant: Timestamp,
    destination: Option<String>,
) -> Result<AuthnRequest, InboundError> {
    let acs_index = root
        .attribute("AssertionConsumerServiceIndex")
        .map(|v| {
            v.trim()
                .parse::<u16>()
                .map_err(|_| InboundError::InvalidAttribute("AssertionConsumerServiceIndex"))
        })
        .transpose()?;
    let policy = single_child(root, NS_PROTOCOL, "NameIDPolicy")?;
    let requested = single_child(root, NS_PROTOCOL, "RequestedAuthnContext")?;
    let requested_authn_context = match requested {
        None => Vec::new(),
        Some(node) => children(node, NS_ASSERTION, "AuthnContextClassRef")
            .map(|n| element_text(n, "AuthnContextClassRef").map(|t| t.trim().to_owned()))
            .collect::<Result<_, _>>()?,
    };
    Ok(AuthnRequest {
        id,
        issuer,
        issue_instant,
        destination,
        acs_url: root.attribute("AssertionConsumerServiceURL").map(str::to_owned),
        acs_index,
        protocol_binding: root.attribute("ProtocolBinding").map(str::to_owned),
        force_authn: bool_attr(root, "ForceAuthn")?,
        is_passive: bool_attr(root, "IsPassive")?,
        name_id_policy_format: policy.and_then(|p| p.attribute("Format")).map(str::to_owned),
        allow_create: policy.map(|p| bool_attr(p, "AllowCreate")).transpose()?.unwrap_or(false),
        requested_authn_context,
        requested_authn_context_comparison: requested
            .and_then(|r| r.attribute("Comparison"))
            .map(str::to_owned),
    })
}

fn logout_request(
    root: Node,
    id: String,
    issuer: String,
    issue_instant: Timestamp,
    destination: Option<String>,
) -> Result<LogoutRequest, InboundError> {
    if single_child(root, NS_ASSERTION, "EncryptedID")?.is_some() {
        return Err(InboundError::EncryptedIdNotSupported);
    }
    let name_id_node =
        single_child(root, NS_ASSERTION, "NameID")?.ok_or(InboundError::MissingElement("NameID"))?;
    let session_indexes = children(root, NS_PROTOCOL, "SessionIndex")
        .map(|n| element_text(n, "SessionIndex"))
        .collect::<Result<_, _>>()?;
    Ok(LogoutRequest {
        id,
        issuer,
        issue_instant,
        destination,
        name_id: element_text(name_id_node, "NameID")?,
        name_id_format: name_id_node.attribute("Format").map(str::to_owned),
        session_indexes,
        not_on_or_after: time_attr(root, "NotOnOrAfter")?,
    })
}

/// `Status/StatusCode/@Value` and the optional nested code (SAML core 3.2.2.1, 3.2.2.2).
fn status(root: Node) -> Result<(String, Option<String>), InboundError> {
    let status = single_child(root, NS_PROTOCOL, "Status")?.ok_or(InboundError::MissingElement("Status"))?;
    let code =
        single_child(status, NS_PROTOCOL, "StatusCode")?.ok_or(InboundError::MissingElement("StatusCode"))?;
    let value = code.attribute("Value").ok_or(InboundError::MissingAttribute("StatusCode/@Value"))?;
    let sub =
        single_child(code, NS_PROTOCOL, "StatusCode")?.and_then(|n| n.attribute("Value")).map(str::to_owned);
    Ok((value.to_owned(), sub))
}

pub(crate) fn is_element(node: Node, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(ns) && node.tag_name().name() == name
}

fn children<'a, 'x: 'a>(
    node: Node<'a, 'x>,
    ns: &'static str,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'x>> {
    node.children().filter(move |n| is_element(*n, ns, name))
}

/// The one child element with this name, if any; two are refused (which would a reader pick?).
fn single_child<'a, 'x>(
    node: Node<'a, 'x>,
    ns: &'static str,
    name: &'static str,
) -> Result<Option<Node<'a, 'x>>, InboundError> {
    let mut found = children(node, ns, name);
    let first = found.next();
    if found.next().is_some() {
        return Err(InboundError::DuplicateElement(name));
    }
    Ok(first)
}

/// Text content of a simple-content element; child elements are refused.
fn element_text(node: Node, name: &'static str) -> Result<String, InboundError> {
    let mut text = String::new();
    for child in node.children() {
        match child.node_type() {
            NodeType::Text => text.push_str(child.text().unwrap_or_default()),
            _ => return Err(InboundError::InvalidAttribute(name)),
        }
    }
    Ok(text)
}

fn required_attr(node: Node, name: &'static str) -> Result<String, InboundError> {
    match node.attribute(name) {
        Some(v) if !v.trim().is_empty() => Ok(v.to_owned()),
        _ => Err(InboundError::MissingAttribute(name)),
    }
}

fn time_attr(node: Node, name: &'static str) -> Result<Option<Timestamp>, InboundError> {
    node.attribute(name).map(|v| parse_saml_time(v).ok_or(InboundError::InvalidAttribute(name))).transpose()
}

/// `xs:boolean` (XML Schema 2 §3.2.2): `true`, `false`, `1`, `0`; absent is false.
fn bool_attr(node: Node, name: &'static str) -> Result<bool, InboundError> {
    match node.attribute(name).map(str::trim) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(InboundError::InvalidAttribute(name)),
    }
}

impl RedirectSignature {
    /// Whether SigAlg is one this IdP verifies, answerable before any certificate is tried (so an SP
    /// signing with SHA-1 is told about the algorithm, not about its key).
    pub fn check_algorithm(&self) -> Result<(), InboundError> {
        redirect_algorithm(&self.sig_alg).map(|_| ())
    }
}

/// The Redirect SigAlgs accepted: rsa-sha256 and rsa-sha512. rsa-sha1 and anything else is refused
/// (W3C XMLDSig best practices: algorithm downgrade).
fn redirect_algorithm(sig_alg: &str) -> Result<&'static RsaParameters, InboundError> {
    match sig_alg {
        ALG_RSA_SHA256 => Ok(&RSA_PKCS1_2048_8192_SHA256),
        ALG_RSA_SHA512 => Ok(&RSA_PKCS1_2048_8192_SHA512),
        other => Err(InboundError::SigAlgRefused {
            alg: shown_algorithm(other),
            accepted: "RSA-SHA256 or RSA-SHA512",
        }),
    }
}

/// An algorithm URI as it may appear in a refusal page or a log line: short printable ASCII as is,
/// anything else replaced (the value is the sender's, and pages and logs are not its place).
fn shown_algorithm(uri: &str) -> String {
    if !uri.is_empty() && uri.len() <= 100 && uri.bytes().all(|b| b.is_ascii_graphic()) {
        uri.to_owned()
    } else {
        "(unreadable)".to_owned()
    }
}

/// Verifies an HTTP-Redirect binding signature (SAML bindings 3.4.4.1) with the SP's certificate from
/// configuration. Only rsa-sha256 and rsa-sha512 are accepted; rsa-sha1 is refused as a downgrade.
pub fn verify_redirect_signature(sig: &RedirectSignature, sp_cert_der: &[u8]) -> Result<(), InboundError> {
    let algorithm = redirect_algorithm(&sig.sig_alg)?;
    let key = der::rsa_public_key_from_cert(sp_cert_der).map_err(|_| InboundError::BadCertificate)?;
    UnparsedPublicKey::new(algorithm, key)
        .verify(sig.signed_content.as_bytes(), &sig.signature)
        .map_err(|_| InboundError::BadSignature)
}

/// Verifies the enveloped signature of a POST-bound message with a deliberately narrow verifier
/// (docs/architecture.md, "SAML input"): exactly one `ds:Signature`, a child of the root; exactly one
/// Reference, to `#` + the root's ID, which no other element carries; transforms exactly enveloped-signature
/// then exc-c14n; rsa-sha256 with a sha256 digest; the key from the SP certificate only (KeyInfo ignored).
/// The document goes through the same parser as the fields, comments/PIs/DTDs already refused.
pub fn verify_enveloped_signature(
    xml: &str,
    sp_cert_der: &[u8],
    limits: &InboundLimits,
) -> Result<(), InboundError> {
    use InboundError::SignatureStructure as Shape;
    let doc = parse_document(xml, limits)?;
    let root = doc.root_element();
    let signatures: Vec<Node> = doc.descendants().filter(|n| is_element(*n, NS_DSIG, "Signature")).collect();
    let signature = match signatures.as_slice() {
        [] => return Err(InboundError::NoSignature),
        [one] if one.parent() == Some(root) => *one,
        [_] => return Err(Shape("the signature must be a child of the root element")),
        _ => return Err(Shape("more than one signature")),
    };
    let root_id = root.attribute("ID").ok_or(InboundError::MissingAttribute("ID"))?;
    // XSW defense: the referenced ID must identify the root and nothing else.
    if doc.descendants().filter(|n| n.is_element()).filter(|n| n.attribute("ID") == Some(root_id)).count()
        != 1
    {
        return Err(Shape("the root ID is not unique"));
    }

    let mut parts = signature.children().filter(|n| n.is_element());
    let signed_info = parts.next().filter(|n| is_element(*n, NS_DSIG, "SignedInfo"));
    let signed_info = signed_info.ok_or(Shape("SignedInfo must come first"))?;
    let value = parts.next().filter(|n| is_element(*n, NS_DSIG, "SignatureValue"));
    let value = value.ok_or(Shape("SignatureValue must follow SignedInfo"))?;
    if !parts.all(|n| is_element(n, NS_DSIG, "KeyInfo")) {
        return Err(Shape("only KeyInfo may follow SignatureValue"));
    }

    let mut info = signed_info.children().filter(|n| n.is_element());
    let c14n_method = info.next().filter(|n| is_element(*n, NS_DSIG, "CanonicalizationMethod"));
    let c14n_method = c14n_method.ok_or(Shape("CanonicalizationMethod missing"))?;
    if c14n_method.attribute("Algorithm") != Some(ALG_EXC_C14N) {
        return Err(Shape("CanonicalizationMethod must be exclusive c14n"));
    }
    let signed_info_prefixes = inclusive_prefixes(c14n_method)?;
    let method = info.next().filter(|n| is_element(*n, NS_DSIG, "SignatureMethod"));
    let method = method.ok_or(Shape("SignatureMethod missing"))?;
    match method.attribute("Algorithm") {
        Some(ALG_RSA_SHA256) => {}
        other => {
            return Err(InboundError::SigAlgRefused {
                alg: shown_algorithm(other.unwrap_or_default()),
                accepted: "RSA-SHA256",
            });
        }
    }
    let reference = info.next().filter(|n| is_element(*n, NS_DSIG, "Reference"));
    let reference = reference.ok_or(Shape("Reference missing"))?;
    if info.next().is_some() {
        return Err(Shape("exactly one Reference is accepted"));
    }
    if reference.attribute("URI").and_then(|u| u.strip_prefix('#')) != Some(root_id) {
        return Err(Shape("the Reference must point to the root element"));
    }

    let mut ref_parts = reference.children().filter(|n| n.is_element());
    let transforms = ref_parts.next().filter(|n| is_element(*n, NS_DSIG, "Transforms"));
    let transforms: Vec<Node> =
        transforms.ok_or(Shape("Transforms missing"))?.children().filter(|n| n.is_element()).collect();
    let content_prefixes = match transforms.as_slice() {
        [first, second]
            if is_element(*first, NS_DSIG, "Transform")
                && first.attribute("Algorithm") == Some(ALG_ENVELOPED)
                && first.children().all(|n| !n.is_element())
                && is_element(*second, NS_DSIG, "Transform")
                && second.attribute("Algorithm") == Some(ALG_EXC_C14N) =>
        {
            inclusive_prefixes(*second)?
        }
        _ => return Err(Shape("transforms must be exactly enveloped-signature, exc-c14n")),
    };
    let digest_method = ref_parts.next().filter(|n| is_element(*n, NS_DSIG, "DigestMethod"));
    if digest_method.and_then(|m| m.attribute("Algorithm")) != Some(ALG_SHA256) {
        return Err(Shape("DigestMethod must be sha256"));
    }
    let digest_value = ref_parts.next().filter(|n| is_element(*n, NS_DSIG, "DigestValue"));
    let digest_value = digest_value.ok_or(Shape("DigestValue missing"))?;
    if ref_parts.next().is_some() {
        return Err(Shape("unexpected element in Reference"));
    }
    let expected_digest = decode_base64(element_text(digest_value, "DigestValue")?.as_bytes())
        .ok_or(InboundError::BadBase64("DigestValue"))?;
    let signature_value = decode_base64(element_text(value, "SignatureValue")?.as_bytes())
        .ok_or(InboundError::BadBase64("SignatureValue"))?;

    let key = der::rsa_public_key_from_cert(sp_cert_der).map_err(|_| InboundError::BadCertificate)?;
    // XMLDSig 3.2.2: SignedInfo first, so no digest work is done for a forged signature.
    let canonical_info = c14n::exclusive(signed_info, None, &signed_info_prefixes);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
        .verify(canonical_info.as_bytes(), &signature_value)
        .map_err(|_| InboundError::BadSignature)?;
    let canonical = c14n::exclusive(root, Some(signature), &content_prefixes);
    if !crate::crypto::constant_time_eq(&Sha256::digest(canonical.as_bytes()), &expected_digest) {
        return Err(InboundError::DigestMismatch);
    }
    Ok(())
}

/// The optional `ec:InclusiveNamespaces/@PrefixList` of an exc-c14n method (exc-c14n §3).
fn inclusive_prefixes(method: Node) -> Result<Vec<String>, InboundError> {
    const NS_EXC: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
    let mut prefixes = Vec::new();
    for child in method.children().filter(|n| n.is_element()) {
        if !is_element(child, NS_EXC, "InclusiveNamespaces") {
            return Err(InboundError::SignatureStructure("unexpected element in a c14n method"));
        }
        let list = child.attribute("PrefixList").unwrap_or_default();
        prefixes.extend(
            list.split_ascii_whitespace().map(|p| if p == "#default" { String::new() } else { p.to_owned() }),
        );
    }
    Ok(prefixes)
}

/// The body of the `saml_inbound` fuzz target (`fuzz/`), public so that the fuzzer and the unit test
/// that replays mutated inputs run the same code. Feeds `data` to every entry point: as a Redirect query,
/// as a POST value, base64-encoded as a POST value (reaching the XML parser), raw-DEFLATEd as a Redirect
/// message (reaching the inflater), and to both signature verifiers. Results are ignored; only a panic,
/// a hang or unbounded memory would be a finding.
#[doc(hidden)]
pub fn fuzz_entry(data: &[u8], sp_cert_der: &[u8]) {
    use base64::engine::general_purpose::STANDARD;
    let limits = InboundLimits::default();
    let text = String::from_utf8_lossy(data);
    if let Ok(RedirectMessage { signature: Some(signature), .. }) = decode_redirect(&text, &limits) {
        let _ = verify_redirect_signature(&signature, sp_cert_der);
    }
    let _ = decode_post(&text, &limits);
    if let Ok(m) = decode_post(&STANDARD.encode(data), &limits) {
        let _ = m.verify_enveloped_signature(sp_cert_der);
    }
    let _ = verify_enveloped_signature(&text, sp_cert_der, &limits);
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    if let (Ok(()), Ok(deflated)) = (std::io::Write::write_all(&mut encoder, data), encoder.finish()) {
        let _ = decode_redirect(&format!("SAMLRequest={}", STANDARD.encode(deflated)), &limits);
    }
    let _ = decode_redirect(&format!("SAMLRequest={}", STANDARD.encode(data)), &limits);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signing_keys::material::tests::test_key;
    use base64::engine::general_purpose::STANDARD;
    use std::io::Write;

    /// The SHA-1 SigAlg, which SPs still send and which must be refused by name.
    const ALG_RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";

    pub(crate) const AUTHN: &str = r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_req1" Version="2.0" IssueInstant="2024-05-01T10:00:00Z" Destination="https://idp.example.test/sso" AssertionConsumerServiceURL="https://sp.example.test/acs" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" ForceAuthn="true" IsPassive="0"><saml:Issuer>
 https://sp.example.test/metadata </saml:Issuer><samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" AllowCreate="1"/><samlp:RequestedAuthnContext Comparison="minimum"><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></samlp:RequestedAuthnContext></samlp:AuthnRequest>"#;

    fn enc(value: &str) -> String {
        let mut out = String::new();
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    pub(crate) fn deflate(xml: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(xml).unwrap();
        encoder.finish().unwrap()
    }

    fn query(xml: &str, relay: Option<&str>) -> String {
        let mut q = format!("SAMLRequest={}", enc(&STANDARD.encode(deflate(xml.as_bytes()))));
        if let Some(relay) = relay {
            q.push_str(&format!("&RelayState={}", enc(relay)));
        }
        q
    }

    /// Signs a query the way an SP does (SAML bindings 3.4.4.1).
    fn signed_query(xml: &str, relay: Option<&str>, sig_alg: &str) -> String {
        let mut q = query(xml, relay);
        q.push_str(&format!("&SigAlg={}", enc(sig_alg)));
        let signature = test_key().sign_rsa_sha256(q.as_bytes()).unwrap();
        q.push_str(&format!("&Signature={}", enc(&STANDARD.encode(signature))));
        q
    }

    fn limits() -> InboundLimits {
        InboundLimits::default()
    }

    fn post(xml: &str) -> Result<DecodedMessage, InboundError> {
        decode_post(&STANDARD.encode(xml), &limits())
    }

    #[test]
    fn decodes_a_redirect_authn_request() {
        let m = decode_redirect(&query(AUTHN, Some("back to /app?x=1")), &limits()).unwrap();
        assert_eq!(m.param, MessageParam::SamlRequest);
        assert_eq!(m.relay_state.as_deref(), Some("back to /app?x=1"));
        assert!(m.signature.is_none(), "no signature is reported as None; the caller decides");
        assert!(!m.decoded.has_enveloped_signature);
        let SamlMessage::AuthnRequest(r) = m.decoded.message else { panic!("not an AuthnRequest") };
        assert_eq!(
            r,
            AuthnRequest {
                id: "_req1".into(),
                issuer: "https://sp.example.test/metadata".into(),
                issue_instant: Timestamp::parse_iso("2024-05-01T10:00:00Z").unwrap(),
                destination: Some("https://idp.example.test/sso".into()),
                acs_url: Some("https://sp.example.test/acs".into()),
                acs_index: None,
                protocol_binding: Some(crate::saml::BINDING_POST.into()),
                force_authn: true,
                is_passive: false,
                name_id_policy_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
                allow_create: true,
                requested_authn_context: vec![
                    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport".into()
                ],
                requested_authn_context_comparison: Some("minimum".into()),
            }
        );
    }

    #[test]
    fn decodes_post_with_and_without_padding_and_line_breaks() {
        let b64 = STANDARD.encode(AUTHN);
        let wrapped: String = b64
            .trim_end_matches('=')
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n");
        for input in [b64.clone(), wrapped, b64.replace('+', " ")] {
            let m = decode_post(&input, &limits()).unwrap();
            assert_eq!(m.message.id(), "_req1");
            assert_eq!(m.message.issuer(), "https://sp.example.test/metadata");
        }
    }

    #[test]
    fn refuses_dtd_and_billion_laughs() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_a" Version="2.0" IssueInstant="2024-05-01T10:00:00Z"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&lol3;</saml:Issuer></samlp:AuthnRequest>"#;
        assert_eq!(post(laughs).unwrap_err(), InboundError::DtdRefused);
        let xxe = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
        assert_eq!(post(xxe).unwrap_err(), InboundError::DtdRefused);
        let undeclared = AUTHN.replace("https://sp.example.test/metadata", "&undeclared;");
        assert!(matches!(post(&undeclared).unwrap_err(), InboundError::MalformedXml(_)));
    }

    #[test]
    fn refuses_comments_and_processing_instructions_anywhere() {
        let comment =
            AUTHN.replace("https://sp.example.test/metadata", "https://sp.example.test<!---->/metadata");
        assert_eq!(post(&comment).unwrap_err(), InboundError::CommentOrProcessingInstruction);
        let pi = AUTHN.replace("https://sp.example.test/metadata", "https://sp<?x y?>.example.test/metadata");
        assert_eq!(post(&pi).unwrap_err(), InboundError::CommentOrProcessingInstruction);
        let leading = format!("<!-- hello -->{AUTHN}");
        assert_eq!(post(&leading).unwrap_err(), InboundError::CommentOrProcessingInstruction);
        let declared = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{AUTHN}");
        assert!(post(&declared).is_ok(), "the XML declaration is not a PI");
    }

    #[test]
    fn enforces_size_caps() {
        let small = InboundLimits { max_query_bytes: 100, ..limits() };
        let q = query(AUTHN, None);
        assert_eq!(decode_redirect(&q, &small).unwrap_err(), InboundError::QueryTooLong { limit: 100 });
        let small = InboundLimits { max_post_bytes: 100, ..limits() };
        assert_eq!(
            decode_post(&STANDARD.encode(AUTHN), &small).unwrap_err(),
            InboundError::PostTooLarge { limit: 100 }
        );
        let few_nodes = InboundLimits { max_nodes: 5, ..limits() };
        assert_eq!(
            decode_post(&STANDARD.encode(AUTHN), &few_nodes).unwrap_err(),
            InboundError::TooManyNodes { limit: 5 }
        );
    }

    #[test]
    fn deflate_bomb_stops_at_the_cap() {
        let bomb = deflate(&vec![b'a'; 4 * 1024 * 1024]);
        assert!(bomb.len() < 8 * 1024, "a tiny input ({} bytes)", bomb.len());
        let q = format!("SAMLRequest={}", enc(&STANDARD.encode(&bomb)));
        assert_eq!(
            decode_redirect(&q, &limits()).unwrap_err(),
            InboundError::InflatedTooLarge { limit: 64 * 1024 }
        );
        let not_deflate = format!("SAMLRequest={}", enc(&STANDARD.encode(b"\xff\xff\xff\xff")));
        assert_eq!(decode_redirect(&not_deflate, &limits()).unwrap_err(), InboundError::BadDeflate);
        let zlib_wrapped = {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(AUTHN.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let q = format!("SAMLRequest={}", enc(&STANDARD.encode(zlib_wrapped)));
        assert!(decode_redirect(&q, &limits()).is_err(), "raw DEFLATE only (bindings 3.4.4.1)");
    }

    #[test]
    fn reports_malformed_encodings() {
        assert_eq!(
            decode_redirect("SAMLRequest=%%%", &limits()).unwrap_err(),
            InboundError::BadUrlEncoding("SAMLRequest")
        );
        assert_eq!(
            decode_redirect("SAMLRequest=ab*cd", &limits()).unwrap_err(),
            InboundError::BadBase64("SAMLRequest")
        );
        assert_eq!(
            decode_post("!!!!", &limits()).unwrap_err(),
            InboundError::BadBase64("SAMLRequest/SAMLResponse")
        );
        assert_eq!(
            decode_post(&STANDARD.encode(b"\xff\xfe<a/>"), &limits()).unwrap_err(),
            InboundError::NotUtf8
        );
        assert_eq!(decode_redirect("RelayState=x", &limits()).unwrap_err(), InboundError::MissingMessage);
        assert_eq!(decode_redirect("", &limits()).unwrap_err(), InboundError::MissingMessage);
        let q = query(AUTHN, None);
        assert_eq!(
            decode_redirect(&format!("{q}&{q}"), &limits()).unwrap_err(),
            InboundError::DuplicateParameter("SAMLRequest")
        );
        let both = format!("{q}&SAMLResponse=x");
        assert_eq!(decode_redirect(&both, &limits()).unwrap_err(), InboundError::AmbiguousMessage);
        let half = format!("{q}&SigAlg={}", enc(ALG_RSA_SHA256));
        assert_eq!(decode_redirect(&half, &limits()).unwrap_err(), InboundError::SignatureIncomplete);
        assert!(matches!(post("<unclosed").unwrap_err(), InboundError::MalformedXml(_)));
    }

    #[test]
    fn requires_id_issuer_namespace_and_version() {
        let no_id = AUTHN.replace(" ID=\"_req1\"", "");
        assert_eq!(post(&no_id).unwrap_err(), InboundError::MissingAttribute("ID"));
        let empty_id = AUTHN.replace(" ID=\"_req1\"", " ID=\"\"");
        assert_eq!(post(&empty_id).unwrap_err(), InboundError::MissingAttribute("ID"));
        let no_issuer = AUTHN.replace("<saml:Issuer>\n https://sp.example.test/metadata </saml:Issuer>", "");
        assert_eq!(post(&no_issuer).unwrap_err(), InboundError::MissingElement("Issuer"));
        let two_issuers = AUTHN.replace("</saml:Issuer>", "</saml:Issuer><saml:Issuer>evil</saml:Issuer>");
        assert_eq!(post(&two_issuers).unwrap_err(), InboundError::DuplicateElement("Issuer"));
        let wrong_ns =
            AUTHN.replace("urn:oasis:names:tc:SAML:2.0:protocol", "urn:oasis:names:tc:SAML:1.0:protocol");
        assert_eq!(post(&wrong_ns).unwrap_err(), InboundError::WrongNamespace);
        let v1 = AUTHN.replace("Version=\"2.0\"", "Version=\"1.1\"");
        assert_eq!(post(&v1).unwrap_err(), InboundError::VersionMismatch);
        let bad_time = AUTHN.replace("2024-05-01T10:00:00Z", "yesterday");
        assert_eq!(post(&bad_time).unwrap_err(), InboundError::InvalidAttribute("IssueInstant"));
        let bad_bool = AUTHN.replace("ForceAuthn=\"true\"", "ForceAuthn=\"yes\"");
        assert_eq!(post(&bad_bool).unwrap_err(), InboundError::InvalidAttribute("ForceAuthn"));
        let response = AUTHN.replace("AuthnRequest", "Response");
        assert_eq!(post(&response).unwrap_err(), InboundError::UnexpectedRoot("Response".into()));
    }

    #[test]
    fn request_ids_must_be_xs_ids_of_at_most_256_bytes() {
        let with_id = |id: &str| AUTHN.replace(" ID=\"_req1\"", &format!(" ID=\"{id}\""));
        let longest = format!("_{}", "a".repeat(MAX_REQUEST_ID_BYTES - 1));
        for good in ["_req1", "id-1.2_x", "A", "\u{e9}t\u{e9}", "_\u{b7}", longest.as_str()] {
            let m = post(&with_id(good)).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(m.message.id(), good);
        }
        let too_long = format!("{longest}a");
        for bad in
            ["1abc", "-abc", ".abc", "a:b", "a b", " _x", "_x ", "_x&#9;", "\u{b7}x", "a\u{300}:", &too_long]
        {
            assert_eq!(post(&with_id(bad)).unwrap_err(), InboundError::InvalidRequestId, "{bad:?}");
        }
        assert_eq!(
            decode_redirect(&query(&with_id("0xdeadbeef"), None), &limits()).unwrap_err(),
            InboundError::InvalidRequestId
        );
        let logout = |id: &str| {
            format!(
                "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"{id}\" \
                 Version=\"2.0\" IssueInstant=\"2024-05-01T10:00:00Z\"><saml:Issuer \
                 xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">sp</saml:Issuer><saml:NameID \
                 xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">a</saml:NameID></samlp:LogoutRequest>"
            )
        };
        assert!(post(&logout("_lr")).is_ok());
        assert_eq!(post(&logout("urn:uuid:1")).unwrap_err(), InboundError::InvalidRequestId);
    }

    #[test]
    fn signed_requests_must_carry_a_destination() {
        let no_destination = AUTHN.replace(" Destination=\"https://idp.example.test/sso\"", "");
        assert!(decode_redirect(&query(&no_destination, None), &limits()).is_ok(), "unsigned: optional");
        assert!(post(&no_destination).is_ok(), "unsigned: optional");
        assert_eq!(
            decode_redirect(&signed_query(&no_destination, None, ALG_RSA_SHA256), &limits()).unwrap_err(),
            InboundError::SignedWithoutDestination
        );
        assert!(decode_redirect(&signed_query(AUTHN, None, ALG_RSA_SHA256), &limits()).is_ok());
        // An enveloped signature counts as signed whatever it turns out to be worth.
        let signature = "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"></ds:Signature>";
        let enveloped = |xml: &str| xml.replace("</saml:Issuer>", &format!("</saml:Issuer>{signature}"));
        assert_eq!(post(&enveloped(&no_destination)).unwrap_err(), InboundError::SignedWithoutDestination);
        assert!(post(&enveloped(AUTHN)).unwrap().has_enveloped_signature);
        let logout = "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"_lr\" \
            Version=\"2.0\" IssueInstant=\"2024-05-01T10:00:00Z\"><saml:Issuer \
            xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">sp</saml:Issuer><saml:NameID \
            xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">a</saml:NameID></samlp:LogoutRequest>";
        assert_eq!(
            decode_redirect(&signed_query(logout, None, ALG_RSA_SHA256), &limits()).unwrap_err(),
            InboundError::SignedWithoutDestination
        );
        assert_eq!(post(&enveloped(logout)).unwrap_err(), InboundError::SignedWithoutDestination);
    }

    #[test]
    fn relay_state_is_capped_at_80_bytes() {
        let ok = "r".repeat(80);
        assert_eq!(decode_redirect(&query(AUTHN, Some(&ok)), &limits()).unwrap().relay_state, Some(ok));
        let long = "r".repeat(81);
        assert_eq!(
            decode_redirect(&query(AUTHN, Some(&long)), &limits()).unwrap_err(),
            InboundError::RelayStateTooLong
        );
        // 27 three-byte characters are 81 bytes: the limit is in bytes.
        let wide = "€".repeat(27);
        assert_eq!(
            decode_redirect(&query(AUTHN, Some(&wide)), &limits()).unwrap_err(),
            InboundError::RelayStateTooLong
        );
        assert_eq!(check_relay_state(&"x".repeat(81)), Err(InboundError::RelayStateTooLong));
    }

    #[test]
    fn redirect_signatures_verify_and_tampering_fails() {
        let cert = test_key().cert_der().to_vec();
        let q = signed_query(AUTHN, Some("state"), ALG_RSA_SHA256);
        let m = decode_redirect(&q, &limits()).unwrap();
        let sig = m.signature.unwrap();
        assert!(sig.signed_content.starts_with("SAMLRequest="));
        assert!(sig.signed_content.contains("&RelayState=state&SigAlg=http%3A%2F%2F"));
        assert_eq!(verify_redirect_signature(&sig, &cert), Ok(()));

        // Parameter order in the URL does not matter; the signed string is rebuilt in spec order.
        let mut parts: Vec<&str> = q.split('&').collect();
        parts.reverse();
        let reordered = decode_redirect(&parts.join("&"), &limits()).unwrap();
        assert_eq!(verify_redirect_signature(&reordered.signature.unwrap(), &cert), Ok(()));

        let tampered = q.replace("RelayState=state", "RelayState=other");
        let m = decode_redirect(&tampered, &limits()).unwrap();
        assert_eq!(verify_redirect_signature(&m.signature.unwrap(), &cert), Err(InboundError::BadSignature));

        let (_, other) = crate::saml::SigningKey::generate("other", 1).unwrap();
        let m = decode_redirect(&q, &limits()).unwrap();
        assert_eq!(
            verify_redirect_signature(m.signature.as_ref().unwrap(), &other.cert_der),
            Err(InboundError::BadSignature)
        );
        assert_eq!(
            verify_redirect_signature(m.signature.as_ref().unwrap(), b"junk"),
            Err(InboundError::BadCertificate)
        );
    }

    #[test]
    fn sha1_and_unknown_sig_algs_are_refused() {
        let cert = test_key().cert_der().to_vec();
        let q = signed_query(AUTHN, None, ALG_RSA_SHA1);
        let m = decode_redirect(&q, &limits()).unwrap();
        let sha1 = InboundError::SigAlgRefused {
            alg: ALG_RSA_SHA1.to_owned(),
            accepted: "RSA-SHA256 or RSA-SHA512",
        };
        let signature = m.signature.unwrap();
        assert_eq!(signature.check_algorithm(), Err(sha1.clone()));
        assert_eq!(verify_redirect_signature(&signature, &cert), Err(sha1.clone()));
        assert_eq!(
            sha1.to_string(),
            "the signature algorithm http://www.w3.org/2000/09/xmldsig#rsa-sha1 is not accepted \
             (RSA-SHA256 or RSA-SHA512 only)"
        );
        let hmac = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256";
        let m = decode_redirect(&signed_query(AUTHN, None, hmac), &limits()).unwrap();
        assert_eq!(
            verify_redirect_signature(&m.signature.unwrap(), &cert),
            Err(InboundError::SigAlgRefused { alg: hmac.to_owned(), accepted: "RSA-SHA256 or RSA-SHA512" })
        );
        // A value that is not short printable ASCII is not repeated back.
        let odd = "rsa\nsha1 <b>";
        let m = decode_redirect(&signed_query(AUTHN, None, odd), &limits()).unwrap();
        assert!(matches!(
            m.signature.unwrap().check_algorithm(),
            Err(InboundError::SigAlgRefused { alg, .. }) if alg == "(unreadable)"
        ));
        let sha256 = decode_redirect(&signed_query(AUTHN, None, ALG_RSA_SHA256), &limits()).unwrap();
        assert_eq!(sha256.signature.unwrap().check_algorithm(), Ok(()));
    }

    #[test]
    fn decodes_logout_request_and_response() {
        let xml = r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_lr" Version="2.0" IssueInstant="2024-05-01T10:00:00Z" Destination="https://idp.example.test/slo" NotOnOrAfter="2024-05-01T10:05:00Z"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">https://sp.example.test/metadata</saml:Issuer><saml:NameID xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">alice@example.test</saml:NameID><samlp:SessionIndex>_s1</samlp:SessionIndex><samlp:SessionIndex>_s2</samlp:SessionIndex></samlp:LogoutRequest>"#;
        let SamlMessage::LogoutRequest(r) = post(xml).unwrap().message else { panic!() };
        assert_eq!(r.name_id, "alice@example.test");
        assert_eq!(
            r.name_id_format.as_deref(),
            Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
        );
        assert_eq!(r.session_indexes, vec!["_s1", "_s2"]);
        assert_eq!(r.not_on_or_after, Timestamp::parse_iso("2024-05-01T10:05:00Z"));
        assert_eq!(r.destination.as_deref(), Some("https://idp.example.test/slo"));
        let no_name = xml
            .replace("alice@example.test</saml:NameID>", "</saml:NameID>")
            .replace("<saml:NameID", "<saml:Foo")
            .replace("</saml:NameID>", "</saml:Foo>");
        assert_eq!(post(&no_name).unwrap_err(), InboundError::MissingElement("NameID"));

        let resp = r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r" Version="2.0" IssueInstant="2024-05-01T10:00:00Z" InResponseTo="_ours"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">https://sp.example.test/metadata</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:PartialLogout"/></samlp:StatusCode></samlp:Status></samlp:LogoutResponse>"#;
        let q = format!("SAMLResponse={}", enc(&STANDARD.encode(deflate(resp.as_bytes()))));
        let m = decode_redirect(&q, &limits()).unwrap();
        assert_eq!(m.param, MessageParam::SamlResponse);
        let SamlMessage::LogoutResponse(r) = m.decoded.message else { panic!() };
        assert_eq!(r.in_response_to.as_deref(), Some("_ours"));
        assert_eq!(r.status_code, "urn:oasis:names:tc:SAML:2.0:status:Responder");
        assert_eq!(r.sub_status_code.as_deref(), Some("urn:oasis:names:tc:SAML:2.0:status:PartialLogout"));
        let q = format!("SAMLRequest={}", enc(&STANDARD.encode(deflate(resp.as_bytes()))));
        assert!(matches!(decode_redirect(&q, &limits()).unwrap_err(), InboundError::WrongParameter { .. }));

        // Signed, a response must name its Destination too (bindings 3.4.5.2).
        let signed = signed_query(resp, None, ALG_RSA_SHA256).replacen("SAMLRequest=", "SAMLResponse=", 1);
        assert_eq!(decode_redirect(&signed, &limits()).unwrap_err(), InboundError::SignedWithoutDestination);
        let addressed =
            resp.replace(" InResponseTo=", " Destination=\"https://idp.example.test/slo\" InResponseTo=");
        let signed =
            signed_query(&addressed, None, ALG_RSA_SHA256).replacen("SAMLRequest=", "SAMLResponse=", 1);
        assert!(decode_redirect(&signed, &limits()).is_ok());
    }

    #[test]
    fn enveloped_signature_of_our_own_output_verifies() {
        use crate::saml::response::{ErrorResponseParams, build_error_response, status};
        let key = test_key();
        let p = ErrorResponseParams {
            id: "_e1".into(),
            issue_instant: Timestamp(1_700_000_000_000),
            issuer: "https://idp.example.test".into(),
            destination: "https://sp.example.test/acs".into(),
            in_response_to: None,
            top_status: status::REQUESTER.into(),
            second_status: None,
            message: Some("<tab>\there & \"there\"\r\n".into()),
        };
        let xml = build_error_response(&p, &key).unwrap();
        assert_eq!(verify_enveloped_signature(&xml, key.cert_der(), &limits()), Ok(()));
        let tampered = xml.replace("&lt;tab&gt;", "&lt;tap&gt;");
        assert_eq!(
            verify_enveloped_signature(&tampered, key.cert_der(), &limits()),
            Err(InboundError::DigestMismatch)
        );
        let forged = xml.replace("<ds:SignatureValue>", "<ds:SignatureValue>AAAA");
        assert_eq!(
            verify_enveloped_signature(&forged, key.cert_der(), &limits()),
            Err(InboundError::BadSignature)
        );
    }

    #[test]
    fn narrow_verifier_refuses_wrapping_shapes() {
        use crate::saml::response::{ErrorResponseParams, build_error_response, status};
        let key = test_key();
        let p = ErrorResponseParams {
            id: "_e1".into(),
            issue_instant: Timestamp(1_700_000_000_000),
            issuer: "https://idp.example.test".into(),
            destination: "https://sp.example.test/acs".into(),
            in_response_to: None,
            top_status: status::REQUESTER.into(),
            second_status: None,
            message: None,
        };
        let xml = build_error_response(&p, &key).unwrap();
        let cert = key.cert_der();
        let check = |x: &str| verify_enveloped_signature(x, cert, &limits());
        let unsigned = {
            let start = xml.find("<ds:Signature").unwrap();
            let end = xml.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
            format!("{}{}", &xml[..start], &xml[end..])
        };
        assert_eq!(check(&unsigned), Err(InboundError::NoSignature));
        let signature = &xml[xml.find("<ds:Signature").unwrap()..xml.find("</ds:Signature>").unwrap() + 15];
        // Same ID twice (the classic wrapping move): refused before any crypto.
        let dup_id = unsigned.replace(
            "<samlp:Status>",
            "<samlp:Extensions><x ID=\"_e1\"></x></samlp:Extensions><samlp:Status>",
        );
        let dup_id = dup_id.replace("</saml:Issuer>", &format!("</saml:Issuer>{signature}"));
        assert_eq!(check(&dup_id), Err(InboundError::SignatureStructure("the root ID is not unique")));
        // A signature that is not a child of the root.
        let nested = unsigned.replace("<samlp:StatusCode ", &format!("{signature}<samlp:StatusCode "));
        assert_eq!(
            check(&nested),
            Err(InboundError::SignatureStructure("the signature must be a child of the root element"))
        );
        let two = xml.replace("</saml:Issuer>", &format!("</saml:Issuer>{signature}"));
        assert_eq!(check(&two), Err(InboundError::SignatureStructure("more than one signature")));
        let other_ref = xml.replace("URI=\"#_e1\"", "URI=\"#_other\"");
        assert_eq!(
            check(&other_ref),
            Err(InboundError::SignatureStructure("the Reference must point to the root element"))
        );
        let sha1 = xml.replace(ALG_RSA_SHA256, ALG_RSA_SHA1);
        assert_eq!(
            check(&sha1),
            Err(InboundError::SigAlgRefused { alg: ALG_RSA_SHA1.to_owned(), accepted: "RSA-SHA256" })
        );
        let no_enveloped =
            xml.replace(&format!("<ds:Transform Algorithm=\"{ALG_ENVELOPED}\"></ds:Transform>"), "");
        assert!(matches!(check(&no_enveloped), Err(InboundError::SignatureStructure(_))));
        let comment = xml.replace("<samlp:Status>", "<samlp:Status><!-- x -->");
        assert_eq!(check(&comment), Err(InboundError::CommentOrProcessingInstruction));
    }

    /// The fuzz target's body over a few thousand mutations of real messages (fixed seed): no panic.
    #[test]
    fn mutated_inputs_never_panic() {
        use crate::saml::response::{ErrorResponseParams, build_error_response, status};
        let key = test_key();
        let signed = build_error_response(
            &ErrorResponseParams {
                id: "_e1".into(),
                issue_instant: Timestamp(1_700_000_000_000),
                issuer: "https://idp.example.test".into(),
                destination: "https://sp.example.test/acs".into(),
                in_response_to: None,
                top_status: status::REQUESTER.into(),
                second_status: None,
                message: None,
            },
            &key,
        )
        .unwrap()
        .replace("samlp:Response", "samlp:LogoutResponse");
        let seeds: Vec<Vec<u8>> = vec![
            AUTHN.as_bytes().to_vec(),
            signed.clone().into_bytes(),
            signed_query(AUTHN, Some("rs"), ALG_RSA_SHA256).into_bytes(),
            query(AUTHN, None).into_bytes(),
            STANDARD.encode(AUTHN).into_bytes(),
        ];
        const TOKENS: &[&[u8]] = &[
            b"<!--",
            b"-->",
            b"<?x?>",
            b"<!DOCTYPE a [<!ENTITY e \"x\">]>",
            b"&e;",
            b"&#x0;",
            b"%",
            b"%2",
            b"=",
            b"&",
            b"&SAMLRequest=",
            b"&Signature=",
            b"&SigAlg=",
            b"xmlns:ds=\"\"",
            b"<ds:Signature>",
            b"</a>",
            b"<![CDATA[",
            b"\xff",
            b"+",
            b" ",
            b"ID=\"_e1\"",
        ];
        // xorshift64*: deterministic and dependency-free.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            usize::try_from(state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33).unwrap() % bound.max(1)
        };
        for i in 0..2000 {
            let mut input = seeds[i % seeds.len()].clone();
            for _ in 0..=next(4) {
                let at = next(input.len() + 1);
                match next(5) {
                    0 if !input.is_empty() => {
                        let last = input.len() - 1;
                        input[at.min(last)] = u8::try_from(next(256)).unwrap();
                    }
                    1 => input.splice(at..at, TOKENS[next(TOKENS.len())].iter().copied()).for_each(drop),
                    2 => {
                        let end = (at + next(64)).min(input.len());
                        input.drain(at..end);
                    }
                    3 => {
                        let end = (at + next(64)).min(input.len());
                        let copy = input[at..end].to_vec();
                        input.splice(at..at, copy).for_each(drop);
                    }
                    _ => input.truncate(at),
                }
            }
            fuzz_entry(&input, key.cert_der());
        }
    }
}
