//! Bearer token check for requests from Entra's custom authentication extension.
//!
//! Accepts only RS256 tokens signed by a key of the tenant, for one of this extension's
//! audiences, issued to the Entra authentication events service, for the configured tenant,
//! with an issuer Entra uses for that token version. Signature, `exp`, `nbf` and `aud` are
//! verified by `jsonwebtoken`; the Entra-specific claims are checked here afterwards.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::jwks::JwksCache;

/// App id of the Microsoft Entra authentication events service, the caller of every custom
/// authentication extension (`azp` in v2 tokens, `appid` in v1 tokens).
pub const AUTHENTICATION_EVENTS_APP_ID: &str = "99045fe1-7639-4a75-9d4a-577b6ca3810f";
/// Entra's tokens are 1–3 KiB; refuse to parse anything far larger.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_LEEWAY_SECS: u64 = 60;

#[derive(Debug, Clone)]
pub struct TokenValidationConfig {
    pub tenant_id: uuid::Uuid,
    /// Accepted `aud` values: the extension's client id, `api://<client id>`, and any
    /// configured identifier URIs. Empty means no token is accepted.
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVersion {
    V1,
    V2,
}

/// Who called, once the token checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedCaller {
    /// Lower-case hyphenated tenant id.
    pub tenant_id: String,
    pub token_version: TokenVersion,
}

/// Why a token was refused. Messages say why for the logs and never include the token or any
/// claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no Authorization header")]
    MissingHeader,
    #[error("Authorization header is not of the form `Bearer <token>`")]
    MalformedHeader,
    #[error("bearer token longer than {max} bytes")]
    TooLong { max: usize },
    #[error("bearer token is not a well-formed JWT")]
    MalformedToken,
    #[error("token algorithm is not RS256")]
    DisallowedAlgorithm,
    #[error("token header has no kid")]
    MissingKeyId,
    #[error("token header lists critical extensions (crit), none of which are supported")]
    UnsupportedCriticalHeader,
    #[error("no signing keys loaded yet: every JWKS fetch has failed so far")]
    KeysUnavailable,
    #[error("token kid is not among the tenant's signing keys")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid (nbf)")]
    NotYetValid,
    /// Absent, or (for `exp`) not a number.
    #[error("token has no valid `{0}` claim")]
    MissingClaim(&'static str),
    #[error("a token claim has the wrong type or format")]
    MalformedClaims,
    #[error("token version (ver) is neither 1.0 nor 2.0")]
    UnsupportedVersion,
    #[error("token audience (aud) is not this extension")]
    WrongAudience,
    #[error("token issuer (iss) is not one Entra uses for this tenant and token version")]
    WrongIssuer,
    #[error("token was not issued to the Entra authentication events service (azp/appid)")]
    WrongAuthorizedParty,
    #[error("token tenant (tid) is not the configured tenant")]
    WrongTenant,
    #[error("token could not be verified with the signing key")]
    VerificationFailed,
}

/// Validates bearer tokens; cheap to share behind an `Arc`.
pub struct TokenValidator {
    tenant_id: String,
    issuer_login_v2: String,
    issuer_ciam_v2_suffix: String,
    issuer_v1: String,
    validation: Validation,
    keys: Arc<JwksCache>,
}

/// The header fields that decide whether to look up a key at all.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct EntraClaims {
    ver: Option<String>,
    tid: Option<String>,
    iss: Option<String>,
    azp: Option<String>,
    appid: Option<String>,
}

impl TokenValidator {
    pub fn new(config: TokenValidationConfig, keys: Arc<JwksCache>) -> Self {
        let tid = config.tenant_id.hyphenated().to_string();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = CLOCK_SKEW_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        // Entra writes GUIDs in lower case; accept a client id configured in any case.
        let audiences: Vec<String> = config
            .audiences
            .iter()
            .map(|aud| match uuid::Uuid::try_parse(aud.trim()) {
                Ok(id) => id.hyphenated().to_string(),
                Err(_) => aud.trim().to_owned(),
            })
            .collect();
        validation.set_audience(&audiences);
        // `iss` is matched below (one accepted form is a pattern), but must be present.
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        if audiences.is_empty() {
            log::warn!("no token audiences configured: every request will be rejected");
        }
        Self {
            issuer_login_v2: format!("https://login.microsoftonline.com/{tid}/v2.0"),
            issuer_ciam_v2_suffix: format!(".ciamlogin.com/{tid}/v2.0"),
            issuer_v1: format!("https://sts.windows.net/{tid}/"),
            tenant_id: tid,
            validation,
            keys,
        }
    }

