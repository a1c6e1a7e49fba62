//! Settings of ProvisionUser's external destinations. A destination is enabled when any of
//! its settings is present; then its required settings must all be there, or start-up fails
//! naming the missing ones. Values are never echoed (several are secrets), and secrets are
//! held as [`SecretString`] so they cannot reach `Debug` or logs.
//!
//! | Setting | Required | Default | Meaning |
//! |---|---|---|---|
//! | `MAILCHIMP_API_KEY` | for Mailchimp | | Secret. An API key, `<key>-<dc>`; `dc` (e.g. `us21`) picks the server. |
//! | `MAILCHIMP_LIST_ID` | for Mailchimp | | The audience (list) id, e.g. `a1b2c3d4e5`. |
//! | `MAILCHIMP_CONSENT_ATTRIBUTE` | no | `onMailingList` | Short name of the extension attribute whose true value means the user agreed to the mailing list. |
//! | `MAILCHIMP_MERGE_FIELDS` | no | `FNAME=givenName,LNAME=surname` | Merge tag = user property (`givenName`, `surname`, `displayName`, `mail`, `id`, `createdDateTime` or an extension attribute's short name); `none` for none. |
//! | `MAILCHIMP_STATUS_IF_NEW` | no | `subscribed` | `subscribed`, or `pending` to have Mailchimp send a double opt-in email. |
//! | `MAILCHIMP_BASE_URL` | no | `https://{dc}.api.mailchimp.com` | API root, without `/3.0`. |
//! | `STRIPE_API_KEY` | for Stripe | | Secret. A secret (`sk_...`) or restricted (`rk_...`) key with write access to Customers. |
//! | `STRIPE_SEARCH_BEFORE_CREATE` | no | `true` | Look the customer up by `metadata['entra_object_id']` before creating one. |
//! | `STRIPE_BASE_URL` | no | `https://api.stripe.com` | API root, without `/v1`. |
//! | `SALESFORCE_LOGIN_URL` | for Salesforce | | The org's My Domain URL, e.g. `https://contoso.my.salesforce.com`. |
//! | `SALESFORCE_CLIENT_ID` | for Salesforce | | The consumer key of the connected (or external client) app with the client credentials flow enabled. |
//! | `SALESFORCE_CLIENT_SECRET` | for Salesforce | | Secret. Its consumer secret. |
//! | `SALESFORCE_API_VERSION` | no | `v61.0` | REST API version, `vNN.N`. |
//! | `SALESFORCE_EXTERNAL_ID_FIELD` | no | `Entra_Object_Id__c` | The Contact field (External ID, Unique) holding the Entra object id. |
//! | `SIGNUP_DATABASE_URL` | for PostgreSQL | | Secret (holds a password). `postgres://user:password@host:5432/db?sslmode=require`, or the key=value form. |
//! | `SIGNUP_DATABASE_POOL_SIZE` | no | `4` | Connections per process, 1-64. |
//! | `DESTINATIONS_TIMEOUT_SECONDS` | no | `30` | Time limit of one call to a destination, 1-300 s. |
//!
//! Base URLs must be `https://`, except on loopback addresses (local fakes). For
//! `SIGNUP_DATABASE_URL`: a non-loopback host without `sslmode` gets `sslmode=require`;
//! `verify-ca` and `verify-full` are accepted and mean the same as `require`, because the
//! server's certificate and host name are always verified (against the platform's roots).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use tokio_postgres::config::{Host, SslMode};
use url::Url;

use super::{Reader, SettingsError, parse_endpoint};

