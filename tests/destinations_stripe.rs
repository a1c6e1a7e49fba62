//! The Stripe destination against a fake Stripe with real idempotency-key semantics.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use signup_bridge::provisioning::destinations::stripe::{CustomerId, StripeClient};
use signup_bridge::provisioning::destinations::{DestinationError, Email, NewUser, ObjectId, Outcome};
use signup_bridge::settings::destinations::DestinationSettings;
use support::fake_stripe::FakeStripe;

const KEY: &str = "sk_test_51FakeKeyForTests";
const ID: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
const EMAIL: &str = "jane.doe@contoso.com";

fn client(fake: &FakeStripe, extra: &[(&str, &str)]) -> StripeClient {
    let mut values: HashMap<String, String> = HashMap::from([
        ("STRIPE_API_KEY".to_string(), KEY.to_string()),
        ("STRIPE_BASE_URL".to_string(), fake.url().to_string()),
    ]);
    values.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = DestinationSettings::from_map(&values).unwrap().stripe.unwrap();
    StripeClient::new(&settings).unwrap()
}

fn user() -> NewUser {
    NewUser {
        email: Some(Email::parse(EMAIL).unwrap()),
        given_name: Some("Jane".into()),
        surname: Some("Doe".into()),
        ..NewUser::new(ObjectId::parse(ID).unwrap())
    }
}

fn customer_id(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done { external_id: Some(id) } => id.clone(),
        other => panic!("expected a customer id, got {other:?}"),
    }
}

fn assert_no_personal_data(error: &DestinationError) {
    let text = format!("{error} {error:?}");
    for personal in [EMAIL, "jane.doe", "Jane", "Doe", KEY] {
        assert!(!text.contains(personal), "{personal:?} in {text}");
    }
}

#[tokio::test]
async fn creates_a_customer_tagged_with_the_object_id_under_a_deterministic_key() {
    let fake = FakeStripe::start(KEY).await;

    let outcome = client(&fake, &[]).ensure_customer(&user(), None).await.unwrap();

    let customers = fake.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customer_id(&outcome), customers[0].id);
    assert!(customers[0].id.starts_with("cus_"));
    assert_eq!(customers[0].email.as_deref(), Some(EMAIL));
    assert_eq!(customers[0].name.as_deref(), Some("Jane Doe"));
    assert_eq!(
        customers[0].metadata.get("entra_object_id").map(String::as_str),
        Some(ID)
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("GET", "/v1/customers/search")
    );
    assert!(calls[0].query.contains("entra_object_id"));
    assert_eq!(
        (calls[1].method.as_str(), calls[1].path.as_str()),
        ("POST", "/v1/customers")
    );
    assert_eq!(
        calls[1].idempotency_key.as_deref(),
        Some(format!("signup-bridge-customer-{ID}").as_str())
    );
}

#[tokio::test]
async fn three_deliveries_without_a_known_id_make_one_customer_through_the_idempotency_key() {
    let fake = FakeStripe::start(KEY).await;
    // The ledger lost the id and search has not indexed the customer: only the key helps.
    fake.set_search_lags(true);
    let client = client(&fake, &[]);

    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(customer_id(&client.ensure_customer(&user(), None).await.unwrap()));
    }

    assert_eq!(fake.customers().len(), 1);
    assert!(ids.iter().all(|id| *id == fake.customers()[0].id), "{ids:?}");
    let creates: Vec<_> = fake.calls().into_iter().filter(|call| call.method == "POST").collect();
    assert_eq!(creates.len(), 3);
    assert_eq!(creates.iter().filter(|call| call.replayed).count(), 2);
}

