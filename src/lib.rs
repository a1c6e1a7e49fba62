#![forbid(unsafe_code)]
//! signup-bridge: an Azure Functions custom handler that gives Microsoft Entra External ID
//! a sign-up validation extension (AttributeSubmit) and a reliable after-sign-up hook
//! (PollAuditLogs, ProvisionUser).

pub mod attribute_submit;
pub mod check;
pub mod credentials;
pub mod functions_host;
pub mod graph;
pub mod handover;
pub mod logging;
pub mod poll_audit_logs;
pub mod provisioning;
pub mod retry;
pub mod settings;
pub mod setup;
pub mod startup;
pub mod store;
