//! `signup-bridge check`: validates the settings and the connections Graph access needs —
//! the certificate (Key Vault read or file), a token, one Graph call
//! (`GET /v1.0/auditLogs/directoryAudits?$top=1`) — and prints what is configured, what
//! works, what is wrong and how to fix it.
//!
//! Exit codes: 0 all checks passed; 1 a connection check failed; 2 the settings are invalid
//! or Graph access is not configured.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::Utc;

use crate::credentials::{
    self, CertificateCredential, CertificateLoadError, CredentialError, KeyVaultError, TokenEndpointError,
};
use crate::graph::{GraphClient, GraphError};
use crate::retry::RetryPolicy;
use crate::settings::Settings;
use crate::settings::graph::{CertificateLocation, GraphConfig, GraphSettings, KeyVaultIdentity};

/// Exit code when a connection check fails.
pub const EXIT_CONNECTION_FAILED: u8 = 1;
/// Exit code when the settings are invalid or Graph access is not configured.
pub const EXIT_SETTINGS_INVALID: u8 = 2;

/// Certificates expiring sooner than this are reported (a warning, not a failure).
const EXPIRY_WARNING: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// What `check` uses to reach the outside world.
pub struct CheckOptions {
    /// The outbound client (tests pass one that trusts their CA).
    pub http: reqwest::Client,
    /// Overrides the Key Vault credential chosen from the settings.
    pub key_vault_credential: Option<Arc<dyn TokenCredential>>,
}

/// Runs the checks against the process environment's settings and prints to stdout.
pub async fn run(environment: &HashMap<String, String>) -> ExitCode {
    let mut stdout = std::io::stdout();
    let http = match credentials::http_client() {
        Ok(http) => http,
        Err(_) => {
            let _ = writeln!(stdout, "[FAIL] could not create an HTTPS client (TLS set-up failed)");
            return ExitCode::from(EXIT_CONNECTION_FAILED);
        }
    };
    let options = CheckOptions {
        http,
        key_vault_credential: None,
    };
    run_with(environment, options, &mut stdout).await
}

/// Runs the checks with explicit options, writing the report to `out`.
pub async fn run_with(environment: &HashMap<String, String>, options: CheckOptions, out: &mut dyn Write) -> ExitCode {
    let mut report = Report::new(out);
    report.line("signup-bridge check");

    report.section("Settings");
    let graph_config = GraphConfig::from_map(environment);
    let mut settings_ok = true;
    match Settings::from_map(environment) {
        Ok(_) => report.pass("application settings are valid", None),
        Err(error) => {
            // Graph's own problems are reported below, once.
            let problems: Vec<_> = error
                .problems
                .iter()
                .filter(|problem| match &graph_config {
                    Err(graph_error) => !graph_error.problems.contains(problem),
                    Ok(_) => true,
                })
                .collect();
            if problems.is_empty() {
                report.pass("application settings are valid", None);
            } else {
                settings_ok = false;
                for problem in problems {
                    report.fail(
                        &problem.to_string(),
                        "set it in the Function App's settings (or local.settings.json)",
                    );
                }
            }
        }
    }

    report.section("Graph access");
    let graph_settings = match graph_config {
        Err(error) => {
            for problem in &error.problems {
                report.fail(&problem.to_string(), "correct the setting");
            }
            None
        }
        Ok(GraphConfig::NotConfigured(missing)) => {
            for missing in &missing.missing {
                report.fail(
                    &format!("{} is not set", missing.setting),
                    &format!("set it to {}", missing.expected),
                );
            }
            None
        }
        Ok(GraphConfig::Configured(settings)) => {
            describe(&mut report, &settings);
            Some(settings)
        }
    };
    let Some(settings) = graph_settings else {
        report.skip("connections", "the settings above must be fixed first");
        return report.finish(ExitCode::from(EXIT_SETTINGS_INVALID));
    };

    report.section("Connections");
    let connected = check_connections(&mut report, &settings, options).await;
    let code = if !settings_ok {
        ExitCode::from(EXIT_SETTINGS_INVALID)
    } else if !connected {
        ExitCode::from(EXIT_CONNECTION_FAILED)
    } else {
        ExitCode::SUCCESS
    };
    report.finish(code)
}

