//! Settings of ProvisionUser's own work (the Graph-based destinations, the retry schedule,
//! extension attribute names) and of `signup-bridge run`. The external destinations'
//! settings are in [`super::destinations`].
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `PROVISION_EXTENSION_APP_ID` | | Client id (GUID) of the tenant's `b2c-extensions-app`: custom attributes are named `extension_<id without dashes>_<name>`. Needed to read custom attributes (consent, group rules, templates) and for the Stripe write-back. |
//! | `PROVISION_EXTRA_ATTRIBUTES` | | More custom attribute short names to read from Graph (comma-separated), e.g. for Mailchimp merge fields. |
//! | `PROVISION_RETRY_SCHEDULE` | `1m,5m,30m,2h,6h,12h,24h` | Delays before the 2nd, 3rd, ... attempt of a destination that failed transiently; after the last, the destination is failed. Units `s`, `m`, `h`, `d`; each at most 7 days. |
//! | `DIRECTORY_DISPLAY_NAME_TEMPLATE` | | e.g. `{givenName} {surname}`: the display name to set. Unset: display names are left alone. |
//! | `DIRECTORY_UPN_TEMPLATE` | | e.g. `{givenName}.{surname}`: the UPN's local part, made unique with a number. Unset: UPNs are left alone. |
//! | `DIRECTORY_UPN_DOMAIN` | | The tenant's domain for UPNs, e.g. `contoso.onmicrosoft.com`; required with `DIRECTORY_UPN_TEMPLATE`. |
//! | `GROUPS_STATIC` | | Group object ids (comma-separated) every new user joins. |
//! | `GROUPS_RULES` | | `attribute:value=group[,group]` rules separated by `;`: a user whose attribute equals (or, for a list or comma-delimited text, contains) the value joins the groups. |
//! | `STRIPE_CUSTOMER_ID_ATTRIBUTE` | | Short name of the custom attribute the Stripe customer id is written back to. Needs `PROVISION_EXTENSION_APP_ID`. |
//! | `RUN_POLL_INTERVAL_SECONDS` | `300` | `signup-bridge run` only: seconds between polls (the timer's schedule under Functions). |
//! | `RUN_PROVISION_CONCURRENCY` | `8` | `signup-bridge run` only: users provisioned at once (host.json `batchSize` under Functions), 1-64. |
//!
//! Template placeholders are Graph property names (`givenName`, `surname`, `displayName`,
//! `mail`, `id`, `createdDateTime`) or custom attribute short names.

use std::time::Duration;

use uuid::Uuid;

use super::Reader;
use crate::provisioning::retry_schedule::RetrySchedule;

pub const PROVISION_EXTENSION_APP_ID: &str = "PROVISION_EXTENSION_APP_ID";
pub const PROVISION_EXTRA_ATTRIBUTES: &str = "PROVISION_EXTRA_ATTRIBUTES";
pub const PROVISION_RETRY_SCHEDULE: &str = "PROVISION_RETRY_SCHEDULE";
pub const DIRECTORY_DISPLAY_NAME_TEMPLATE: &str = "DIRECTORY_DISPLAY_NAME_TEMPLATE";
pub const DIRECTORY_UPN_TEMPLATE: &str = "DIRECTORY_UPN_TEMPLATE";
pub const DIRECTORY_UPN_DOMAIN: &str = "DIRECTORY_UPN_DOMAIN";
pub const GROUPS_STATIC: &str = "GROUPS_STATIC";
pub const GROUPS_RULES: &str = "GROUPS_RULES";
pub const STRIPE_CUSTOMER_ID_ATTRIBUTE: &str = "STRIPE_CUSTOMER_ID_ATTRIBUTE";
pub const RUN_POLL_INTERVAL_SECONDS: &str = "RUN_POLL_INTERVAL_SECONDS";
pub const RUN_PROVISION_CONCURRENCY: &str = "RUN_PROVISION_CONCURRENCY";

