//! Settings: read once from the environment (app settings in Azure, `local.settings.json`
//! under `func start`), validated at start-up. A bad setting stops the process with a
//! message that names it and says what a good value looks like.

pub mod destinations;
pub mod graph;
pub mod poll;
pub mod provisioning;
pub mod storage;

use crate::attribute_submit::jwks::default_jwks_urls;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;
use uuid::Uuid;

/// The Entra authentication events service, the only caller of a custom extension.
pub const AUTHENTICATION_EVENTS_APP_ID: &str = "99045fe1-7639-4a75-9d4a-577b6ca3810f";

#[derive(Debug, Clone)]
pub struct Settings {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: set by the Functions host.
    pub port: u16,
    pub attribute_submit: AttributeSubmitSettings,
    /// Graph access: needed by PollAuditLogs, ProvisionUser and `check`, not by AttributeSubmit.
    pub graph: graph::GraphConfig,
    /// Azure Storage (the host's `AzureWebJobsStorage`) or the embedded store.
    pub storage: storage::StorageSettings,
    pub poll: crate::poll_audit_logs::poller::PollSettings,
    pub destinations: destinations::DestinationSettings,
    /// ProvisionUser's Graph destinations, retry schedule and `run`'s poll interval.
    pub provisioning: provisioning::ProvisioningSettings,
}

#[derive(Debug, Clone)]
pub struct AttributeSubmitSettings {
    pub token_validation: TokenValidation,
    /// `SIGNUP_RULES_PATH`: no file means no rules, every sign-up continues.
    pub rules_path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum TokenValidation {
    Enabled(TokenValidationSettings),
    /// Local development only; refused when running in Azure.
    Disabled,
}

#[derive(Debug, Clone)]
pub struct TokenValidationSettings {
    pub tenant_id: Uuid,
    /// `EXTENSION_APP_ID` and its accepted audience forms.
    pub app_id: Uuid,
    pub audiences: Vec<String>,
    pub jwks_urls: Vec<Url>,
    pub jwks_refresh_interval: Duration,
}

/// What the settings are loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `serve` / `run`: every function, AttributeSubmit included.
    Handler,
    /// Operator commands that never serve AttributeSubmit.
    Tool,
}

/// Every problem found, so one start-up attempt reports them all.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct SettingsError {
    pub problems: Vec<SettingProblem>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{setting}: {problem}; expected {expected}")]
pub struct SettingProblem {
    pub setting: &'static str,
    pub problem: String,
    pub expected: &'static str,
}

/// Reads typed values from a map of settings, collecting problems instead of stopping at
/// the first. Values are never echoed: some settings hold secrets.
pub(crate) struct Reader<'a> {
    values: &'a HashMap<String, String>,
    problems: Vec<SettingProblem>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(values: &'a HashMap<String, String>) -> Reader<'a> {
        Reader {
            values,
            problems: Vec::new(),
        }
    }

    /// A set, non-blank value.
    pub(crate) fn raw(&self, setting: &str) -> Option<&'a str> {
        self.values
            .get(setting)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    pub(crate) fn problem(&mut self, setting: &'static str, problem: impl Into<String>, expected: &'static str) {
        self.problems.push(SettingProblem {
            setting,
            problem: problem.into(),
            expected,
        });
    }

    pub(crate) fn parsed<T: std::str::FromStr>(&mut self, setting: &'static str, expected: &'static str) -> Option<T> {
        let raw = self.raw(setting)?;
        match raw.parse() {
            Ok(value) => Some(value),
            Err(_) => {
                self.problem(setting, "is not valid", expected);
                None
            }
        }
    }

    pub(crate) fn required<T: std::str::FromStr>(
        &mut self,
        setting: &'static str,
        expected: &'static str,
    ) -> Option<T> {
        if self.raw(setting).is_none() {
            self.problem(setting, "is not set", expected);
            return None;
        }
        self.parsed(setting, expected)
    }

    pub(crate) fn flag(&mut self, setting: &'static str) -> bool {
        match self.raw(setting).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") | Some("0") | Some("no") | Some("off") => false,
            Some("true") | Some("1") | Some("yes") | Some("on") => true,
            Some(_) => {
                self.problem(setting, "is not a boolean", "true or false");
                false
            }
        }
    }

    pub(crate) fn list(&self, setting: &str) -> Vec<&'a str> {
        self.raw(setting)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A URL list where each must be https, except loopback addresses (local fakes, tests).
    pub(crate) fn endpoint_urls(&mut self, setting: &'static str) -> Vec<Url> {
        let mut urls = Vec::new();
        for item in self.list(setting) {
            match parse_endpoint(item) {
                Ok(url) => urls.push(url),
                Err(problem) => self.problem(
                    setting,
                    problem,
                    "comma-separated https:// URLs (http:// only for 127.0.0.1, [::1] or localhost)",
                ),
            }
        }
        urls
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, SettingsError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(SettingsError {
                problems: self.problems,
            })
        }
    }
}

