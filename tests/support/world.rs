//! Everything `signup-bridge run` provisions into, started together for the ProvisionUser
//! benchmark and the chaos test: Graph (with Key Vault and Entra), Mailchimp, Stripe and
//! Salesforce fakes each behind a [`ChaosProxy`], a fresh schema on the real PostgreSQL
//! when `SIGNUP_TEST_DATABASE_URL` is set, and a state store (Azurite when
//! `SIGNUP_TEST_STORAGE_CONNECTION_STRING` is set, else, or with `SIGNUP_BENCH_STORE=embedded`,
//! the embedded store). Also counts, per user, what each destination holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use signup_bridge::store::Store;
use url::Url;
use uuid::Uuid;

use super::chaos_proxy::{ChaosProxy, Plan};
use super::fake_graph::audit_record;
use super::fake_mailchimp::FakeMailchimp;
use super::fake_salesforce::FakeSalesforce;
use super::fake_stripe::FakeStripe;
use super::graph_fakes::GraphFakes;
use super::postgres::TestSchema;

pub const EXTENSIONS_APP: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
pub const PREFIX: &str = "extension_0a1b2c3d4e5f60718293a4b5c6d7e8f9_";
pub const GROUP: &str = "aaaaaaaa-0000-4000-8000-000000000001";
pub const DOMAIN: &str = "contoso.onmicrosoft.com";
pub const MAILCHIMP_KEY: &str = "0123456789abcdef0123456789abcdef-us21";
pub const MAILCHIMP_LIST: &str = "a1b2c3d4e5";
pub const STRIPE_KEY: &str = "sk_test_51FakeKeyForTests";
pub const SF_CLIENT: &str = "3MVG9fakeConsumerKey";
pub const SF_SECRET: &str = "FAKE-consumer-secret-0123456789";
pub const SF_FIELD: &str = "Entra_Object_Id__c";

/// The email [`World::add_users`] gives a user.
fn email_of(id: &Uuid) -> String {
    format!("ada.{}@contoso.com", &id.simple().to_string()[..10])
}

fn addr(url: &Url) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], url.port().expect("a fake's port")))
}

pub struct Proxies {
    pub graph: ChaosProxy,
    pub mailchimp: ChaosProxy,
    pub stripe: ChaosProxy,
    pub salesforce: ChaosProxy,
}

