//! Graph tokens: the certificate is read from Key Vault once per process, the token is
//! reused until shortly before it expires, concurrent callers share one acquisition, a
//! certificate the token endpoint rejects (rotated in Key Vault) is reloaded once, and the
//! token endpoint really verifies what we send (so the other tests mean something).

mod support;

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use signup_bridge::credentials::CredentialError;
use signup_bridge::graph::AuditQuery;
use support::app_certs::AppCertificate;
use support::fake_server::Response;
use support::graph_fakes::{CERTIFICATE_NAME, CLIENT_ID, GraphFakes};

const USER: &str = "84360e8b-3321-4e37-b9ec-10fccd0263b8";

#[tokio::test]
async fn n_graph_calls_make_one_key_vault_read_and_one_token_request() {
    const N: usize = 12;
    let fakes = GraphFakes::start();
    fakes.graph.add_user(json!({"id": USER, "displayName": "x"}));
    let client = fakes.graph_client(fakes.credential());

    for _ in 0..N / 2 {
        client.probe_audit_log().await.unwrap();
    }
    let concurrent = (0..N / 2).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.get_user(USER.parse().unwrap(), &["displayName"]).await })
    });
    for call in futures_util::future::join_all(concurrent).await {
        assert!(call.unwrap().unwrap().is_some());
    }

    let graph_requests = fakes.graph.requests();
    assert_eq!(graph_requests.len(), N);
    assert!(graph_requests.iter().all(|r| r.authorized));
    assert_eq!(fakes.vault.secret_reads(), 1, "Key Vault reads");
    assert_eq!(fakes.identity.requests().len(), 1, "Key Vault token requests");
    assert_eq!(fakes.entra.token_requests(), 1, "Graph token requests");
    assert_eq!(fakes.entra.accepted_thumbprints(), vec![fakes.certificate.x5t_s256()]);
    eprintln!(
        "{N} Graph calls: {} Key Vault read(s), {} managed-identity token request(s), {} Graph token request(s)",
        fakes.vault.secret_reads(),
        fakes.identity.requests().len(),
        fakes.entra.token_requests()
    );
}

#[tokio::test]
async fn concurrent_first_callers_share_one_acquisition() {
    let fakes = GraphFakes::start();
    let credential = fakes.credential();
    let scope = fakes.graph.scope();
    let callers = (0..16).map(|_| {
        let (credential, scope) = (credential.clone(), scope.clone());
        tokio::spawn(async move { credential.get_token(&[scope.as_str()], None).await })
    });
    let tokens: Vec<String> = futures_util::future::join_all(callers)
        .await
        .into_iter()
        .map(|token| token.unwrap().unwrap().token.secret().to_string())
        .collect();
    assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]), "one token for all");
    assert_eq!(fakes.vault.secret_reads(), 1);
    assert_eq!(fakes.entra.token_requests(), 1);
}

#[tokio::test]
async fn a_token_about_to_expire_is_renewed_without_reading_key_vault_again() {
    let fakes = GraphFakes::start();
    fakes.entra.set_expires_in(0); // already expired: stale at once
    let credential = fakes.credential();
    let scope = fakes.graph.scope();
    let first = credential.token(&scope).await.unwrap();
    fakes.entra.set_expires_in(3599);
    let second = credential.token(&scope).await.unwrap();
    let third = credential.token(&scope).await.unwrap();
    assert_ne!(first.token.secret(), second.token.secret());
    assert_eq!(second.token.secret(), third.token.secret());
    assert_eq!(fakes.entra.token_requests(), 2);
    assert_eq!(fakes.vault.secret_reads(), 1);
}

#[tokio::test]
async fn a_certificate_rotated_in_key_vault_is_picked_up() {
    let fakes = GraphFakes::start();
    let client = fakes.graph_client(fakes.credential());
    fakes.entra.set_expires_in(0);
    client.probe_audit_log().await.unwrap();
    fakes.entra.set_expires_in(3599);

    // Rotation: Key Vault has a new version, the app registration only knows the new one.
    let rotated = AppCertificate::generate("signup-bridge graph client (rotated)");
    fakes.vault.set_pfx(CERTIFICATE_NAME, &rotated.pfx(fakes.dir.path()));
    fakes.entra.set_registered(&[rotated.der()]);

    client.probe_audit_log().await.unwrap();
    client.probe_audit_log().await.unwrap();

    let old = fakes.certificate.x5t_s256();
    let new = rotated.x5t_s256();
    assert_eq!(fakes.entra.accepted_thumbprints(), vec![old, new]);
    let rejections = fakes.entra.rejections();
    assert_eq!(rejections.len(), 1);
    assert!(rejections[0].contains("not registered"), "{rejections:?}");
    assert_eq!(
        fakes.entra.token_requests(),
        3,
        "first token, the rejected one, the retry"
    );
    assert_eq!(fakes.vault.secret_reads(), 2, "initial load and one reload");
    assert_eq!(fakes.graph.requests().len(), 3);
}

