//! Everything Graph access talks to, started together: a test CA, the managed-identity
//! endpoint, Key Vault holding the app's certificate (as PKCS#12) under `graph-client`, the
//! Entra token endpoint with that certificate registered, and Graph.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use signup_bridge::credentials::{self, CertificateCredential};
use signup_bridge::graph::GraphClient;
use signup_bridge::retry::RetryPolicy;
use signup_bridge::settings::graph::{GraphConfig, GraphSettings};

use super::app_certs::AppCertificate;
use super::fake_entra::FakeEntra;
use super::fake_graph::FakeGraph;
use super::fake_identity::FakeIdentity;
use super::fake_key_vault::FakeKeyVault;
use super::fake_server::Tokens;
use super::tls::TestCa;

pub const TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
pub const CLIENT_ID: &str = "11112222-bbbb-3333-cccc-4444dddd5555";
pub const CERTIFICATE_NAME: &str = "graph-client";

pub struct GraphFakes {
    pub ca: TestCa,
    pub identity: FakeIdentity,
    pub vault: FakeKeyVault,
    pub entra: FakeEntra,
    pub graph: FakeGraph,
    pub certificate: AppCertificate,
    pub dir: tempfile::TempDir,
}

impl GraphFakes {
    pub fn start() -> GraphFakes {
        let ca = TestCa::new();
        let key_vault_tokens = Tokens::default();
        let graph_tokens = Tokens::default();
        let identity = FakeIdentity::start(key_vault_tokens.clone());
        let vault = FakeKeyVault::start(&ca, key_vault_tokens);
        let entra = FakeEntra::start(&ca, TENANT, CLIENT_ID, graph_tokens.clone());
        let graph = FakeGraph::start(&ca, graph_tokens);
        entra.expect_scope(&graph.scope());
        let dir = tempfile::tempdir().expect("temporary directory");
        let certificate = AppCertificate::generate("signup-bridge graph client");
        vault.set_pfx(CERTIFICATE_NAME, &certificate.pfx(dir.path()));
        entra.register(certificate.der());
        GraphFakes {
            ca,
            identity,
            vault,
            entra,
            graph,
            certificate,
            dir,
        }
    }

    /// App settings pointing at the fakes; the vault by its Key Vault-looking host name.
    pub fn settings_map(&self) -> HashMap<String, String> {
        [
            ("GRAPH_TENANT_ID", TENANT.to_string()),
            ("GRAPH_CLIENT_ID", CLIENT_ID.to_string()),
            ("GRAPH_KEY_VAULT_URL", self.vault.vault_url().to_string()),
            ("GRAPH_CERTIFICATE_NAME", CERTIFICATE_NAME.to_string()),
            ("AZURE_AUTHORITY_HOST", self.entra.authority().to_string()),
            ("GRAPH_BASE_URL", self.graph.url().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn settings(&self) -> GraphSettings {
        GraphConfig::from_map(&self.settings_map())
            .expect("valid settings")
            .require()
            .expect("configured")
            .clone()
    }

    /// App settings for a spawned `signup-bridge` process: the vault by its loopback address,
    /// Key Vault tokens from the managed-identity fake, the test CA trusted via `SSL_CERT_FILE`.
    pub fn process_settings(&self) -> Vec<(String, String)> {
        let ca_file = self.ca.write_ca_file(self.dir.path());
        let mut values = self.settings_map();
        values.insert("GRAPH_KEY_VAULT_URL".into(), self.vault.loopback_url().to_string());
        values.insert("IDENTITY_ENDPOINT".into(), self.identity.endpoint().to_string());
        values.insert("IDENTITY_HEADER".into(), self.identity.header_secret().to_string());
        values.insert("SSL_CERT_FILE".into(), ca_file.display().to_string());
        values.into_iter().collect()
    }

    /// Trusts the test CA; resolves the vault host to the vault fake.
    pub fn http(&self) -> reqwest::Client {
        self.ca.client_with_vault(Some(self.vault.addr()))
    }

    /// Key Vault tokens from the identity fake.
    pub fn key_vault_credential(&self) -> Arc<dyn TokenCredential> {
        self.identity.credential()
    }

    pub fn credential(&self) -> Arc<CertificateCredential> {
        let credential =
            credentials::graph_credential(&self.settings(), &self.http(), Some(self.key_vault_credential()))
                .expect("credential")
                .with_retry_policy(quick_retries());
        Arc::new(credential)
    }

    pub fn graph_client(&self, credential: Arc<CertificateCredential>) -> GraphClient {
        GraphClient::from_settings(&self.settings(), self.http(), credential).with_retry_policy(quick_retries())
    }
}

/// Short waits, so tests retry fast (Retry-After from a fake is still honoured).
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(10),
        total_timeout: Duration::from_secs(30),
    }
}
