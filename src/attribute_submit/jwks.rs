//! Signing key cache for the bearer token check.
//!
//! Keys come from the union of the tenant's JWKS endpoints, refreshed in the background and,
//! rate-limited, when a token names an unknown `kid`. A lookup of a known `kid` is a read-lock
//! and a hash lookup: no I/O, no await. All refreshes, background or on demand, go through one
//! shared in-flight fetch (single-flight), so a burst of unknown kids costs one fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use url::Url;

pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60 * 60);
pub const DEFAULT_UNKNOWN_KID_MIN_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_MISS_WAIT: Duration = Duration::from_millis(400);
/// Background retry delay after a refresh in which every source failed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Entra's key sets are a few KiB; anything near this is not a key set.
const MAX_JWKS_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// Key set URLs; the cache holds the union of their keys.
    pub urls: Vec<Url>,
    /// Whole-request timeout of one fetch (connect to end of body).
    pub fetch_timeout: Duration,
    /// Background refresh period.
    pub refresh_interval: Duration,
    /// At most one on-demand refetch (unknown `kid`) per this interval.
    pub unknown_kid_min_interval: Duration,
    /// How long a lookup of an unknown `kid` waits for the refetch before giving up; the
    /// refetch itself carries on and fills the cache for later requests.
    pub miss_wait: Duration,
}

impl JwksConfig {
    /// The given URLs with the default timings.
    pub fn new(urls: Vec<Url>) -> Self {
        Self {
            urls,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            unknown_kid_min_interval: DEFAULT_UNKNOWN_KID_MIN_INTERVAL,
            miss_wait: DEFAULT_MISS_WAIT,
        }
    }
}

/// The two key endpoints an external tenant's tokens may be signed with keys from.
pub fn default_jwks_urls(tenant_id: &uuid::Uuid) -> Vec<Url> {
    let tid = tenant_id.hyphenated();
    [
        format!("https://{tid}.ciamlogin.com/{tid}/discovery/v2.0/keys"),
        format!("https://login.microsoftonline.com/{tid}/discovery/v2.0/keys"),
    ]
    .iter()
    .map(|u| Url::parse(u).expect("a UUID always forms a valid URL"))
    .collect()
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("no JWKS URL configured")]
    NoUrls,
    #[error("all {failed} JWKS sources failed; previous keys kept (see earlier warnings)")]
    AllSourcesFailed { failed: usize },
    #[error("JWKS refresh task ended abnormally")]
    TaskFailed,
}

/// Why one source could not be used; logged with the source's host.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
    #[error("HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("response larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("response is not a JWKS document: {0}")]
    NotJwks(#[source] serde_json::Error),
    #[error("no usable RS256 signing key among {0} keys")]
    NoUsableKeys(usize),
}

impl From<reqwest::Error> for FetchError {
    fn from(error: reqwest::Error) -> Self {
        // The URL is logged separately as a host; keep the message short.
        FetchError::Http(error.without_url())
    }
}

type KeyMap = HashMap<String, Arc<DecodingKey>>;
type Flight = Shared<BoxFuture<'static, Result<usize, JwksError>>>;

pub struct JwksCache {
    inner: Arc<Inner>,
}

struct Inner {
    config: JwksConfig,
    http: reqwest::Client,
    /// What lookups read; replaced wholesale after each refresh.
    snapshot: RwLock<Arc<KeyMap>>,
    /// Last good keys per source (same order as `config.urls`), so a failing source keeps
    /// contributing its previous keys to the union.
    per_source: Mutex<Vec<Option<KeyMap>>>,
    flight: Mutex<FlightState>,
}

#[derive(Default)]
struct FlightState {
    /// The refresh in progress or last finished; `AbortHandle` only to ask `is_finished`.
    current: Option<(Flight, tokio::task::AbortHandle)>,
    last_on_demand: Option<Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock still holds valid data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JwksCache {
    /// An empty cache; call `refresh` or `spawn_background_refresh` to load keys.
    pub fn new(config: JwksConfig, http: reqwest::Client) -> Self {
        let sources = config.urls.len();
        Self {
            inner: Arc::new(Inner {
                config,
                http,
                snapshot: RwLock::new(Arc::new(KeyMap::new())),
                per_source: Mutex::new(vec![None; sources]),
                flight: Mutex::new(FlightState::default()),
            }),
        }
    }

    /// Fetches every URL concurrently and replaces the key set with the union of what they
    /// serve; a failing source keeps its previous keys. Joins a refresh already in flight.
    /// Returns the number of keys now cached, or an error if every source failed.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        Inner::join_or_start(&self.inner).await
    }

