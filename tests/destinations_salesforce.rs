//! The Salesforce destination against a fake org: client credentials tokens and Contact
//! upserts by an External ID field.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use signup_bridge::provisioning::destinations::salesforce::SalesforceClient;
use signup_bridge::provisioning::destinations::{DestinationError, Email, NewUser, ObjectId, Outcome};
use signup_bridge::settings::destinations::DestinationSettings;
use support::fake_salesforce::FakeSalesforce;

const CLIENT_ID: &str = "3MVG9fakeConsumerKey";
const SECRET: &str = "FAKE-consumer-secret-0123456789";
const FIELD: &str = "Entra_Object_Id__c";
const ID: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
const EMAIL: &str = "jane.doe@contoso.com";

fn client(fake: &FakeSalesforce, extra: &[(&str, &str)]) -> SalesforceClient {
    let mut values: HashMap<String, String> = [
        ("SALESFORCE_LOGIN_URL", fake.url().to_string()),
        ("SALESFORCE_CLIENT_ID", CLIENT_ID.to_string()),
        ("SALESFORCE_CLIENT_SECRET", SECRET.to_string()),
        ("SALESFORCE_EXTERNAL_ID_FIELD", FIELD.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    values.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = DestinationSettings::from_map(&values).unwrap().salesforce.unwrap();
    SalesforceClient::new(&settings).unwrap()
}

fn user(number: u32) -> NewUser {
    NewUser {
        email: Some(Email::parse(EMAIL).unwrap()),
        given_name: Some("Jane".into()),
        surname: Some("Doe".into()),
        ..NewUser::new(ObjectId::parse(&format!("aaaabbbb-0000-cccc-1111-{number:012}")).unwrap())
    }
}

fn the_user() -> NewUser {
    NewUser {
        object_id: ObjectId::parse(ID).unwrap(),
        ..user(0)
    }
}

fn assert_no_personal_data(error: &DestinationError) {
    let text = format!("{error} {error:?}");
    for personal in [EMAIL, "jane.doe", "Jane", "Doe", SECRET] {
        assert!(!text.contains(personal), "{personal:?} in {text}");
    }
}

#[tokio::test]
async fn creates_a_contact_keyed_by_the_object_id() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;

    let outcome = client(&fake, &[]).upsert_contact(&the_user()).await.unwrap();

    let contacts = fake.contacts();
    assert_eq!(contacts.len(), 1);
    let contact = &contacts[ID];
    assert_eq!(
        outcome,
        Outcome::Done {
            external_id: Some(contact.id.clone())
        }
    );
    assert_eq!(
        Value::Object(contact.fields.clone()),
        json!({"FirstName": "Jane", "LastName": "Doe", "Email": EMAIL})
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("POST", "/services/oauth2/token")
    );
    assert_eq!(calls[1].method, "PATCH");
    assert_eq!(
        calls[1].path,
        format!("/services/data/v61.0/sobjects/Contact/{FIELD}/{ID}")
    );
}

#[tokio::test]
async fn three_deliveries_make_one_contact_with_one_token() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;
    let client = client(&fake, &[("SALESFORCE_API_VERSION", "v62.0")]);

    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(client.upsert_contact(&the_user()).await.unwrap());
    }

    assert_eq!(fake.contacts().len(), 1);
    assert_eq!(fake.tokens_issued(), 1);
    assert!(outcomes.windows(2).all(|pair| pair[0] == pair[1]), "{outcomes:?}");
    let statuses: Vec<u16> = fake.calls().iter().map(|call| call.status).collect();
    assert_eq!(statuses, vec![200, 201, 200, 200]);
    assert!(fake.calls()[1].path.starts_with("/services/data/v62.0/"));
}