fn describe(report: &mut Report<'_>, settings: &GraphSettings) {
    report.item("tenant", &settings.tenant_id.to_string());
    report.item("app (client) id", &settings.client_id.to_string());
    match &settings.certificate {
        CertificateLocation::KeyVault {
            vault_url,
            certificate_name,
        } => {
            report.item(
                "certificate",
                &format!("Key Vault {vault_url}, certificate \"{certificate_name}\""),
            );
            let identity = match settings.key_vault_identity {
                KeyVaultIdentity::ManagedIdentity { client_id: Some(id) } => {
                    format!("{} {id}", credentials::identity_name(settings.key_vault_identity))
                }
                other => credentials::identity_name(other).to_string(),
            };
            report.item("Key Vault access", &identity);
        }
        CertificateLocation::File(path) => report.item("certificate", &format!("file {}", path.display())),
    }
    report.item("token endpoint", settings.token_url().as_str());
    report.item("Graph", settings.base_url.as_str());
}

async fn check_connections(report: &mut Report<'_>, settings: &GraphSettings, options: CheckOptions) -> bool {
    let CheckOptions {
        http,
        key_vault_credential,
    } = options;
    let credential = match credentials::graph_credential(settings, &http, key_vault_credential) {
        Ok(credential) => Arc::new(credential),
        Err(error) => {
            report.fail(&format!("Key Vault client: {error}"), &key_vault_hint(&error, settings));
            report.skip("token", "needs the certificate");
            report.skip("Graph call", "needs a token");
            return false;
        }
    };

    let what = credential.source().describe();
    match credential.certificate().await {
        Ok(certificate) => {
            let now = Utc::now();
            let detail = format!(
                "{}, SHA-1 thumbprint {}, valid until {}",
                certificate.subject(),
                certificate.sha1_thumbprint(),
                certificate.not_after().format("%Y-%m-%d")
            );
            if certificate.is_expired(now) {
                report.fail(
                    &format!("certificate from {what} has expired ({detail})"),
                    "renew the certificate (Key Vault can auto-renew) and register the new one on the app registration",
                );
                report.skip("token", "needs a valid certificate");
                report.skip("Graph call", "needs a token");
                return false;
            }
            report.pass(&format!("certificate loaded from {what}"), Some(&detail));
            if certificate.not_after() - now < EXPIRY_WARNING {
                report.warn(&format!(
                    "the certificate expires in {} day(s): renew it and register the new one on the app registration",
                    (certificate.not_after() - now).num_days()
                ));
            }
        }
        Err(error) => {
            let problem = match &error {
                CredentialError::Certificate(load) => load.to_string(),
                other => other.to_string(),
            };
            report.fail(
                &format!("certificate from {what}: {problem}"),
                &certificate_hint(&error, settings),
            );
            report.skip("token", "needs the certificate");
            report.skip("Graph call", "needs a token");
            return false;
        }
    }

    let scope = settings.graph_scope();
    match credential.token(&scope).await {
        Ok(token) => {
            let minutes = (token.expires_on - azure_core::time::OffsetDateTime::now_utc()).whole_minutes();
            report.pass(
                &format!("token for {scope}"),
                Some(&format!("from {}, valid for {minutes} min", settings.token_url())),
            );
        }
        Err(error) => {
            report.fail(
                &format!("token for {scope}: {error}"),
                &token_hint(&error, &credential, settings),
            );
            report.skip("Graph call", "needs a token");
            return false;
        }
    }

    let check_policy = RetryPolicy {
        max_attempts: 3,
        total_timeout: Duration::from_secs(45),
        ..RetryPolicy::graph()
    };
    let client = GraphClient::from_settings(settings, http, credential).with_retry_policy(check_policy);
    match client.probe_audit_log().await {
        Ok(records) => report.pass(
            "Graph call GET /v1.0/auditLogs/directoryAudits?$top=1",
            Some(&format!("{records} record(s) returned")),
        ),
        Err(error) => {
            report.fail(
                &format!("Graph call GET /v1.0/auditLogs/directoryAudits?$top=1: {error}"),
                &graph_hint(&error),
            );
            return false;
        }
    }
    report.note(
        "the other Graph permissions (User.Read.All, User.ReadWrite.All, GroupMember.ReadWrite.All) \
         are used by ProvisionUser and are not probed here",
    );
    true
}

