//! Bearer token validation against a local JWKS endpoint: what is accepted, and that each
//! kind of bad token is refused for the right reason.

mod support;

use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};
use signup_bridge::attribute_submit::jwks::{JwksCache, JwksConfig};
use signup_bridge::attribute_submit::token::{
    TokenError, TokenValidationConfig, TokenValidator, TokenVersion, ValidatedCaller,
};
use support::jwks_server::JwksServer;
use support::tokens::*;

const OTHER_TENANT: &str = "ffffeeee-1111-dddd-2222-cccc3333bbbb";

static KEY: LazyLock<TestSigningKey> = LazyLock::new(|| TestSigningKey::generate("kid-1"));
/// Not in the JWKS: signs attackers' tokens.
static ROGUE: LazyLock<TestSigningKey> = LazyLock::new(|| TestSigningKey::generate("rogue"));

struct Fixture {
    server: JwksServer,
    validator: TokenValidator,
}

fn http() -> reqwest::Client {
    // The fake listens on 127.0.0.1; never route it through a proxy from the environment.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn audiences() -> Vec<String> {
    vec![
        CLIENT_ID.to_owned(),
        format!("api://{CLIENT_ID}"),
        format!("api://contoso.azurewebsites.net/{CLIENT_ID}"),
    ]
}

async fn fixture() -> Fixture {
    let server = JwksServer::start(vec![KEY.jwk_json()]);
    let cache = Arc::new(JwksCache::new(JwksConfig::new(vec![server.url()]), http()));
    assert_eq!(cache.refresh().await.unwrap(), 1);
    let validator = TokenValidator::new(
        TokenValidationConfig {
            tenant_id: TENANT.parse().unwrap(),
            audiences: audiences(),
        },
        cache,
    );
    Fixture { server, validator }
}

impl Fixture {
    async fn check(&self, token: &str) -> Result<ValidatedCaller, TokenError> {
        self.validator.validate(Some(&bearer(token))).await
    }

    async fn check_claims(&self, claims: &Value) -> Result<ValidatedCaller, TokenError> {
        self.check(&KEY.sign(claims)).await
    }
}

fn v2() -> Value {
    valid_claims(TENANT, CLIENT_ID)
}

fn v1() -> Value {
    valid_claims_v1(TENANT, CLIENT_ID)
}

fn caller(version: TokenVersion) -> ValidatedCaller {
    ValidatedCaller {
        tenant_id: TENANT.to_owned(),
        token_version: version,
    }
}

#[tokio::test]
async fn accepts_v2_token_with_each_accepted_issuer_form() {
    let f = fixture().await;
    for iss in [
        format!("https://{TENANT}.ciamlogin.com/{TENANT}/v2.0"),
        format!("https://contoso.ciamlogin.com/{TENANT}/v2.0"),
        format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
    ] {
        let claims = with_claim(&v2(), "iss", json!(iss));
        assert_eq!(f.check_claims(&claims).await, Ok(caller(TokenVersion::V2)), "{iss}");
    }
}

#[tokio::test]
async fn accepts_each_configured_audience() {
    let f = fixture().await;
    for aud in audiences() {
        let claims = valid_claims(TENANT, &aud);
        assert_eq!(f.check_claims(&claims).await, Ok(caller(TokenVersion::V2)), "{aud}");
    }
    // An audience array naming this extension among others is accepted as well.
    let claims = with_claim(&v2(), "aud", json!(["someone-else", CLIENT_ID]));
    assert_eq!(f.check_claims(&claims).await, Ok(caller(TokenVersion::V2)));
}

#[tokio::test]
async fn accepts_v1_token_with_appid_and_sts_issuer() {
    let f = fixture().await;
    assert_eq!(f.check_claims(&v1()).await, Ok(caller(TokenVersion::V1)));
}

#[tokio::test]
async fn accepts_case_insensitive_bearer_scheme() {
    let f = fixture().await;
    let token = KEY.sign(&v2());
    for header in [format!("bearer {token}"), format!("BEARER  {token}")] {
        assert!(f.validator.validate(Some(&header)).await.is_ok());
    }
}

