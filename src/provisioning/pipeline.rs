//! One user through every enabled destination, exactly once in effect.
//!
//! 1. Read the ledger; destinations done, skipped or failed there are not run again.
//! 2. Read the user from Graph once, with every property a destination needs.
//! 3. Run each pending destination in [`Destination`] order, recording each outcome in the
//!    ledger before the next (a crash repeats at most one, idempotent, call).
//! 4. Send a dead letter (`signup-provision-failed`) for every destination that failed for
//!    good and has none yet; then, if any destination failed transiently, re-enqueue the
//!    user on `signup-provision` with the schedule's delay for its attempt count.
//!
//! A transient failure is the pipeline's business, not the host's: [`Pipeline::process`]
//! returns `Ok` once the retry is durably enqueued. `Err` means the ledger or the queue
//! could not be reached; the caller fails the invocation and the host redelivers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use crate::graph::{GraphClient, User, UserPatch};
use crate::handover::ProvisionMessage;
use crate::settings::destinations::DestinationSettings;
use crate::settings::provisioning::ProvisioningSettings;
use crate::store::{FAILED_QUEUE, MAX_VISIBILITY, PROVISION_QUEUE, Store, StoreError};

use super::destinations::mailchimp::MailchimpClient;
use super::destinations::postgres::PostgresDestination;
use super::destinations::salesforce::SalesforceClient;
use super::destinations::stripe::{CustomerId, StripeClient};
use super::destinations::{Destination, DestinationError, Email, NewUser, ObjectId, Outcome};
use super::directory::DirectoryFixups;
use super::graph_failure;
use super::groups::BirthrightGroups;
use super::ledger::{Entry, LastError, Ledger, LedgerError, Ledgers, State};
use super::retry_schedule::{RetrySchedule, format_delay};

/// Graph properties every run reads (the extension attributes come on top).
const BASE_SELECT: [&str; 8] = [
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "identities",
    "createdDateTime",
];

/// Property names [`NewUser::property`] answers from Graph's own properties.
const STANDARD_PROPERTIES: [&str; 8] = [
    "givenname",
    "surname",
    "displayname",
    "mail",
    "email",
    "id",
    "objectid",
    "createddatetime",
];

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{what}: {source}")]
    Queue {
        what: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("the message names no user (nil object id)")]
    InvalidUser,
}

/// What one destination did in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Done,
    Skipped,
    /// Transient failure: tried again after this delay.
    Retry {
        delay: Duration,
        code: String,
    },
    Failed {
        code: String,
    },
    /// Another delivery finished it while this one ran.
    AlreadyFinal,
}

/// The result of [`Pipeline::process`], for logs and the CLI.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub object_id: Option<ObjectId>,
    pub ran: Vec<(Destination, Disposition)>,
    /// The delay of the re-enqueued copy, when one was sent.
    pub requeued_after: Option<Duration>,
    /// Destinations dead-lettered in this run.
    pub dead_lettered: Vec<Destination>,
}

impl Report {
    /// Log lines: object id, destination, outcome, codes. No personal data.
    pub fn lines(&self) -> Vec<String> {
        let id = self.object_id.map(|id| id.to_string()).unwrap_or_default();
        let mut lines = Vec::new();
        if self.ran.is_empty() {
            lines.push(format!("user {id}: nothing to do (every destination is finished)"));
        }
        for (destination, disposition) in &self.ran {
            let what = match disposition {
                Disposition::Done => "done".to_string(),
                Disposition::Skipped => "skipped".to_string(),
                Disposition::AlreadyFinal => "finished by another delivery".to_string(),
                Disposition::Retry { delay, code } => {
                    format!("failed transiently ({code}); retry in {}", format_delay(*delay))
                }
                Disposition::Failed { code } => format!("FAILED ({code})"),
            };
            lines.push(format!("user {id}: {destination} {what}"));
        }
        if let Some(delay) = self.requeued_after {
            lines.push(format!(
                "user {id}: re-enqueued on {PROVISION_QUEUE}, visible in {}",
                format_delay(delay)
            ));
        }
        for destination in &self.dead_lettered {
            lines.push(format!("user {id}: {destination} dead-lettered on {FAILED_QUEUE}"));
        }
        lines
    }
}

