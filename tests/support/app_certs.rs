//! App-registration certificates for the Graph tests: RSA 2048, self-signed, generated per
//! run (never committed), exported the ways Key Vault and developers produce them.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Datelike;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey, PrivateKeyChain,
};
use rcgen::{CertificateParams, DnType, KeyPair};
use sha2::{Digest, Sha256};

pub struct AppCertificate {
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

/// How a PKCS#12 file is protected (all with an empty password).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PfxFlavour {
    /// OpenSSL 3's default: PBES2 / AES-256-CBC, HMAC-SHA256.
    Modern,
    /// What older tools and Key Vault produce: pbeWithSHAAnd3-KeyTripleDES-CBC, HMAC-SHA1.
    Legacy3Des,
}

impl AppCertificate {
    pub fn generate(common_name: &str) -> AppCertificate {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(chrono::Utc::now().year() + 2, 1, 1);
        let certificate = params.self_signed(&key).expect("self-signed certificate");
        AppCertificate {
            der: certificate.der().to_vec(),
            pem: certificate.pem(),
            key,
        }
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn certificate_pem(&self) -> &str {
        &self.pem
    }

    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// Key then certificate, as Key Vault's `application/x-pem-file` secrets are.
    pub fn pem_bundle(&self) -> String {
        format!("{}{}", self.key_pem(), self.certificate_pem())
    }

    /// base64url SHA-256 of the DER certificate: the `x5t#S256` header.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }

    /// A PFX made by the OpenSSL command line (`-passout pass:`), or `None` when `openssl` is
    /// not installed.
    pub fn pfx_from_openssl(&self, dir: &Path, flavour: PfxFlavour) -> Option<Vec<u8>> {
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        let out = dir.join(format!("app-{flavour:?}.pfx"));
        std::fs::write(&key, self.key_pem()).expect("write key");
        std::fs::write(&cert, self.certificate_pem()).expect("write certificate");
        let mut command = Command::new("openssl");
        command.args(["pkcs12", "-export", "-passout", "pass:", "-name", "graph-client"]);
        command
            .arg("-inkey")
            .arg(&key)
            .arg("-in")
            .arg(&cert)
            .arg("-out")
            .arg(&out);
        if flavour == PfxFlavour::Legacy3Des {
            command.args([
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ]);
        }
        let status = match command.output() {
            Ok(output) => output.status,
            Err(_) => return None, // openssl is not installed
        };
        assert!(status.success(), "openssl pkcs12 -export failed");
        let bytes = std::fs::read(&out).expect("read PFX");
        std::fs::remove_file(&key).expect("remove key file");
        Some(bytes)
    }

    /// A PFX written by the pure-Rust `p12-keystore` crate.
    pub fn pfx_from_p12_keystore(&self, flavour: PfxFlavour) -> Vec<u8> {
        let chain = PrivateKeyChain::new(
            Sha256::digest(&self.der).to_vec(),
            PrivateKey::from_der(&self.key_pkcs8_der()).expect("PKCS#8 key"),
            vec![Certificate::from_der(&self.der).expect("certificate")],
        );
        let mut store = KeyStore::new();
        store.add_entry("graph-client", KeyStoreEntry::PrivateKeyChain(chain));
        let writer = store.writer("");
        let writer = match flavour {
            PfxFlavour::Modern => writer,
            PfxFlavour::Legacy3Des => writer
                .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
                .mac_algorithm(MacAlgorithm::HmacSha1),
        };
        writer.write().expect("write PFX")
    }

    /// The PFX a developer would have: OpenSSL's when available, else the crate's.
    pub fn pfx(&self, dir: &Path) -> Vec<u8> {
        self.pfx_from_openssl(dir, PfxFlavour::Modern)
            .unwrap_or_else(|| self.pfx_from_p12_keystore(PfxFlavour::Modern))
    }
}

/// The RSA public key (PKCS#1) of a DER certificate, for verifying signatures.
pub fn rsa_public_key(der: &[u8]) -> Vec<u8> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).expect("certificate");
    certificate.public_key().subject_public_key.data.to_vec()
}

pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}
