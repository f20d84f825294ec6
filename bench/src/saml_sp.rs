//! SP-initiated requests for the `saml` benchmark: HTTP-Redirect AuthnRequests, each with a fresh
//! `ID` (the IdP records every ID and refuses one seen before, so a reused request would measure
//! the refusal), unsigned or signed by the SP's RSA-2048 key (SAML bindings §3.4.4.1: the
//! signature covers `SAMLRequest=…&SigAlg=…` as sent).
//!
//! The requests are made before the timed rounds, on every CPU, so that the harness spends the
//! same (small) CPU per request in both modes while the server works: signing them on the fly
//! would take a third of the machine from the server.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::HeaderValue;

use crate::load::RequestFactory;
use crate::sessions::percent_encode;
use crate::util::{Result, err, random_u64, unix_now};

const SIG_ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// The SP's signing key and its self-signed certificate (base64 DER, for the app's
/// `spCertificate.x5c`).
pub struct SpKey {
    pair: RsaKeyPair,
    pub certificate_b64: String,
}

impl SpKey {
    pub fn generate() -> Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|e| err(format!("SP key generation: {e}")))?;
        let params = rcgen::CertificateParams::new(vec!["bench-sp.example".to_string()])
            .map_err(|e| err(format!("SP certificate: {e}")))?;
        let certificate = params.self_signed(&key).map_err(|e| err(format!("SP certificate: {e}")))?;
        let pair = RsaKeyPair::from_pkcs8(&key.serialize_der())
            .map_err(|e| err(format!("SP key for aws-lc-rs: {e}")))?;
        Ok(Self { pair, certificate_b64: STANDARD.encode(certificate.der()) })
    }
}

/// What every request of a run shares.
#[derive(Clone)]
pub struct RequestShape {
    /// The app's SSO URL as the IdP publishes it (the `Destination`).
    pub sso_url: String,
    pub sp_entity_id: String,
    pub acs_url: String,
}

/// `count` query strings (`SAMLRequest=…[&SigAlg=…&Signature=…]`), each with its own ID, made on
/// every CPU. Returns the queries and their IDs in the same order.
pub fn make_queries(
    shape: &RequestShape,
    key: Option<Arc<SpKey>>,
    count: usize,
) -> Result<Vec<(String, String)>> {
    let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let per_thread = count.div_ceil(threads);
    let run = random_u64();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (shape, key) = (shape.clone(), key.clone());
            std::thread::spawn(move || -> std::result::Result<Vec<(String, String)>, String> {
                let rng = SystemRandom::new();
                let start = t * per_thread;
                let end = count.min(start + per_thread);
                (start..end)
                    .map(|i| {
                        let id = format!("_bench{run:016x}{i:08x}");
                        let query = query(&shape, &id, key.as_deref(), &rng)?;
                        Ok((query, id))
                    })
                    .collect()
            })
        })
        .collect();
    let mut out = Vec::with_capacity(count);
    for h in handles {
        let part = h.join().map_err(|_| err("a request-making thread panicked"))?.map_err(err)?;
        out.extend(part);
    }
    Ok(out)
}

fn query(
    shape: &RequestShape,
    id: &str,
    key: Option<&SpKey>,
    rng: &SystemRandom,
) -> std::result::Result<String, String> {
    let xml = format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" \
         IssueInstant=\"{}\" Destination=\"{}\" AssertionConsumerServiceURL=\"{}\" \
         ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\">\
         <saml:Issuer>{}</saml:Issuer></samlp:AuthnRequest>",
        saml_time(unix_now()),
        shape.sso_url,
        shape.acs_url,
        shape.sp_entity_id
    );
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(xml.as_bytes()).map_err(|e| e.to_string())?;
    let deflated = deflate.finish().map_err(|e| e.to_string())?;
    let mut query = format!("SAMLRequest={}", percent_encode(&STANDARD.encode(deflated)));
    if let Some(key) = key {
        query.push_str("&SigAlg=");
        query.push_str(&percent_encode(SIG_ALG_RSA_SHA256));
        let mut signature = vec![0u8; key.pair.public_modulus_len()];
        key.pair
            .sign(&RSA_PKCS1_SHA256, rng, query.as_bytes(), &mut signature)
            .map_err(|e| format!("RSA sign: {e}"))?;
        query.push_str("&Signature=");
        query.push_str(&percent_encode(&STANDARD.encode(signature)));
    }
    Ok(query)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (days to civil date: the proleptic Gregorian calendar).
fn saml_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `GET` of the SSO URL with the next unused request and connection `worker`'s session cookie.
/// Running out of requests is an error (the run asked for more than was made).
pub struct SpRequests {
    pub path: String,
    pub queries: Vec<String>,
    pub next: AtomicUsize,
    pub cookies: Vec<HeaderValue>,
}

impl RequestFactory for SpRequests {
    fn build(&self, worker: usize, _seq: u64) -> Result<Request<Full<Bytes>>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let query = self.queries.get(i).ok_or_else(|| {
            err(format!("all {} prepared AuthnRequests were used: raise --sp-requests", self.queries.len()))
        })?;
        crate::saml::browser_get(
            &format!("{}?{query}", self.path),
            &self.cookies[worker % self.cookies.len()],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saml_time_is_utc_civil_time() {
        assert_eq!(saml_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(saml_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(saml_time(1_796_774_399), "2026-12-08T23:59:59Z");
    }

    #[test]
    fn every_request_has_its_own_id_and_signed_ones_a_signature() -> Result<()> {
        let shape = RequestShape {
            sso_url: "http://127.0.0.1:1/app/x/y/sso/saml".into(),
            sp_entity_id: "https://sp.example".into(),
            acs_url: "http://127.0.0.1:9/acs".into(),
        };
        let unsigned = make_queries(&shape, None, 5)?;
        let ids: std::collections::HashSet<_> = unsigned.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!((unsigned.len(), ids.len()), (5, 5));
        assert!(unsigned.iter().all(|(q, _)| q.starts_with("SAMLRequest=") && !q.contains("Signature=")));
        let signed = make_queries(&shape, Some(Arc::new(SpKey::generate()?)), 2)?;
        assert!(signed.iter().all(|(q, _)| q.contains("&SigAlg=") && q.contains("&Signature=")));
        Ok(())
    }
}
