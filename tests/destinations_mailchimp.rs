//! The Mailchimp destination against a fake Mailchimp that keeps members by subscriber hash.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use signup_bridge::provisioning::destinations::mailchimp::MailchimpClient;
use signup_bridge::provisioning::destinations::{DestinationError, Email, NewUser, ObjectId, Outcome};
use signup_bridge::settings::destinations::DestinationSettings;
use support::fake_mailchimp::{FakeMailchimp, subscriber_hash};

const KEY: &str = "0123456789abcdef0123456789abcdef-us21";
const LIST: &str = "a1b2c3d4e5";
const EMAIL: &str = "jane.doe@contoso.com";

fn client(base_url: &str, extra: &[(&str, &str)]) -> MailchimpClient {
    let mut values: HashMap<String, String> = [
        ("MAILCHIMP_API_KEY", KEY),
        ("MAILCHIMP_LIST_ID", LIST),
        ("MAILCHIMP_BASE_URL", base_url),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    values.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = DestinationSettings::from_map(&values).unwrap().mailchimp.unwrap();
    MailchimpClient::new(&settings).unwrap()
}

fn user(number: u32, email: &str, consent: Value) -> NewUser {
    NewUser {
        email: Some(Email::parse(email).unwrap()),
        given_name: Some("Jane".into()),
        surname: Some("Doe".into()),
        display_name: Some("Jane Doe".into()),
        attributes: BTreeMap::from([("onMailingList".to_string(), consent)]),
        ..NewUser::new(ObjectId::parse(&format!("aaaabbbb-0000-cccc-1111-{number:012}")).unwrap())
    }
}

fn assert_no_personal_data(error: &DestinationError) {
    let text = format!("{error} {error:?}");
    for personal in [EMAIL, "jane.doe", "Jane", "Doe", KEY] {
        assert!(!text.contains(personal), "{personal:?} in {text}");
    }
}

#[tokio::test]
async fn a_consenting_user_becomes_a_subscribed_member_with_merge_fields() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(fake.url().as_str(), &[]);

    let outcome = client
        .subscribe(&user(1, " Jane.Doe@Contoso.com ", json!(true)))
        .await
        .unwrap();

    let hash = subscriber_hash(EMAIL);
    let expected_id = format!("ue{}", &hash[..10]);
    assert_eq!(
        outcome,
        Outcome::Done {
            external_id: Some(expected_id)
        }
    );
    let members = fake.members();
    assert_eq!(members.len(), 1);
    let member = &members[&hash];
    assert_eq!(member.email_address, EMAIL);
    assert_eq!(member.status, "subscribed");
    assert_eq!(
        Value::Object(member.merge_fields.clone()),
        json!({"FNAME": "Jane", "LNAME": "Doe"})
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "PUT");
    assert_eq!(calls[0].path, format!("/3.0/lists/{LIST}/members/{hash}"));
}

#[tokio::test]
async fn three_deliveries_make_exactly_one_member() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(fake.url().as_str(), &[]);
    let user = user(1, EMAIL, json!(true));

    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(client.subscribe(&user).await.unwrap());
    }

    assert_eq!(fake.members().len(), 1);
    assert_eq!(fake.calls().len(), 3);
    assert!(outcomes.windows(2).all(|pair| pair[0] == pair[1]), "{outcomes:?}");
}

#[tokio::test]
async fn without_consent_mailchimp_is_not_called() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(fake.url().as_str(), &[]);

    for consent in [json!(false), json!("no"), json!("false"), json!(0), Value::Null] {
        let outcome = client.subscribe(&user(1, EMAIL, consent.clone())).await.unwrap();
        assert!(matches!(outcome, Outcome::Skipped { .. }), "{consent}: {outcome:?}");
    }
    let mut no_attribute = user(2, EMAIL, json!(true));
    no_attribute.attributes.clear();
    assert!(matches!(
        client.subscribe(&no_attribute).await.unwrap(),
        Outcome::Skipped { .. }
    ));

    assert_eq!(fake.calls().len(), 0);
    assert!(fake.members().is_empty());
}

#[tokio::test]
async fn the_consent_attribute_and_merge_fields_come_from_settings() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(
        fake.url().as_str(),
        &[
            ("MAILCHIMP_CONSENT_ATTRIBUTE", "newsletter"),
            ("MAILCHIMP_MERGE_FIELDS", "NAME=displayName, UNI=university"),
            ("MAILCHIMP_STATUS_IF_NEW", "pending"),
        ],
    );
    let mut user = user(1, EMAIL, json!(true));
    assert!(matches!(
        client.subscribe(&user).await.unwrap(),
        Outcome::Skipped { .. }
    ));

    user.attributes.insert("Newsletter".into(), json!("True"));
    user.attributes.insert("university".into(), json!("Contoso U"));
    assert!(matches!(client.subscribe(&user).await.unwrap(), Outcome::Done { .. }));

    let member = &fake.members()[&subscriber_hash(EMAIL)];
    assert_eq!(member.status, "pending");
    assert_eq!(
        Value::Object(member.merge_fields.clone()),
        json!({"NAME": "Jane Doe", "UNI": "Contoso U"})
    );
}

