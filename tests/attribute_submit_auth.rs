//! AttributeSubmit's caller check, black-box: the real binary, tokens signed by a test key
//! served from a local JWKS, every way a token can be wrong answered 401 with a body that
//! says nothing about why (the log says why).

mod support;

use serde_json::{Value, json};
use support::extension::{ExtensionFixture, IDENTIFIER_URI};
use support::handler::{RunningHandler, start_expecting_failure};
use support::tokens::{
    CLIENT_ID, TENANT, TestSigningKey, alg_none, bearer, hs256_with_public_key, now, tampered, valid_claims,
    valid_claims_v1, with_claim,
};

const SAMPLE: &str = include_str!("fixtures/samples/attribute-collection-submit-request.json");
const OTHER_TENANT: &str = "ffffeeee-0000-cccc-1111-dddd2222eeee";

fn is_continue(body: &Value) -> bool {
    body["data"]["actions"][0]["@odata.type"] == "microsoft.graph.attributeCollectionSubmit.continueWithDefaultBehavior"
}

#[tokio::test]
async fn valid_tokens_in_every_accepted_form_get_an_action() {
    let fixture = ExtensionFixture::start(&[]).await;
    let accepted = [
        (
            "v2, ciamlogin issuer, client id audience",
            valid_claims(TENANT, CLIENT_ID),
        ),
        (
            "v2, login.microsoftonline.com issuer",
            with_claim(
                &valid_claims(TENANT, CLIENT_ID),
                "iss",
                json!(format!("https://login.microsoftonline.com/{TENANT}/v2.0")),
            ),
        ),
        (
            "v2, tenant subdomain issuer",
            with_claim(
                &valid_claims(TENANT, CLIENT_ID),
                "iss",
                json!(format!("https://contoso.ciamlogin.com/{TENANT}/v2.0")),
            ),
        ),
        (
            "v2, api://<client id> audience",
            valid_claims(TENANT, &format!("api://{CLIENT_ID}")),
        ),
        ("v2, configured identifier URI", valid_claims(TENANT, IDENTIFIER_URI)),
        ("v1 token (appid, sts.windows.net)", valid_claims_v1(TENANT, CLIENT_ID)),
    ];
    for (case, claims) in accepted {
        let reply = fixture.post(Some(&bearer(&fixture.key.sign(&claims))), SAMPLE).await;
        assert_eq!(reply.status, 200, "{case}: {}", reply.body);
        assert!(is_continue(&reply.body), "{case}: {}", reply.body);
    }
}