#[tokio::test]
async fn accepts_clock_skew_within_leeway() {
    let f = fixture().await;
    let now = now();
    let just_expired = with_claim(&v2(), "exp", json!(now - 20));
    assert!(f.check_claims(&just_expired).await.is_ok());
    let almost_valid = with_claim(&v2(), "nbf", json!(now + 20));
    assert!(f.check_claims(&almost_valid).await.is_ok());
}

#[tokio::test]
async fn rejects_v1_issuer_on_v2_token() {
    let f = fixture().await;
    let claims = with_claim(&v2(), "iss", json!(format!("https://sts.windows.net/{TENANT}/")));
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::WrongIssuer));
}

#[tokio::test]
async fn rejects_v2_issuer_on_v1_token() {
    let f = fixture().await;
    for iss in [
        format!("https://{TENANT}.ciamlogin.com/{TENANT}/v2.0"),
        format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
    ] {
        let claims = with_claim(&v1(), "iss", json!(iss));
        assert_eq!(f.check_claims(&claims).await, Err(TokenError::WrongIssuer), "{iss}");
    }
}

#[tokio::test]
async fn rejects_expired_token() {
    let f = fixture().await;
    let claims = with_claim(&v2(), "exp", json!(now() - 600));
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::Expired));
}

#[tokio::test]
async fn rejects_token_without_exp() {
    let f = fixture().await;
    let claims = with_claim(&v2(), "exp", Value::Null);
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::MissingClaim("exp")));
}

#[tokio::test]
async fn rejects_not_yet_valid_token() {
    let f = fixture().await;
    let claims = with_claim(&v2(), "nbf", json!(now() + 600));
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::NotYetValid));
}

#[tokio::test]
async fn rejects_wrong_audience() {
    let f = fixture().await;
    for aud in [
        json!("00000003-0000-0000-c000-000000000000"),
        json!(format!("api://{OTHER_TENANT}")),
        json!(CLIENT_ID.to_uppercase()),
        json!([]),
    ] {
        let claims = with_claim(&v2(), "aud", aud.clone());
        assert_eq!(f.check_claims(&claims).await, Err(TokenError::WrongAudience), "{aud}");
    }
    let claims = with_claim(&v2(), "aud", Value::Null);
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::MissingClaim("aud")));
}

#[tokio::test]
async fn rejects_wrong_issuer() {
    let f = fixture().await;
    for iss in [
        format!("https://evil.example.com/{TENANT}/v2.0"),
        format!("https://a.b.ciamlogin.com/{TENANT}/v2.0"),
        format!("https://evil.com/x.ciamlogin.com/{TENANT}/v2.0"),
        format!("https://.ciamlogin.com/{TENANT}/v2.0"),
        format!("http://{TENANT}.ciamlogin.com/{TENANT}/v2.0"),
        format!("https://contoso.ciamlogin.com/{OTHER_TENANT}/v2.0"),
        format!("https://login.microsoftonline.com/{TENANT}/v2.0/"),
        format!("https://login.microsoftonline.com/{TENANT}"),
        "https://login.microsoftonline.com/common/v2.0".to_owned(),
    ] {
        let claims = with_claim(&v2(), "iss", json!(iss));
        assert_eq!(f.check_claims(&claims).await, Err(TokenError::WrongIssuer), "{iss}");
    }
    let claims = with_claim(&v2(), "iss", Value::Null);
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::MissingClaim("iss")));
}

#[tokio::test]
async fn rejects_wrong_authorized_party() {
    let f = fixture().await;
    let other_app = json!("00001111-aaaa-2222-bbbb-3333cccc4444");
    let cases = [
        ("v2 azp", with_claim(&v2(), "azp", other_app.clone())),
        ("v2 no azp", with_claim(&v2(), "azp", Value::Null)),
        (
            "v2 with appid only",
            with_claim(
                &with_claim(&v2(), "azp", Value::Null),
                "appid",
                json!(AUTH_EVENTS_APP_ID),
            ),
        ),
        ("v1 appid", with_claim(&v1(), "appid", other_app)),
        (
            "v1 with azp only",
            with_claim(
                &with_claim(&v1(), "appid", Value::Null),
                "azp",
                json!(AUTH_EVENTS_APP_ID),
            ),
        ),
    ];
    for (case, claims) in cases {
        assert_eq!(
            f.check_claims(&claims).await,
            Err(TokenError::WrongAuthorizedParty),
            "{case}"
        );
    }
}