pub const MAILCHIMP_API_KEY: &str = "MAILCHIMP_API_KEY";
pub const MAILCHIMP_LIST_ID: &str = "MAILCHIMP_LIST_ID";
pub const MAILCHIMP_CONSENT_ATTRIBUTE: &str = "MAILCHIMP_CONSENT_ATTRIBUTE";
pub const MAILCHIMP_MERGE_FIELDS: &str = "MAILCHIMP_MERGE_FIELDS";
pub const MAILCHIMP_STATUS_IF_NEW: &str = "MAILCHIMP_STATUS_IF_NEW";
pub const MAILCHIMP_BASE_URL: &str = "MAILCHIMP_BASE_URL";
pub const STRIPE_API_KEY: &str = "STRIPE_API_KEY";
pub const STRIPE_SEARCH_BEFORE_CREATE: &str = "STRIPE_SEARCH_BEFORE_CREATE";
pub const STRIPE_BASE_URL: &str = "STRIPE_BASE_URL";
pub const SALESFORCE_LOGIN_URL: &str = "SALESFORCE_LOGIN_URL";
pub const SALESFORCE_CLIENT_ID: &str = "SALESFORCE_CLIENT_ID";
pub const SALESFORCE_CLIENT_SECRET: &str = "SALESFORCE_CLIENT_SECRET";
pub const SALESFORCE_API_VERSION: &str = "SALESFORCE_API_VERSION";
pub const SALESFORCE_EXTERNAL_ID_FIELD: &str = "SALESFORCE_EXTERNAL_ID_FIELD";
pub const SIGNUP_DATABASE_URL: &str = "SIGNUP_DATABASE_URL";
pub const SIGNUP_DATABASE_POOL_SIZE: &str = "SIGNUP_DATABASE_POOL_SIZE";
pub const DESTINATIONS_TIMEOUT_SECONDS: &str = "DESTINATIONS_TIMEOUT_SECONDS";

const MAILCHIMP_SETTINGS: [&str; 6] = [
    MAILCHIMP_API_KEY,
    MAILCHIMP_LIST_ID,
    MAILCHIMP_CONSENT_ATTRIBUTE,
    MAILCHIMP_MERGE_FIELDS,
    MAILCHIMP_STATUS_IF_NEW,
    MAILCHIMP_BASE_URL,
];
const STRIPE_SETTINGS: [&str; 3] = [STRIPE_API_KEY, STRIPE_SEARCH_BEFORE_CREATE, STRIPE_BASE_URL];
const SALESFORCE_SETTINGS: [&str; 5] = [
    SALESFORCE_LOGIN_URL,
    SALESFORCE_CLIENT_ID,
    SALESFORCE_CLIENT_SECRET,
    SALESFORCE_API_VERSION,
    SALESFORCE_EXTERNAL_ID_FIELD,
];
const POSTGRES_SETTINGS: [&str; 2] = [SIGNUP_DATABASE_URL, SIGNUP_DATABASE_POOL_SIZE];

/// Every setting this module reads, for reports.
pub const ALL: [&str; 17] = [
    MAILCHIMP_API_KEY,
    MAILCHIMP_LIST_ID,
    MAILCHIMP_CONSENT_ATTRIBUTE,
    MAILCHIMP_MERGE_FIELDS,
    MAILCHIMP_STATUS_IF_NEW,
    MAILCHIMP_BASE_URL,
    STRIPE_API_KEY,
    STRIPE_SEARCH_BEFORE_CREATE,
    STRIPE_BASE_URL,
    SALESFORCE_LOGIN_URL,
    SALESFORCE_CLIENT_ID,
    SALESFORCE_CLIENT_SECRET,
    SALESFORCE_API_VERSION,
    SALESFORCE_EXTERNAL_ID_FIELD,
    SIGNUP_DATABASE_URL,
    SIGNUP_DATABASE_POOL_SIZE,
    DESTINATIONS_TIMEOUT_SECONDS,
];

pub const DEFAULT_CONSENT_ATTRIBUTE: &str = "onMailingList";
pub const DEFAULT_MERGE_FIELDS: &str = "FNAME=givenName,LNAME=surname";
pub const DEFAULT_STRIPE_BASE_URL: &str = "https://api.stripe.com";
pub const DEFAULT_SALESFORCE_API_VERSION: &str = "v61.0";
pub const DEFAULT_SALESFORCE_EXTERNAL_ID_FIELD: &str = "Entra_Object_Id__c";
pub const DEFAULT_POOL_SIZE: usize = 4;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const ENDPOINT: &str = "an https:// URL (http:// only for 127.0.0.1, [::1] or localhost)";