    /// Checks the `Authorization` header value of one request.
    pub async fn validate(&self, authorization_header: Option<&str>) -> Result<ValidatedCaller, TokenError> {
        let token = bearer_token(authorization_header)?;
        let kid = check_header(token)?;

        let key = match self.keys.key(&kid).await {
            Some(key) => key,
            None if self.keys.key_count() == 0 => return Err(TokenError::KeysUnavailable),
            None => return Err(TokenError::UnknownKey),
        };
        let claims = jsonwebtoken::decode::<EntraClaims>(token, &key, &self.validation)
            .map_err(|error| map_jwt_error(error.kind()))?
            .claims;

        let version = match claims.ver.as_deref() {
            Some("2.0") => TokenVersion::V2,
            Some("1.0") => TokenVersion::V1,
            Some(_) => return Err(TokenError::UnsupportedVersion),
            None => return Err(TokenError::MissingClaim("ver")),
        };
        let tid = claims.tid.ok_or(TokenError::MissingClaim("tid"))?;
        if !tid.eq_ignore_ascii_case(&self.tenant_id) {
            return Err(TokenError::WrongTenant);
        }
        let iss = claims.iss.ok_or(TokenError::MissingClaim("iss"))?;
        if !self.issuer_accepted(&iss, version) {
            return Err(TokenError::WrongIssuer);
        }
        let party = match version {
            TokenVersion::V2 => claims.azp,
            TokenVersion::V1 => claims.appid,
        };
        if party.as_deref() != Some(AUTHENTICATION_EVENTS_APP_ID) {
            return Err(TokenError::WrongAuthorizedParty);
        }
        Ok(ValidatedCaller {
            tenant_id: self.tenant_id.clone(),
            token_version: version,
        })
    }

    fn issuer_accepted(&self, iss: &str, version: TokenVersion) -> bool {
        match version {
            TokenVersion::V1 => iss == self.issuer_v1,
            TokenVersion::V2 => {
                iss == self.issuer_login_v2
                    // https://{tenant id or subdomain}.ciamlogin.com/{tid}/v2.0
                    || iss
                        .strip_prefix("https://")
                        .and_then(|rest| rest.strip_suffix(&self.issuer_ciam_v2_suffix))
                        .is_some_and(is_dns_label)
            }
        }
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(header: Option<&str>) -> Result<&str, TokenError> {
    let value = header.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(TokenError::MissingHeader);
    }
    // Bound the work below before scanning the value.
    if value.len() > MAX_TOKEN_LEN + "Bearer ".len() {
        return Err(TokenError::TooLong { max: MAX_TOKEN_LEN });
    }
    let (scheme, token) = value.split_once([' ', '\t']).ok_or(TokenError::MalformedHeader)?;
    let token = token.trim_start_matches([' ', '\t']);
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(char::is_whitespace) {
        return Err(TokenError::MalformedHeader);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong { max: MAX_TOKEN_LEN });
    }
    Ok(token)
}

/// Checks the JOSE header before any key lookup; returns the `kid`.
fn check_header(token: &str) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::MalformedToken);
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::MalformedToken)?;
    let header: RawHeader = serde_json::from_slice(&header).map_err(|_| TokenError::MalformedToken)?;
    // Algorithm first, so `alg: none` with an empty signature is reported as such.
    if header.alg.as_deref() != Some("RS256") {
        return Err(TokenError::DisallowedAlgorithm);
    }
    // RFC 7515 §4.1.11: unknown critical extensions must be rejected; we know none.
    if header.crit.is_some() {
        return Err(TokenError::UnsupportedCriticalHeader);
    }
    if payload.is_empty() || signature.is_empty() {
        return Err(TokenError::MalformedToken);
    }
    // The library's own header parse, so later JSON errors can only come from the claims.
    jsonwebtoken::decode_header(token).map_err(|_| TokenError::MalformedToken)?;
    header.kid.filter(|kid| !kid.is_empty()).ok_or(TokenError::MissingKeyId)
}