#[tokio::test]
async fn rejects_wrong_tenant() {
    let f = fixture().await;
    // A consistent token of another tenant, signed by a key we trust (Entra's keys are shared
    // across tenants).
    let claims = valid_claims(OTHER_TENANT, CLIENT_ID);
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::WrongTenant));
    let claims = with_claim(&v2(), "tid", Value::Null);
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::MissingClaim("tid")));
}

#[tokio::test]
async fn rejects_unsupported_token_version() {
    let f = fixture().await;
    let claims = with_claim(&v2(), "ver", json!("3.0"));
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::UnsupportedVersion));
    let claims = with_claim(&v2(), "ver", Value::Null);
    assert_eq!(f.check_claims(&claims).await, Err(TokenError::MissingClaim("ver")));
}

#[tokio::test]
async fn rejects_alg_none_before_any_key_lookup() {
    let f = fixture().await;
    let before = f.server.request_count();
    // An unknown kid would trigger a refetch if the key were looked up.
    for kid in [KEY.kid.as_str(), "unknown-kid"] {
        assert_eq!(
            f.check(&alg_none(kid, &v2())).await,
            Err(TokenError::DisallowedAlgorithm),
            "{kid}"
        );
    }
    assert_eq!(f.server.request_count(), before);
}

#[tokio::test]
async fn rejects_hs256_signed_with_the_public_key() {
    let f = fixture().await;
    let before = f.server.request_count();
    let token = hs256_with_public_key(&KEY, &v2());
    assert_eq!(f.check(&token).await, Err(TokenError::DisallowedAlgorithm));
    assert_eq!(f.server.request_count(), before);
}

#[tokio::test]
async fn rejects_other_algorithms_in_the_header() {
    let f = fixture().await;
    for alg in ["RS384", "RS512", "PS256", "ES256", "rs256", "EdDSA"] {
        let token = KEY.sign_with_header(&json!({ "alg": alg, "kid": KEY.kid }), &v2());
        assert_eq!(f.check(&token).await, Err(TokenError::DisallowedAlgorithm), "{alg}");
    }
}

#[tokio::test]
async fn rejects_token_without_kid() {
    let f = fixture().await;
    let token = KEY.sign_with_header(&json!({ "alg": "RS256", "typ": "JWT" }), &v2());
    assert_eq!(f.check(&token).await, Err(TokenError::MissingKeyId));
}

#[tokio::test]
async fn rejects_unknown_kid() {
    let f = fixture().await;
    let token = ROGUE.sign(&v2());
    assert_eq!(f.check(&token).await, Err(TokenError::UnknownKey));
}

#[tokio::test]
async fn rejects_known_kid_with_signature_from_another_key() {
    let f = fixture().await;
    let token = ROGUE.sign_with_header(&json!({ "alg": "RS256", "typ": "JWT", "kid": KEY.kid }), &v2());
    assert_eq!(f.check(&token).await, Err(TokenError::BadSignature));
}

#[tokio::test]
async fn rejects_tampered_payload() {
    let f = fixture().await;
    let token = KEY.sign(&v2());
    assert!(f.check(&token).await.is_ok(), "the untampered token passes");
    assert_eq!(f.check(&tampered(&token)).await, Err(TokenError::BadSignature));
}

#[tokio::test]
async fn rejects_missing_header() {
    let f = fixture().await;
    assert_eq!(f.validator.validate(None).await, Err(TokenError::MissingHeader));
    assert_eq!(f.validator.validate(Some("")).await, Err(TokenError::MissingHeader));
}