#[tokio::test]
async fn a_known_customer_id_means_no_call() {
    let fake = FakeStripe::start(KEY).await;
    let known = CustomerId::parse("cus_Known123").unwrap();

    let outcome = client(&fake, &[]).ensure_customer(&user(), Some(&known)).await.unwrap();

    assert_eq!(customer_id(&outcome), "cus_Known123");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn after_the_key_expired_search_finds_the_first_customer() {
    let fake = FakeStripe::start(KEY).await;
    let client = client(&fake, &[]);
    let first = customer_id(&client.ensure_customer(&user(), None).await.unwrap());

    fake.forget_idempotency_keys(); // more than 24 hours later
    let again = customer_id(&client.ensure_customer(&user(), None).await.unwrap());

    assert_eq!(first, again);
    assert_eq!(fake.customers().len(), 1);
}

#[tokio::test]
async fn search_can_be_turned_off() {
    let fake = FakeStripe::start(KEY).await;
    let client = client(&fake, &[("STRIPE_SEARCH_BEFORE_CREATE", "false")]);

    client.ensure_customer(&user(), None).await.unwrap();

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/v1/customers");
}

#[tokio::test]
async fn changed_details_under_the_same_key_resolve_through_search_without_a_second_customer() {
    let fake = FakeStripe::start(KEY).await;
    fake.set_search_lags(true);
    // Without the search before creating, so the third attempt reaches the create again.
    let client = client(&fake, &[("STRIPE_SEARCH_BEFORE_CREATE", "false")]);
    let first = customer_id(&client.ensure_customer(&user(), None).await.unwrap());

    // The directory fix-up renamed the user before a redelivery.
    let renamed = NewUser {
        display_name: Some("Dr Jane Doe".into()),
        ..user()
    };
    let error = client.ensure_customer(&renamed, None).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.code(), "http_400:idempotency_error");
    assert_no_personal_data(&error);

    fake.set_search_lags(false);
    let later = customer_id(&client.ensure_customer(&renamed, None).await.unwrap());

    assert_eq!(later, first);
    let customers = fake.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].name.as_deref(), Some("Dr Jane Doe"));
}

#[tokio::test]
async fn rate_limiting_is_transient_with_retry_after() {
    let fake = FakeStripe::start(KEY).await;
    fake.fail_next(
        429,
        json!({"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests."}),
        &[("Retry-After", "2")],
    );

    let error = client(&fake, &[("STRIPE_SEARCH_BEFORE_CREATE", "false")])
        .ensure_customer(&user(), None)
        .await
        .unwrap_err();

    assert!(error.is_transient(), "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(error.code(), "http_429:rate_limit");
    assert!(fake.customers().is_empty());
}

#[tokio::test]
async fn server_errors_are_transient_unless_stripe_says_not_to_retry() {
    let fake = FakeStripe::start(KEY).await;
    let client = client(&fake, &[("STRIPE_SEARCH_BEFORE_CREATE", "false")]);

    fake.fail_next(
        500,
        json!({"type": "api_error", "message": "Something went wrong."}),
        &[],
    );
    let error = client.ensure_customer(&user(), None).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.code(), "http_500:api_error");

    fake.fail_next(
        500,
        json!({"type": "api_error", "message": "Something went wrong."}),
        &[("Stripe-Should-Retry", "false")],
    );
    let error = client.ensure_customer(&user(), None).await.unwrap_err();
    assert!(!error.is_transient(), "{error}");

    fake.fail_next(
        409,
        json!({"type": "idempotency_error", "message": "There is currently another in-progress request using this Idempotent Key."}),
        &[],
    );
    let error = client.ensure_customer(&user(), None).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.code(), "http_409:idempotency_error");
}

#[tokio::test]
async fn a_rejected_request_is_permanent_with_stripes_code_and_no_email() {
    let fake = FakeStripe::start(KEY).await;
    let client = client(&fake, &[("STRIPE_SEARCH_BEFORE_CREATE", "false")]);
    fake.fail_next(
        400,
        json!({"type": "invalid_request_error", "code": "email_invalid", "param": "email",
               "message": format!("Invalid email address: {EMAIL}")}),
        &[],
    );

    let error = client.ensure_customer(&user(), None).await.unwrap_err();

    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_400:email_invalid");
    assert!(
        error.message().contains("HTTP 400 invalid_request_error/email_invalid"),
        "{error}"
    );
    assert!(error.message().contains("Invalid email address"), "{error}");
    assert_no_personal_data(&error);

    fake.fail_next(
        404,
        json!({"type": "invalid_request_error", "code": "resource_missing", "message": "No such customer"}),
        &[],
    );
    let error = client.ensure_customer(&user(), None).await.unwrap_err();
    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_404:resource_missing");
    assert!(fake.customers().is_empty());
}

#[tokio::test]
async fn a_wrong_key_is_permanent_and_never_echoed() {
    let fake = FakeStripe::start("sk_test_TheRightOne").await;

    let error = client(&fake, &[]).ensure_customer(&user(), None).await.unwrap_err();

    assert!(!error.is_transient());
    assert_eq!(error.code(), "http_401:invalid_request_error");
    assert_no_personal_data(&error);
}