    /// Loads keys at once, then every `refresh_interval`; after a failed refresh retries
    /// sooner. The task ends when the cache is dropped.
    pub fn spawn_background_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.config.refresh_interval;
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let flight = Inner::join_or_start(&inner);
                drop(inner);
                let delay = match flight.await {
                    Ok(_) => interval,
                    Err(error) => {
                        log::warn!("JWKS background refresh failed: {error}");
                        interval.min(RETRY_AFTER_FAILURE)
                    }
                };
                tokio::time::sleep(delay).await;
            }
        })
    }

    /// The verification key for `kid`. A cached key costs no I/O. An unknown `kid` joins or
    /// starts one rate-limited refetch, waits for it at most `miss_wait`, then looks again.
    pub async fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let flight = Inner::join_or_start_on_demand(&self.inner)?;
        // On timeout the refetch carries on in its task and serves later requests.
        let _ = tokio::time::timeout(self.inner.config.miss_wait, flight).await;
        self.cached(kid)
    }

    /// Number of usable keys cached now.
    pub fn key_count(&self) -> usize {
        self.inner.snapshot().len()
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.inner.snapshot().get(kid).cloned()
    }
}

impl Inner {
    fn snapshot(&self) -> Arc<KeyMap> {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The running refresh, or a new one.
    fn join_or_start(inner: &Arc<Inner>) -> Flight {
        let mut state = lock(&inner.flight);
        Self::running(&state).unwrap_or_else(|| Self::start(inner, &mut state))
    }

    /// Like `join_or_start`, but starts a new refresh at most once per
    /// `unknown_kid_min_interval`; `None` when rate-limited and nothing is running.
    fn join_or_start_on_demand(inner: &Arc<Inner>) -> Option<Flight> {
        let mut state = lock(&inner.flight);
        if let Some(flight) = Self::running(&state) {
            return Some(flight);
        }
        let min_interval = inner.config.unknown_kid_min_interval;
        if state.last_on_demand.is_some_and(|at| at.elapsed() < min_interval) {
            return None;
        }
        state.last_on_demand = Some(Instant::now());
        log::info!("unknown signing key id; refetching JWKS");
        Some(Self::start(inner, &mut state))
    }

    fn running(state: &FlightState) -> Option<Flight> {
        match &state.current {
            Some((flight, task)) if !task.is_finished() => Some(flight.clone()),
            _ => None,
        }
    }

    fn start(inner: &Arc<Inner>, state: &mut FlightState) -> Flight {
        // A task, not just a future, so the fetch completes even if every waiter gives up.
        let task = tokio::spawn(Arc::clone(inner).fetch_all());
        let abort = task.abort_handle();
        let flight = async move { task.await.unwrap_or(Err(JwksError::TaskFailed)) }
            .boxed()
            .shared();
        state.current = Some((flight.clone(), abort));
        flight
    }

    async fn fetch_all(self: Arc<Self>) -> Result<usize, JwksError> {
        let urls = &self.config.urls;
        if urls.is_empty() {
            return Err(JwksError::NoUrls);
        }
        let results = futures_util::future::join_all(urls.iter().map(|url| self.fetch_one(url))).await;

        let mut per_source = lock(&self.per_source);
        let mut failed = 0;
        for ((url, result), slot) in urls.iter().zip(results).zip(per_source.iter_mut()) {
            let host = url.host_str().unwrap_or("?");
            match result {
                Ok(keys) => {
                    log::debug!("JWKS from {host}: {} usable keys", keys.len());
                    *slot = Some(keys);
                }
                Err(error) => {
                    failed += 1;
                    let kept = slot.as_ref().map_or(0, HashMap::len);
                    log::warn!("JWKS fetch from {host} failed, keeping its {kept} previous keys: {error}");
                }
            }
        }
        if failed == urls.len() {
            return Err(JwksError::AllSourcesFailed { failed });
        }

        // First source wins on a duplicate kid; the endpoints serve the same keys.
        let mut union = KeyMap::new();
        for keys in per_source.iter().flatten() {
            for (kid, key) in keys {
                union.entry(kid.clone()).or_insert_with(|| Arc::clone(key));
            }
        }
        let count = union.len();
        *self.snapshot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(union);
        log::info!(
            "JWKS refreshed: {count} signing keys from {}/{} sources",
            urls.len() - failed,
            urls.len()
        );
        Ok(count)
    }

    async fn fetch_one(&self, url: &Url) -> Result<KeyMap, FetchError> {
        let mut response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.config.fetch_timeout)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status));
        }
        if response.content_length().is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

