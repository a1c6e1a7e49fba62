//! A fake App Service / Functions managed-identity endpoint (`IDENTITY_ENDPOINT` +
//! `IDENTITY_HEADER`): `GET {endpoint}?resource=...&api-version=2019-08-01[&client_id=...]`
//! with `X-IDENTITY-HEADER`, answering `{access_token, expires_on (epoch seconds as a string),
//! resource, token_type, client_id}`. Plain http on loopback, like the real one
//! (`http://localhost:8081/msi/token`).
//!
//! [`IdentityEndpointCredential`] speaks the same protocol in-process (a test double for
//! `ManagedIdentityCredential`, which reads `IDENTITY_ENDPOINT` from the process environment;
//! the real credential is exercised in a child process, see `tests/graph_check.rs`).

use std::sync::{Arc, Mutex};

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use serde_json::json;
use url::Url;

use super::fake_server::{FakeServer, Request, Response, Tokens};

#[derive(Debug, Clone, PartialEq)]
pub struct IdentityRequest {
    pub resource: String,
    pub client_id: Option<String>,
}

pub struct FakeIdentity {
    server: FakeServer,
    secret: String,
    state: Arc<Mutex<State>>,
}

struct State {
    issued: Tokens,
    requests: Vec<IdentityRequest>,
    refused: usize,
}

impl FakeIdentity {
    pub fn start(issued: Tokens) -> FakeIdentity {
        let secret = uuid::Uuid::new_v4().to_string();
        let state = Arc::new(Mutex::new(State {
            issued,
            requests: Vec::new(),
            refused: 0,
        }));
        let (handler_state, handler_secret) = (state.clone(), secret.clone());
        let server = FakeServer::start(
            None,
            Arc::new(move |request| handle(&mut handler_state.lock().unwrap(), &handler_secret, request)),
        );
        FakeIdentity { server, secret, state }
    }

    /// `IDENTITY_ENDPOINT`.
    pub fn endpoint(&self) -> Url {
        self.server.url().join("/msi/token").expect("endpoint URL")
    }

    /// `IDENTITY_HEADER`.
    pub fn header_secret(&self) -> &str {
        &self.secret
    }

    /// Token requests answered.
    pub fn requests(&self) -> Vec<IdentityRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests refused (wrong header, missing resource).
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }

    /// The in-process test double.
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        Arc::new(IdentityEndpointCredential {
            endpoint: self.endpoint(),
            secret: self.secret.clone(),
            client_id: None,
            http: reqwest::Client::new(),
        })
    }
}

fn handle(state: &mut State, secret: &str, request: &Request) -> Response {
    let params = request.query_params();
    let resource = params.get("resource").cloned().unwrap_or_default();
    if request.method != "GET"
        || request.path != "/msi/token"
        || request.header("x-identity-header") != Some(secret)
        || params.get("api-version").map(String::as_str) != Some("2019-08-01")
        || resource.is_empty()
    {
        state.refused += 1;
        return Response::json(
            400,
            &json!({"statusCode": 400, "message": "invalid managed identity request"}),
        );
    }
    let client_id = params.get("client_id").cloned();
    state.requests.push(IdentityRequest {
        resource: resource.clone(),
        client_id: client_id.clone(),
    });
    let expires_on = chrono::Utc::now().timestamp() + 3600;
    Response::json(
        200,
        &json!({
            "access_token": state.issued.issue("kv-token"),
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id.unwrap_or_else(|| "8e5c1a2b-3d4e-4f60-9a7b-8c9d0e1f2a3b".into()),
        }),
    )
}

/// Gets tokens from the fake identity endpoint, as the App Service managed identity does.
#[derive(Debug)]
pub struct IdentityEndpointCredential {
    endpoint: Url,
    secret: String,
    client_id: Option<String>,
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl TokenCredential for IdentityEndpointCredential {
    async fn get_token(&self, scopes: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        let resource = scopes[0].trim_end_matches("/.default");
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("api-version", "2019-08-01")
            .append_pair("resource", resource);
        if let Some(client_id) = &self.client_id {
            url.query_pairs_mut().append_pair("client_id", client_id);
        }
        let failed = |_| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, "identity endpoint");
        let body: serde_json::Value = self
            .http
            .get(url)
            .header("X-IDENTITY-HEADER", &self.secret)
            .send()
            .await
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)?;
        let token = body["access_token"].as_str().unwrap_or_default().to_string();
        let expires_on: i64 = body["expires_on"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        Ok(AccessToken::new(
            Secret::new(token),
            azure_core::time::OffsetDateTime::from_unix_timestamp(expires_on).expect("expiry"),
        ))
    }
}