/// An endpoint URL: https, or http on a loopback address.
pub fn parse_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|_| "an entry is not a URL".to_string())?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("an entry uses http:// on a non-loopback host".to_string()),
        _ => Err("an entry is neither https:// nor http://".to_string()),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(url::Host::Ipv6(address)) => IpAddr::V6(address).is_loopback(),
        None => false,
    }
}

const GUID: &str = "a GUID such as aaaabbbb-0000-cccc-1111-dddd2222eeee";

impl Settings {
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_map(&std::env::vars().collect())
    }

    /// Settings for an operator command (`poll`, `status`, ...): AttributeSubmit's are optional.
    pub fn from_env_for_tools() -> Result<Settings, SettingsError> {
        Settings::from_map_for(&std::env::vars().collect(), Scope::Tool)
    }

    pub fn from_map(values: &HashMap<String, String>) -> Result<Settings, SettingsError> {
        Settings::from_map_for(values, Scope::Handler)
    }

    pub fn from_map_for(values: &HashMap<String, String>, scope: Scope) -> Result<Settings, SettingsError> {
        let mut reader = Reader::new(values);
        let port = reader
            .parsed("FUNCTIONS_CUSTOMHANDLER_PORT", "a TCP port number (1-65535)")
            .unwrap_or(8080);

        let skip_validation = reader.flag("EXTENSION_SKIP_TOKEN_VALIDATION");
        let running_in_azure = reader.raw("WEBSITE_INSTANCE_ID").is_some();
        let extension_configured = reader.raw("ENTRA_TENANT_ID").is_some() || reader.raw("EXTENSION_APP_ID").is_some();
        let token_validation = if scope == Scope::Tool && !skip_validation && !extension_configured {
            // Operator commands never serve AttributeSubmit: its settings are not needed.
            TokenValidation::Disabled
        } else if skip_validation {
            if running_in_azure {
                reader.problem(
                    "EXTENSION_SKIP_TOKEN_VALIDATION",
                    "is true while running in Azure (WEBSITE_INSTANCE_ID is set); anyone could call the extension",
                    "false (or unset) in Azure; true only on a developer machine",
                );
            }
            TokenValidation::Disabled
        } else {
            let tenant_id = reader.required::<Uuid>("ENTRA_TENANT_ID", GUID);
            let app_id =
                reader.required::<Uuid>("EXTENSION_APP_ID", "the extension app registration's client id, a GUID");
            let mut jwks_urls = reader.endpoint_urls("EXTENSION_JWKS_URLS");
            let refresh_minutes = reader
                .parsed::<u64>("EXTENSION_JWKS_REFRESH_MINUTES", "a whole number of minutes, 1 or more")
                .unwrap_or(60);
            if refresh_minutes == 0 {
                reader.problem(
                    "EXTENSION_JWKS_REFRESH_MINUTES",
                    "is 0",
                    "a whole number of minutes, 1 or more",
                );
            }
            let extra_audiences: Vec<String> = reader
                .list("EXTENSION_AUDIENCES")
                .into_iter()
                .map(str::to_string)
                .collect();
            match (tenant_id, app_id) {
                (Some(tenant_id), Some(app_id)) => {
                    if jwks_urls.is_empty() {
                        jwks_urls = default_jwks_urls(&tenant_id);
                    }
                    let mut audiences = vec![app_id.to_string(), format!("api://{app_id}")];
                    audiences.extend(extra_audiences);
                    TokenValidation::Enabled(TokenValidationSettings {
                        tenant_id,
                        app_id,
                        audiences,
                        jwks_urls,
                        jwks_refresh_interval: Duration::from_secs(refresh_minutes.max(1) * 60),
                    })
                }
                _ => TokenValidation::Disabled, // unreachable past `finish`: the problems are recorded
            }
        };

        let rules_path = reader.raw("SIGNUP_RULES_PATH").map(PathBuf::from);
        if let Some(path) = &rules_path
            && !path.is_file()
        {
            reader.problem(
                "SIGNUP_RULES_PATH",
                "names a file that does not exist",
                "the path of a rules TOML file, or unset for no rules",
            );
        }

        let graph = graph::GraphSettings::from_reader(&mut reader);
        let storage = storage::StorageSettings::from_reader(&mut reader);
        let poll = poll::from_reader(&mut reader);
        let destinations = destinations::DestinationSettings::from_reader(&mut reader);
        let provisioning = provisioning::from_reader(&mut reader);
        reader.finish(Settings {
            port,
            attribute_submit: AttributeSubmitSettings {
                token_validation,
                rules_path,
            },
            graph,
            storage,
            poll,
            destinations,
            provisioning,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    const TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
    const APP: &str = "11112222-bbbb-3333-cccc-4444dddd5555";

    #[test]
    fn a_minimal_configuration_uses_the_default_key_endpoints_and_port() {
        let settings = settings(&[("ENTRA_TENANT_ID", TENANT), ("EXTENSION_APP_ID", APP)]).unwrap();
        assert_eq!(settings.port, 8080);
        let TokenValidation::Enabled(validation) = settings.attribute_submit.token_validation else {
            panic!("validation is on by default")
        };
        assert_eq!(validation.jwks_urls.len(), 2);
        assert!(validation.jwks_urls[0].as_str().contains(".ciamlogin.com/"));
        assert!(validation.audiences.contains(&format!("api://{APP}")));
    }

    #[test]
    fn missing_and_malformed_settings_are_all_named() {
        let error = settings(&[("ENTRA_TENANT_ID", "contoso"), ("FUNCTIONS_CUSTOMHANDLER_PORT", "http")]).unwrap_err();
        let names: Vec<_> = error.problems.iter().map(|p| p.setting).collect();
        assert_eq!(
            names,
            vec!["FUNCTIONS_CUSTOMHANDLER_PORT", "ENTRA_TENANT_ID", "EXTENSION_APP_ID"]
        );
        assert!(error.to_string().contains("expected a GUID"));
    }

    #[test]
    fn jwks_urls_must_be_https_except_on_loopback() {
        let base = [("ENTRA_TENANT_ID", TENANT), ("EXTENSION_APP_ID", APP)];
        let ok = settings(&[
            base[0],
            base[1],
            ("EXTENSION_JWKS_URLS", "http://127.0.0.1:9/keys, https://keys.example/k"),
        ])
        .unwrap();
        let TokenValidation::Enabled(validation) = ok.attribute_submit.token_validation else {
            panic!()
        };
        assert_eq!(validation.jwks_urls.len(), 2);
        let error = settings(&[base[0], base[1], ("EXTENSION_JWKS_URLS", "http://keys.example/k")]).unwrap_err();
        assert_eq!(error.problems[0].setting, "EXTENSION_JWKS_URLS");
    }

    #[test]
    fn skipping_validation_is_refused_in_azure() {
        assert!(settings(&[("EXTENSION_SKIP_TOKEN_VALIDATION", "true")]).is_ok());
        let error = settings(&[
            ("EXTENSION_SKIP_TOKEN_VALIDATION", "true"),
            ("WEBSITE_INSTANCE_ID", "abc"),
        ])
        .unwrap_err();
        assert_eq!(error.problems[0].setting, "EXTENSION_SKIP_TOKEN_VALIDATION");
    }

    #[test]
    fn a_rules_path_that_does_not_exist_is_an_error() {
        let error = settings(&[
            ("EXTENSION_SKIP_TOKEN_VALIDATION", "1"),
            ("SIGNUP_RULES_PATH", "/nonexistent/rules.toml"),
        ])
        .unwrap_err();
        assert_eq!(error.problems[0].setting, "SIGNUP_RULES_PATH");
    }
}
