//! Fuzzes `SubmitRequest::parse` and its accessors (Entra's submit body is outside input): never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signup_bridge::attribute_submit::request::SubmitRequest;

fuzz_target!(|body: &[u8]| {
    if let Ok(request) = SubmitRequest::parse(body) {
        let _ = request.email();
        for value in request.attributes.values() {
            let _ = (value.items(), value.to_json());
        }
    }
});