/// The usable keys of a JWKS document. Keys are parsed one by one so that one key of a type
/// this crate cannot read does not discard the whole set.
fn parse_jwks(body: &[u8]) -> Result<KeyMap, FetchError> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(body).map_err(FetchError::NotJwks)?;
    let total = set.keys.len();
    let keys: KeyMap = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| rs256_key(&jwk))
        .collect();
    if keys.is_empty() {
        return Err(FetchError::NoUsableKeys(total));
    }
    Ok(keys)
}

/// `(kid, key)` if the JWK is an RSA key that may verify RS256 signatures.
fn rs256_key(jwk: &Jwk) -> Option<(String, Arc<DecodingKey>)> {
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return None;
    };
    let common = &jwk.common;
    let kid = common.key_id.as_deref().filter(|kid| !kid.is_empty())?;
    let for_signatures = matches!(common.public_key_use, None | Some(PublicKeyUse::Signature));
    let may_verify = common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    let rs256 = matches!(common.key_algorithm, None | Some(KeyAlgorithm::RS256));
    if !(for_signatures && may_verify && rs256) {
        return None;
    }
    let key = DecodingKey::from_rsa_components(&rsa.n, &rsa.e).ok()?;
    Some((kid.to_owned(), Arc::new(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_urls_are_the_ciamlogin_and_login_endpoints() {
        let tid = uuid::Uuid::parse_str("aaaabbbb-0000-cccc-1111-dddd2222eeee").unwrap();
        let urls: Vec<String> = default_jwks_urls(&tid).iter().map(|u| u.to_string()).collect();
        assert_eq!(
            urls,
            [
                "https://aaaabbbb-0000-cccc-1111-dddd2222eeee.ciamlogin.com/aaaabbbb-0000-cccc-1111-dddd2222eeee/discovery/v2.0/keys",
                "https://login.microsoftonline.com/aaaabbbb-0000-cccc-1111-dddd2222eeee/discovery/v2.0/keys",
            ]
        );
    }

    // A real 2048-bit modulus is not needed to exercise the filter; from_rsa_components only
    // decodes base64url.
    fn rsa(extra: serde_json::Value) -> serde_json::Value {
        let mut key = serde_json::json!({ "kty": "RSA", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB" });
        if let (Some(key), Some(extra)) = (key.as_object_mut(), extra.as_object()) {
            key.extend(extra.clone());
        }
        key
    }

    #[test]
    fn only_rsa_signature_keys_for_rs256_are_kept() {
        let doc = serde_json::json!({ "keys": [
            rsa(serde_json::json!({ "kid": "plain", "x5t": "x", "x5c": ["y"], "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0" })),
            rsa(serde_json::json!({ "kid": "sig-rs256", "use": "sig", "alg": "RS256", "key_ops": ["verify"] })),
            rsa(serde_json::json!({ "kid": "enc", "use": "enc" })),
            rsa(serde_json::json!({ "kid": "rs384", "alg": "RS384" })),
            rsa(serde_json::json!({ "kid": "sign-only", "key_ops": ["sign"] })),
            rsa(serde_json::json!({})),
            rsa(serde_json::json!({ "kid": "" })),
            { "kty": "EC", "kid": "ec", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "weird", "kid": "weird" },
            "not an object",
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["plain", "sig-rs256"]);
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        let doc = serde_json::json!({ "keys": [rsa(serde_json::json!({ "kid": "enc", "use": "enc" }))] });
        assert!(matches!(
            parse_jwks(doc.to_string().as_bytes()),
            Err(FetchError::NoUsableKeys(1))
        ));
        assert!(matches!(parse_jwks(b"<html>"), Err(FetchError::NotJwks(_))));
    }
}
