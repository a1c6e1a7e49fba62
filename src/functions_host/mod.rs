//! The Azure Functions custom-handler protocol: how the host talks to this process.
//!
//! Knows nothing of sign-ups. Business functions register as either an *invocation*
//! function (`POST /{FunctionName}` with the host's JSON payload: timers, queues) or a
//! *forwarded HTTP* function (the raw request proxied to `/api/...`).

pub mod invocation;
pub mod server;

pub use invocation::{InvocationError, InvocationLog, InvocationRequest, InvocationResponse};
pub use server::{FunctionTable, HttpRequest, HttpResponse, serve};
