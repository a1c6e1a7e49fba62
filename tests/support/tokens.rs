//! Test signing keys and hand-minted JWTs shaped like the tokens Entra sends to a custom
//! authentication extension (`../shared/samples/extension-token-claims.json`).
//!
//! Tokens are assembled by hand (base64url header and claims, RSA PKCS#1 v1.5 SHA-256 with
//! aws-lc-rs) so that tests can also craft malformed and malicious ones.
//!
//! ```ignore
//! let key = TestSigningKey::generate("kid-1");
//! let server = JwksServer::start(vec![key.jwk_json()]);
//! let token = key.sign(&valid_claims(TENANT, CLIENT_ID));
//! let header = bearer(&token);
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// App id of the Entra authentication events service (`azp` / `appid` of its tokens).
pub const AUTH_EVENTS_APP_ID: &str = "99045fe1-7639-4a75-9d4a-577b6ca3810f";
/// The tenant of the samples.
pub const TENANT: &str = "aaaabbbb-0000-cccc-1111-dddd2222eeee";
/// A made-up extension app registration (client) id.
pub const CLIENT_ID: &str = "11112222-bbbb-3333-cccc-4444dddd5555";

/// An RSA-2048 key pair with a key id, standing in for one of the tenant's signing keys.
pub struct TestSigningKey {
    pub kid: String,
    key_pair: KeyPair,
}

impl std::fmt::Debug for TestSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TestSigningKey {
    /// A fresh key. Generation takes tens of milliseconds: make keys once per test.
    pub fn generate(kid: &str) -> Self {
        let key_pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        Self {
            kid: kid.to_owned(),
            key_pair,
        }
    }

    /// The public key as a JWK, shaped like the entries of Entra's `discovery/v2.0/keys`.
    pub fn jwk_json(&self) -> Value {
        let components = PublicKeyComponents::<Vec<u8>>::from(self.key_pair.public_key());
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url(&components.n),
            "e": b64url(&components.e),
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        })
    }

    /// DER `RSAPublicKey` (RFC 8017) bytes, the classic "HMAC secret" of an alg-confusion attack.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key_pair.public_key().as_ref().to_vec()
    }

    /// An RS256 token with header `{"alg":"RS256","typ":"JWT","kid":<kid>}`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid }), claims)
    }

    /// Signs `header.claims` with RS256 whatever the header says (so it may lie about `alg`
    /// or `kid`, or omit them).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = signing_input(header, claims);
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing");
        format!("{signing_input}.{}", b64url(&signature))
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// v2 claims as Entra sends them: `azp` = the authentication events app, `iss` in the
/// `https://{tid}.ciamlogin.com/{tid}/v2.0` form, `exp` in an hour, `nbf` a minute ago.
pub fn valid_claims(tenant: &str, audience: &str) -> Value {
    let now = now();
    json!({
        "aud": audience,
        "iss": format!("https://{tenant}.ciamlogin.com/{tenant}/v2.0"),
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "azp": AUTH_EVENTS_APP_ID,
        "azpacr": "1",
        "oid": "00001111-aaaa-2222-bbbb-3333cccc4444",
        "tid": tenant,
        "ver": "2.0",
    })
}

/// v1 claims: `appid` instead of `azp`, issuer `https://sts.windows.net/{tid}/`.
pub fn valid_claims_v1(tenant: &str, audience: &str) -> Value {
    let mut claims = valid_claims(tenant, audience);
    let map = claims.as_object_mut().expect("claims are an object");
    map.remove("azp");
    map.remove("azpacr");
    map.insert("appid".into(), json!(AUTH_EVENTS_APP_ID));
    map.insert("appidacr".into(), json!("1"));
    map.insert("iss".into(), json!(format!("https://sts.windows.net/{tenant}/")));
    map.insert("ver".into(), json!("1.0"));
    claims
}

/// `claims` with `name` set to `value`, or removed when `value` is `Value::Null`.
pub fn with_claim(claims: &Value, name: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    let map = claims.as_object_mut().expect("claims are an object");
    if value.is_null() {
        map.remove(name);
    } else {
        map.insert(name.to_owned(), value);
    }
    claims
}

/// The `Authorization` header value for a token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The token with its payload changed (an `oid` swapped) and the original signature kept.
pub fn tampered(token: &str) -> String {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("tampered() needs a three-part token");
    };
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload")).expect("JSON payload");
    claims["oid"] = json!("99999999-9999-9999-9999-999999999999");
    format!("{header}.{}.{signature}", b64url(claims.to_string().as_bytes()))
}

/// An HS256 token whose HMAC secret is the RSA public key (DER): what a verifier that lets
/// the token pick the algorithm would accept.
pub fn hs256_with_public_key(key: &TestSigningKey, claims: &Value) -> String {
    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid });
    let signing_input = signing_input(&header, claims);
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key.public_key_der());
    let tag = aws_lc_rs::hmac::sign(&hmac_key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(tag.as_ref()))
}

/// An unsigned token: header `{"alg":"none","kid":<kid>}` and an empty signature.
pub fn alg_none(kid: &str, claims: &Value) -> String {
    format!(
        "{}.",
        signing_input(&json!({ "alg": "none", "typ": "JWT", "kid": kid }), claims)
    )
}

/// `base64url(header).base64url(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