/// Every setting this module reads, for reports.
pub const ALL: [&str; 11] = [
    PROVISION_EXTENSION_APP_ID,
    PROVISION_EXTRA_ATTRIBUTES,
    PROVISION_RETRY_SCHEDULE,
    DIRECTORY_DISPLAY_NAME_TEMPLATE,
    DIRECTORY_UPN_TEMPLATE,
    DIRECTORY_UPN_DOMAIN,
    GROUPS_STATIC,
    GROUPS_RULES,
    STRIPE_CUSTOMER_ID_ATTRIBUTE,
    RUN_POLL_INTERVAL_SECONDS,
    RUN_PROVISION_CONCURRENCY,
];

pub const DEFAULT_RETRY_SCHEDULE: &str = "1m,5m,30m,2h,6h,12h,24h";
pub const DEFAULT_RUN_POLL_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_RUN_PROVISION_CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
pub struct ProvisioningSettings {
    /// The b2c-extensions-app's client id, for `extension_<id>_<name>` attribute names.
    pub extension_app_id: Option<Uuid>,
    /// Custom attributes to read besides the ones other settings name.
    pub extra_attributes: Vec<String>,
    pub retry_schedule: RetrySchedule,
    /// `None`: the directory fix-ups are disabled.
    pub directory: Option<DirectorySettings>,
    /// `None`: no birthright groups.
    pub groups: Option<GroupSettings>,
    /// Short name of the attribute the Stripe customer id is written back to.
    pub stripe_customer_id_attribute: Option<String>,
    pub run_poll_interval: Duration,
    /// Users `run`'s queue worker provisions at once.
    pub run_concurrency: usize,
}