#[tokio::test]
async fn consent_without_an_email_is_a_permanent_error_and_no_call() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(fake.url().as_str(), &[]);
    let mut user = user(1, EMAIL, json!(true));
    user.email = None;

    let error = client.subscribe(&user).await.unwrap_err();

    assert!(!error.is_transient());
    assert_eq!(error.code(), "no_email");
    assert!(error.message().contains("user has no email"), "{error}");
    assert_eq!(fake.calls().len(), 0);
}

#[tokio::test]
async fn at_most_ten_requests_run_at_once() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    fake.set_delay(Duration::from_millis(50));

    // The fake can see more than ten: unthrottled requests do exceed it.
    let raw = reqwest::Client::new();
    let hash = subscriber_hash(EMAIL);
    let url = format!("{}3.0/lists/{LIST}/members/{hash}", fake.url());
    let unthrottled = (0..20).map(|_| {
        raw.put(&url)
            .basic_auth("x", Some(KEY))
            .json(&json!({"email_address": EMAIL, "status_if_new": "subscribed"}))
            .send()
    });
    for response in futures_util::future::join_all(unthrottled).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert!(
        fake.max_in_flight() > 10,
        "the fake saw only {} at once",
        fake.max_in_flight()
    );

    let fake = FakeMailchimp::start(KEY, LIST).await;
    fake.set_delay(Duration::from_millis(50));
    let client = client(fake.url().as_str(), &[]);
    let users: Vec<NewUser> = (0..50)
        .map(|n| user(n, &format!("user{n}@contoso.com"), json!(true)))
        .collect();
    let outcomes = futures_util::future::join_all(users.iter().map(|user| client.subscribe(user))).await;

    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, Ok(Outcome::Done { .. })))
    );
    assert_eq!(fake.members().len(), 50);
    let max = fake.max_in_flight();
    assert!((2..=10).contains(&max), "{max} requests at once");
}

#[tokio::test]
async fn throttling_is_transient_with_the_servers_retry_after() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(fake.url().as_str(), &[]);
    fake.fail_next(
        429,
        "Too Many Requests",
        "You have exceeded the limit of 10 simultaneous connections.",
        Some("30"),
    );

    let error = client.subscribe(&user(1, EMAIL, json!(true))).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(error.code(), "http_429:Too Many Requests");
    assert!(error.message().contains("HTTP 429"), "{error}");
}

#[tokio::test]
async fn a_server_error_is_transient() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(fake.url().as_str(), &[]);
    fake.fail_next(
        500,
        "Internal Server Error",
        "An unexpected internal error has occurred.",
        None,
    );

    let error = client.subscribe(&user(1, EMAIL, json!(true))).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    assert_eq!(error.retry_after(), None);
    assert!(error.code().starts_with("http_500"), "{error}");
    assert!(fake.members().is_empty());
}

#[tokio::test]
async fn a_rejected_address_is_permanent_and_the_message_holds_no_email() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(fake.url().as_str(), &[]);
    fake.fail_next(
        400,
        "Invalid Resource",
        &format!("{EMAIL} looks fake or invalid, please enter a real email address. Jane Doe"),
        None,
    );

    let error = client.subscribe(&user(1, EMAIL, json!(true))).await.unwrap_err();

    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_400:Invalid Resource");
    assert!(error.message().contains("HTTP 400 Invalid Resource"), "{error}");
    assert!(error.message().contains("looks fake or invalid"), "{error}");
    assert_no_personal_data(&error);
}

#[tokio::test]
async fn an_unknown_list_and_a_bad_key_are_permanent() {
    let fake = FakeMailchimp::start(KEY, "otherlist1").await;
    let error = client(fake.url().as_str(), &[])
        .subscribe(&user(1, EMAIL, json!(true)))
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_404:Resource Not Found");
    assert_no_personal_data(&error);

    let fake = FakeMailchimp::start("ffffffffffffffffffffffffffffffff-us21", LIST).await;
    let error = client(fake.url().as_str(), &[])
        .subscribe(&user(1, EMAIL, json!(true)))
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_401:API Key Invalid");
    assert_no_personal_data(&error);
}

#[tokio::test]
async fn an_address_in_compliance_state_is_skipped_not_failed() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    let client = client(fake.url().as_str(), &[]);
    fake.put_in_compliance_state(EMAIL);

    let outcome = client.subscribe(&user(1, EMAIL, json!(true))).await.unwrap();

    assert!(matches!(outcome, Outcome::Skipped { .. }), "{outcome:?}");
    assert_eq!(fake.calls().len(), 1);
    assert!(fake.members().is_empty());
}

#[tokio::test]
async fn no_answer_in_time_is_a_transient_timeout() {
    let fake = FakeMailchimp::start(KEY, LIST).await;
    fake.set_delay(Duration::from_secs(3));
    let client = client(fake.url().as_str(), &[("DESTINATIONS_TIMEOUT_SECONDS", "1")]);

    let error = client.subscribe(&user(1, EMAIL, json!(true))).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    assert_eq!(error.code(), "timeout");
}

#[tokio::test]
async fn nothing_listening_is_a_transient_connection_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = client(&format!("http://127.0.0.1:{port}"), &[]);

    let error = client.subscribe(&user(1, EMAIL, json!(true))).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    assert_eq!(error.code(), "connect");
    assert_no_personal_data(&error);
}
