//! A fake Entra token endpoint (`POST /{tenant}/oauth2/v2.0/token`, client credentials with a
//! client assertion) that verifies the assertion as Entra does: `x5t#S256` names a registered
//! certificate, the PS256 signature verifies with that certificate's public key, `aud` is the
//! token URL, `iss` = `sub` = the client id, `exp` is in the future and at most ~10 minutes
//! away, `jti` is present. An unknown certificate gets Entra's AADSTS700027 `invalid_client`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::app_certs::{rsa_public_key, x5t_s256};
use super::fake_server::{FakeServer, Request, Response, Tokens};
use super::tls::TestCa;

pub struct FakeEntra {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

struct State {
    tenant: String,
    client_id: String,
    scope: Option<String>,
    token_url: String,
    registered: Vec<Vec<u8>>,
    expires_in: u64,
    issued: Tokens,
    requests: usize,
    accepted_thumbprints: Vec<String>,
    rejections: Vec<String>,
    injected: VecDeque<Response>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    jti: Option<String>,
    exp: i64,
}

impl FakeEntra {
    pub fn start(ca: &TestCa, tenant: &str, client_id: &str, issued: Tokens) -> FakeEntra {
        let state = Arc::new(Mutex::new(State {
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            scope: None,
            token_url: String::new(),
            registered: Vec::new(),
            expires_in: 3599,
            issued,
            requests: 0,
            accepted_thumbprints: Vec::new(),
            rejections: Vec::new(),
            injected: VecDeque::new(),
        }));
        let handler_state = state.clone();
        let server = FakeServer::start(
            Some(ca.server_config()),
            Arc::new(move |request| handle(&mut handler_state.lock().unwrap(), request)),
        );
        state.lock().unwrap().token_url = format!("{}{tenant}/oauth2/v2.0/token", server.url());
        FakeEntra { server, state }
    }

    /// The authority host (`AZURE_AUTHORITY_HOST`).
    pub fn authority(&self) -> Url {
        self.server.url()
    }

    pub fn token_url(&self) -> String {
        self.state.lock().unwrap().token_url.clone()
    }

    /// Registers a certificate on the app registration ("Certificates & secrets").
    pub fn register(&self, der: &[u8]) {
        self.state.lock().unwrap().registered.push(der.to_vec());
    }

    /// Replaces the registered certificates (a rotation that removed the old one).
    pub fn set_registered(&self, ders: &[&[u8]]) {
        self.state.lock().unwrap().registered = ders.iter().map(|d| d.to_vec()).collect();
    }

    /// Only this scope is granted (unset: any).
    pub fn expect_scope(&self, scope: &str) {
        self.state.lock().unwrap().scope = Some(scope.to_string());
    }

    pub fn accept_any_scope(&self) {
        self.state.lock().unwrap().scope = None;
    }

    pub fn set_expires_in(&self, seconds: u64) {
        self.state.lock().unwrap().expires_in = seconds;
    }

    /// Answers the next request with `response` (before any verification).
    pub fn inject(&self, response: Response) {
        self.state.lock().unwrap().injected.push_back(response);
    }

    /// Token requests received (every POST to the token URL).
    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// `x5t#S256` of each accepted assertion, in order.
    pub fn accepted_thumbprints(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted_thumbprints.clone()
    }

    /// Why requests were refused, in order.
    pub fn rejections(&self) -> Vec<String> {
        self.state.lock().unwrap().rejections.clone()
    }
}

fn invalid_client(state: &mut State, status: u16, code: u64, reason: String) -> Response {
    state.rejections.push(reason.clone());
    Response::json(
        status,
        &json!({
            "error": "invalid_client",
            "error_description": format!("AADSTS{code}: {reason} Trace ID: 0000 Correlation ID: 1111 Timestamp: 2026-01-01 00:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "5b0c5d7e-0000-4000-8000-000000000001",
            "correlation_id": "5b0c5d7e-0000-4000-8000-000000000002",
        }),
    )
}

fn invalid_request(state: &mut State, reason: &str) -> Response {
    state.rejections.push(reason.to_string());
    Response::json(
        400,
        &json!({"error": "invalid_request", "error_description": format!("AADSTS900144: {reason}"), "error_codes": [900144]}),
    )
}

fn handle(state: &mut State, request: &Request) -> Response {
    if request.method != "POST" || request.path != format!("/{}/oauth2/v2.0/token", state.tenant) {
        return Response::json(404, &json!({"error": "not_found"}));
    }
    state.requests += 1;
    if let Some(response) = state.injected.pop_front() {
        return response;
    }
    let form = request.form();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        return invalid_request(state, "grant_type must be client_credentials.");
    }
    if field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return invalid_request(state, "wrong client_assertion_type.");
    }
    if field("client_id") != state.client_id {
        return invalid_request(state, "wrong client_id.");
    }
    if let Some(scope) = &state.scope
        && &field("scope") != scope
    {
        return invalid_request(state, "wrong scope.");
    }
    let assertion = field("client_assertion");
    let header = match jsonwebtoken::decode_header(&assertion) {
        Ok(header) => header,
        Err(_) => return invalid_client(state, 400, 50027, "Invalid JWT token.".into()),
    };
    if header.alg != Algorithm::PS256 {
        return invalid_client(state, 400, 5002738, format!("alg {:?} is not PS256.", header.alg));
    }
    let Some(thumbprint) = header.x5t_s256.clone() else {
        return invalid_client(state, 401, 700027, "The assertion has no x5t#S256 header.".into());
    };
    let Some(der) = state.registered.iter().find(|der| x5t_s256(der) == thumbprint).cloned() else {
        return invalid_client(
            state,
            401,
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application."
                .into(),
        );
    };
    let key = DecodingKey::from_rsa_der(&rsa_public_key(&der));
    let mut validation = Validation::new(Algorithm::PS256);
    validation.set_audience(&[state.token_url.as_str()]);
    validation.set_issuer(&[state.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub", "nbf"]);
    validation.validate_nbf = true;
    validation.leeway = 30;
    let claims = match jsonwebtoken::decode::<Claims>(&assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(error) => {
            return invalid_client(
                state,
                401,
                700027,
                format!("Client assertion failed validation: {error:?}."),
            );
        }
    };
    if claims.sub != state.client_id {
        return invalid_client(state, 401, 700023, "sub is not the client id.".into());
    }
    if claims.jti.as_deref().unwrap_or_default().is_empty() {
        return invalid_client(state, 401, 700025, "jti is missing.".into());
    }
    if claims.exp - chrono::Utc::now().timestamp() > 660 {
        return invalid_client(state, 401, 700024, "the assertion lives longer than 10 minutes.".into());
    }
    state.accepted_thumbprints.push(thumbprint);
    let token = state.issued.issue("graph-token");
    Response::json(
        200,
        &json!({"token_type": "Bearer", "expires_in": state.expires_in, "ext_expires_in": state.expires_in, "access_token": token}),
    )
}
