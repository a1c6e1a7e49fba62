//! AttributeSubmit, black-box: what Entra really sends gets the right single action; a
//! body that is not a submit request gets a precise 4xx JSON error, never a 5xx.

mod support;

use serde_json::{Value, json};
use support::extension::ExtensionFixture;
use support::handler::start_expecting_failure;

const SAMPLE: &str = include_str!("fixtures/samples/attribute-collection-submit-request.json");
const SAMPLE_NO_IDENTITIES: &str =
    include_str!("fixtures/samples/attribute-collection-submit-request-no-identities.json");
const START_SAMPLE_TYPE: &str = "microsoft.graph.authenticationEvent.attributeCollectionStart";
const EXAMPLE_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/signup-rules.example.toml");

fn sample_with_attributes(attributes: Value, identities: Option<Value>) -> String {
    let mut request: Value = serde_json::from_str(SAMPLE).unwrap();
    request["data"]["userSignUpInfo"]["attributes"] = attributes;
    match identities {
        Some(identities) => request["data"]["userSignUpInfo"]["identities"] = identities,
        None => {
            request["data"]["userSignUpInfo"]
                .as_object_mut()
                .unwrap()
                .remove("identities");
        }
    }
    request.to_string()
}

fn string_attribute(value: &str) -> Value {
    json!({ "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": value, "attributeType": "builtIn" })
}

fn rules_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test]
async fn without_rules_every_sample_continues() {
    let fixture = ExtensionFixture::start(&[]).await;
    for sample in [SAMPLE, SAMPLE_NO_IDENTITIES] {
        let reply = fixture.submit(sample).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "application/json");
        assert_eq!(reply.action(), "continueWithDefaultBehavior");
        assert_eq!(
            reply.body["data"]["@odata.type"],
            "microsoft.graph.onAttributeCollectionSubmitResponseData"
        );
    }
}

#[tokio::test]
async fn the_example_rules_give_the_expected_action_for_each_sample() {
    let fixture = ExtensionFixture::start(&[("SIGNUP_RULES_PATH", EXAMPLE_RULES)]).await;

    // The reference sample is valid; its given name is already clean.
    let reply = fixture.submit(SAMPLE).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.action(), "continueWithDefaultBehavior", "{}", reply.body);

    // The capture-shaped sample has a postal code with a letter O and no given name: both
    // reported, with the top message, and nothing else is sent back while errors stand.
    let reply = fixture.submit(SAMPLE_NO_IDENTITIES).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.action(), "showValidationError", "{}", reply.body);
    let action = reply.first_action();
    assert_eq!(action["message"], "Please fix the below errors to proceed.");
    assert_eq!(
        action["attributeErrors"]["postalCode"],
        "Please enter a 5-digit postal code."
    );
    assert_eq!(action["attributeErrors"]["givenName"], "Please enter your first name.");
    assert_eq!(
        action["attributeErrors"].as_object().unwrap().len(),
        2,
        "{}",
        reply.body
    );
    assert!(action.get("attributes").is_none());

    // With both fixed, the normalised values come back, in the request's types.
    let mut fixed: Value = serde_json::from_str(&SAMPLE_NO_IDENTITIES.replace("28O13", "28013")).unwrap();
    fixed["data"]["userSignUpInfo"]["attributes"]["givenName"] = string_attribute("Ana");
    let reply = fixture.submit(fixed.to_string()).await;
    assert_eq!(reply.action(), "modifyAttributeValues", "{}", reply.body);
    let attributes = &reply.first_action()["attributes"];
    assert_eq!(attributes["displayName"], "Ana Garcia");
    assert_eq!(attributes["country"], "ES");
    assert!(
        attributes.get("city").is_none(),
        "unchanged values are not sent back: {attributes}"
    );
}