/// The dead letter for one failed destination (object ids and codes only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub object_id: ObjectId,
    pub destination: Destination,
    pub code: String,
    pub message: String,
    pub attempts: u32,
    pub failed_at: chrono::DateTime<Utc>,
}

pub struct Pipeline {
    graph: GraphClient,
    store: Arc<dyn Store>,
    ledgers: Ledgers,
    settings: ProvisioningSettings,
    directory: Option<DirectoryFixups>,
    groups: Option<BirthrightGroups>,
    mailchimp: Option<MailchimpClient>,
    mailchimp_attributes: Vec<String>,
    stripe: Option<StripeClient>,
    salesforce: Option<SalesforceClient>,
    postgres: Option<PostgresDestination>,
    /// Set once the PostgreSQL migrations are applied (at start, or before the first upsert).
    migrated: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Builds every enabled destination's client (nothing is contacted yet).
    pub fn new(
        graph: GraphClient,
        store: Arc<dyn Store>,
        settings: &ProvisioningSettings,
        destinations: &DestinationSettings,
    ) -> Result<Pipeline, DestinationError> {
        let mailchimp_attributes = destinations
            .mailchimp
            .as_ref()
            .map(|mailchimp| {
                std::iter::once(mailchimp.consent_attribute.clone())
                    .chain(mailchimp.merge_fields.iter().map(|field| field.source.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Pipeline {
            graph,
            ledgers: Ledgers::new(store.clone()),
            store,
            settings: settings.clone(),
            directory: settings.directory.clone().map(DirectoryFixups::new),
            groups: settings.groups.clone().map(BirthrightGroups::new),
            mailchimp: destinations.mailchimp.as_ref().map(MailchimpClient::new).transpose()?,
            mailchimp_attributes,
            stripe: destinations.stripe.as_ref().map(StripeClient::new).transpose()?,
            salesforce: destinations
                .salesforce
                .as_ref()
                .map(SalesforceClient::new)
                .transpose()?,
            postgres: destinations
                .postgres
                .as_ref()
                .map(PostgresDestination::new)
                .transpose()?,
            migrated: tokio::sync::OnceCell::new(),
        })
    }

    /// Start-up work: the PostgreSQL migrations. Also run before the first upsert, so a
    /// database that was down at start is migrated once it is back.
    pub async fn prepare(&self) -> Result<(), DestinationError> {
        let Some(postgres) = &self.postgres else {
            return Ok(());
        };
        self.migrated
            .get_or_try_init(|| async { postgres.migrate().await.map(|_| ()) })
            .await
            .copied()
    }

    pub fn ledgers(&self) -> &Ledgers {
        &self.ledgers
    }

    pub fn enabled(&self) -> Vec<Destination> {
        Destination::ALL
            .into_iter()
            .filter(|destination| match destination {
                Destination::Directory => self.directory.is_some(),
                Destination::Groups => self.groups.is_some(),
                Destination::Mailchimp => self.mailchimp.is_some(),
                Destination::Stripe => self.stripe.is_some(),
                Destination::Salesforce => self.salesforce.is_some(),
                Destination::Postgres => self.postgres.is_some(),
            })
            .collect()
    }

    /// The `$select` for the user: Graph's properties plus the full names of every custom
    /// attribute a destination reads.
    pub fn select(&self) -> Vec<String> {
        let mut attributes: BTreeSet<String> = BTreeSet::new();
        let wanted = self
            .directory
            .iter()
            .flat_map(DirectoryFixups::needed_properties)
            .chain(self.groups.iter().flat_map(BirthrightGroups::needed_properties))
            .chain(self.mailchimp_attributes.iter().cloned())
            .chain(self.settings.stripe_customer_id_attribute.iter().cloned())
            .chain(self.settings.extra_attributes.iter().cloned());
        for name in wanted {
            if !STANDARD_PROPERTIES.contains(&name.to_ascii_lowercase().as_str())
                && let Some(full) = self.settings.extension_name(&name)
            {
                attributes.insert(full);
            }
        }
        BASE_SELECT
            .iter()
            .map(|name| name.to_string())
            .chain(attributes)
            .collect()
    }

    /// Provisions the user the message names. See the module documentation.
    pub async fn process(&self, message: &ProvisionMessage) -> Result<Report, PipelineError> {
        let object_id = ObjectId::try_from(message.user_id).map_err(|_| PipelineError::InvalidUser)?;
        let mut report = Report {
            object_id: Some(object_id),
            ..Report::default()
        };
        let ledger = self
            .ledgers
            .read(object_id)
            .await?
            .unwrap_or_else(|| Ledger::new(object_id, Utc::now()));
        let pending: Vec<Destination> = self
            .enabled()
            .into_iter()
            .filter(|destination| ledger.state(*destination) == State::Pending)
            .collect();

        if !pending.is_empty() {
            self.run(object_id, ledger, &pending, &mut report).await?;
        }
        self.send_dead_letters(object_id, &mut report).await?;

        let retry = report
            .ran
            .iter()
            .filter_map(|(_, disposition)| match disposition {
                Disposition::Retry { delay, .. } => Some(*delay),
                _ => None,
            })
            .min();
        if let Some(delay) = retry {
            // The same message again: the copy is the retry; this invocation succeeds.
            self.store
                .send(&PROVISION_QUEUE, &message.to_json(), delay)
                .await
                .map_err(|source| PipelineError::Queue {
                    what: "re-enqueueing the user for a retry",
                    source,
                })?;
            report.requeued_after = Some(delay);
        }
        Ok(report)
    }

    async fn run(
        &self,
        object_id: ObjectId,
        mut ledger: Ledger,
        pending: &[Destination],
        report: &mut Report,
    ) -> Result<(), PipelineError> {
        let select = self.select();
        let select: Vec<&str> = select.iter().map(String::as_str).collect();
        let read = match self.graph.get_user(object_id.as_uuid(), &select).await {
            Ok(Some(user)) => Ok(user),
            // Right after sign-up a replica may not know the user yet: worth retrying.
            Ok(None) => Err(DestinationError::transient(
                "user_not_found",
                "Graph get user: the user does not exist (yet)",
            )),
            Err(error) => Err(graph_failure("get user", &error)),
        };
        let (current, user) = match read {
            Ok(current) => {
                let user = self.new_user(object_id, &current);
                (current, user)
            }
            Err(error) => {
                // Nothing can run without the user: every pending destination records the failure.
                for destination in pending {
                    let disposition = self.record(object_id, *destination, Err(error.clone()), None).await?;
                    report.ran.push((*destination, disposition.0));
                }
                return Ok(());
            }
        };

        let mut new_external_id = false;
        for destination in pending {
            let (result, keep_id) = self.attempt(*destination, &current, &user, &ledger).await;
            let previous = ledger.entry(*destination).and_then(|entry| entry.external_id.clone());
            let (disposition, written) = self.record(object_id, *destination, result, keep_id).await?;
            if *destination != Destination::Postgres
                && written.entry(*destination).and_then(|entry| entry.external_id.clone()) != previous
            {
                new_external_id = true;
            }
            ledger = written;
            report.ran.push((*destination, disposition));
        }

        // PostgreSQL went ahead earlier without an id that has arrived now: update its row.
        if new_external_id
            && let Some(postgres) = &self.postgres
            && !pending.contains(&Destination::Postgres)
            && ledger.state(Destination::Postgres) == State::Done
        {
            let result = postgres.upsert_user(&user, &ledger.external_ids()).await;
            let (disposition, _) = self.record(object_id, Destination::Postgres, result, None).await?;
            report.ran.push((Destination::Postgres, disposition));
        }
        Ok(())
    }

    /// One call to one destination: its result, and an external id to keep even when the
    /// result is an error (Stripe's customer when only the write-back failed).
    async fn attempt(
        &self,
        destination: Destination,
        current: &User,
        user: &NewUser,
        ledger: &Ledger,
    ) -> (Result<Outcome, DestinationError>, Option<String>) {
        match destination {
            Destination::Directory => match &self.directory {
                Some(directory) => (directory.apply(&self.graph, current, user).await, None),
                None => (Err(disabled(destination)), None),
            },
            Destination::Groups => match &self.groups {
                Some(groups) => (groups.apply(&self.graph, user).await, None),
                None => (Err(disabled(destination)), None),
            },
            Destination::Mailchimp => match &self.mailchimp {
                // No consent: skipped without a call (subscribe would say the same).
                Some(mailchimp) if !mailchimp.has_consent(user) => (
                    Ok(Outcome::Skipped {
                        reason: "the user did not consent to the mailing list",
                    }),
                    None,
                ),
                Some(mailchimp) => (mailchimp.subscribe(user).await, None),
                None => (Err(disabled(destination)), None),
            },
            Destination::Stripe => match &self.stripe {
                Some(stripe) => self.stripe(stripe, user, ledger).await,
                None => (Err(disabled(destination)), None),
            },
            Destination::Salesforce => match &self.salesforce {
                Some(salesforce) => (salesforce.upsert_contact(user).await, None),
                None => (Err(disabled(destination)), None),
            },
            Destination::Postgres => match &self.postgres {
                Some(postgres) => match self.prepare().await {
                    Ok(()) => (postgres.upsert_user(user, &ledger.external_ids()).await, None),
                    Err(error) => (Err(error), None),
                },
                None => (Err(disabled(destination)), None),
            },
        }
    }

    /// The customer (known from the ledger or the user's attribute, else found or created),
    /// then its id written back to the user when an attribute is configured.
    async fn stripe(
        &self,
        stripe: &StripeClient,
        user: &NewUser,
        ledger: &Ledger,
    ) -> (Result<Outcome, DestinationError>, Option<String>) {
        let attribute = self.settings.stripe_customer_id_attribute.as_deref();
        let on_user = attribute.and_then(|name| user.property(name));
        let known = ledger
            .entry(Destination::Stripe)
            .and_then(|entry| entry.external_id.clone())
            .or_else(|| on_user.clone())
            .and_then(|id| CustomerId::parse(&id).ok());
        let customer = match stripe.ensure_customer(user, known.as_ref()).await {
            Ok(Outcome::Done {
                external_id: Some(customer),
            }) => customer,
            other => return (other, None),
        };
        if let Some(full_name) = attribute.and_then(|name| self.settings.extension_name(name))
            && on_user.as_deref() != Some(customer.as_str())
        {
            let patch = UserPatch {
                extension_attributes: BTreeMap::from([(full_name, Value::String(customer.clone()))]),
                ..UserPatch::default()
            };
            if let Err(error) = self.graph.patch_user(user.object_id.as_uuid(), &patch).await {
                return (
                    Err(graph_failure("write the Stripe customer id back", &error)),
                    Some(customer),
                );
            }
        }
        (
            Ok(Outcome::Done {
                external_id: Some(customer.clone()),
            }),
            Some(customer),
        )
    }

    /// Records one attempt's result in the ledger; returns what happens next and the ledger.
    async fn record(
        &self,
        object_id: ObjectId,
        destination: Destination,
        result: Result<Outcome, DestinationError>,
        keep_id: Option<String>,
    ) -> Result<(Disposition, Ledger), PipelineError> {
        let schedule = &self.settings.retry_schedule;
        let mut disposition = Disposition::AlreadyFinal;
        let ledger = self
            .ledgers
            .update(object_id, |ledger| {
                let entry = ledger.destinations.entry(destination).or_insert_with(Entry::pending);
                // A concurrent delivery finished it meanwhile: keep its record.
                if entry.state.is_final() && !(destination == Destination::Postgres && entry.state == State::Done) {
                    disposition = Disposition::AlreadyFinal;
                    return;
                }
                disposition = apply(entry, &result, keep_id.clone(), schedule);
            })
            .await?;
        Ok((disposition, ledger))
    }

    /// A dead letter for every failed destination without one yet (also those a crashed
    /// earlier delivery failed), then the ledger marks them sent.
    async fn send_dead_letters(&self, object_id: ObjectId, report: &mut Report) -> Result<(), PipelineError> {
        let Some(ledger) = self.ledgers.read(object_id).await? else {
            return Ok(());
        };
        let unsent: Vec<(Destination, Entry)> = ledger
            .destinations
            .iter()
            .filter(|(_, entry)| entry.state == State::Failed && !entry.dead_lettered)
            .map(|(destination, entry)| (*destination, entry.clone()))
            .collect();
        if unsent.is_empty() {
            return Ok(());
        }
        for (destination, entry) in &unsent {
            let (code, message) = entry
                .last_error
                .as_ref()
                .map(|error| (error.code.clone(), error.message.clone()))
                .unwrap_or_else(|| ("unknown".to_string(), String::new()));
            let letter = DeadLetter {
                object_id,
                destination: *destination,
                code: code.clone(),
                message,
                attempts: entry.attempts,
                failed_at: entry.last_attempt_at.unwrap_or_else(Utc::now),
            };
            let text = serde_json::to_string(&letter).expect("a dead letter always serialises");
            self.store
                .send(&FAILED_QUEUE, &text, Duration::ZERO)
                .await
                .map_err(|source| PipelineError::Queue {
                    what: "sending a dead letter",
                    source,
                })?;
            // stderr: the host logs it at Error, which Application Insights can alert on.
            log::error!(
                "user {object_id}: {destination} failed ({code}) after {} attempt(s): {}; dead letter on {FAILED_QUEUE}",
                entry.attempts,
                letter.message
            );
            report.dead_lettered.push(*destination);
        }
        self.ledgers
            .update(object_id, |ledger| {
                for (destination, _) in &unsent {
                    if let Some(entry) = ledger.destinations.get_mut(destination)
                        && entry.state == State::Failed
                    {
                        entry.dead_lettered = true;
                    }
                }
            })
            .await?;
        Ok(())
    }

    /// What the destinations know of the user: attribute names without the
    /// `extension_<app>_` prefix; the email from `mail`, else the `emailAddress` identity.
    pub fn new_user(&self, object_id: ObjectId, user: &User) -> NewUser {
        let prefix = self
            .settings
            .extension_prefix()
            .map(|prefix| prefix.to_ascii_lowercase());
        let attributes = user
            .extension_attributes()
            .map(|(name, value)| (short_name(name, prefix.as_deref()), value.clone()))
            .collect();
        let email = user
            .mail
            .as_deref()
            .and_then(|mail| Email::parse(mail).ok())
            .or_else(|| {
                user.identities
                    .iter()
                    .filter(|identity| identity.sign_in_type.as_deref() == Some("emailAddress"))
                    .find_map(|identity| {
                        identity
                            .issuer_assigned_id
                            .as_deref()
                            .and_then(|id| Email::parse(id).ok())
                    })
            });
        NewUser {
            object_id,
            email,
            given_name: user.given_name.clone(),
            surname: user.surname.clone(),
            display_name: user.display_name.clone(),
            created: user.created_date_time,
            attributes,
        }
    }
}

/// `extension_<app>_onMailingList` → `onMailingList`; with the app unknown, any
/// `extension_<32 hex>_` prefix is removed.
fn short_name(full: &str, prefix: Option<&str>) -> String {
    if let Some(prefix) = prefix
        && full.to_ascii_lowercase().starts_with(prefix)
    {
        return full[prefix.len()..].to_string();
    }
    match full.strip_prefix("extension_").and_then(|rest| rest.split_once('_')) {
        Some((app, name)) if app.len() == 32 && app.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => full.to_string(),
    }
}

fn disabled(destination: Destination) -> DestinationError {
    DestinationError::permanent("disabled", format!("{destination} is not configured"))
}

/// The entry after one attempt, and what happens next.
fn apply(
    entry: &mut Entry,
    result: &Result<Outcome, DestinationError>,
    keep_id: Option<String>,
    schedule: &RetrySchedule,
) -> Disposition {
    let now = Utc::now();
    entry.attempts += 1;
    entry.first_attempt_at.get_or_insert(now);
    entry.last_attempt_at = Some(now);
    entry.next_attempt_at = None;
    if keep_id.is_some() {
        entry.external_id = keep_id;
    }
    match result {
        Ok(Outcome::Done { external_id }) => {
            entry.state = State::Done;
            entry.completed_at = Some(now);
            if external_id.is_some() {
                entry.external_id = external_id.clone();
            }
            Disposition::Done
        }
        Ok(Outcome::Skipped { reason }) => {
            entry.state = State::Skipped;
            entry.completed_at = Some(now);
            entry.note = Some(reason.to_string());
            Disposition::Skipped
        }
        Err(error) => {
            entry.last_error = Some(LastError {
                code: error.code().to_string(),
                message: error.message().to_string(),
                at: now,
            });
            let code = error.code().to_string();
            match schedule.delay_after(entry.attempts).filter(|_| error.is_transient()) {
                Some(delay) => {
                    // The server's Retry-After wins when it asks for longer.
                    let delay = error
                        .retry_after()
                        .map_or(delay, |after| after.max(delay))
                        .min(MAX_VISIBILITY);
                    entry.state = State::Pending;
                    entry.next_attempt_at = chrono::Duration::from_std(delay).ok().map(|delay| now + delay);
                    Disposition::Retry { delay, code }
                }
                None => {
                    entry.state = State::Failed;
                    entry.dead_lettered = false;
                    Disposition::Failed { code }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_lose_their_extension_prefix() {
        let prefix = "extension_0a1b2c3d4e5f60718293a4b5c6d7e8f9_";
        assert_eq!(
            short_name(&format!("{prefix}onMailingList"), Some(prefix)),
            "onMailingList"
        );
        assert_eq!(
            short_name("extension_0A1B2C3D4E5F60718293A4B5C6D7E8F9_plan", None),
            "plan"
        );
        assert_eq!(short_name("extension_short_plan", None), "extension_short_plan");
    }

    #[test]
    fn attempts_follow_the_schedule_then_fail() {
        let schedule = RetrySchedule::parse("1m,5m").unwrap();
        let mut entry = Entry::pending();
        let down = Err(DestinationError::transient("http_503", "down"));
        assert_eq!(
            apply(&mut entry, &down, None, &schedule),
            Disposition::Retry {
                delay: Duration::from_secs(60),
                code: "http_503".into()
            }
        );
        assert_eq!(
            apply(&mut entry, &down, None, &schedule),
            Disposition::Retry {
                delay: Duration::from_secs(300),
                code: "http_503".into()
            }
        );
        assert_eq!(
            apply(&mut entry, &down, None, &schedule),
            Disposition::Failed {
                code: "http_503".into()
            }
        );
        assert_eq!((entry.state, entry.attempts), (State::Failed, 3));
        let mut entry = Entry::pending();
        let permanent = Err(DestinationError::permanent("http_400", "bad"));
        assert!(matches!(
            apply(&mut entry, &permanent, None, &schedule),
            Disposition::Failed { .. }
        ));
        let throttled = Err(DestinationError::Transient {
            code: "http_429".into(),
            message: "slow".into(),
            retry_after: Some(Duration::from_secs(600)),
        });
        let mut entry = Entry::pending();
        assert!(matches!(
            apply(&mut entry, &throttled, None, &schedule),
            Disposition::Retry { delay, .. } if delay == Duration::from_secs(600)
        ));
    }
}
