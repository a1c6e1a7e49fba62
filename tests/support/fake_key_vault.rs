//! A fake Key Vault (TLS) serving certificate secrets: `GET /secrets/{name}[/{version}]`.
//! Like the real one, a request without a token gets a 401 challenge naming the resource
//! (`https://vault.azure.net`); a token the identity fake did not issue gets 401 too.
//! `secret_reads` counts the authorized reads that returned a secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use url::Url;

use super::fake_server::{FakeServer, Request, Response, Tokens};
use super::tls::{TestCa, VAULT_HOST};

pub const PKCS12: &str = "application/x-pkcs12";
pub const PEM: &str = "application/x-pem-file";

pub struct FakeKeyVault {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

struct State {
    accepted: Tokens,
    secrets: HashMap<String, (String, String, u32)>,
    reads: usize,
    challenges: usize,
    refused_tokens: usize,
    forbidden: bool,
}

impl FakeKeyVault {
    pub fn start(ca: &TestCa, accepted: Tokens) -> FakeKeyVault {
        let state = Arc::new(Mutex::new(State {
            accepted,
            secrets: HashMap::new(),
            reads: 0,
            challenges: 0,
            refused_tokens: 0,
            forbidden: false,
        }));
        let handler_state = state.clone();
        let server = FakeServer::start(
            Some(ca.server_config()),
            Arc::new(move |request| handle(&mut handler_state.lock().unwrap(), request)),
        );
        FakeKeyVault { server, state }
    }

    /// `https://127.0.0.1:{port}/`.
    pub fn loopback_url(&self) -> Url {
        self.server.url()
    }

    /// `https://contoso-kv.vault.azure.net:{port}/` (resolve it to [`Self::addr`]).
    pub fn vault_url(&self) -> Url {
        Url::parse(&format!("https://{VAULT_HOST}:{}/", self.server.addr().port())).expect("vault URL")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// Stores (or rotates: a new version of) a secret.
    pub fn set_secret(&self, name: &str, value: &str, content_type: &str) {
        let mut state = self.state.lock().unwrap();
        let version = state.secrets.get(name).map(|(_, _, v)| v + 1).unwrap_or(1);
        state
            .secrets
            .insert(name.to_string(), (value.to_string(), content_type.to_string(), version));
    }

    /// A certificate imported as PKCS#12: the secret is its base64.
    pub fn set_pfx(&self, name: &str, pfx: &[u8]) {
        self.set_secret(name, &STANDARD.encode(pfx), PKCS12);
    }

    pub fn set_pem(&self, name: &str, pem: &str) {
        self.set_secret(name, pem, PEM);
    }

    /// Every read answers 403 (no access policy / role for the identity).
    pub fn set_forbidden(&self, forbidden: bool) {
        self.state.lock().unwrap().forbidden = forbidden;
    }

    /// Authorized reads that returned a secret.
    pub fn secret_reads(&self) -> usize {
        self.state.lock().unwrap().reads
    }

    /// 401 challenges sent to requests without a token.
    pub fn challenges(&self) -> usize {
        self.state.lock().unwrap().challenges
    }

    pub fn refused_tokens(&self) -> usize {
        self.state.lock().unwrap().refused_tokens
    }
}

fn challenge() -> Response {
    Response::json(401, &json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}))
        .with_header(
            "www-authenticate",
            r#"Bearer authorization="https://login.microsoftonline.com/aaaabbbb-0000-cccc-1111-dddd2222eeee", resource="https://vault.azure.net""#,
        )
}

fn handle(state: &mut State, request: &Request) -> Response {
    if request.method != "GET" || !request.query_params().contains_key("api-version") {
        return Response::json(400, &json!({"error": {"code": "BadParameter"}}));
    }
    let Some(bearer) = request.bearer() else {
        state.challenges += 1;
        return challenge();
    };
    if !state.accepted.accepts(Some(bearer)) {
        state.refused_tokens += 1;
        return challenge();
    }
    if state.forbidden {
        return Response::json(
            403,
            &json!({"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource.", "innererror": {"code": "ForbiddenByRbac"}}}),
        );
    }
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let name = match segments.as_slice() {
        ["secrets", name] | ["secrets", name, _] => *name,
        _ => return Response::json(404, &json!({"error": {"code": "NotFound"}})),
    };
    let Some((value, content_type, version)) = state.secrets.get(name).cloned() else {
        return Response::json(
            404,
            &json!({"error": {"code": "SecretNotFound", "message": format!("A secret with (name/id) {name} was not found in this key vault.")}}),
        );
    };
    state.reads += 1;
    let id = format!("https://{VAULT_HOST}/secrets/{name}/{version:032x}");
    Response::json(
        200,
        &json!({
            "value": value,
            "contentType": content_type,
            "id": id,
            "kid": id.replace("/secrets/", "/keys/"),
            "managed": true,
            "attributes": {"enabled": true, "created": 1764000000, "updated": 1764000000, "recoveryLevel": "Recoverable+Purgeable"},
        }),
    )
}
