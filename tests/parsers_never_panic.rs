//! Property tests: the three parsers that take input from outside (Entra's request body,
//! the bearer token, the Functions host's invocation payload) answer every input with a
//! value or an error, never a panic.

use proptest::prelude::*;
use serde_json::{Value, json};
use signup_bridge::attribute_submit::jwks::{JwksCache, JwksConfig};
use signup_bridge::attribute_submit::request::SubmitRequest;
use signup_bridge::attribute_submit::token::{TokenValidationConfig, TokenValidator};
use signup_bridge::functions_host::InvocationRequest;
use std::sync::Arc;

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("@odata.type".to_string()),
                    Just("@odata.Type".to_string()),
                    Just("value".to_string()),
                    Just("type".to_string()),
                    Just("data".to_string()),
                    Just("userSignUpInfo".to_string()),
                    Just("attributes".to_string()),
                    Just("identities".to_string()),
                    "[a-zA-Z_]{1,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A submit request whose attributes are arbitrary.
fn submit_shaped() -> impl Strategy<Value = Value> {
    (
        any_json(),
        prop::collection::btree_map("[a-zA-Z_]{1,40}", any_json(), 0..8),
    )
        .prop_map(|(identities, attributes)| {
            json!({
                "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
                "data": {
                    "@odata.type": "microsoft.graph.onAttributeCollectionSubmitCalloutData",
                    "userSignUpInfo": { "attributes": attributes, "identities": identities }
                }
            })
        })
}

proptest! {
    #[test]
    fn the_submit_parser_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = SubmitRequest::parse(&bytes);
    }

    #[test]
    fn the_submit_parser_takes_any_json(document in any_json()) {
        let _ = SubmitRequest::parse(document.to_string().as_bytes());
    }

    #[test]
    fn the_submit_parser_takes_any_attributes(document in submit_shaped()) {
        if let Ok(request) = SubmitRequest::parse(document.to_string().as_bytes()) {
            let _ = request.email();
            for value in request.attributes.values() {
                let _ = (value.items(), value.to_json());
            }
        }
    }

    #[test]
    fn the_invocation_parser_takes_any_payload(data in any_json(), name in "[a-zA-Z]{1,8}") {
        let body = json!({ "Data": { name.clone(): data }, "Metadata": { "DequeueCount": "\"1\"" } });
        let request = InvocationRequest::parse(body.to_string().as_bytes()).unwrap();
        let _ = request.binding_text(&name);
        let _ = request.binding_json::<Value>(&name);
        let _ = request.binding_bytes(&name);
        let _ = request.metadata_value("DequeueCount");
    }

    #[test]
    fn the_invocation_parser_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = InvocationRequest::parse(&bytes);
    }
}

fn validator() -> TokenValidator {
    // No key endpoints: every lookup misses at once, so only parsing and checks run.
    let keys = Arc::new(JwksCache::new(JwksConfig::new(Vec::new()), reqwest::Client::new()));
    let config = TokenValidationConfig {
        tenant_id: "aaaabbbb-0000-cccc-1111-dddd2222eeee".parse().unwrap(),
        audiences: vec!["11112222-bbbb-3333-cccc-4444dddd5555".into()],
    };
    TokenValidator::new(config, keys)
}

/// Three base64url-ish segments with arbitrary content, or anything at all.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,64}",
        ("[A-Za-z0-9_=-]{0,80}", "[A-Za-z0-9_=-]{0,80}", "[A-Za-z0-9_=.-]{0,80}")
            .prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        (any_json(), any_json()).prop_map(|(header, claims)| {
            use base64::Engine;
            let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
            format!("{}.{}.c2lnbmF0dXJl", encode(&header), encode(&claims))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn the_token_parser_refuses_any_token_without_panicking(token in token_like(), scheme in "(Bearer|bearer|Basic|) ?") {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let header = format!("{scheme}{token}");
        let result = runtime.block_on(validator().validate(Some(&header)));
        prop_assert!(result.is_err(), "no key is known, so nothing can validate");
    }
}