fn key_vault_hint(error: &KeyVaultError, settings: &GraphSettings) -> String {
    let identity = match settings.key_vault_identity {
        KeyVaultIdentity::DeveloperTools => {
            "sign in with `az login` (or `azd auth login`), or set GRAPH_CERTIFICATE_PATH to use a local file"
        }
        KeyVaultIdentity::ManagedIdentity { .. } => {
            "turn on the Function App's managed identity (Identity blade); for a user-assigned identity set \
             MANAGED_IDENTITY_CLIENT_ID to its client id"
        }
    };
    match error {
        KeyVaultError::Credential { .. } => identity.to_string(),
        KeyVaultError::Http { status: 401 | 403, .. } => format!(
            "give the identity read access to the vault's secrets: the \"Key Vault Secrets User\" role (RBAC vaults) \
             or a Get secret access policy; the identity is the {}",
            credentials::identity_name(settings.key_vault_identity)
        ),
        KeyVaultError::Http { status: 404, .. } => format!(
            "no certificate named \"{}\" in the vault: check GRAPH_CERTIFICATE_NAME (it must be a Key Vault \
             certificate, whose secret of the same name holds the private key)",
            match &settings.certificate {
                CertificateLocation::KeyVault { certificate_name, .. } => certificate_name.as_str(),
                CertificateLocation::File(_) => "",
            }
        ),
        KeyVaultError::Http { .. } => "check GRAPH_KEY_VAULT_URL and the vault's health".to_string(),
        KeyVaultError::Connection | KeyVaultError::Timeout => {
            "check GRAPH_KEY_VAULT_URL and that the vault's network rules allow this app".to_string()
        }
        KeyVaultError::EmptySecret | KeyVaultError::Certificate(_) => {
            "import the certificate with its private key (PFX with an empty password, or PEM) into Key Vault \
             as a certificate"
                .to_string()
        }
        KeyVaultError::Client(_) | KeyVaultError::Other(_) => {
            format!("check GRAPH_KEY_VAULT_URL; {identity}")
        }
    }
}

fn certificate_hint(error: &CredentialError, settings: &GraphSettings) -> String {
    match error {
        CredentialError::Certificate(error) => load_hint(error, settings),
        _ => "see the error above".to_string(),
    }
}

fn load_hint(error: &CertificateLoadError, settings: &GraphSettings) -> String {
    match error {
        CertificateLoadError::KeyVault(error) => key_vault_hint(error, settings),
        CertificateLoadError::File { .. } => "check GRAPH_CERTIFICATE_PATH and the file's permissions".to_string(),
        CertificateLoadError::Parse { .. } => {
            "use a PFX exported with an empty password (`openssl pkcs12 -export -passout pass:`) or a PEM file \
             with an unencrypted private key and the certificate"
                .to_string()
        }
    }
}

fn token_hint(error: &CredentialError, credential: &CertificateCredential, settings: &GraphSettings) -> String {
    match error {
        CredentialError::Rejected(rejection) => rejection_hint(rejection, settings),
        CredentialError::Unavailable { .. } => {
            "check AZURE_AUTHORITY_HOST and the network path to it (proxy: HTTPS_PROXY; TLS inspection: SSL_CERT_FILE)"
                .to_string()
        }
        CredentialError::Certificate(error) => load_hint(error, settings),
        CredentialError::InvalidResponse => format!(
            "the answer from {} is not an OAuth token response: check AZURE_AUTHORITY_HOST",
            credential.token_url()
        ),
        CredentialError::Signing => "the private key could not sign; re-import the certificate".to_string(),
    }
}