#[tokio::test]
async fn rejects_malformed_header() {
    let f = fixture().await;
    let token = KEY.sign(&v2());
    let mut parts = token.split('.');
    let two_segments = format!("{}.{}", parts.next().unwrap(), parts.next().unwrap());
    let cases = [
        (token.clone(), TokenError::MalformedHeader),
        (format!("Basic {token}"), TokenError::MalformedHeader),
        (format!("Bearer{token}"), TokenError::MalformedHeader),
        ("Bearer ".to_owned(), TokenError::MalformedHeader),
        (format!("Bearer {token} {token}"), TokenError::MalformedHeader),
        ("Bearer garbage".to_owned(), TokenError::MalformedToken),
        ("Bearer a.b.c".to_owned(), TokenError::MalformedToken),
        (format!("Bearer {two_segments}"), TokenError::MalformedToken),
        (format!("Bearer {token}.extra"), TokenError::MalformedToken),
    ];
    for (header, expected) in cases {
        assert_eq!(f.validator.validate(Some(&header)).await, Err(expected), "{header}");
    }
}

#[tokio::test]
async fn rejects_oversized_token_before_parsing() {
    let f = fixture().await;
    let padding = "x".repeat(20 * 1024);
    let token = KEY.sign(&with_claim(&v2(), "padding", json!(padding)));
    assert!(matches!(f.check(&token).await, Err(TokenError::TooLong { .. })));
}

#[tokio::test]
async fn rejects_claims_of_the_wrong_type() {
    let f = fixture().await;
    let cases = [
        ("exp", json!("tomorrow"), TokenError::MissingClaim("exp")),
        ("nbf", json!("yesterday"), TokenError::MalformedClaims),
        ("tid", json!(42), TokenError::MalformedClaims),
        ("ver", json!(2.0), TokenError::MalformedClaims),
        ("azp", json!([AUTH_EVENTS_APP_ID]), TokenError::MalformedClaims),
    ];
    for (claim, value, expected) in cases {
        let claims = with_claim(&v2(), claim, value);
        assert_eq!(f.check_claims(&claims).await, Err(expected), "{claim}");
    }
}

#[tokio::test]
async fn reports_keys_unavailable_when_no_key_set_was_ever_loaded() {
    let server = JwksServer::start(vec![KEY.jwk_json()]);
    server.set_status(503);
    let cache = Arc::new(JwksCache::new(JwksConfig::new(vec![server.url()]), http()));
    assert!(cache.refresh().await.is_err());
    let validator = TokenValidator::new(
        TokenValidationConfig {
            tenant_id: TENANT.parse().unwrap(),
            audiences: audiences(),
        },
        cache,
    );
    let token = KEY.sign(&v2());
    assert_eq!(
        validator.validate(Some(&bearer(&token))).await,
        Err(TokenError::KeysUnavailable)
    );
}

#[tokio::test]
async fn error_messages_never_echo_token_or_claim_values() {
    let f = fixture().await;
    let marker = "MARKER-5f2c";
    let tokens = [
        KEY.sign(&with_claim(&v2(), "aud", json!(marker))),
        KEY.sign(&with_claim(&v2(), "iss", json!(marker))),
        KEY.sign(&with_claim(&v2(), "azp", json!(marker))),
        KEY.sign(&with_claim(&v2(), "tid", json!(marker))),
        KEY.sign(&with_claim(&v2(), "ver", json!(marker))),
        KEY.sign(&with_claim(&v2(), "exp", json!(marker))),
        tampered(&KEY.sign(&with_claim(&v2(), "sub", json!(marker)))),
        KEY.sign_with_header(&json!({ "alg": marker, "kid": KEY.kid }), &v2()),
        KEY.sign_with_header(&json!({ "alg": "RS256", "kid": marker }), &v2()),
    ];
    for token in tokens {
        let error = f.check(&token).await.expect_err("every token is bad");
        let message = format!("{error} {error:?}");
        assert!(!message.contains(marker), "{message}");
        assert!(!message.contains(&token[..20]), "{message}");
    }
}
