//! The handler started with token validation on, a local JWKS serving a test key, and a
//! client that calls AttributeSubmit the way Entra does.

use super::handler::RunningHandler;
use super::jwks_server::JwksServer;
use super::tokens::{CLIENT_ID, TENANT, TestSigningKey, bearer, valid_claims};
use serde_json::Value;

pub const IDENTIFIER_URI: &str = "api://signup.contoso.example/11112222-bbbb-3333-cccc-4444dddd5555";

pub struct ExtensionFixture {
    pub handler: RunningHandler,
    pub key: TestSigningKey,
    pub jwks: JwksServer,
    pub client: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `@odata.type` suffix of the single action (`continueWithDefaultBehavior`, ...).
    pub fn action(&self) -> String {
        let actions = self.body["data"]["actions"].as_array().expect("an actions array");
        assert_eq!(actions.len(), 1, "exactly one action: {}", self.body);
        let odata_type = actions[0]["@odata.type"].as_str().expect("an action type");
        odata_type
            .strip_prefix("microsoft.graph.attributeCollectionSubmit.")
            .expect("a submit action")
            .to_string()
    }

    pub fn first_action(&self) -> &Value {
        &self.body["data"]["actions"][0]
    }
}

impl ExtensionFixture {
    /// Starts the handler with token validation on and these extra settings.
    pub async fn start(extra: &[(&str, &str)]) -> ExtensionFixture {
        let key = TestSigningKey::generate("test-key-1");
        let jwks = JwksServer::start(vec![key.jwk_json()]);
        let jwks_url = jwks.url().to_string();
        let mut env = vec![
            ("ENTRA_TENANT_ID", TENANT),
            ("EXTENSION_APP_ID", CLIENT_ID),
            ("EXTENSION_AUDIENCES", IDENTIFIER_URI),
            ("EXTENSION_JWKS_URLS", jwks_url.as_str()),
        ];
        env.extend_from_slice(extra);
        let handler = RunningHandler::start(&env).await;
        ExtensionFixture {
            handler,
            key,
            jwks,
            client: super::handler::loopback_client(),
        }
    }

    pub fn valid_authorization(&self) -> String {
        bearer(&self.key.sign(&valid_claims(TENANT, CLIENT_ID)))
    }

    /// POSTs `body` to `/api/AttributeSubmit` with `authorization` (if any).
    pub async fn post(&self, authorization: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        let mut request = self
            .client
            .post(self.handler.url("/api/AttributeSubmit"))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send().await.expect("the handler answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body, got {status}: {text:?}"));
        Reply { status, headers, body }
    }

    /// POSTs with a valid token, as Entra does.
    pub async fn submit(&self, body: impl Into<reqwest::Body>) -> Reply {
        let authorization = self.valid_authorization();
        self.post(Some(&authorization), body).await
    }
}
