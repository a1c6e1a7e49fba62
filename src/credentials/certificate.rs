//! The app registration's certificate: parsed from a PKCS#12 (PFX) or PEM document, with
//! its RSA private key ready to sign client assertions.
//!
//! Accepted inputs, as Key Vault and the usual tools produce them:
//! - PKCS#12 with an empty password (Key Vault `application/x-pkcs12`, base64 in the secret;
//!   `openssl pkcs12 -export -passout pass:`; PBES2/AES-256 or legacy 3DES).
//! - PEM (Key Vault `application/x-pem-file`): an unencrypted `PRIVATE KEY` (PKCS#8) or
//!   `RSA PRIVATE KEY` (PKCS#1) block and one or more `CERTIFICATE` blocks.
//!
//! When several certificates come with the key (a chain), the one whose public key matches
//! the private key is used. The key never appears in `Debug`, errors or logs.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::der_parser::ber::BerObject;
use x509_parser::public_key::PublicKey;

/// Key Vault's content type for a PKCS#12 secret (base64).
pub const CONTENT_TYPE_PKCS12: &str = "application/x-pkcs12";
/// Key Vault's content type for a PEM secret.
pub const CONTENT_TYPE_PEM: &str = "application/x-pem-file";

const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CertificateError {
    #[error("the Key Vault secret is not valid base64 (content type application/x-pkcs12)")]
    NotBase64,
    #[error("the PKCS#12 (PFX) data could not be read with an empty password: {0}")]
    Pkcs12(String),
    #[error("the PEM data holds no usable block")]
    NoPem,
    #[error("the private key is encrypted; export it without a password")]
    EncryptedKey,
    #[error("no private key was found next to the certificate")]
    NoPrivateKey,
    #[error("no certificate was found next to the private key")]
    NoCertificate,
    #[error("none of the certificates matches the private key")]
    NoMatchingCertificate,
    #[error("the private key is not an RSA key (Entra client assertions need RSA)")]
    NotRsa,
    #[error("the private key is malformed")]
    InvalidKey,
    #[error("a certificate is malformed")]
    InvalidCertificate,
}

/// A certificate with its private key, able to sign client assertions.
pub struct ClientCertificate {
    certificate_der: Vec<u8>,
    key: EncodingKey,
    x5t_s256: String,
    sha1_thumbprint: String,
    subject: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("subject", &self.subject)
            .field("sha1_thumbprint", &self.sha1_thumbprint)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// A Key Vault secret's value, by its content type (sniffed when absent or unknown).
    pub fn from_key_vault_secret(value: &str, content_type: Option<&str>) -> Result<Self, CertificateError> {
        let content_type = content_type.map(|c| c.trim().to_ascii_lowercase());
        match content_type.as_deref() {
            Some(CONTENT_TYPE_PEM) => Self::from_pem(value.as_bytes()),
            Some(CONTENT_TYPE_PKCS12) => Self::from_base64_pkcs12(value),
            _ if looks_like_pem(value.as_bytes()) => Self::from_pem(value.as_bytes()),
            _ => Self::from_base64_pkcs12(value),
        }
    }