#[tokio::test]
async fn every_rule_kind_and_the_precedence_between_them() {
    let code_hash = hex_sha256("WELCOME-2026");
    let rules = rules_file(&format!(
        r#"
[messages]
validation_error = "Check the highlighted fields."

[[rule]]
kind = "normalize"
attribute = "displayName"
steps = ["trim", "collapse_spaces", "title_case"]

[[rule]]
kind = "normalize"
attribute = "SpecialDiet"
steps = ["trim", "lowercase"]
each_item = true

[[rule]]
kind = "email_domain"
blocked = ["mailinator.com", "*.mailinator.com"]
title = "Use another address"
message = "Disposable addresses cannot sign up."

[[rule]]
kind = "block"
attribute = "universityGroups"
contains = ["Applicant"]
title = "Wrong portal"
message = "Applicants use the admissions portal."

[[rule]]
kind = "required"
attribute = "givenName"
message = "First name, please."

[[rule]]
kind = "pattern"
attribute = "postalCode"
regex = '^[0-9]{{5}}$'
message = "Five digits."

[[rule]]
kind = "length"
attribute = "displayName"
max = 20
message = "At most 20 characters."

[[rule]]
kind = "range"
attribute = "graduationYear"
min = 1950
max = 2030
message = "A year between 1950 and 2030."

[[rule]]
kind = "allowed_values"
attribute = "universityGroups"
values = ["Alumni", "Faculty", "Student", "Applicant"]
message = "Unknown group."

[[rule]]
kind = "invite_code"
attribute = "inviteCode"
sha256 = ["{code_hash}"]
message = "That invitation code is not valid."
"#
    ));
    let rules_path = rules.path().to_str().unwrap().to_string();
    let fixture = ExtensionFixture::start(&[("SIGNUP_RULES_PATH", &rules_path)]).await;
    let email = |address: &str| {
        Some(json!([{ "signInType": "email", "issuer": "contoso.onmicrosoft.com", "issuerAssignedId": address }]))
    };
    let valid = || {
        json!({
            "givenName": string_attribute("Larissa"),
            "displayName": string_attribute("Larissa Price"),
            "postalCode": string_attribute("28013"),
            "extension_9ce7f42908d14395aed7c48e9b6b957f_graduationYear":
                { "@odata.type": "microsoft.graph.int64DirectoryAttributeValue", "value": 2010, "attributeType": "directorySchemaExtension" },
            "extension_9ce7f42908d14395aed7c48e9b6b957f_universityGroups":
                { "@odata.Type": "microsoft.graph.stringDirectoryAttributeValue", "value": "Alumni,Faculty", "attributeType": "directorySchemaExtension" },
            "extension_9ce7f42908d14395aed7c48e9b6b957f_inviteCode": string_attribute("WELCOME-2026"),
        })
    };

    // All valid: continue.
    let reply = fixture
        .submit(sample_with_attributes(valid(), email("larissa@contoso.com")))
        .await;
    assert_eq!(reply.action(), "continueWithDefaultBehavior", "{}", reply.body);

    // Normalisers only: the changed values, by their full names, types kept.
    let mut attributes = valid();
    attributes["displayName"] = string_attribute("  larissa   price ");
    attributes["extension_9ce7f42908d14395aed7c48e9b6b957f_SpecialDiet"] = string_attribute(" Vegan , GLUTEN free");
    let reply = fixture
        .submit(sample_with_attributes(attributes, email("larissa@contoso.com")))
        .await;
    assert_eq!(reply.action(), "modifyAttributeValues", "{}", reply.body);
    assert_eq!(
        reply.first_action()["attributes"],
        json!({ "displayName": "Larissa Price", "extension_9ce7f42908d14395aed7c48e9b6b957f_SpecialDiet": "vegan,gluten free" })
    );

    // Every failing attribute in one response, beating the modified values.
    let mut attributes = valid();
    attributes["displayName"] = string_attribute("  larissa   price  the  third  of  contoso ");
    attributes.as_object_mut().unwrap().remove("givenName");
    attributes["postalCode"] = string_attribute("28O13");
    attributes["extension_9ce7f42908d14395aed7c48e9b6b957f_graduationYear"]["value"] = json!(1900);
    attributes["extension_9ce7f42908d14395aed7c48e9b6b957f_universityGroups"]["value"] = json!("Alumni,Janitor");
    attributes["extension_9ce7f42908d14395aed7c48e9b6b957f_inviteCode"] = string_attribute("WELCOME-2025");
    let reply = fixture
        .submit(sample_with_attributes(attributes, email("larissa@contoso.com")))
        .await;
    assert_eq!(reply.action(), "showValidationError", "{}", reply.body);
    assert_eq!(reply.first_action()["message"], "Check the highlighted fields.");
    assert_eq!(
        reply.first_action()["attributeErrors"],
        json!({
            "givenName": "First name, please.",
            "displayName": "At most 20 characters.",
            "postalCode": "Five digits.",
            "extension_9ce7f42908d14395aed7c48e9b6b957f_graduationYear": "A year between 1950 and 2030.",
            "extension_9ce7f42908d14395aed7c48e9b6b957f_universityGroups": "Unknown group.",
            "extension_9ce7f42908d14395aed7c48e9b6b957f_inviteCode": "That invitation code is not valid.",
        })
    );

    // A block page beats validation errors: by attribute value, and by email domain
    // (subdomains blocked because the rule lists `*.mailinator.com`).
    let mut attributes = valid();
    attributes.as_object_mut().unwrap().remove("givenName");
    attributes["extension_9ce7f42908d14395aed7c48e9b6b957f_universityGroups"]["value"] = json!("Alumni,applicant");
    let reply = fixture
        .submit(sample_with_attributes(attributes, email("larissa@contoso.com")))
        .await;
    assert_eq!(reply.action(), "showBlockPage", "{}", reply.body);
    assert_eq!(reply.first_action()["title"], "Wrong portal");
    assert_eq!(reply.first_action()["message"], "Applicants use the admissions portal.");

    for address in ["someone@mailinator.com", "Someone@EU.Mailinator.com"] {
        let reply = fixture.submit(sample_with_attributes(valid(), email(address))).await;
        assert_eq!(reply.action(), "showBlockPage", "{address}: {}", reply.body);
        assert_eq!(reply.first_action()["message"], "Disposable addresses cannot sign up.");
    }
    // The email may come as an attribute instead of an identity.
    let mut attributes = valid();
    attributes["email"] = string_attribute("someone@mailinator.com");
    let reply = fixture.submit(sample_with_attributes(attributes, None)).await;
    assert_eq!(reply.action(), "showBlockPage", "{}", reply.body);
    // A look-alike domain is not a subdomain.
    let reply = fixture
        .submit(sample_with_attributes(valid(), email("someone@notmailinator.com")))
        .await;
    assert_eq!(reply.action(), "continueWithDefaultBehavior", "{}", reply.body);
}

