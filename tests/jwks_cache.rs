//! The signing key cache against local JWKS endpoints: rotation, single-flight and
//! rate-limited refetch on unknown kids, and sources that fail.

mod support;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use signup_bridge::attribute_submit::jwks::{JwksCache, JwksConfig, JwksError};
use signup_bridge::attribute_submit::token::{TokenError, TokenValidationConfig, TokenValidator, TokenVersion};
use support::jwks_server::JwksServer;
use support::tokens::*;

static OLD: LazyLock<TestSigningKey> = LazyLock::new(|| TestSigningKey::generate("old"));
static NEW: LazyLock<TestSigningKey> = LazyLock::new(|| TestSigningKey::generate("new"));
static NEVER_SERVED: LazyLock<TestSigningKey> = LazyLock::new(|| TestSigningKey::generate("never-served"));

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn config(servers: &[&JwksServer]) -> JwksConfig {
    let mut config = JwksConfig::new(servers.iter().map(|s| s.url()).collect());
    // Generous: a loaded CI machine must not turn a slow local fetch into a failure.
    config.fetch_timeout = Duration::from_secs(10);
    config.miss_wait = Duration::from_secs(10);
    config
}

fn validator(cache: &Arc<JwksCache>) -> Arc<TokenValidator> {
    Arc::new(TokenValidator::new(
        TokenValidationConfig {
            tenant_id: TENANT.parse().unwrap(),
            audiences: vec![CLIENT_ID.to_owned()],
        },
        Arc::clone(cache),
    ))
}

async fn check(validator: &TokenValidator, key: &TestSigningKey) -> Result<TokenVersion, TokenError> {
    let token = key.sign(&valid_claims(TENANT, CLIENT_ID));
    validator
        .validate(Some(&bearer(&token)))
        .await
        .map(|caller| caller.token_version)
}