/// The external destinations that are configured; `None` means disabled.
#[derive(Debug, Clone, Default)]
pub struct DestinationSettings {
    pub mailchimp: Option<MailchimpSettings>,
    pub stripe: Option<StripeSettings>,
    pub salesforce: Option<SalesforceSettings>,
    pub postgres: Option<PostgresSettings>,
}

#[derive(Clone)]
pub struct MailchimpSettings {
    pub api_key: SecretString,
    /// The data center, the key's suffix after the last `-` (e.g. `us21`).
    pub data_center: String,
    pub list_id: String,
    pub consent_attribute: String,
    pub merge_fields: Vec<MergeField>,
    pub status_if_new: MailchimpStatus,
    pub base_url: Url,
    pub timeout: Duration,
}

/// A Mailchimp merge tag filled from a user property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeField {
    /// Upper case, at most 10 characters (Mailchimp's limit), e.g. `FNAME`.
    pub tag: String,
    /// A property name for [`crate::provisioning::destinations::NewUser::property`].
    pub source: String,
}

/// The status a new member gets (an existing member's status is never changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailchimpStatus {
    Subscribed,
    /// Mailchimp sends a confirmation email first (double opt-in).
    Pending,
}

impl MailchimpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MailchimpStatus::Subscribed => "subscribed",
            MailchimpStatus::Pending => "pending",
        }
    }
}

#[derive(Clone)]
pub struct StripeSettings {
    pub api_key: SecretString,
    pub base_url: Url,
    pub search_before_create: bool,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct SalesforceSettings {
    pub login_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    /// `vNN.N`.
    pub api_version: String,
    pub external_id_field: String,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct PostgresSettings {
    /// Parsed `SIGNUP_DATABASE_URL`; holds the password (its own `Debug` redacts it).
    pub config: tokio_postgres::Config,
    pub pool_size: usize,
    pub timeout: Duration,
}

impl fmt::Debug for MailchimpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailchimpSettings")
            .field("api_key", &"[redacted]")
            .field("data_center", &self.data_center)
            .field("list_id", &self.list_id)
            .field("consent_attribute", &self.consent_attribute)
            .field("merge_fields", &self.merge_fields)
            .field("status_if_new", &self.status_if_new)
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeSettings")
            .field("api_key", &"[redacted]")
            .field("base_url", &self.base_url.as_str())
            .field("search_before_create", &self.search_before_create)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Debug for SalesforceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SalesforceSettings")
            .field("login_url", &self.login_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("api_version", &self.api_version)
            .field("external_id_field", &self.external_id_field)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Where, as whom, how: never the password.
impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        f.debug_struct("PostgresSettings")
            .field("hosts", &hosts)
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("ssl_mode", &self.config.get_ssl_mode())
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl DestinationSettings {
    pub fn from_env() -> Result<DestinationSettings, SettingsError> {
        DestinationSettings::from_map(&std::env::vars().collect())
    }

    pub fn from_map(values: &HashMap<String, String>) -> Result<DestinationSettings, SettingsError> {
        let mut reader = Reader::new(values);
        let settings = DestinationSettings::from_reader(&mut reader);
        reader.finish(settings)
    }

    /// Reads every destination's settings, recording problems on `reader`.
    pub(crate) fn from_reader(reader: &mut Reader<'_>) -> DestinationSettings {
        let timeout = read_timeout(reader);
        DestinationSettings {
            mailchimp: any_set(reader, &MAILCHIMP_SETTINGS)
                .then(|| read_mailchimp(reader, timeout))
                .flatten(),
            stripe: any_set(reader, &STRIPE_SETTINGS)
                .then(|| read_stripe(reader, timeout))
                .flatten(),
            salesforce: any_set(reader, &SALESFORCE_SETTINGS)
                .then(|| read_salesforce(reader, timeout))
                .flatten(),
            postgres: any_set(reader, &POSTGRES_SETTINGS)
                .then(|| read_postgres(reader, timeout))
                .flatten(),
        }
    }

    /// Names of the enabled destinations, for the start-up log line.
    pub fn enabled(&self) -> Vec<&'static str> {
        [
            (self.mailchimp.is_some(), "mailchimp"),
            (self.stripe.is_some(), "stripe"),
            (self.salesforce.is_some(), "salesforce"),
            (self.postgres.is_some(), "postgres"),
        ]
        .into_iter()
        .filter_map(|(enabled, name)| enabled.then_some(name))
        .collect()
    }
}

fn any_set(reader: &Reader<'_>, settings: &[&str]) -> bool {
    settings.iter().any(|setting| reader.raw(setting).is_some())
}

fn read_timeout(reader: &mut Reader<'_>) -> Duration {
    const EXPECTED: &str = "a whole number of seconds from 1 to 300";
    match reader.parsed::<u64>(DESTINATIONS_TIMEOUT_SECONDS, EXPECTED) {
        None => DEFAULT_TIMEOUT,
        Some(seconds @ 1..=300) => Duration::from_secs(seconds),
        Some(_) => {
            reader.problem(DESTINATIONS_TIMEOUT_SECONDS, "is out of range", EXPECTED);
            DEFAULT_TIMEOUT
        }
    }
}

/// A required text setting, recorded as missing when absent.
fn required_text<'a>(reader: &mut Reader<'a>, setting: &'static str, expected: &'static str) -> Option<&'a str> {
    let value = reader.raw(setting);
    if value.is_none() {
        reader.problem(setting, "is not set", expected);
    }
    value
}