fn hex_sha256(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn bodies_that_are_not_submit_requests_get_precise_4xx_errors() {
    let fixture = ExtensionFixture::start(&[]).await;
    let start_request = SAMPLE.replace(
        "authenticationEvent.attributeCollectionSubmit",
        "authenticationEvent.attributeCollectionStart",
    );
    let bad_value = sample_with_attributes(
        json!({ "graduationYear": { "@odata.type": "microsoft.graph.int64DirectoryAttributeValue", "value": "twenty" } }),
        None,
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("empty", String::new(), 400, "empty"),
        ("not JSON", "{\"data\": ".to_string(), 400, "not valid JSON"),
        ("a JSON array", "[1,2]".to_string(), 400, "not a JSON object"),
        ("another event", start_request, 400, START_SAMPLE_TYPE),
        (
            "no attributes",
            json!({ "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit", "data": {} }).to_string(),
            400,
            "attributes",
        ),
        ("a value of the wrong type", bad_value, 400, "graduationYear"),
        (
            "over 64 KiB",
            format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024)),
            413,
            "64 KiB",
        ),
    ];
    for (case, body, status, mentions) in cases {
        let reply = fixture.submit(body).await;
        assert_eq!(reply.status, status, "{case}: {}", reply.body);
        assert_eq!(reply.headers["content-type"], "application/json", "{case}");
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{case}: {}", reply.body);
    }
}