impl Proxies {
    pub fn all(&self) -> [(&'static str, &ChaosProxy); 4] {
        [
            ("graph", &self.graph),
            ("mailchimp", &self.mailchimp),
            ("stripe", &self.stripe),
            ("salesforce", &self.salesforce),
        ]
    }
}

pub struct World {
    pub fakes: GraphFakes,
    pub mailchimp: FakeMailchimp,
    pub stripe: FakeStripe,
    pub salesforce: FakeSalesforce,
    pub proxies: Proxies,
    pub schema: Option<TestSchema>,
    pub store: Arc<dyn Store>,
    pub store_kind: &'static str,
    state: super::stores::SharedStore,
}

/// What every destination holds for the users asked about.
#[derive(Debug, Default)]
pub struct Tally {
    pub users: usize,
    /// Users with exactly one Stripe customer, and customers beyond the first.
    pub stripe_once: usize,
    pub stripe_duplicates: usize,
    pub mailchimp_once: usize,
    pub salesforce_once: usize,
    pub salesforce_duplicates: usize,
    pub postgres_once: usize,
    pub postgres_duplicates: usize,
    pub in_group: usize,
    /// Users whose Graph record carries their (one) Stripe customer id.
    pub written_back: usize,
}

impl Tally {
    /// Every user in every destination exactly once (PostgreSQL when it runs).
    pub fn complete(&self, with_postgres: bool) -> bool {
        let n = self.users;
        self.stripe_once == n
            && self.stripe_duplicates == 0
            && self.mailchimp_once == n
            && self.salesforce_once == n
            && self.salesforce_duplicates == 0
            && (!with_postgres || (self.postgres_once == n && self.postgres_duplicates == 0))
            && self.in_group == n
            && self.written_back == n
    }
}

impl World {
    /// `plan(seed)` gives each proxy its plan; the seeds differ per destination.
    pub async fn start(plan: impl Fn(u64) -> Plan, seed: u64) -> World {
        let fakes = GraphFakes::start();
        let mailchimp = FakeMailchimp::start(MAILCHIMP_KEY, MAILCHIMP_LIST).await;
        let stripe = FakeStripe::start(STRIPE_KEY).await;
        let salesforce = FakeSalesforce::start(SF_CLIENT, SF_SECRET, SF_FIELD).await;
        let proxies = Proxies {
            graph: ChaosProxy::start(addr(&fakes.graph.url()), plan(seed)),
            mailchimp: ChaosProxy::start(addr(&mailchimp.url()), plan(seed + 1)),
            stripe: ChaosProxy::start(addr(&stripe.url()), plan(seed + 2)),
            salesforce: ChaosProxy::start(addr(&salesforce.url()), plan(seed + 3)),
        };
        let graph_url = proxies.graph.url_for(&fakes.graph.url());
        fakes.graph.set_public_url(&graph_url);
        // The token's audience is what the client calls: the proxy's origin.
        fakes
            .entra
            .expect_scope(&format!("{}/.default", graph_url.origin().ascii_serialization()));
        salesforce.set_public_url(&proxies.salesforce.url_for(&salesforce.url()));
        let schema = TestSchema::create("signup-bridge run").await;
        let state = super::stores::SharedStore::open().await;
        World {
            fakes,
            mailchimp,
            stripe,
            salesforce,
            proxies,
            schema,
            store: state.store.clone(),
            store_kind: state.kind,
            state,
        }
    }

    /// Settings for `signup-bridge run`: every destination on, through the proxies.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut env = self.fakes.process_settings();
        let graph_url = self.proxies.graph.url_for(&self.fakes.graph.url());
        env.retain(|(name, _)| name != "GRAPH_BASE_URL");
        env.extend(self.state.settings.iter().cloned());
        env.extend(
            [
                ("GRAPH_BASE_URL", graph_url.to_string()),
                ("EXTENSION_SKIP_TOKEN_VALIDATION", "true".to_string()),
                ("PROVISION_EXTENSION_APP_ID", EXTENSIONS_APP.to_string()),
                ("DIRECTORY_DISPLAY_NAME_TEMPLATE", "{givenName} {surname}".to_string()),
                ("DIRECTORY_UPN_TEMPLATE", "{givenName}.{surname}".to_string()),
                ("DIRECTORY_UPN_DOMAIN", DOMAIN.to_string()),
                ("GROUPS_STATIC", GROUP.to_string()),
                ("STRIPE_CUSTOMER_ID_ATTRIBUTE", "stripeCustomerId".to_string()),
                ("MAILCHIMP_API_KEY", MAILCHIMP_KEY.to_string()),
                ("MAILCHIMP_LIST_ID", MAILCHIMP_LIST.to_string()),
                (
                    "MAILCHIMP_BASE_URL",
                    self.proxies.mailchimp.url_for(&self.mailchimp.url()).to_string(),
                ),
                ("STRIPE_API_KEY", STRIPE_KEY.to_string()),
                (
                    "STRIPE_BASE_URL",
                    self.proxies.stripe.url_for(&self.stripe.url()).to_string(),
                ),
                (
                    "SALESFORCE_LOGIN_URL",
                    self.proxies.salesforce.url_for(&self.salesforce.url()).to_string(),
                ),
                ("SALESFORCE_CLIENT_ID", SF_CLIENT.to_string()),
                ("SALESFORCE_CLIENT_SECRET", SF_SECRET.to_string()),
                ("SALESFORCE_EXTERNAL_ID_FIELD", SF_FIELD.to_string()),
            ]
            .map(|(name, value)| (name.to_string(), value)),
        );
        if let Some(schema) = &self.schema {
            env.push(("SIGNUP_DATABASE_URL".into(), schema.database_url()));
        }
        env
    }