/// An optional endpoint, or `default` (a constant, known good).
fn endpoint_or(reader: &mut Reader<'_>, setting: &'static str, default: &str) -> Option<Url> {
    match reader.raw(setting) {
        None => Url::parse(default).ok(),
        Some(raw) => match parse_endpoint(raw) {
            Ok(url) => Some(url),
            Err(problem) => {
                reader.problem(setting, problem.replace("an entry", "the value"), ENDPOINT);
                None
            }
        },
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_mailchimp(reader: &mut Reader<'_>, timeout: Duration) -> Option<MailchimpSettings> {
    const KEY: &str = "a Mailchimp API key ending in its data center, such as 0123456789abcdef0123456789abcdef-us21";
    let api_key = required_text(reader, MAILCHIMP_API_KEY, KEY);
    let data_center = api_key.and_then(|key| {
        let dc = key.rsplit_once('-').map(|(_, dc)| dc).unwrap_or_default();
        let valid = dc.len() >= 3
            && dc.starts_with(|c: char| c.is_ascii_lowercase())
            && dc.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && dc.ends_with(|c: char| c.is_ascii_digit());
        if !valid {
            reader.problem(MAILCHIMP_API_KEY, "does not end in a data center such as -us21", KEY);
        }
        valid.then(|| dc.to_string())
    });

    const LIST: &str = "the audience (list) id, letters and digits, such as a1b2c3d4e5";
    let list_id = required_text(reader, MAILCHIMP_LIST_ID, LIST).and_then(|list| {
        let valid = list.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid {
            reader.problem(MAILCHIMP_LIST_ID, "is not valid", LIST);
        }
        valid.then(|| list.to_string())
    });

    let consent_attribute = reader
        .raw(MAILCHIMP_CONSENT_ATTRIBUTE)
        .unwrap_or(DEFAULT_CONSENT_ATTRIBUTE);
    if !is_name(consent_attribute) {
        reader.problem(
            MAILCHIMP_CONSENT_ATTRIBUTE,
            "is not an attribute's short name",
            "the short name of a boolean extension attribute (letters, digits, underscores), such as onMailingList",
        );
    }

    let merge_fields = read_merge_fields(reader);

    let status_if_new = match reader
        .raw(MAILCHIMP_STATUS_IF_NEW)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("subscribed") => MailchimpStatus::Subscribed,
        Some("pending") => MailchimpStatus::Pending,
        Some(_) => {
            reader.problem(MAILCHIMP_STATUS_IF_NEW, "is not valid", "subscribed or pending");
            MailchimpStatus::Subscribed
        }
    };

    let base_url = match (&data_center, reader.raw(MAILCHIMP_BASE_URL)) {
        (_, Some(_)) => endpoint_or(reader, MAILCHIMP_BASE_URL, ""),
        (Some(dc), None) => Url::parse(&format!("https://{dc}.api.mailchimp.com")).ok(),
        (None, None) => None,
    };

    Some(MailchimpSettings {
        api_key: SecretString::from(api_key?),
        data_center: data_center?,
        list_id: list_id?,
        consent_attribute: consent_attribute.to_string(),
        merge_fields: merge_fields?,
        status_if_new,
        base_url: base_url?,
        timeout,
    })
}

fn read_merge_fields(reader: &mut Reader<'_>) -> Option<Vec<MergeField>> {
    const EXPECTED: &str = "TAG=property pairs separated by commas, such as FNAME=givenName,LNAME=surname \
                            (tags: up to 10 letters, digits or underscores), or none";
    let raw = reader.raw(MAILCHIMP_MERGE_FIELDS).unwrap_or(DEFAULT_MERGE_FIELDS);
    if raw.eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut fields = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(tag, source)| {
            let (tag, source) = (tag.trim().to_ascii_uppercase(), source.trim());
            (is_name(&tag) && tag.len() <= 10 && is_name(source)).then(|| MergeField {
                tag,
                source: source.to_string(),
            })
        });
        match parsed {
            Some(field) if fields.iter().any(|known: &MergeField| known.tag == field.tag) => {
                reader.problem(
                    MAILCHIMP_MERGE_FIELDS,
                    format!("names the tag {} twice", field.tag),
                    EXPECTED,
                );
                return None;
            }
            Some(field) => fields.push(field),
            None => {
                reader.problem(MAILCHIMP_MERGE_FIELDS, "is not valid", EXPECTED);
                return None;
            }
        }
    }
    Some(fields)
}

