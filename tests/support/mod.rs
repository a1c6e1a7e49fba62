//! Helpers shared by the integration tests and benchmarks. Each test binary uses a subset.
#![allow(dead_code)]

pub mod extension;
pub mod handler;
pub mod jwks_server;
pub mod tokens;
