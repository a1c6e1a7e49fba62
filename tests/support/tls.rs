//! A test certificate authority, generated per test run (never committed), and the TLS
//! server configuration the fakes use. Its leaf certificate names `localhost`, `127.0.0.1`,
//! `::1` and `contoso-kv.vault.azure.net` (a Key Vault-looking host, resolved to 127.0.0.1 by
//! [`TestCa::client`], so the SDK's challenge check runs as in Azure).
//!
//! In-process tests trust the CA through [`TestCa::client`] (an explicit root on the
//! `reqwest::Client`); a spawned process trusts it through `SSL_CERT_FILE` ([`TestCa::write_ca_file`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const VAULT_HOST: &str = "contoso-kv.vault.azure.net";

pub struct TestCa {
    ca_pem: String,
    server_config: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "signup-bridge test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("server key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), VAULT_HOST.to_string()]).expect("server params");
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("server certificate");

        let chain = vec![leaf.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut server_config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server TLS config");
        server_config.alpn_protocols = vec![b"http/1.1".to_vec()];

        TestCa {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(server_config),
        }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config.clone()
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("CA PEM")
    }

    /// Writes the CA as a PEM file, for `SSL_CERT_FILE`.
    pub fn write_ca_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write CA file");
        path
    }

    /// The production client settings, trusting only this CA, with the fake vault host
    /// resolved to `vault` (the Key Vault fake's address).
    pub fn client_with_vault(&self, vault: Option<SocketAddr>) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA for reqwest");
        let mut builder = signup_bridge::credentials::http_client_builder().tls_certs_only([root]);
        if let Some(vault) = vault {
            builder = builder.resolve(VAULT_HOST, vault);
        }
        builder.build().expect("test HTTP client")
    }

    pub fn client(&self) -> reqwest::Client {
        self.client_with_vault(None)
    }
}
