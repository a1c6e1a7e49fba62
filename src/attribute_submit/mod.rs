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
