//! Fuzzes `TokenValidator::validate` on any `Authorization` value: no key is known, so each is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signup_bridge::attribute_submit::jwks::{JwksCache, JwksConfig};
use signup_bridge::attribute_submit::token::{TokenValidationConfig, TokenValidator};
use std::sync::{Arc, LazyLock};

/// Built once, as in the handler (a client per input would dominate the run time).
static HARNESS: LazyLock<(tokio::runtime::Runtime, TokenValidator)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // No key endpoints: every lookup misses at once, so only parsing and checks run.
    let keys = Arc::new(JwksCache::new(JwksConfig::new(Vec::new()), reqwest::Client::new()));
    let config = TokenValidationConfig {
        tenant_id: "aaaabbbb-0000-cccc-1111-dddd2222eeee".parse().unwrap(),
        audiences: vec!["11112222-bbbb-3333-cccc-4444dddd5555".into()],
    };
    (runtime, TokenValidator::new(config, keys))
});

fuzz_target!(|data: &[u8]| {
    let (runtime, validator) = &*HARNESS;
    let input = String::from_utf8_lossy(data);
    // The input as the whole header value, and as the token of a `Bearer` header.
    for header in [input.to_string(), format!("Bearer {input}")] {
        let result = runtime.block_on(validator.validate(Some(&header)));
        assert!(result.is_err(), "accepted without any key: {header:?} -> {result:?}");
    }
});
