//! Helpers shared by the integration tests and benchmarks. Each test binary uses a subset.
#![allow(dead_code)]

pub mod app_certs;
pub mod bench;
pub mod chaos_proxy;
pub mod extension;
pub mod fake_entra;
pub mod fake_entra_admin;
pub mod fake_graph;
pub mod fake_identity;
pub mod fake_key_vault;
pub mod fake_mailchimp;
pub mod fake_salesforce;
pub mod fake_server;
pub mod fake_stripe;
pub mod graph_fakes;
pub mod handler;
pub mod jwks_server;
pub mod postgres;
pub mod stores;
pub mod tls;
pub mod tokens;
pub mod world;