fn map_jwt_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidToken | ErrorKind::Base64(_) => TokenError::MalformedToken,
        // The header has been parsed already (`check_header`): this is the claims set.
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => TokenError::MalformedClaims,
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => TokenError::MissingClaim("exp"),
            "aud" => TokenError::MissingClaim("aud"),
            "iss" => TokenError::MissingClaim("iss"),
            _ => TokenError::MalformedClaims,
        },
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => TokenError::MalformedClaims,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => TokenError::DisallowedAlgorithm,
        // Key or provider trouble (e.g. a JWKS key the crypto backend refuses). The enum is
        // non_exhaustive, so new kinds land here too.
        _ => TokenError::VerificationFailed,
    }
}

/// One DNS label (RFC 1123): 1–63 letters, digits or hyphens, no hyphen at either end.
fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_is_trimmed() {
        assert_eq!(bearer_token(Some("Bearer a.b.c")), Ok("a.b.c"));
        assert_eq!(bearer_token(Some("bearer  a.b.c ")), Ok("a.b.c"));
        assert_eq!(bearer_token(Some("BEARER\ta.b.c")), Ok("a.b.c"));
    }

    #[test]
    fn header_without_bearer_token_is_refused() {
        assert_eq!(bearer_token(None), Err(TokenError::MissingHeader));
        assert_eq!(bearer_token(Some("  ")), Err(TokenError::MissingHeader));
        for value in [
            "a.b.c",
            "Bearer",
            "Bearer ",
            "Basic a.b.c",
            "Bearer a.b.c extra",
            "Bearera.b.c",
        ] {
            assert_eq!(bearer_token(Some(value)), Err(TokenError::MalformedHeader), "{value:?}");
        }
    }

    #[test]
    fn oversized_token_is_refused_before_parsing() {
        let value = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(
            bearer_token(Some(&value)),
            Err(TokenError::TooLong { max: MAX_TOKEN_LEN })
        );
        let value = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN));
        assert!(bearer_token(Some(&value)).is_ok());
    }

    fn encoded_header(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn header_checks_come_before_key_lookup() {
        assert_eq!(
            check_header(&encoded_header(r#"{"alg":"RS256","kid":"k1"}"#)),
            Ok("k1".to_owned())
        );
        for alg in [r#""none""#, r#""HS256""#, r#""RS384""#, r#""PS256""#, "null"] {
            let header = format!(r#"{{"alg":{alg},"kid":"k1"}}"#);
            assert_eq!(
                check_header(&encoded_header(&header)),
                Err(TokenError::DisallowedAlgorithm),
                "{alg}"
            );
        }
        assert_eq!(
            check_header(&encoded_header(r#"{"kid":"k1"}"#)),
            Err(TokenError::DisallowedAlgorithm)
        );
        assert_eq!(
            check_header(&encoded_header(r#"{"alg":"RS256"}"#)),
            Err(TokenError::MissingKeyId)
        );
        assert_eq!(
            check_header(&encoded_header(r#"{"alg":"RS256","kid":""}"#)),
            Err(TokenError::MissingKeyId)
        );
        assert_eq!(
            check_header(&encoded_header(r#"{"alg":"RS256","kid":"k1","crit":["b64"]}"#)),
            Err(TokenError::UnsupportedCriticalHeader)
        );
        // Duplicate members could hide a second `alg` from one parser but not another.
        assert_eq!(
            check_header(&encoded_header(r#"{"alg":"RS256","alg":"none","kid":"k1"}"#)),
            Err(TokenError::MalformedToken)
        );
    }

    #[test]
    fn structurally_broken_tokens_are_malformed() {
        let good_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#);
        for token in [
            "garbage".to_owned(),
            format!("{good_header}.e30"),
            format!("{good_header}.e30."),
            format!("{good_header}..c2ln"),
            format!("{good_header}.e30.c2ln.extra"),
            "!!!.e30.c2ln".to_owned(),
            format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("not json")),
        ] {
            assert_eq!(check_header(&token), Err(TokenError::MalformedToken), "{token}");
        }
    }

    #[test]
    fn dns_labels() {
        for ok in ["contoso", "a", "x-1", "aaaabbbb-0000-cccc-1111-dddd2222eeee"] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a.b", "a/b", "a_b", "é", "a".repeat(64).as_str()] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