fn read_stripe(reader: &mut Reader<'_>, timeout: Duration) -> Option<StripeSettings> {
    const KEY: &str =
        "a Stripe secret key (sk_live_..., sk_test_...) or restricted key (rk_...) with write access to Customers";
    let api_key = required_text(reader, STRIPE_API_KEY, KEY).and_then(|key| {
        let valid = ["sk_live_", "sk_test_", "rk_live_", "rk_test_"]
            .iter()
            .any(|prefix| key.starts_with(prefix));
        if !valid {
            // A publishable key (pk_...) is the classic mistake: it cannot create customers.
            reader.problem(STRIPE_API_KEY, "is not a secret or restricted key", KEY);
        }
        valid.then(|| SecretString::from(key))
    });
    let search_before_create =
        reader.raw(STRIPE_SEARCH_BEFORE_CREATE).is_none() || reader.flag(STRIPE_SEARCH_BEFORE_CREATE);
    let base_url = endpoint_or(reader, STRIPE_BASE_URL, DEFAULT_STRIPE_BASE_URL);
    Some(StripeSettings {
        api_key: api_key?,
        base_url: base_url?,
        search_before_create,
        timeout,
    })
}

fn read_salesforce(reader: &mut Reader<'_>, timeout: Duration) -> Option<SalesforceSettings> {
    let login_url = match required_text(
        reader,
        SALESFORCE_LOGIN_URL,
        "the org's My Domain URL, such as https://contoso.my.salesforce.com",
    ) {
        Some(_) => endpoint_or(reader, SALESFORCE_LOGIN_URL, ""),
        None => None,
    };
    let client_id = required_text(
        reader,
        SALESFORCE_CLIENT_ID,
        "the consumer key of the app with the client credentials flow enabled",
    );
    let client_secret = required_text(reader, SALESFORCE_CLIENT_SECRET, "the consumer secret of that app");

    const VERSION: &str = "a REST API version such as v61.0";
    let api_version = reader
        .raw(SALESFORCE_API_VERSION)
        .unwrap_or(DEFAULT_SALESFORCE_API_VERSION);
    let api_version = if api_version.starts_with('v') {
        api_version.to_string()
    } else {
        format!("v{api_version}")
    };
    let version_ok = api_version[1..].split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty()
            && !minor.is_empty()
            && major.chars().all(|c| c.is_ascii_digit())
            && minor.chars().all(|c| c.is_ascii_digit())
    });
    if !version_ok {
        reader.problem(SALESFORCE_API_VERSION, "is not valid", VERSION);
    }

    let external_id_field = reader
        .raw(SALESFORCE_EXTERNAL_ID_FIELD)
        .unwrap_or(DEFAULT_SALESFORCE_EXTERNAL_ID_FIELD);
    if !is_name(external_id_field) {
        reader.problem(
            SALESFORCE_EXTERNAL_ID_FIELD,
            "is not a field's API name",
            "the API name of the Contact's External ID field, such as Entra_Object_Id__c",
        );
    }

    Some(SalesforceSettings {
        login_url: login_url?,
        client_id: client_id?.to_string(),
        client_secret: SecretString::from(client_secret?),
        api_version: version_ok.then_some(api_version)?,
        external_id_field: is_name(external_id_field).then(|| external_id_field.to_string())?,
        timeout,
    })
}