/// Polls `condition` every 10 ms; fails the test if it does not hold within 10 s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test]
async fn key_rotation_new_kid_accepted_after_on_demand_refetch() {
    let server = JwksServer::start(vec![OLD.jwk_json()]);
    let cache = Arc::new(JwksCache::new(config(&[&server]), http()));
    cache.refresh().await.unwrap();
    let validator = validator(&cache);
    assert_eq!(check(&validator, &OLD).await, Ok(TokenVersion::V2));
    assert_eq!(server.request_count(), 1);

    // Entra rotates: the old key is retired, a new one published.
    server.set_keys(vec![NEW.jwk_json()]);
    assert_eq!(check(&validator, &NEW).await, Ok(TokenVersion::V2));
    assert_eq!(server.request_count(), 2, "one on-demand refetch");
    assert_eq!(cache.key_count(), 1);
    // The retired key is gone from the cache, and refetching again is rate-limited.
    assert_eq!(check(&validator, &OLD).await, Err(TokenError::UnknownKey));
    assert_eq!(server.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_of_unknown_kids_triggers_at_most_one_refetch() {
    let server = JwksServer::start(vec![OLD.jwk_json()]);
    let cache = Arc::new(JwksCache::new(config(&[&server]), http()));
    cache.refresh().await.unwrap();
    let validator = validator(&cache);
    let token = bearer(&NEVER_SERVED.sign(&valid_claims(TENANT, CLIENT_ID)));

    for burst in 0..2 {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let validator = Arc::clone(&validator);
                let token = token.clone();
                tokio::spawn(async move { validator.validate(Some(&token)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Err(TokenError::UnknownKey));
        }
        assert_eq!(
            server.request_count(),
            2,
            "burst {burst}: the initial fetch plus one refetch"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_share_one_slow_refetch() {
    let server = JwksServer::start(vec![OLD.jwk_json()]);
    let cache = Arc::new(JwksCache::new(config(&[&server]), http()));
    cache.refresh().await.unwrap();
    let validator = validator(&cache);

    server.set_keys(vec![OLD.jwk_json(), NEW.jwk_json()]);
    // Slow enough that all 50 arrive while the one refetch is in flight.
    server.set_delay(Duration::from_millis(300));
    let token = bearer(&NEW.sign(&valid_claims(TENANT, CLIENT_ID)));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let validator = Arc::clone(&validator);
            let token = token.clone();
            tokio::spawn(async move { validator.validate(Some(&token)).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let server = JwksServer::start(vec![OLD.jwk_json()]);
    let cache = Arc::new(JwksCache::new(config(&[&server]), http()));
    cache.refresh().await.unwrap();
    let validator = validator(&cache);

    assert_eq!(
        check(&validator, &NEW).await,
        Err(TokenError::UnknownKey),
        "not published yet"
    );
    assert_eq!(server.request_count(), 2);
    server.set_keys(vec![OLD.jwk_json(), NEW.jwk_json()]);
    assert_eq!(
        check(&validator, &NEW).await,
        Err(TokenError::UnknownKey),
        "within the interval no refetch is made"
    );
    assert_eq!(server.request_count(), 2);
    // A refresh (as the background task does) is not rate-limited and picks the key up.
    assert_eq!(cache.refresh().await.unwrap(), 2);
    assert_eq!(check(&validator, &NEW).await, Ok(TokenVersion::V2));
}

#[tokio::test]
async fn unknown_kid_refetches_again_once_the_interval_has_passed() {
    let server = JwksServer::start(vec![OLD.jwk_json()]);
    let mut config = config(&[&server]);
    config.unknown_kid_min_interval = Duration::ZERO;
    let cache = Arc::new(JwksCache::new(config, http()));
    cache.refresh().await.unwrap();
    let validator = validator(&cache);

    assert_eq!(check(&validator, &NEW).await, Err(TokenError::UnknownKey));
    server.set_keys(vec![OLD.jwk_json(), NEW.jwk_json()]);
    assert_eq!(check(&validator, &NEW).await, Ok(TokenVersion::V2));
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn slow_refetch_is_abandoned_after_miss_wait_but_completes_for_later_requests() {
    let server = JwksServer::start(vec![OLD.jwk_json()]);
    let mut config = config(&[&server]);
    config.miss_wait = Duration::from_millis(50);
    let cache = Arc::new(JwksCache::new(config, http()));
    cache.refresh().await.unwrap();
    let validator = validator(&cache);

    server.set_keys(vec![OLD.jwk_json(), NEW.jwk_json()]);
    server.set_delay(Duration::from_secs(2));
    // The request gives up long before the endpoint answers...
    assert_eq!(check(&validator, &NEW).await, Err(TokenError::UnknownKey));
    // ...but the refetch carries on and serves the next request without another fetch.
    eventually("the abandoned refetch fills the cache", || cache.key_count() == 2).await;
    assert_eq!(check(&validator, &NEW).await, Ok(TokenVersion::V2));
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn known_kid_lookups_do_no_io() {
    let server = JwksServer::start(vec![OLD.jwk_json()]);
    let cache = Arc::new(JwksCache::new(config(&[&server]), http()));
    cache.refresh().await.unwrap();
    let validator = validator(&cache);
    for _ in 0..100 {
        assert!(cache.key("old").await.is_some());
    }
    assert_eq!(check(&validator, &OLD).await, Ok(TokenVersion::V2));
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn failing_url_keeps_the_keys_of_the_other() {
    let ciamlogin = JwksServer::start(vec![OLD.jwk_json()]);
    let login = JwksServer::start(vec![NEW.jwk_json()]);
    let cache = Arc::new(JwksCache::new(config(&[&ciamlogin, &login]), http()));
    assert_eq!(cache.refresh().await.unwrap(), 2, "union of both sources");

    login.set_status(500);
    assert_eq!(
        cache.refresh().await.unwrap(),
        2,
        "the failing source keeps its previous keys"
    );
    assert_eq!(login.request_count(), 2);
    let validator = validator(&cache);
    assert_eq!(check(&validator, &OLD).await, Ok(TokenVersion::V2));
    assert_eq!(check(&validator, &NEW).await, Ok(TokenVersion::V2));
}

#[tokio::test]
async fn source_failing_from_the_start_does_not_hide_the_other() {
    let ciamlogin = JwksServer::start(vec![OLD.jwk_json()]);
    let login = JwksServer::start(vec![NEW.jwk_json()]);
    login.set_status(404);
    let cache = Arc::new(JwksCache::new(config(&[&ciamlogin, &login]), http()));
    assert_eq!(cache.refresh().await.unwrap(), 1);
    let validator = validator(&cache);
    assert_eq!(check(&validator, &OLD).await, Ok(TokenVersion::V2));
}

#[tokio::test]
async fn unreachable_source_does_not_hide_the_other() {
    let ciamlogin = JwksServer::start(vec![OLD.jwk_json()]);
    let gone = JwksServer::start(vec![NEW.jwk_json()]);
    let gone_url = gone.url();
    drop(gone);
    let mut config = config(&[&ciamlogin]);
    config.urls.push(gone_url);
    let cache = Arc::new(JwksCache::new(config, http()));
    assert_eq!(cache.refresh().await.unwrap(), 1);
    assert!(cache.key("old").await.is_some());
}

#[tokio::test]
async fn refresh_fails_only_when_every_source_fails_and_keeps_previous_keys() {
    let a = JwksServer::start(vec![OLD.jwk_json()]);
    let b = JwksServer::start(vec![OLD.jwk_json(), NEW.jwk_json()]);
    let cache = Arc::new(JwksCache::new(config(&[&a, &b]), http()));
    assert_eq!(cache.refresh().await.unwrap(), 2);

    a.set_status(503);
    b.set_raw_body(Some("<html>maintenance</html>".to_owned()));
    assert!(matches!(
        cache.refresh().await,
        Err(JwksError::AllSourcesFailed { failed: 2 })
    ));
    assert_eq!(cache.key_count(), 2);

    // A source answering with a set of no usable keys counts as failed, too.
    b.set_raw_body(Some(r#"{"keys":[]}"#.to_owned()));
    assert!(cache.refresh().await.is_err());
    assert_eq!(cache.key_count(), 2);
}

#[tokio::test]
async fn background_refresh_loads_keys_and_follows_changes() {
    let server = JwksServer::start(vec![OLD.jwk_json()]);
    let mut config = config(&[&server]);
    config.refresh_interval = Duration::from_millis(50);
    let cache = Arc::new(JwksCache::new(config, http()));
    assert_eq!(cache.key_count(), 0);
    let task = cache.spawn_background_refresh();

    eventually("the initial fetch", || cache.key_count() == 1).await;
    server.set_keys(vec![OLD.jwk_json(), NEW.jwk_json()]);
    eventually("a periodic refresh", || cache.key_count() == 2).await;

    drop(cache);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task ends once the cache is dropped")
        .unwrap();
}