#[tokio::test]
async fn a_rejected_certificate_that_did_not_change_is_reported_after_one_reload() {
    let fakes = GraphFakes::start();
    fakes.entra.set_registered(&[]);
    let credential = fakes.credential();
    match credential.token(&fakes.graph.scope()).await.unwrap_err() {
        CredentialError::Rejected(rejection) => {
            assert!(rejection.is_certificate_rejection());
            assert!(rejection.has_code(700027));
            assert_eq!(rejection.status, 401);
            assert!(rejection.trace_id.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fakes.vault.secret_reads(), 2);
    assert_eq!(
        fakes.entra.token_requests(),
        1,
        "same certificate after reload: no second try"
    );
}

#[tokio::test]
async fn the_token_endpoint_is_retried_when_it_is_unavailable() {
    let fakes = GraphFakes::start();
    fakes
        .entra
        .inject(Response::json(503, &json!({"error": "temporarily_unavailable"})).with_header("retry-after", "0"));
    fakes
        .entra
        .inject(Response::json(500, &json!({"error": "server_error"})));
    fakes.credential().token(&fakes.graph.scope()).await.unwrap();
    assert_eq!(fakes.entra.token_requests(), 3);
    assert_eq!(fakes.vault.secret_reads(), 1);
}

#[tokio::test]
async fn tokens_never_show_in_debug_or_errors() {
    let fakes = GraphFakes::start();
    let credential = fakes.credential();
    let token = credential.token(&fakes.graph.scope()).await.unwrap();
    let secret = token.token.secret().to_string();
    assert!(secret.starts_with("graph-token-"));
    for text in [format!("{token:?}"), format!("{credential:?}")] {
        assert!(!text.contains(&secret), "{text}");
    }
    let client = fakes.graph_client(credential);
    fakes.graph.inject(support::fake_graph::graph_error(
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
        "r-1",
    ));
    let error = client
        .directory_audits(&AuditQuery::default())
        .collect_all()
        .await
        .unwrap_err();
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains("Insufficient privileges"), "{text}");
    }
}

/// The fake is only worth something if it refuses what Entra refuses.
#[tokio::test]
async fn the_fake_token_endpoint_refuses_forged_and_malformed_assertions() {
    let fakes = GraphFakes::start();
    let http = fakes.http();
    let token_url = fakes.entra.token_url();
    let registered = &fakes.certificate;
    let impostor = AppCertificate::generate("impostor");
    let now = chrono::Utc::now().timestamp();
    let good_claims = json!({"aud": token_url, "iss": CLIENT_ID, "sub": CLIENT_ID, "jti": "1", "nbf": now, "iat": now, "exp": now + 600});

    let pkcs1 = |certificate: &AppCertificate| {
        let pkcs8 = certificate.key_pkcs8_der();
        let (_, info) = x509_parser::der_parser::parse_der(&pkcs8).unwrap();
        info.as_sequence().unwrap()[2].as_slice().unwrap().to_vec()
    };
    let sign = |signer: &AppCertificate, named: &AppCertificate, claims: &serde_json::Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        header.x5t_s256 = Some(named.x5t_s256());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(&pkcs1(signer)),
        )
        .unwrap()
    };
    let post = |assertion: String| {
        let http = http.clone();
        let token_url = token_url.clone();
        let scope = fakes.graph.scope();
        async move {
            http.post(token_url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("scope", scope.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    assert_eq!(
        post(sign(registered, registered, &good_claims)).await,
        200,
        "the control case"
    );
    assert_eq!(
        post(sign(&impostor, registered, &good_claims)).await,
        401,
        "signed by another key"
    );
    assert_eq!(
        post(sign(&impostor, &impostor, &good_claims)).await,
        401,
        "unregistered certificate"
    );
    let mut wrong_audience = good_claims.clone();
    wrong_audience["aud"] = json!("https://login.microsoftonline.com/other/oauth2/v2.0/token");
    assert_eq!(post(sign(registered, registered, &wrong_audience)).await, 401, "aud");
    let mut wrong_subject = good_claims.clone();
    wrong_subject["sub"] = json!("someone-else");
    assert_eq!(post(sign(registered, registered, &wrong_subject)).await, 401, "sub");
    let mut wrong_issuer = good_claims.clone();
    wrong_issuer["iss"] = json!("someone-else");
    assert_eq!(post(sign(registered, registered, &wrong_issuer)).await, 401, "iss");
    let mut expired = good_claims.clone();
    expired["exp"] = json!(now - 3600);
    assert_eq!(post(sign(registered, registered, &expired)).await, 401, "exp");
    let mut no_thumbprint = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    no_thumbprint.x5t = Some(STANDARD.encode([0u8; 20]));
    let unnamed = jsonwebtoken::encode(
        &no_thumbprint,
        &good_claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(&pkcs1(registered)),
    )
    .unwrap();
    assert_eq!(post(unnamed).await, 401, "no x5t#S256");
    assert_eq!(fakes.entra.rejections().len(), 7);

    // And what the product sends passes.
    let _ = Arc::clone(&fakes.credential())
        .token(&fakes.graph.scope())
        .await
        .unwrap();
}