fn read_postgres(reader: &mut Reader<'_>, timeout: Duration) -> Option<PostgresSettings> {
    const URL: &str = "a PostgreSQL connection URL such as postgres://user:password@host:5432/dbname?sslmode=require \
                       (or the key=value form)";
    const POOL: &str = "a number of connections from 1 to 64";
    let pool_size = match reader.parsed::<usize>(SIGNUP_DATABASE_POOL_SIZE, POOL) {
        None => DEFAULT_POOL_SIZE,
        Some(size @ 1..=64) => size,
        Some(_) => {
            reader.problem(SIGNUP_DATABASE_POOL_SIZE, "is out of range", POOL);
            DEFAULT_POOL_SIZE
        }
    };
    let raw = required_text(reader, SIGNUP_DATABASE_URL, URL)?;
    match parse_database_url(raw, timeout) {
        Ok(config) => Some(PostgresSettings {
            config,
            pool_size,
            timeout,
        }),
        Err(problem) => {
            reader.problem(SIGNUP_DATABASE_URL, problem, URL);
            None
        }
    }
}

/// Parses `SIGNUP_DATABASE_URL` (never echoing it: it holds the password).
fn parse_database_url(raw: &str, timeout: Duration) -> Result<tokio_postgres::Config, &'static str> {
    // libpq's verifying modes are what we always do; tokio-postgres only knows `require`.
    let rewritten = raw
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let explicit_ssl_mode = rewritten.contains("sslmode=");
    let mut config = tokio_postgres::Config::from_str(&rewritten)
        .map_err(|_| "is not a valid connection string (or uses a parameter tokio-postgres does not know)")?;
    if config.get_hosts().is_empty() {
        return Err("names no host");
    }
    if config.get_user().is_none() {
        return Err("names no user");
    }
    let remote = config.get_hosts().iter().any(|host| match host {
        Host::Tcp(name) => !is_loopback_host(name),
        Host::Unix(_) => false,
    });
    if remote && !explicit_ssl_mode {
        // Azure Database for PostgreSQL requires TLS; never fall back to plain text silently.
        config.ssl_mode(SslMode::Require);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout.min(Duration::from_secs(10)));
    }
    if config.get_application_name().is_none() {
        config.application_name("signup-bridge");
    }
    Ok(config)
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn read(pairs: &[(&str, &str)]) -> Result<DestinationSettings, SettingsError> {
        DestinationSettings::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn names(error: &SettingsError) -> Vec<&'static str> {
        error.problems.iter().map(|problem| problem.setting).collect()
    }

    const MC_KEY: &str = "0123456789abcdef0123456789abcdef-us21";

    #[test]
    fn nothing_configured_means_nothing_enabled() {
        let settings = read(&[]).unwrap();
        assert!(settings.enabled().is_empty());
        assert!(
            read(&[(DESTINATIONS_TIMEOUT_SECONDS, "5")])
                .unwrap()
                .enabled()
                .is_empty()
        );
    }

    #[test]
    fn mailchimp_defaults_come_from_the_key() {
        let settings = read(&[(MAILCHIMP_API_KEY, MC_KEY), (MAILCHIMP_LIST_ID, "a1b2c3d4e5")]).unwrap();
        let mailchimp = settings.mailchimp.unwrap();
        assert_eq!(mailchimp.data_center, "us21");
        assert_eq!(mailchimp.base_url.as_str(), "https://us21.api.mailchimp.com/");
        assert_eq!(mailchimp.consent_attribute, "onMailingList");
        assert_eq!(mailchimp.status_if_new, MailchimpStatus::Subscribed);
        assert_eq!(
            mailchimp.merge_fields,
            vec![
                MergeField {
                    tag: "FNAME".into(),
                    source: "givenName".into()
                },
                MergeField {
                    tag: "LNAME".into(),
                    source: "surname".into()
                }
            ]
        );
        assert_eq!(mailchimp.api_key.expose_secret(), MC_KEY);
        assert_eq!(mailchimp.timeout, DEFAULT_TIMEOUT);
        assert!(!format!("{mailchimp:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn a_partly_configured_destination_names_what_is_missing() {
        let error = read(&[
            (MAILCHIMP_LIST_ID, "a1b2c3d4e5"),
            (SALESFORCE_CLIENT_ID, "abc"),
            (SIGNUP_DATABASE_POOL_SIZE, "2"),
        ])
        .unwrap_err();
        assert_eq!(
            names(&error),
            vec![
                MAILCHIMP_API_KEY,
                SALESFORCE_LOGIN_URL,
                SALESFORCE_CLIENT_SECRET,
                SIGNUP_DATABASE_URL
            ]
        );
        let error = read(&[(STRIPE_BASE_URL, "https://stripe.example")]).unwrap_err();
        assert_eq!(names(&error), vec![STRIPE_API_KEY]);
    }

    #[test]
    fn malformed_values_are_named_without_echoing_them() {
        let error = read(&[
            (MAILCHIMP_API_KEY, "secretvalue-without-dc"),
            (MAILCHIMP_LIST_ID, "a1/../b"),
            (MAILCHIMP_MERGE_FIELDS, "FIRSTNAMETOOLONG=givenName"),
            (MAILCHIMP_STATUS_IF_NEW, "unsubscribed"),
            (STRIPE_API_KEY, "pk_live_secretvalue"),
            (DESTINATIONS_TIMEOUT_SECONDS, "0"),
        ])
        .unwrap_err();
        assert_eq!(
            names(&error),
            vec![
                DESTINATIONS_TIMEOUT_SECONDS,
                MAILCHIMP_API_KEY,
                MAILCHIMP_LIST_ID,
                MAILCHIMP_MERGE_FIELDS,
                MAILCHIMP_STATUS_IF_NEW,
                STRIPE_API_KEY
            ]
        );
        assert!(!error.to_string().contains("secretvalue"));
    }

    #[test]
    fn base_urls_must_be_https_except_on_loopback() {
        let ok = read(&[
            (STRIPE_API_KEY, "sk_test_123"),
            (STRIPE_BASE_URL, "http://127.0.0.1:4242"),
            (STRIPE_SEARCH_BEFORE_CREATE, "false"),
        ])
        .unwrap()
        .stripe
        .unwrap();
        assert_eq!(ok.base_url.as_str(), "http://127.0.0.1:4242/");
        assert!(!ok.search_before_create);
        assert!(!format!("{ok:?}").contains("sk_test_123"));

        let error = read(&[
            (STRIPE_API_KEY, "sk_test_123"),
            (STRIPE_BASE_URL, "http://stripe.example"),
        ])
        .unwrap_err();
        assert_eq!(names(&error), vec![STRIPE_BASE_URL]);
        let error = read(&[
            (SALESFORCE_LOGIN_URL, "http://contoso.my.salesforce.com"),
            (SALESFORCE_CLIENT_ID, "id"),
            (SALESFORCE_CLIENT_SECRET, "s"),
        ])
        .unwrap_err();
        assert_eq!(names(&error), vec![SALESFORCE_LOGIN_URL]);
    }

    #[test]
    fn salesforce_defaults_and_version_forms() {
        let settings = read(&[
            (SALESFORCE_LOGIN_URL, "https://contoso.my.salesforce.com"),
            (SALESFORCE_CLIENT_ID, "3MVG9"),
            (SALESFORCE_CLIENT_SECRET, "topsecret"),
            (SALESFORCE_API_VERSION, "62.0"),
        ])
        .unwrap()
        .salesforce
        .unwrap();
        assert_eq!(settings.api_version, "v62.0");
        assert_eq!(settings.external_id_field, "Entra_Object_Id__c");
        assert!(!format!("{settings:?}").contains("topsecret"));
        let error = read(&[
            (SALESFORCE_LOGIN_URL, "https://contoso.my.salesforce.com"),
            (SALESFORCE_CLIENT_ID, "3MVG9"),
            (SALESFORCE_CLIENT_SECRET, "topsecret"),
            (SALESFORCE_API_VERSION, "latest"),
            (SALESFORCE_EXTERNAL_ID_FIELD, "Entra Id"),
        ])
        .unwrap_err();
        assert_eq!(
            names(&error),
            vec![SALESFORCE_API_VERSION, SALESFORCE_EXTERNAL_ID_FIELD]
        );
    }

    #[test]
    fn database_urls_require_tls_for_remote_hosts_and_never_show_the_password() {
        let remote = read(&[(
            SIGNUP_DATABASE_URL,
            "postgres://app:hunter2@contoso.postgres.database.azure.com/app",
        )])
        .unwrap()
        .postgres
        .unwrap();
        assert_eq!(remote.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(remote.pool_size, DEFAULT_POOL_SIZE);
        assert!(!format!("{remote:?}").contains("hunter2"));

        let verify = read(&[(
            SIGNUP_DATABASE_URL,
            "postgres://app:pw@db.example/app?sslmode=verify-full",
        )])
        .unwrap()
        .postgres
        .unwrap();
        assert_eq!(verify.config.get_ssl_mode(), SslMode::Require);

        let local = read(&[
            (SIGNUP_DATABASE_URL, "postgres://app@127.0.0.1:5432/app"),
            (SIGNUP_DATABASE_POOL_SIZE, "2"),
        ])
        .unwrap()
        .postgres
        .unwrap();
        assert_eq!(local.config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(local.pool_size, 2);

        let keyword = read(&[(SIGNUP_DATABASE_URL, "host=db.example user=app password=pw dbname=app")])
            .unwrap()
            .postgres
            .unwrap();
        assert_eq!(keyword.config.get_ssl_mode(), SslMode::Require);

        let error = read(&[(
            SIGNUP_DATABASE_URL,
            "postgres://app:hunter2@db.example/app?sslmode=sometimes",
        )])
        .unwrap_err();
        assert_eq!(names(&error), vec![SIGNUP_DATABASE_URL]);
        assert!(!error.to_string().contains("hunter2"));
        let error = read(&[
            (SIGNUP_DATABASE_URL, "postgres://app@127.0.0.1/app"),
            (SIGNUP_DATABASE_POOL_SIZE, "0"),
        ])
        .unwrap_err();
        assert_eq!(names(&error), vec![SIGNUP_DATABASE_POOL_SIZE]);
    }
}