fn rejection_hint(rejection: &TokenEndpointError, settings: &GraphSettings) -> String {
    let client = settings.client_id;
    if rejection.has_code(700027) || rejection.has_code(700023) {
        format!(
            "the certificate is not registered on app registration {client}: upload its public part (.cer) under \
             Certificates & secrets (a rotated Key Vault certificate must be registered too)"
        )
    } else if rejection.has_code(700016) {
        format!(
            "no application {client} in tenant {}: check GRAPH_CLIENT_ID and GRAPH_TENANT_ID",
            settings.tenant_id
        )
    } else if rejection.has_code(90002) || rejection.has_code(90023) {
        format!(
            "tenant {} was not found: check GRAPH_TENANT_ID / ENTRA_TENANT_ID",
            settings.tenant_id
        )
    } else if rejection.has_code(700024) {
        "the client assertion's time is out of range: check this machine's clock".to_string()
    } else if rejection.is_certificate_rejection() {
        format!(
            "the app registration {client} does not accept this certificate: register it under Certificates & secrets"
        )
    } else {
        "check GRAPH_CLIENT_ID, GRAPH_TENANT_ID and AZURE_AUTHORITY_HOST".to_string()
    }
}

fn graph_hint(error: &GraphError) -> String {
    match (error.status(), error.code()) {
        (Some(403), _) => "grant the app registration the Microsoft Graph application permission AuditLog.Read.All \
                           and grant admin consent"
            .to_string(),
        (Some(401), _) => {
            "Graph refused the token: GRAPH_BASE_URL must belong to the same cloud as AZURE_AUTHORITY_HOST".to_string()
        }
        (Some(429), _) => {
            "Graph is throttling this app (5 requests / 10 s for the audit log): try again later".to_string()
        }
        (Some(status), _) if status >= 500 => "Graph is having trouble: try again later".to_string(),
        _ if error.is_transient() => {
            "check GRAPH_BASE_URL and the network path to it (HTTPS_PROXY, SSL_CERT_FILE)".to_string()
        }
        _ => "check GRAPH_BASE_URL".to_string(),
    }
}

/// The report: one line per finding, `[ ok ]`, `[FAIL]`, `[warn]`, `[skip]`.
struct Report<'a> {
    out: &'a mut dyn Write,
    failures: usize,
    passes: usize,
}

impl<'a> Report<'a> {
    fn new(out: &'a mut dyn Write) -> Report<'a> {
        Report {
            out,
            failures: 0,
            passes: 0,
        }
    }

    fn line(&mut self, text: &str) {
        // A closed stdout must not abort the checks.
        let _ = writeln!(self.out, "{text}");
    }

    fn section(&mut self, title: &str) {
        self.line("");
        self.line(title);
    }

    fn item(&mut self, name: &str, value: &str) {
        self.line(&format!("  {name:<18} {value}"));
    }

    fn pass(&mut self, what: &str, detail: Option<&str>) {
        self.passes += 1;
        self.line(&format!("  [ ok ] {what}"));
        if let Some(detail) = detail {
            self.line(&format!("         {detail}"));
        }
    }

    fn fail(&mut self, what: &str, fix: &str) {
        self.failures += 1;
        self.line(&format!("  [FAIL] {what}"));
        self.line(&format!("         fix: {fix}"));
    }

    fn warn(&mut self, what: &str) {
        self.line(&format!("  [warn] {what}"));
    }

    fn skip(&mut self, what: &str, why: &str) {
        self.line(&format!("  [skip] {what}: {why}"));
    }

    fn note(&mut self, what: &str) {
        self.line(&format!("  note: {what}"));
    }

    fn finish(mut self, code: ExitCode) -> ExitCode {
        self.line("");
        if code == ExitCode::SUCCESS {
            self.line(&format!("Result: all {} checks passed", self.passes));
        } else {
            self.line(&format!(
                "Result: {} problem(s) found, {} check(s) passed",
                self.failures, self.passes
            ));
        }
        let _ = self.out.flush();
        code
    }
}