    /// `count` new users in Graph, each with a unique name, an email and mailing-list consent.
    pub fn add_users(&self, count: usize) -> Vec<Uuid> {
        (0..count)
            .map(|_| {
                let id = Uuid::new_v4();
                let tag = &id.simple().to_string()[..10];
                let email = email_of(&id);
                self.fakes.graph.add_user(json!({
                    "id": id.to_string(),
                    "displayName": "unknown",
                    "givenName": format!("Ada{tag}"),
                    "surname": "Lovelace",
                    "mail": email,
                    "userPrincipalName": format!("{id}@{DOMAIN}"),
                    "createdDateTime": chrono::Utc::now().to_rfc3339(),
                    "identities": [
                        {"signInType": "emailAddress", "issuer": DOMAIN, "issuerAssignedId": email}
                    ],
                    format!("{PREFIX}onMailingList"): true,
                }));
                id
            })
            .collect()
    }

    /// The users' `Add user` records, as the audit log ingests them.
    pub fn sign_up(&self, users: &[Uuid]) {
        for user in users {
            self.fakes
                .graph
                .ingest_audit_record(audit_record(&user.to_string(), chrono::Utc::now(), "success"));
        }
    }

    pub async fn tally(&self, users: &[Uuid]) -> Tally {
        let wanted: HashSet<String> = users.iter().map(Uuid::to_string).collect();
        let mut stripe: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for customer in self.stripe.customers() {
            if let Some(user) = customer.metadata.get("entra_object_id") {
                stripe.entry(user.clone()).or_default().push(customer.id);
            }
        }
        let emails: HashMap<String, String> = users
            .iter()
            .map(|id| (super::fake_mailchimp::subscriber_hash(&email_of(id)), id.to_string()))
            .collect();
        let members = self.mailchimp.members();
        // Contacts are keyed by the External ID; a duplicate would be a second creation.
        let contacts = self.salesforce.contacts();
        let mut salesforce_creations: BTreeMap<String, usize> = BTreeMap::new();
        for call in self.salesforce.calls().iter().filter(|call| call.status == 201) {
            let user = call.path.rsplit('/').next().unwrap_or_default().to_string();
            *salesforce_creations.entry(user).or_default() += 1;
        }
        let rows = match &self.schema {
            Some(schema) => schema.rows_per_user().await,
            None => HashMap::new(),
        };
        let group = self.fakes.graph.members(GROUP);
        let written_back = users
            .iter()
            .filter(|id| {
                let Some(customers) = stripe.get(&id.to_string()) else {
                    return false;
                };
                let user = self.fakes.graph.user(&id.to_string()).unwrap_or(Value::Null);
                customers.len() == 1 && user[format!("{PREFIX}stripeCustomerId")] == json!(customers[0])
            })
            .count();
        Tally {
            users: users.len(),
            stripe_once: wanted
                .iter()
                .filter(|id| stripe.get(*id).is_some_and(|c| c.len() == 1))
                .count(),
            stripe_duplicates: stripe
                .iter()
                .filter(|(id, _)| wanted.contains(*id))
                .map(|(_, c)| c.len().saturating_sub(1))
                .sum(),
            mailchimp_once: emails.keys().filter(|hash| members.contains_key(*hash)).count(),
            salesforce_once: wanted.iter().filter(|id| contacts.contains_key(*id)).count(),
            salesforce_duplicates: salesforce_creations
                .iter()
                .filter(|(id, _)| wanted.contains(*id))
                .map(|(_, n)| n.saturating_sub(1))
                .sum(),
            postgres_once: users.iter().filter(|id| rows.get(id) == Some(&1)).count(),
            postgres_duplicates: users
                .iter()
                .map(|id| rows.get(id).copied().unwrap_or(0).saturating_sub(1))
                .sum(),
            in_group: wanted.iter().filter(|id| group.contains(*id)).count(),
            written_back,
        }
    }
}
