//! Fuzzes `InvocationRequest::parse` and its accessors (the Functions host's payload is outside input): never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use signup_bridge::functions_host::InvocationRequest;

fuzz_target!(|body: &[u8]| {
    let Ok(request) = InvocationRequest::parse(body) else {
        return;
    };
    for name in request.data.keys().map(String::as_str).chain(["missing"]) {
        let _ = request.binding_text(name);
        let _ = request.binding_json::<Value>(name);
        let _ = request.binding_bytes(name);
    }
    for name in request.metadata.keys().map(String::as_str).chain(["DequeueCount"]) {
        let _ = request.metadata_value(name);
    }
});