#[tokio::test]
async fn an_oversized_chunked_body_is_cut_off_with_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fixture = ExtensionFixture::start(&[]).await;
    // A raw connection, so the answer can be read while the body is still being sent: the
    // handler answers as soon as the body passes 64 KiB, without waiting for the rest.
    let address = fixture.handler.base_url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let answered = answered.clone();
        let authorization = fixture.valid_authorization();
        tokio::spawn(async move {
            let head = format!(
                "POST /api/AttributeSubmit HTTP/1.1\r\nHost: localhost\r\nAuthorization: {authorization}\r\n\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let mut sent = writer.write_all(head.as_bytes()).await.map(|_| 0usize);
            while let Ok(bytes) = sent {
                if answered.load(std::sync::atomic::Ordering::SeqCst) || bytes >= 1024 * 1024 {
                    break;
                }
                let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
                sent = writer.write_all(chunk.as_bytes()).await.map(|_| bytes + 1024);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            sent.unwrap_or(0)
        })
    };
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = reader
            .read(&mut buffer)
            .await
            .expect("the handler answers before closing");
        assert!(read > 0, "closed without an answer");
        response.extend_from_slice(&buffer[..read]);
    }
    answered.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = sender.await.unwrap();
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(
        sent < 1024 * 1024,
        "the handler answered before the whole body was sent ({sent} bytes)"
    );
}

#[tokio::test]
async fn other_methods_and_paths_get_json_errors() {
    let fixture = ExtensionFixture::start(&[]).await;
    let client = support::handler::loopback_client();
    let response = client
        .get(fixture.handler.url("/api/AttributeSubmit"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["content-type"], "application/json");
    for path in ["/api/Unknown", "/Unknown", "/api"] {
        let response = client.post(fixture.handler.url(path)).body("{}").send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json", "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn a_bad_rules_file_stops_start_up_naming_the_rule() {
    let cases = [
        (
            "[[rule]]\nkind = \"pattern\"\nattribute = \"city\"\nregex = \"([a-z\"\nmessage = \"x\"\n",
            "rule #1",
        ),
        (
            "[[rule]]\nkind = \"required\"\nattribute = \"city\"\n\n[[rule]]\nkind = \"telepathy\"\nattribute = \"city\"\n",
            "rule #2",
        ),
        (
            "[[rule]]\nkind = \"required\"\nattribute = \"city\"\ncolour = \"blue\"\n",
            "colour",
        ),
    ];
    for (text, names) in cases {
        let rules = rules_file(text);
        let (code, stderr) = start_expecting_failure(&[
            ("EXTENSION_SKIP_TOKEN_VALIDATION", "true"),
            ("SIGNUP_RULES_PATH", rules.path().to_str().unwrap()),
        ])
        .await;
        assert_ne!(code, 0, "{text}");
        assert!(
            stderr.contains("SIGNUP_RULES_PATH") && stderr.contains(names),
            "{names}: {stderr}"
        );
    }
}

#[tokio::test]
async fn no_email_or_attribute_value_reaches_the_logs() {
    let fixture = ExtensionFixture::start(&[("SIGNUP_RULES_PATH", EXAMPLE_RULES)]).await;
    for sample in [SAMPLE, SAMPLE_NO_IDENTITIES] {
        assert_eq!(fixture.submit(sample).await.status, 200);
    }
    let mut bad: Value = serde_json::from_str(SAMPLE).unwrap();
    bad["data"]["userSignUpInfo"]["attributes"]["graduationYear"] = json!({ "@odata.type": "microsoft.graph.int64DirectoryAttributeValue", "value": "larissa.price@contoso.onmicrosoft.com" });
    assert_eq!(fixture.submit(bad.to_string()).await.status, 400);
    let reply = fixture
        .submit("{\"type\": \"larissa.price@contoso.onmicrosoft.com\", \"data\": {}}")
        .await;
    assert_eq!(reply.status, 400);
    assert!(!reply.body.to_string().contains("larissa"), "{}", reply.body);

    let logs = format!("{}{}", fixture.handler.stdout(), fixture.handler.stderr());
    assert!(
        logs.contains("AttributeSubmit: correlation"),
        "the calls were logged: {logs}"
    );
    for personal in [
        "larissa",
        "Larissa",
        "Ana.Garcia",
        "ana.garcia",
        "Contoso University",
        "28O13",
    ] {
        assert!(!logs.contains(personal), "{personal} reached the log:\n{logs}");
    }
}
