//! AttributeSubmit: the OnAttributeCollectionSubmit custom authentication extension.
//!
//! The sign-up path: bearer token check (keys from an in-memory cache), request parsing,
//! declarative rules, one action. Nothing here does I/O except the key cache on an
//! unknown `kid`, which is rate-limited and bounded in time, so the answer stays well
//! inside Entra's 1-2 s budget.

pub mod jwks;
pub mod request;
pub mod response;
pub mod rules;
pub mod token;
use request::SubmitRequest;
use rules::RuleSet;
use serde_json::{Value, json};
use std::sync::Arc;
use token::TokenValidator;
use warp::http::StatusCode;

pub const FUNCTION_NAME: &str = "AttributeSubmit";

/// Who may call the extension.
pub enum CallerCheck {
    /// Entra's bearer token, validated against the tenant's keys.
    Token(Arc<TokenValidator>),
    /// Local development only (settings refuse it in Azure).
    SkippedForLocalDevelopment,
}

pub struct AttributeSubmit {
    caller_check: CallerCheck,
    rules: RuleSet,
}

/// The HTTP answer to Entra: 200 with one action for every business outcome; 401 for a
/// caller that is not Entra; 4xx for a body that is not a submit request.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitReply {
    pub status: StatusCode,
    pub body: Value,
}

impl SubmitReply {
    fn error(status: StatusCode, code: &str, message: &str) -> SubmitReply {
        SubmitReply {
            status,
            body: json!({ "error": { "code": code, "message": message } }),
        }
    }
}

impl AttributeSubmit {
    pub fn new(caller_check: CallerCheck, rules: RuleSet) -> AttributeSubmit {
        AttributeSubmit { caller_check, rules }
    }

    pub async fn handle(&self, authorization: Option<&str>, body: &[u8]) -> SubmitReply {
        if let CallerCheck::Token(validator) = &self.caller_check
            && let Err(reason) = validator.validate(authorization).await
        {
            // The caller learns nothing about why; the log says why (never the token).
            log::warn!("{FUNCTION_NAME}: rejected a call: {reason}");
            return SubmitReply::error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the caller could not be authenticated",
            );
        }

        let request = match SubmitRequest::parse(body) {
            Ok(request) => request,
            Err(error) => {
                log::warn!("{FUNCTION_NAME}: bad request: {error}");
                return SubmitReply::error(StatusCode::BAD_REQUEST, "bad_request", &error.to_string());
            }
        };

        let action = self.rules.evaluate(&request);
        log::info!(
            "{FUNCTION_NAME}: correlation {}: {} ({} attributes)",
            // Echoed only when it is the GUID Entra sends, never arbitrary input.
            request
                .correlation_id
                .as_deref()
                .filter(|id| uuid::Uuid::parse_str(id).is_ok())
                .unwrap_or("-"),
            action.name(),
            request.attributes.len()
        );
        SubmitReply {
            status: StatusCode::OK,
            body: action.to_response_body(),
        }
    }
}