    /// A file's bytes: PEM text or binary PKCS#12.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, CertificateError> {
        if looks_like_pem(bytes) {
            Self::from_pem(bytes)
        } else {
            Self::from_pkcs12(bytes, "")
        }
    }

    fn from_base64_pkcs12(value: &str) -> Result<Self, CertificateError> {
        let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = STANDARD.decode(compact).map_err(|_| CertificateError::NotBase64)?;
        Self::from_pkcs12(&der, "")
    }

    /// A DER PKCS#12 archive.
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<Self, CertificateError> {
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(der, password)
            .map_err(|error| CertificateError::Pkcs12(error.to_string()))?;
        let key = archive.keys.first().ok_or(CertificateError::NoPrivateKey)?;
        let certificates: Vec<&[u8]> = archive.certs.iter().map(|bag| bag.cert.as_der()).collect();
        Self::from_parts(pkcs8_to_pkcs1(key.key.as_der())?, &certificates)
    }

    /// PEM text with a private key and its certificate.
    pub fn from_pem(text: &[u8]) -> Result<Self, CertificateError> {
        let mut key = None;
        let mut certificates = Vec::new();
        let mut blocks = 0;
        for block in x509_parser::pem::Pem::iter_from_buffer(text) {
            let block = block.map_err(|_| CertificateError::NoPem)?;
            blocks += 1;
            match block.label.as_str() {
                "CERTIFICATE" => certificates.push(block.contents),
                "PRIVATE KEY" if key.is_none() => key = Some(pkcs8_to_pkcs1(&block.contents)?),
                "RSA PRIVATE KEY" if key.is_none() => key = Some(block.contents),
                "ENCRYPTED PRIVATE KEY" => return Err(CertificateError::EncryptedKey),
                "EC PRIVATE KEY" => return Err(CertificateError::NotRsa),
                _ => {}
            }
        }
        if blocks == 0 {
            return Err(CertificateError::NoPem);
        }
        let key = key.ok_or(CertificateError::NoPrivateKey)?;
        let certificates: Vec<&[u8]> = certificates.iter().map(Vec::as_slice).collect();
        Self::from_parts(key, &certificates)
    }

    /// A PKCS#1 RSA private key and candidate certificates (DER).
    fn from_parts(pkcs1_key: Vec<u8>, certificates: &[&[u8]]) -> Result<Self, CertificateError> {
        if certificates.is_empty() {
            return Err(CertificateError::NoCertificate);
        }
        let modulus = rsa_private_key_modulus(&pkcs1_key)?;
        let mut parsed_any = false;
        for der in certificates {
            let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
                continue;
            };
            parsed_any = true;
            let Ok(PublicKey::RSA(public)) = certificate.public_key().parsed() else {
                continue;
            };
            if strip_leading_zeros(public.modulus) != modulus {
                continue;
            }
            let validity = certificate.validity();
            let timestamp = |t: i64| DateTime::<Utc>::from_timestamp(t, 0).ok_or(CertificateError::InvalidCertificate);
            let loaded = ClientCertificate {
                certificate_der: der.to_vec(),
                key: EncodingKey::from_rsa_der(&pkcs1_key),
                x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
                sha1_thumbprint: hex::encode_upper(Sha1::digest(der)),
                subject: certificate.subject().to_string(),
                not_before: timestamp(validity.not_before.timestamp())?,
                not_after: timestamp(validity.not_after.timestamp())?,
            };
            // Sign once now, so an unusable key fails at load time rather than at the first token.
            loaded
                .sign(&serde_json::json!({"probe": true}))
                .map_err(|_| CertificateError::InvalidKey)?;
            return Ok(loaded);
        }
        Err(if parsed_any {
            CertificateError::NoMatchingCertificate
        } else {
            CertificateError::InvalidCertificate
        })
    }

    /// `x5t#S256`: base64url of the SHA-256 of the DER certificate.
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// The SHA-1 thumbprint in hex, as the Azure portal shows it.
    pub fn sha1_thumbprint(&self) -> &str {
        &self.sha1_thumbprint
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.not_after
    }

    /// A compact JWS of `claims`, PS256, with the `x5t#S256` header.
    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(self.x5t_s256.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|window| window == b"-----BEGIN ")
}

/// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo.
fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let (_, info) = x509_parser::der_parser::parse_der(pkcs8).map_err(|_| CertificateError::InvalidKey)?;
    let fields = info.as_sequence().map_err(|_| CertificateError::InvalidKey)?;
    let [_version, algorithm, key, ..] = fields.as_slice() else {
        return Err(CertificateError::InvalidKey);
    };
    let oid = algorithm
        .as_sequence()
        .ok()
        .and_then(|parts| parts.first())
        .and_then(|oid| oid.as_oid().ok())
        .ok_or(CertificateError::InvalidKey)?;
    if oid.to_id_string() != RSA_ENCRYPTION_OID {
        return Err(CertificateError::NotRsa);
    }
    Ok(key.as_slice().map_err(|_| CertificateError::InvalidKey)?.to_vec())
}

/// The modulus of a PKCS#1 RSAPrivateKey (version, modulus, ...), without leading zeros.
fn rsa_private_key_modulus(pkcs1: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let (_, key): (_, BerObject) =
        x509_parser::der_parser::parse_der(pkcs1).map_err(|_| CertificateError::InvalidKey)?;
    let fields = key.as_sequence().map_err(|_| CertificateError::InvalidKey)?;
    let modulus = fields
        .get(1)
        .and_then(|modulus| modulus.as_slice().ok())
        .ok_or(CertificateError::InvalidKey)?;
    Ok(strip_leading_zeros(modulus).to_vec())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_readable_error() {
        assert_eq!(
            ClientCertificate::from_key_vault_secret("not base64!", Some(CONTENT_TYPE_PKCS12)).unwrap_err(),
            CertificateError::NotBase64
        );
        assert!(matches!(
            ClientCertificate::from_key_vault_secret("AAAA", Some(CONTENT_TYPE_PKCS12)).unwrap_err(),
            CertificateError::Pkcs12(_)
        ));
        assert_eq!(
            ClientCertificate::from_pem(
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            )
            .unwrap_err(),
            CertificateError::EncryptedKey
        );
        assert_eq!(
            ClientCertificate::from_pem(b"hello").unwrap_err(),
            CertificateError::NoPem
        );
    }
}
