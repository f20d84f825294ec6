//! JSON Web Tokens signed with the organisation's signing keys (RS256, RFC 7518 §3.3), and the
//! keys published as a JWK Set (RFC 7517 §5).
//!
//! A token is written once and signed over the bytes written (RFC 7515 §5.1); verification
//! accepts only `RS256` with a `kid` that names a published key (never the algorithm or key a
//! token names for itself: RFC 8725 §2.1, §3.1).

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::der;
use crate::signing_keys::{KeySet, SigningKey};

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a JWS in compact form")]
    Malformed,
    #[error("the token is not signed with RS256 by a published key")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("signing failed")]
    Signing,
}

/// The longest token accepted for verification (ours are a few KB; a bigger one is not ours).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// `claims` as a JWS signed by `key`, with `typ` in the header when given (RFC 9068 §2.1 names
/// `at+jwt`; Okta's tokens carry none).
pub fn sign(claims: &Map<String, Value>, key: &SigningKey, typ: Option<&str>) -> Result<String, JwtError> {
    let mut header = json!({"kid": key.kid(), "alg": "RS256"});
    if let (Some(typ), Some(object)) = (typ, header.as_object_mut()) {
        object.insert("typ".into(), Value::String(typ.to_owned()));
    }
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()));
    let signature = key.sign_rsa_sha256(token.as_bytes()).map_err(|_| JwtError::Signing)?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// The claims of a token signed by one of `keys` (active, next or previous). Checks the signature
/// only: the caller checks issuer, audience and times.
pub fn verify(token: &str, keys: &KeySet) -> Result<Map<String, Value>, JwtError> {
    let (header, claims, signature) = split(token)?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(JwtError::UnknownKey);
    }
    let kid = header.get("kid").and_then(Value::as_str).ok_or(JwtError::UnknownKey)?;
    let key = keys.published().find(|k| k.kid() == kid).ok_or(JwtError::UnknownKey)?;
    let public = der::rsa_public_key_from_cert(key.cert_der()).map_err(|_| JwtError::UnknownKey)?;
    verify_rs256(public, token, &signature)?;
    Ok(claims)
}

/// The header and claims of a token without checking its signature (to find which key a
/// client-signed token names; its signature is checked after).
pub fn peek(token: &str) -> Result<(Claims, Claims), JwtError> {
    let (header, claims, _) = split(token)?;
    Ok((header, claims))
}

/// Checks an RS256 signature of `token`'s signing input under an RSAPublicKey (DER).
pub fn verify_rs256(rsa_public_key_der: &[u8], token: &str, signature: &[u8]) -> Result<(), JwtError> {
    let signing_input = token.rsplit_once('.').map(|(input, _)| input).ok_or(JwtError::Malformed)?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, rsa_public_key_der)
        .verify(signing_input.as_bytes(), signature)
        .map_err(|_| JwtError::BadSignature)
}

/// A JOSE header or a claims set.
pub type Claims = Map<String, Value>;
type Parts = (Claims, Claims, Vec<u8>);

/// The decoded header, claims and signature of a compact JWS.
pub fn split(token: &str) -> Result<Parts, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let object = |part: &str| -> Result<Map<String, Value>, JwtError> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(JwtError::Malformed),
        }
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed)?;
    Ok((object(header)?, object(claims)?, signature))
}

/// One published key as a JWK (RFC 7518 §6.3.1), with its certificate (`x5c`).
pub fn jwk(key: &SigningKey) -> Value {
    let (n, e) = der::rsa_public_key_from_cert(key.cert_der())
        .ok()
        .and_then(|public| der::rsa_public_numbers(public).ok())
        .unwrap_or_default();
    json!({
        "kty": "RSA",
        "alg": "RS256",
        "kid": key.kid(),
        "use": "sig",
        "e": URL_SAFE_NO_PAD.encode(e),
        "n": URL_SAFE_NO_PAD.encode(n),
        "x5c": [key.cert_base64()],
    })
}

/// The JWK Set of the published keys, in publishing order: the next key (a rollover announces a
/// key before it signs), the active one, and the previous one (kept while its tokens live).
pub fn jwks(keys: &KeySet) -> Value {
    json!({"keys": keys.published().map(|key| jwk(key)).collect::<Vec<_>>()})
}

/// The RSAPublicKey (DER) of a client's JWK, if it is an RSA key (RFC 7518 §6.3.1).
pub fn rsa_public_key_of_jwk(jwk: &Value) -> Option<Vec<u8>> {
    if jwk.get("kty").and_then(Value::as_str) != Some("RSA") {
        return None;
    }
    let decode = |name: &str| URL_SAFE_NO_PAD.decode(jwk.get(name)?.as_str()?).ok();
    Some(der::rsa_public_key_der(&decode("n")?, &decode("e")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing_keys::material::tests::test_key;
    use std::sync::Arc;

    fn key_set() -> KeySet {
        KeySet { active: Arc::new(test_key()), next: None, previous: None }
    }

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let keys = key_set();
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("00u1"));
        let token = sign(&claims, &keys.active, None).unwrap();
        assert_eq!(verify(&token, &keys).unwrap()["sub"], "00u1");
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"00u2"}"#);
        let forged = format!("{head}.{forged_claims}.{signature}");
        assert_eq!(verify(&forged, &keys), Err(JwtError::BadSignature));
        let none_alg = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, keys.active.kid()));
        assert_eq!(verify(&format!("{none_alg}.{forged_claims}."), &keys), Err(JwtError::UnknownKey));
        assert_eq!(verify("a.b", &keys), Err(JwtError::Malformed));
    }

    #[test]
    fn the_jwk_carries_the_certificates_key() {
        let keys = key_set();
        let jwk = jwk(&keys.active);
        let der = rsa_public_key_of_jwk(&jwk).unwrap();
        assert_eq!(der, der::rsa_public_key_from_cert(keys.active.cert_der()).unwrap());
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["kid"], keys.active.kid());
    }
}