#[tokio::test]
async fn every_bad_token_is_401_with_an_opaque_body() {
    let fixture = ExtensionFixture::start(&[]).await;
    let key = &fixture.key;
    let good = valid_claims(TENANT, CLIENT_ID);
    let stranger = TestSigningKey::generate("unknown-kid");
    let mut matrix: Vec<(&str, Option<String>)> = vec![
        ("missing header", None),
        ("not a bearer scheme", Some(format!("Basic {}", key.sign(&good)))),
        ("bearer without a token", Some("Bearer ".to_string())),
        ("garbage", Some("Bearer not-a-jwt".to_string())),
        (
            "two segments",
            Some("Bearer eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiIxIn0".to_string()),
        ),
        (
            "expired",
            Some(bearer(&key.sign(&with_claim(
                &with_claim(&good, "exp", json!(now() - 600)),
                "nbf",
                json!(now() - 7200),
            )))),
        ),
        (
            "not yet valid",
            Some(bearer(&key.sign(&with_claim(&good, "nbf", json!(now() + 600))))),
        ),
        (
            "wrong audience",
            Some(bearer(&key.sign(&with_claim(
                &good,
                "aud",
                json!("api://someone-else"),
            )))),
        ),
        (
            "wrong issuer",
            Some(bearer(&key.sign(&with_claim(
                &good,
                "iss",
                json!("https://evil.example/v2.0"),
            )))),
        ),
        (
            "v1 issuer on a v2 token",
            Some(bearer(&key.sign(&with_claim(
                &good,
                "iss",
                json!(format!("https://sts.windows.net/{TENANT}/")),
            )))),
        ),
        (
            "issuer of another tenant",
            Some(bearer(&key.sign(&with_claim(
                &good,
                "iss",
                json!(format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")),
            )))),
        ),
        (
            "wrong azp",
            Some(bearer(&key.sign(&with_claim(
                &good,
                "azp",
                json!("00000000-0000-0000-0000-000000000001"),
            )))),
        ),
        (
            "missing azp",
            Some(bearer(&key.sign(&with_claim(&good, "azp", Value::Null)))),
        ),
        (
            "wrong tenant",
            Some(bearer(&key.sign(&with_claim(&good, "tid", json!(OTHER_TENANT))))),
        ),
        ("alg none", Some(bearer(&alg_none(&key.kid, &good)))),
        (
            "HS256 signed with the public key",
            Some(bearer(&hs256_with_public_key(key, &good))),
        ),
        ("unknown kid", Some(bearer(&stranger.sign(&good)))),
        ("tampered payload", Some(bearer(&tampered(&key.sign(&good))))),
    ];
    // A v1 token must carry `appid`, not only a v2 `azp`.
    matrix.push((
        "v1 token with a wrong appid",
        Some(bearer(&key.sign(&with_claim(
            &valid_claims_v1(TENANT, CLIENT_ID),
            "appid",
            json!("00000000-0000-0000-0000-000000000002"),
        )))),
    ));

    let mut opaque_bodies = std::collections::BTreeSet::new();
    for (case, authorization) in matrix {
        let reply = fixture.post(authorization.as_deref(), SAMPLE).await;
        assert_eq!(reply.status, 401, "{case}: {}", reply.body);
        assert_eq!(reply.headers["www-authenticate"], "Bearer", "{case}");
        assert_eq!(reply.headers["content-type"], "application/json", "{case}");
        opaque_bodies.insert(reply.body.to_string());
    }
    // One body for every reason: the caller learns nothing about which check failed.
    assert_eq!(opaque_bodies.len(), 1, "{opaque_bodies:?}");

    // ... while the log says why, without the token.
    let stdout = fixture.handler.stdout();
    assert!(stdout.contains("rejected a call"), "{stdout}");
    assert!(
        !stdout.contains(&fixture.key.sign(&good)[..40]),
        "a token reached the log"
    );
}

#[tokio::test]
async fn skipping_validation_is_refused_when_running_in_azure() {
    let (code, stderr) = start_expecting_failure(&[
        ("EXTENSION_SKIP_TOKEN_VALIDATION", "true"),
        ("WEBSITE_INSTANCE_ID", "0123abcd"),
    ])
    .await;
    assert_ne!(code, 0);
    assert!(stderr.contains("EXTENSION_SKIP_TOKEN_VALIDATION"), "{stderr}");
}

#[tokio::test]
async fn skipping_validation_locally_warns_on_start() {
    let handler = RunningHandler::start(&[("EXTENSION_SKIP_TOKEN_VALIDATION", "true")]).await;
    assert!(
        handler
            .stdout()
            .contains("WARNING: EXTENSION_SKIP_TOKEN_VALIDATION is on"),
        "{}",
        handler.stdout()
    );
}

#[tokio::test]
async fn missing_or_malformed_settings_stop_start_up_naming_them() {
    let (code, stderr) = start_expecting_failure(&[("ENTRA_TENANT_ID", "contoso.onmicrosoft.com")]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("ENTRA_TENANT_ID: is not valid; expected a GUID"),
        "{stderr}"
    );
    assert!(stderr.contains("EXTENSION_APP_ID: is not set"), "{stderr}");

    let (code, stderr) = start_expecting_failure(&[
        ("ENTRA_TENANT_ID", TENANT),
        ("EXTENSION_APP_ID", CLIENT_ID),
        ("EXTENSION_JWKS_URLS", "http://keys.example.com/keys"),
    ])
    .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("EXTENSION_JWKS_URLS"), "{stderr}");
}