impl Default for ProvisioningSettings {
    fn default() -> ProvisioningSettings {
        ProvisioningSettings {
            extension_app_id: None,
            extra_attributes: Vec::new(),
            retry_schedule: RetrySchedule::default(),
            directory: None,
            groups: None,
            stripe_customer_id_attribute: None,
            run_poll_interval: DEFAULT_RUN_POLL_INTERVAL,
            run_concurrency: DEFAULT_RUN_PROVISION_CONCURRENCY,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySettings {
    pub display_name_template: Option<String>,
    pub upn_template: Option<String>,
    /// Required with `upn_template` (validated).
    pub upn_domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    pub static_groups: Vec<Uuid>,
    pub rules: Vec<GroupRule>,
}

/// Users whose `attribute` equals or contains `value` (ignoring case) join `groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    pub attribute: String,
    pub value: String,
    pub groups: Vec<Uuid>,
}

impl ProvisioningSettings {
    /// The full Graph name of a custom attribute, when the extensions app is known.
    pub fn extension_name(&self, short: &str) -> Option<String> {
        self.extension_app_id
            .map(|app| format!("extension_{}_{short}", app.simple()))
    }

    /// The `extension_<app>_` prefix of custom attribute names, when known.
    pub fn extension_prefix(&self) -> Option<String> {
        self.extension_app_id.map(|app| format!("extension_{}_", app.simple()))
    }
}

const RULES_EXPECTED: &str = "attribute:value=group-guid[,group-guid] rules separated by ';', e.g. universityGroups:Faculty=aaaabbbb-0000-cccc-1111-dddd2222eeee";
const ATTRIBUTE_EXPECTED: &str =
    "a custom attribute's short name: letters, digits and underscores, e.g. stripeCustomerId";

pub(crate) fn from_reader(reader: &mut Reader<'_>) -> ProvisioningSettings {
    let extension_app_id =
        reader.parsed::<Uuid>(PROVISION_EXTENSION_APP_ID, "the b2c-extensions-app's client id, a GUID");
    let extra_attributes: Vec<String> = reader
        .list(PROVISION_EXTRA_ATTRIBUTES)
        .into_iter()
        .map(str::to_string)
        .collect();
    if extra_attributes.iter().any(|name| !is_attribute_name(name)) {
        reader.problem(PROVISION_EXTRA_ATTRIBUTES, "holds an invalid name", ATTRIBUTE_EXPECTED);
    }

    let retry_schedule = match reader.raw(PROVISION_RETRY_SCHEDULE) {
        None => RetrySchedule::default(),
        Some(text) => RetrySchedule::parse(text).unwrap_or_else(|_| {
            reader.problem(
                PROVISION_RETRY_SCHEDULE,
                "is not a list of delays",
                "comma-separated delays of at most 7 days with a unit, e.g. 1m,5m,30m,2h,6h,12h,24h",
            );
            RetrySchedule::default()
        }),
    };

    let display_name_template = reader.raw(DIRECTORY_DISPLAY_NAME_TEMPLATE).map(str::to_string);
    let upn_template = reader.raw(DIRECTORY_UPN_TEMPLATE).map(str::to_string);
    let upn_domain = reader
        .raw(DIRECTORY_UPN_DOMAIN)
        .map(|domain| domain.to_ascii_lowercase());
    if upn_template.is_some() && upn_domain.is_none() {
        reader.problem(
            DIRECTORY_UPN_DOMAIN,
            "is not set while DIRECTORY_UPN_TEMPLATE is",
            "the tenant's domain, e.g. contoso.onmicrosoft.com",
        );
    }
    if let Some(domain) = &upn_domain
        && (!domain.contains('.') || domain.contains(['@', ' ', '/']))
    {
        reader.problem(
            DIRECTORY_UPN_DOMAIN,
            "is not a domain name",
            "the tenant's domain, e.g. contoso.onmicrosoft.com",
        );
    }
    for (setting, template) in [
        (DIRECTORY_DISPLAY_NAME_TEMPLATE, &display_name_template),
        (DIRECTORY_UPN_TEMPLATE, &upn_template),
    ] {
        if let Some(template) = template
            && crate::provisioning::directory::placeholders(template).is_err()
        {
            reader.problem(
                setting,
                "has an unbalanced or empty {placeholder}",
                "text with {property} placeholders, e.g. {givenName} {surname}",
            );
        }
    }
    let directory = (display_name_template.is_some() || upn_template.is_some()).then_some(DirectorySettings {
        display_name_template,
        upn_template,
        upn_domain,
    });

    let mut static_groups = Vec::new();
    for item in reader.list(GROUPS_STATIC) {
        match Uuid::parse_str(item) {
            Ok(group) => static_groups.push(group),
            Err(_) => reader.problem(
                GROUPS_STATIC,
                "holds an entry that is not a GUID",
                "comma-separated group object ids",
            ),
        }
    }
    let rules = match reader.raw(GROUPS_RULES) {
        None => Vec::new(),
        Some(text) => parse_rules(text).unwrap_or_else(|_| {
            reader.problem(GROUPS_RULES, "is not valid", RULES_EXPECTED);
            Vec::new()
        }),
    };
    let groups = (!static_groups.is_empty() || !rules.is_empty()).then_some(GroupSettings { static_groups, rules });

    let stripe_customer_id_attribute = reader.raw(STRIPE_CUSTOMER_ID_ATTRIBUTE).map(str::to_string);
    if let Some(name) = &stripe_customer_id_attribute {
        if !is_attribute_name(name) {
            reader.problem(
                STRIPE_CUSTOMER_ID_ATTRIBUTE,
                "is not an attribute name",
                ATTRIBUTE_EXPECTED,
            );
        }
        if extension_app_id.is_none() {
            reader.problem(
                PROVISION_EXTENSION_APP_ID,
                "is not set while STRIPE_CUSTOMER_ID_ATTRIBUTE is (the attribute's full name needs it)",
                "the b2c-extensions-app's client id, a GUID",
            );
        }
    }

    let interval = reader
        .parsed::<u64>(RUN_POLL_INTERVAL_SECONDS, "a whole number of seconds, 10 or more")
        .unwrap_or(DEFAULT_RUN_POLL_INTERVAL.as_secs());
    if interval < 10 {
        reader.problem(
            RUN_POLL_INTERVAL_SECONDS,
            "is below 10 (the audit API allows 5 requests per 10 s)",
            "a whole number of seconds, 10 or more",
        );
    }

    const CONCURRENCY_EXPECTED: &str = "a whole number from 1 to 64";
    let run_concurrency = reader
        .parsed::<usize>(RUN_PROVISION_CONCURRENCY, CONCURRENCY_EXPECTED)
        .unwrap_or(DEFAULT_RUN_PROVISION_CONCURRENCY);
    if !(1..=64).contains(&run_concurrency) {
        reader.problem(RUN_PROVISION_CONCURRENCY, "is out of range", CONCURRENCY_EXPECTED);
    }

    ProvisioningSettings {
        extension_app_id,
        extra_attributes,
        retry_schedule,
        directory,
        groups,
        stripe_customer_id_attribute,
        run_poll_interval: Duration::from_secs(interval.max(10)),
        run_concurrency: run_concurrency.clamp(1, 64),
    }
}

fn is_attribute_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a group rule list; expected {RULES_EXPECTED}")]
pub struct InvalidRules;

/// `attribute:value=group[,group];...`
pub fn parse_rules(text: &str) -> Result<Vec<GroupRule>, InvalidRules> {
    let mut rules = Vec::new();
    for rule in text.split(';').map(str::trim).filter(|rule| !rule.is_empty()) {
        let (condition, groups) = rule.rsplit_once('=').ok_or(InvalidRules)?;
        let (attribute, value) = condition.split_once(':').ok_or(InvalidRules)?;
        let (attribute, value) = (attribute.trim(), value.trim());
        if !is_attribute_name(attribute) || value.is_empty() {
            return Err(InvalidRules);
        }
        let groups = groups
            .split(',')
            .map(|group| Uuid::parse_str(group.trim()).map_err(|_| InvalidRules))
            .collect::<Result<Vec<_>, InvalidRules>>()?;
        rules.push(GroupRule {
            attribute: attribute.to_string(),
            value: value.to_string(),
            groups,
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<ProvisioningSettings, crate::settings::SettingsError> {
        let values: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut reader = Reader::new(&values);
        let settings = from_reader(&mut reader);
        reader.finish(settings)
    }

    const GROUP: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";

    #[test]
    fn defaults_disable_the_graph_destinations() {
        let settings = read(&[]).unwrap();
        assert!(settings.directory.is_none() && settings.groups.is_none());
        assert_eq!(settings.retry_schedule.delays().len(), 7);
        assert_eq!(settings.run_poll_interval, Duration::from_secs(300));
        assert_eq!(settings.extension_name("x"), None);
    }

    #[test]
    fn rules_templates_and_attribute_names_are_read() {
        let settings = read(&[
            (PROVISION_EXTENSION_APP_ID, "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"),
            (GROUPS_STATIC, GROUP),
            (
                GROUPS_RULES,
                &format!("universityGroups:Faculty={GROUP}; plan : gold = {GROUP},{GROUP}"),
            ),
            (DIRECTORY_UPN_TEMPLATE, "{givenName}.{surname}"),
            (DIRECTORY_UPN_DOMAIN, "Contoso.onmicrosoft.com"),
            (STRIPE_CUSTOMER_ID_ATTRIBUTE, "stripeCustomerId"),
        ])
        .unwrap();
        let groups = settings.groups.as_ref().unwrap();
        assert_eq!(groups.rules.len(), 2);
        assert_eq!(groups.rules[1].attribute, "plan");
        assert_eq!(groups.rules[1].value, "gold");
        assert_eq!(groups.rules[1].groups.len(), 2);
        assert_eq!(
            settings.extension_name("stripeCustomerId").as_deref(),
            Some("extension_0a1b2c3d4e5f60718293a4b5c6d7e8f9_stripeCustomerId")
        );
        assert_eq!(
            settings.directory.unwrap().upn_domain.as_deref(),
            Some("contoso.onmicrosoft.com")
        );
    }

    #[test]
    fn bad_values_are_named() {
        let error = read(&[
            (GROUPS_RULES, "Faculty"),
            (DIRECTORY_UPN_TEMPLATE, "{givenName"),
            (STRIPE_CUSTOMER_ID_ATTRIBUTE, "stripeCustomerId"),
            (PROVISION_RETRY_SCHEDULE, "soon"),
            (RUN_POLL_INTERVAL_SECONDS, "1"),
            (RUN_PROVISION_CONCURRENCY, "0"),
        ])
        .unwrap_err();
        let names: Vec<_> = error.problems.iter().map(|p| p.setting).collect();
        for expected in [
            PROVISION_RETRY_SCHEDULE,
            DIRECTORY_UPN_DOMAIN,
            DIRECTORY_UPN_TEMPLATE,
            GROUPS_RULES,
            PROVISION_EXTENSION_APP_ID,
            RUN_POLL_INTERVAL_SECONDS,
            RUN_PROVISION_CONCURRENCY,
        ] {
            assert!(names.contains(&expected), "{expected} not in {names:?}");
        }
    }
}
