//! Just enough DER to take the RSA public key out of an X.509 certificate (RFC 5280 §4.1).
//!
//! Used for our own signing certificates and for service-provider certificates, which come from SP
//! configuration only (never from a message's KeyInfo: XMLDSig §4.5 KeyInfo is a hint, not a trust
//! anchor). A tiny bounded walk avoids a full X.509 parser on this path: it reads
//! `Certificate → tbsCertificate → subjectPublicKeyInfo`, checks the algorithm is rsaEncryption and
//! returns the PKCS#1 `RSAPublicKey` from the BIT STRING. Validity dates are not checked here; SAML
//! trust is the configured certificate itself, not a CA chain.

const TAG_SEQUENCE: u8 = 0x30;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_VERSION: u8 = 0xa0;
/// 1.2.840.113549.1.1.1 rsaEncryption (RFC 8017 A.1).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// Why a certificate was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerError {
    Malformed,
    NotRsa,
}

/// One TLV: returns (tag, contents, rest). Only definite lengths of at most 4 bytes (DER).
fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError::Malformed)?;
    if tag & 0x1f == 0x1f {
        return Err(DerError::Malformed); // multi-byte tags never occur in the structures read here
    }
    let (&first, mut rest) = rest.split_first().ok_or(DerError::Malformed)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(DerError::Malformed);
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return Err(DerError::Malformed);
    }
    let (contents, rest) = rest.split_at(len);
    Ok((tag, contents, rest))
}

fn expect(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), DerError> {
    let (found, contents, rest) = read_tlv(input)?;
    if found == tag { Ok((contents, rest)) } else { Err(DerError::Malformed) }
}

/// The PKCS#1 `RSAPublicKey` DER of an X.509 certificate's subject key.
pub(crate) fn rsa_public_key_from_cert(cert_der: &[u8]) -> Result<&[u8], DerError> {
    let (cert, _) = expect(cert_der, TAG_SEQUENCE)?;
    let (tbs, _) = expect(cert, TAG_SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&TAG_VERSION) {
        rest = read_tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = read_tlv(rest)?.2;
    }
    let (spki, _) = expect(rest, TAG_SEQUENCE)?;
    let (algorithm, after_alg) = expect(spki, TAG_SEQUENCE)?;
    let (oid, _) = expect(algorithm, TAG_OID)?;
    if oid != OID_RSA_ENCRYPTION {
        return Err(DerError::NotRsa);
    }
    let (bits, _) = expect(after_alg, TAG_BIT_STRING)?;
    match bits.split_first() {
        Some((0, key)) => Ok(key),
        _ => Err(DerError::Malformed),
    }
}

const TAG_INTEGER: u8 = 0x02;

/// The modulus and public exponent of a PKCS#1 `RSAPublicKey` (RFC 8017 A.1.1), unsigned
/// big-endian without leading zeros (as a JWK carries them: RFC 7518 §6.3.1).
pub(crate) fn rsa_public_numbers(rsa_public_key: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let (key, _) = expect(rsa_public_key, TAG_SEQUENCE)?;
    let (n, rest) = expect(key, TAG_INTEGER)?;
    let (e, _) = expect(rest, TAG_INTEGER)?;
    Ok((unsigned(n), unsigned(e)))
}

/// A DER INTEGER's contents as an unsigned number: without its leading zero bytes (one kept for 0).
fn unsigned(int: &[u8]) -> &[u8] {
    let zeros = int.iter().take_while(|&&b| b == 0).count();
    &int[zeros.min(int.len().saturating_sub(1))..]
}

/// A PKCS#1 `RSAPublicKey` from its unsigned big-endian modulus and exponent.
pub(crate) fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }
    fn integer(out: &mut Vec<u8>, value: &[u8]) {
        let value = unsigned(value);
        let pad = value.first().is_none_or(|&b| b & 0x80 != 0);
        out.push(TAG_INTEGER);
        push_len(out, value.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 8);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = vec![TAG_SEQUENCE];
    push_len(&mut out, body.len());
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_truncated_and_garbage() {
        assert_eq!(rsa_public_key_from_cert(&[]), Err(DerError::Malformed));
        assert_eq!(rsa_public_key_from_cert(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), Err(DerError::Malformed));
        assert_eq!(rsa_public_key_from_cert(&[0x30, 0x02, 0x30, 0x00]), Err(DerError::Malformed));
        assert_eq!(rsa_public_key_from_cert(b"not der at all"), Err(DerError::Malformed));
    }
}
