//! The IdP's own SAML metadata document (`md:EntityDescriptor`), which SPs import to trust us.
//!
//! SPs take our signing key from here and nowhere else (a message's own KeyInfo is never trusted), so
//! key rollover is a metadata matter: publish the next certificate next to the current one, wait for
//! SPs to refresh, then switch signing (`crate::signing_keys`). The document is unsigned; it is
//! served over HTTPS or handed to the SP administrator. Element order follows the schema (SAML
//! metadata 2.4.1, 2.4.2, 2.4.3).

use super::xml::XmlWriter;
use super::{BINDING_POST, BINDING_REDIRECT, NS_DSIG, NS_METADATA, NS_PROTOCOL, SamlError};
use crate::apps::SamlApp;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The Locations of one service for the two bindings Latchkey serves (often the same URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingUrls {
    pub redirect: String,
    pub post: String,
}

/// What the metadata document announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// SingleSignOnService Locations (HTTP-Redirect and HTTP-POST).
    pub sso: BindingUrls,
    /// SingleLogoutService Locations, if SLO is offered.
    pub slo: Option<BindingUrls>,
    /// Signing certificates, DER: the next key first, then the current one (rollover publishes both;
    /// every SP measured accepts a signature by either).
    pub signing_certs: Vec<Vec<u8>>,
    pub name_id_formats: Vec<String>,
    pub want_authn_requests_signed: bool,
}

/// The metadata of one app's IdP: its entity id and NameID format, our SSO endpoints under `base`
/// (the public URL the request came to), the SingleLogoutService only where the app's SP has a use
/// for it, and `signing_certs` (DER, in publishing order).
pub fn app_metadata(app: SamlApp<'_>, base: &str, signing_certs: Vec<Vec<u8>>) -> Result<String, SamlError> {
    let sso = format!("{base}{}", app.sso_path());
    let slo = format!("{base}{}", app.slo_path());
    idp_metadata(&IdpMetadata {
        entity_id: app.idp_issuer(),
        sso: BindingUrls { redirect: sso.clone(), post: sso },
        slo: app.offers_single_logout().then(|| BindingUrls { redirect: slo.clone(), post: slo }),
        signing_certs,
        name_id_formats: vec![app.settings.subject_name_id_format.clone()],
        want_authn_requests_signed: app.settings.saml_signed_request_enabled,
    })
}

/// Renders the metadata document, with an XML declaration (it is a standalone file).
pub fn idp_metadata(m: &IdpMetadata) -> Result<String, SamlError> {
    if m.entity_id.is_empty() {
        return Err(SamlError::Empty("entity_id"));
    }
    let mut w = XmlWriter::new();
    w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w.start("md:EntityDescriptor", &[("md", NS_METADATA)], &[("entityID", &m.entity_id)])?;
    let want_signed = if m.want_authn_requests_signed { "true" } else { "false" };
    w.start(
        "md:IDPSSODescriptor",
        &[],
        &[("WantAuthnRequestsSigned", want_signed), ("protocolSupportEnumeration", NS_PROTOCOL)],
    )?;
    for cert in &m.signing_certs {
        w.start("md:KeyDescriptor", &[], &[("use", "signing")])?;
        w.start("ds:KeyInfo", &[("ds", NS_DSIG)], &[])?;
        w.start("ds:X509Data", &[], &[])?;
        w.leaf("ds:X509Certificate", &[], &[], &STANDARD.encode(cert))?;
        w.end("ds:X509Data");
        w.end("ds:KeyInfo");
        w.end("md:KeyDescriptor");
    }
    if let Some(slo) = &m.slo {
        w.empty(
            "md:SingleLogoutService",
            &[],
            &[("Binding", BINDING_REDIRECT), ("Location", &slo.redirect)],
        )?;
        w.empty("md:SingleLogoutService", &[], &[("Binding", BINDING_POST), ("Location", &slo.post)])?;
    }
    for format in &m.name_id_formats {
        w.leaf("md:NameIDFormat", &[], &[], format)?;
    }
    w.empty("md:SingleSignOnService", &[], &[("Binding", BINDING_REDIRECT), ("Location", &m.sso.redirect)])?;
    w.empty("md:SingleSignOnService", &[], &[("Binding", BINDING_POST), ("Location", &m.sso.post)])?;
    w.end("md:IDPSSODescriptor");
    w.end("md:EntityDescriptor");
    Ok(w.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::interop_tests::snapshot;

    fn fixture() -> IdpMetadata {
        IdpMetadata {
            entity_id: "https://idp.example.test/app/exk1/sso/saml".into(),
            sso: BindingUrls {
                redirect: "https://idp.example.test/app/exk1/sso/saml".into(),
                post: "https://idp.example.test/app/exk1/sso/saml".into(),
            },
            slo: Some(BindingUrls {
                redirect: "https://idp.example.test/app/exk1/slo/saml?a=1&b=2".into(),
                post: "https://idp.example.test/app/exk1/slo/saml".into(),
            }),
            signing_certs: vec![vec![1, 2, 3], vec![4, 5, 6]],
            name_id_formats: vec![
                "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into(),
                "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into(),
            ],
            want_authn_requests_signed: false,
        }
    }

    #[test]
    fn golden_metadata_with_two_certificates() {
        let xml = idp_metadata(&fixture()).unwrap();
        assert_eq!(xml.matches("<md:KeyDescriptor use=\"signing\">").count(), 2);
        assert!(xml.find("AQID").unwrap() < xml.find("BAUG").unwrap(), "next certificate first");
        assert!(xml.contains("Location=\"https://idp.example.test/app/exk1/slo/saml?a=1&amp;b=2\""));
        snapshot("idp-metadata.golden.xml", &xml);
    }

    #[test]
    fn parses_back_and_omits_slo_when_absent() {
        let xml = idp_metadata(&IdpMetadata { slo: None, ..fixture() }).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().namespace(), Some(NS_METADATA));
        assert_eq!(root.attribute("entityID"), Some("https://idp.example.test/app/exk1/sso/saml"));
        assert!(!xml.contains("SingleLogoutService"));
        assert_eq!(xml.matches("<md:SingleSignOnService ").count(), 2);
        assert!(idp_metadata(&IdpMetadata { entity_id: String::new(), ..fixture() }).is_err());
    }
}