#[tokio::test]
async fn several_matching_contacts_are_a_permanent_error_that_says_what_to_do() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;
    fake.duplicate(ID);

    let error = client(&fake, &[]).upsert_contact(&the_user()).await.unwrap_err();

    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_300:MULTIPLE_MATCHES");
    let message = error.message();
    assert!(message.contains("HTTP 300"), "{message}");
    assert!(message.contains("2 Contact records"), "{message}");
    assert!(message.contains(FIELD), "{message}");
    assert!(message.contains("de-duplicate"), "{message}");
    assert_no_personal_data(&error);
    assert!(fake.contacts().is_empty());
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_upsert_succeeds() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;
    let client = client(&fake, &[]);
    client.upsert_contact(&user(1)).await.unwrap();

    fake.expire_tokens();
    let outcome = client.upsert_contact(&user(2)).await.unwrap();

    assert!(matches!(outcome, Outcome::Done { external_id: Some(_) }), "{outcome:?}");
    assert_eq!(fake.tokens_issued(), 2);
    assert_eq!(fake.contacts().len(), 2);
    let statuses: Vec<(String, u16)> = fake
        .calls()
        .iter()
        .map(|call| (call.method.clone(), call.status))
        .collect();
    let expected: Vec<(String, u16)> = [
        ("POST", 200),
        ("PATCH", 201),
        ("PATCH", 401),
        ("POST", 200),
        ("PATCH", 201),
    ]
    .iter()
    .map(|(method, status)| (method.to_string(), *status))
    .collect();
    assert_eq!(statuses, expected);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;
    let client = client(&fake, &[]);
    let users: Vec<NewUser> = (1..=8).map(user).collect();

    let first = futures_util::future::join_all(users.iter().map(|user| client.upsert_contact(user))).await;
    assert!(first.iter().all(Result::is_ok));
    assert_eq!(fake.tokens_issued(), 1);

    fake.expire_tokens();
    let second = futures_util::future::join_all(users.iter().map(|user| client.upsert_contact(user))).await;
    assert!(second.iter().all(Result::is_ok), "{second:?}");
    assert_eq!(fake.tokens_issued(), 2);
    assert_eq!(fake.contacts().len(), 8);
}

#[tokio::test]
async fn wrong_credentials_are_permanent_and_never_echo_the_secret() {
    let fake = FakeSalesforce::start(CLIENT_ID, "another-secret", FIELD).await;

    let error = client(&fake, &[]).upsert_contact(&the_user()).await.unwrap_err();

    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_400:invalid_client");
    assert!(error.message().contains("invalid client credentials"), "{error}");
    assert_no_personal_data(&error);
}

#[tokio::test]
async fn outages_and_the_daily_api_limit_are_transient() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;
    let client = client(&fake, &[]);

    fake.fail_next(
        503,
        json!([{"errorCode": "SERVER_UNAVAILABLE", "message": "Server unavailable"}]),
        &[("Retry-After", "120")],
    );
    let error = client.upsert_contact(&the_user()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(error.code(), "http_503:SERVER_UNAVAILABLE");

    fake.fail_next(
        403,
        json!([{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]),
        &[],
    );
    let error = client.upsert_contact(&the_user()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.code(), "http_403:REQUEST_LIMIT_EXCEEDED");

    fake.fail_next(
        500,
        json!([{"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred."}]),
        &[],
    );
    assert!(client.upsert_contact(&the_user()).await.unwrap_err().is_transient());

    assert!(fake.contacts().is_empty());
}

#[tokio::test]
async fn a_rejected_contact_is_permanent_with_the_error_code_and_no_personal_data() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;
    let client = client(&fake, &[]);
    fake.fail_next(
        400,
        json!([{"errorCode": "INVALID_EMAIL_ADDRESS", "message": format!("Email: invalid email address: {EMAIL}"), "fields": ["Email"]}]),
        &[],
    );

    let error = client.upsert_contact(&the_user()).await.unwrap_err();

    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_400:INVALID_EMAIL_ADDRESS");
    assert!(error.message().contains("HTTP 400 INVALID_EMAIL_ADDRESS"), "{error}");
    assert_no_personal_data(&error);
}

#[tokio::test]
async fn an_unknown_external_id_field_is_permanent_with_a_hint() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;

    let error = client(&fake, &[("SALESFORCE_EXTERNAL_ID_FIELD", "Other_Id__c")])
        .upsert_contact(&the_user())
        .await
        .unwrap_err();

    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_404:NOT_FOUND");
    assert!(error.message().contains("Other_Id__c"), "{error}");
    assert!(error.message().contains("External ID field"), "{error}");
}

#[tokio::test]
async fn a_user_without_names_gets_a_placeholder_last_name() {
    let fake = FakeSalesforce::start(CLIENT_ID, SECRET, FIELD).await;
    let nameless = NewUser::new(ObjectId::parse(ID).unwrap());

    client(&fake, &[]).upsert_contact(&nameless).await.unwrap();

    assert_eq!(
        Value::Object(fake.contacts()[ID].fields.clone()),
        json!({"LastName": "(unknown)"})
    );
}
