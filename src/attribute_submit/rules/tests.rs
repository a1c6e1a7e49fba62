use super::*;
use serde_json::json;

/// `../shared/samples/attribute-collection-submit-request.json`, embedded so tests run on a clean clone.
const SAMPLE_WITH_IDENTITIES: &str = r#"{
  "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
  "source": "/tenants/aaaabbbb-0000-cccc-1111-dddd2222eeee/applications/11112222-bbbb-3333-cccc-4444dddd5555",
  "data": {
    "@odata.type": "microsoft.graph.onAttributeCollectionSubmitCalloutData",
    "tenantId": "aaaabbbb-0000-cccc-1111-dddd2222eeee",
    "authenticationEventListenerId": "00001111-aaaa-2222-bbbb-3333cccc4444",
    "customAuthenticationExtensionId": "11112222-bbbb-3333-cccc-4444dddd5555",
    "authenticationContext": {
      "correlationId": "7f2c8a44-2b5e-4f0e-9a57-1c0b7d3e9a10",
      "client": { "ip": "30.51.176.110", "locale": "en-us", "market": "en-us" },
      "protocol": "OAUTH2.0"
    },
    "userSignUpInfo": {
      "attributes": {
        "givenName": { "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "Larissa Price", "attributeType": "builtIn" },
        "companyName": { "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "Contoso University", "attributeType": "builtIn" },
        "extension_9ce7f42908d14395aed7c48e9b6b957f_universityGroups": { "@odata.Type": "microsoft.graph.stringDirectoryAttributeValue", "value": "Alumni,Faculty", "attributeType": "directorySchemaExtension" },
        "extension_9ce7f42908d14395aed7c48e9b6b957f_graduationYear": { "@odata.type": "microsoft.graph.int64DirectoryAttributeValue", "value": 2010, "attributeType": "directorySchemaExtension" },
        "extension_9ce7f42908d14395aed7c48e9b6b957f_onMailingList": { "@odata.type": "microsoft.graph.booleanDirectoryAttributeValue", "value": false, "attributeType": "directorySchemaExtension" }
      },
      "identities": [
        { "signInType": "email", "issuer": "contoso.onmicrosoft.com", "issuerAssignedId": "larissa.price@contoso.onmicrosoft.com" }
      ]
    }
  }
}"#;

/// `../shared/samples/attribute-collection-submit-request-no-identities.json`.
const SAMPLE_NO_IDENTITIES: &str = r#"{
  "type": "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
  "source": "/tenants/aaaabbbb-0000-cccc-1111-dddd2222eeee/applications/33334444-dddd-5555-eeee-6666ffff7777",
  "data": {
    "@odata.type": "microsoft.graph.onAttributeCollectionSubmitCalloutData",
    "tenantId": "aaaabbbb-0000-cccc-1111-dddd2222eeee",
    "authenticationEventListenerId": "00001111-aaaa-2222-bbbb-3333cccc4444",
    "customAuthenticationExtensionId": "11112222-bbbb-3333-cccc-4444dddd5555",
    "authenticationContext": {
      "correlationId": "0b6f5a2e-8d0c-4a55-b1de-5f4c2b9e7d31",
      "client": { "ip": "203.0.113.7", "locale": "es-es", "market": "es-es" },
      "protocol": "OAUTH2.0"
    },
    "userSignUpInfo": {
      "attributes": {
        "email": { "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "  Ana.Garcia@Example.COM ", "attributeType": "builtIn" },
        "displayName": { "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "ana   garcia", "attributeType": "builtIn" },
        "city": { "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "Madrid", "attributeType": "builtIn" },
        "postalCode": { "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "28O13", "attributeType": "builtIn" },
        "country": { "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "es", "attributeType": "builtIn" },
        "extension_9ce7f42908d14395aed7c48e9b6b957f_SpecialDiet": { "@odata.type": "microsoft.graph.stringDirectoryAttributeValue", "value": "Vegan,Gluten free", "attributeType": "directorySchemaExtension" }
      }
    }
  }
}"#;

const EXAMPLE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/signup-rules.example.toml");
const APP: &str = "extension_9ce7f42908d14395aed7c48e9b6b957f_";
/// SHA-256 of "OPEN-SESAME".
const OPEN_SESAME: &str = "6fe64e668e081411b0568e912a1f157709cf5127ca8507ed0aec51605217c765";

// RuleSet is shared by all request handlers.
const _: fn() = || {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<RuleSet>();
};

fn rules(toml: &str) -> RuleSet {
    RuleSet::from_toml(toml).unwrap_or_else(|error| panic!("rules should load: {error}"))
}

fn load_error(toml: &str) -> String {
    match RuleSet::from_toml(toml) {
        Ok(rules) => panic!("expected a load error, got {rules:?}"),
        Err(error) => error.to_string(),
    }
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::String(value.to_string())
}

fn request(attributes: &[(&str, AttributeValue)]) -> SubmitRequest {
    SubmitRequest {
        tenant_id: None,
        correlation_id: None,
        attributes: attributes
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect(),
        identities: Vec::new(),
    }
}

fn with_email_identity(mut request: SubmitRequest, email: &str) -> SubmitRequest {
    request.identities.push(super::super::request::Identity {
        sign_in_type: "email".to_string(),
        issuer: Some("contoso.onmicrosoft.com".to_string()),
        issuer_assigned_id: Some(email.to_string()),
    });
    request
}

fn sample(json: &str) -> SubmitRequest {
    SubmitRequest::parse(json.as_bytes()).expect("the sample parses")
}

/// The attribute errors of a ShowValidationError, or a panic naming what came instead.
fn errors(action: SubmitAction) -> BTreeMap<String, String> {
    match action {
        SubmitAction::ShowValidationError { attribute_errors, .. } => attribute_errors,
        other => panic!("expected showValidationError, got {other:?}"),
    }
}

fn modified(action: SubmitAction) -> BTreeMap<String, serde_json::Value> {
    match action {
        SubmitAction::ModifyAttributeValues(values) => values,
        other => panic!("expected modifyAttributeValues, got {other:?}"),
    }
}

fn error_map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(name, message)| (name.to_string(), message.to_string()))
        .collect()
}

fn is_blocked(rules: &RuleSet, request: &SubmitRequest) -> bool {
    matches!(rules.evaluate(request), SubmitAction::ShowBlockPage { .. })
}

// ------------------------------------------------------------------ loading

#[test]
fn empty_rule_set_continues() {
    let rules = RuleSet::empty();
    assert!(rules.is_empty());
    assert_eq!(rules.len(), 0);
    assert_eq!(
        rules.evaluate(&sample(SAMPLE_NO_IDENTITIES)),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(RuleSet::default().len(), 0);
}

#[test]
fn empty_file_and_messages_only_have_no_rules() {
    assert!(rules("").is_empty());
    let messages_only = rules("[messages]\nvalidation_error = \"Fix it\"\n");
    assert!(messages_only.is_empty());
    assert_eq!(
        messages_only.evaluate(&request(&[("city", text("1"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
}

#[test]
fn len_counts_every_rule() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "normalize"
        attribute = "city"
        steps = ["trim"]
        [[rule]]
        kind = "required"
        attribute = "city"
        [[rule]]
        kind = "block"
        attribute = "city"
        equals = ["Atlantis"]
        message = "No."
        "#,
    );
    assert_eq!(rules.len(), 3);
    assert!(!rules.is_empty());
}

#[test]
fn validation_message_defaults_to_entras_and_can_be_configured() {
    let rule = "[[rule]]\nkind = \"required\"\nattribute = \"city\"\n";
    match rules(rule).evaluate(&request(&[])) {
        SubmitAction::ShowValidationError { message, .. } => assert_eq!(message, DEFAULT_VALIDATION_MESSAGE),
        other => panic!("unexpected {other:?}"),
    }
    let configured = format!("[messages]\nvalidation_error = \"Revisa los campos.\"\n{rule}");
    match rules(&configured).evaluate(&request(&[])) {
        SubmitAction::ShowValidationError { message, .. } => assert_eq!(message, "Revisa los campos."),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_regex_names_the_rule() {
    let error = load_error(
        r#"
        [[rule]]
        kind = "required"
        attribute = "city"
        [[rule]]
        kind = "pattern"
        attribute = "postalCode"
        regex = '^[0-9]{5$('
        "#,
    );
    assert!(
        error.starts_with("rule #2 (pattern on `postalCode`): invalid regex"),
        "{error}"
    );
}

#[test]
fn unknown_kind_names_the_rule() {
    let error = load_error("[[rule]]\nkind = \"patern\"\nattribute = \"city\"\nregex = 'x'\n");
    assert!(
        error.starts_with("rule #1 (patern on `city`): unknown kind `patern`"),
        "{error}"
    );
    assert!(error.contains("`pattern`"), "lists the kinds: {error}");
}

#[test]
fn unknown_option_names_the_rule_and_the_option() {
    let error = load_error("[[rule]]\nkind = \"pattern\"\nattribute = \"city\"\nregx = 'x'\nregex = 'y'\n");
    assert!(error.starts_with("rule #1 (pattern on `city`): "), "{error}");
    assert!(error.contains("unknown field `regx`"), "{error}");
    assert!(!error.contains('\n'), "one line: {error:?}");
}

#[test]
fn bad_invite_hashes_name_the_rule_and_the_entry() {
    let not_hex = format!(
        "[[rule]]\nkind = \"invite_code\"\nattribute = \"inviteCode\"\nsha256 = [\"{OPEN_SESAME}\", \"{}\"]\n",
        "z".repeat(64)
    );
    let error = load_error(&not_hex);
    assert!(
        error.starts_with("rule #1 (invite_code on `inviteCode`): `sha256` entry #2"),
        "{error}"
    );
    let too_short = "[[rule]]\nkind = \"invite_code\"\nattribute = \"inviteCode\"\nsha256 = [\"abcd\"]\n";
    assert!(load_error(too_short).contains("`sha256` entry #1 is not a SHA-256 hash"));
    let none = "[[rule]]\nkind = \"invite_code\"\nattribute = \"inviteCode\"\nsha256 = []\n";
    assert!(load_error(none).contains("at least one hash"));
}

#[test]
fn missing_kind_is_an_error() {
    let error = load_error("[[rule]]\nattribute = \"city\"\n");
    assert!(
        error.starts_with("rule #1 (no kind, on `city`): every rule needs `kind"),
        "{error}"
    );
    assert!(load_error("[[rule]]\nkind = 3\n").starts_with("rule #1 (no kind): "));
}

#[test]
fn file_structure_errors() {
    assert!(load_error("[[rules]]\nkind = \"required\"\n").contains("unknown top-level key `rules`"));
    assert!(load_error("[rule]\nkind = \"required\"\n").contains("write each rule under `[[rule]]`"));
    assert!(load_error("rule = [1]\n").starts_with("rule #1 (not a table)"));
    assert!(
        load_error("[messages]\nvalidation_eror = \"x\"\n").starts_with("[messages]: unknown field `validation_eror`")
    );
    assert!(load_error("[messages]\nvalidation_error = \" \"\n").contains("`validation_error` must not be empty"));
    assert!(load_error("[[rule]\nkind = \"required\"\n").starts_with("the rules are not valid TOML: "));
}

#[test]
fn option_problems_are_reported_per_rule() {
    let cases = [
        (
            "kind = \"length\"\nattribute = \"city\"",
            "rule #1 (length on `city`): give `min`, `max` or both",
        ),
        (
            "kind = \"length\"\nattribute = \"city\"\nmin = 5\nmax = 2",
            "`min` (5) is greater than `max` (2)",
        ),
        (
            "kind = \"length\"\nattribute = \"city\"\nmin = -1",
            "rule #1 (length on `city`): invalid value",
        ),
        (
            "kind = \"range\"\nattribute = \"year\"",
            "rule #1 (range on `year`): give `min`, `max` or both",
        ),
        (
            "kind = \"range\"\nattribute = \"year\"\nmin = \"1900\"",
            "invalid type: string",
        ),
        (
            "kind = \"block\"\nattribute = \"a\"\nequals = [\"x\"]\nmatches = \"y\"\nmessage = \"m\"",
            "exactly one condition",
        ),
        (
            "kind = \"block\"\nattribute = \"a\"\nmessage = \"m\"",
            "exactly one condition",
        ),
        (
            "kind = \"block\"\nattribute = \"a\"\nequals = [\"x\"]",
            "missing field `message`",
        ),
        (
            "kind = \"block\"\nattribute = \"a\"\nequals = []\nmessage = \"m\"",
            "`equals` must list at least one value",
        ),
        (
            "kind = \"block\"\nattribute = \"a\"\ncontains = [1.5]\nmessage = \"m\"",
            "a string, integer or boolean",
        ),
        (
            "kind = \"block\"\nattribute = \"a\"\nmatches = \"x\"\nmessage = \"m\"\ntitle = \"\"",
            "`title` must not be empty",
        ),
        (
            "kind = \"email_domain\"",
            "rule #1 (email_domain): give `allowed`, `blocked` or both",
        ),
        (
            "kind = \"email_domain\"\nallowed = [\"@contoso.com\"]",
            "`allowed`: write `contoso.com` without the `@`",
        ),
        (
            "kind = \"email_domain\"\nblocked = [\"conto so.com\"]",
            "`blocked`: `conto so.com` is not a domain pattern",
        ),
        (
            "kind = \"email_domain\"\nblocked = [\"*\"]",
            "`*` is not a domain pattern",
        ),
        (
            "kind = \"email_domain\"\nblocked = [\"a.*.com\"]",
            "not a domain pattern",
        ),
        (
            "kind = \"email_domain\"\nblocked = [\"contoso..com\"]",
            "not a domain pattern",
        ),
        (
            "kind = \"email_domain\"\nblocked = [\"x.com\"]\nattribute = \"email\"",
            "unknown field `attribute`",
        ),
        (
            "kind = \"normalize\"\nattribute = \"city\"\nsteps = []",
            "`steps` must list at least one step",
        ),
        (
            "kind = \"normalize\"\nattribute = \"city\"\nsteps = [\"trim\", \"capitalize\"]",
            "unknown variant `capitalize`",
        ),
        (
            "kind = \"required\"\nattribute = \"postal code\"",
            "rule #1 (required on `postal code`): `attribute` must be",
        ),
        ("kind = \"required\"", "missing field `attribute`"),
        (
            "kind = \"required\"\nattribute = \"city\"\nmessage = \"  \"",
            "`message` must not be empty",
        ),
        (
            "kind = \"pattern\"\nattribute = \"city\"\nregex = \"\"",
            "`regex` must not be empty",
        ),
        ("kind = \"pattern\"\nattribute = \"city\"", "missing field `regex`"),
        (
            "kind = \"allowed_values\"\nattribute = \"city\"\nvalues = []",
            "`values` must list at least one value",
        ),
        (
            "kind = \"allowed_values\"\nattribute = \"city\"\nvalues = [\" \"]",
            "must not contain an empty value",
        ),
        (
            "kind = \"invite_code\"\nattribute = \"code\"\nsha256 = [\"x\"]\ncase_sensitive = true",
            "unknown field `case_sensitive`",
        ),
    ];
    for (rule, expected) in cases {
        let error = load_error(&format!("[[rule]]\n{rule}\n"));
        assert!(
            error.contains(expected),
            "for {rule:?}: expected {expected:?} in {error:?}"
        );
    }
}

#[test]
fn load_names_the_path_of_a_missing_file() {
    let path = std::env::temp_dir().join("signup-bridge-no-such-rules-file.toml");
    let error = RuleSet::load(&path).expect_err("the file does not exist");
    assert!(matches!(&error, RulesError::Read { error, .. } if error.kind() == std::io::ErrorKind::NotFound));
    assert!(
        error.to_string().contains("signup-bridge-no-such-rules-file.toml"),
        "{error}"
    );
}

#[test]
fn load_names_the_path_and_the_rule_of_a_bad_file() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(
        &mut file,
        b"[[rule]]\nkind = \"pattern\"\nattribute = \"postalCode\"\nregex = '('\n",
    )
    .expect("write");
    let error = RuleSet::load(file.path()).expect_err("bad regex");
    let message = error.to_string();
    assert!(message.contains(&file.path().display().to_string()), "{message}");
    assert!(
        message.contains("rule #1 (pattern on `postalCode`): invalid regex"),
        "{message}"
    );
}

#[test]
fn load_reads_a_good_file() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut file, b"[[rule]]\nkind = \"required\"\nattribute = \"city\"\n").expect("write");
    let rules = RuleSet::load(file.path()).expect("loads");
    assert_eq!(rules.len(), 1);
    assert_eq!(
        errors(rules.evaluate(&request(&[]))),
        error_map(&[("city", "This information is required.")])
    );
}

#[test]
fn debug_output_does_not_show_hashes_or_patterns() {
    let rules = rules(&format!(
        "[[rule]]\nkind = \"invite_code\"\nattribute = \"code\"\nsha256 = [\"{OPEN_SESAME}\"]\n\
         [[rule]]\nkind = \"pattern\"\nattribute = \"city\"\nregex = 'secret-ish'\n"
    ));
    let debug = format!("{rules:?}");
    assert!(
        !debug.contains(&OPEN_SESAME[..16]) && !debug.contains("secret-ish"),
        "{debug}"
    );
    assert!(debug.contains("validate: 2"), "{debug}");
}

// ------------------------------------------------------------------ attribute names

#[test]
fn rules_match_custom_attributes_by_suffix_and_answer_with_the_full_name() {
    let rules = rules("[[rule]]\nkind = \"range\"\nattribute = \"GRADUATIONyear\"\nmin = 2000\n");
    let full = format!("{APP}graduationYear");
    let action = rules.evaluate(&request(&[(&full, AttributeValue::Int64(1999))]));
    assert_eq!(
        errors(action),
        error_map(&[(&full, "Please enter a whole number of at least 2000.")])
    );
    // Exact built-in-style names match too, case-insensitively.
    let action = rules.evaluate(&request(&[("graduationyear", AttributeValue::Int64(1999))]));
    assert!(errors(action).contains_key("graduationyear"));
}

#[test]
fn only_a_real_extension_prefix_is_stripped() {
    let rules = rules("[[rule]]\nkind = \"pattern\"\nattribute = \"year\"\nregex = '^[0-9]+$'\n");
    for name in [
        "extension_9ce7f42908d14395aed7c48e9b6b957_year",   // 31 hex digits
        "extension_9ce7f42908d14395aed7c48e9b6b957g_year",  // not hex
        "extension_9ce7f42908d14395aed7c48e9b6b957f__year", // suffix is `_year`
        "myextension_9ce7f42908d14395aed7c48e9b6b957f_year",
        "birthyear",
    ] {
        assert_eq!(
            rules.evaluate(&request(&[(name, text("abc"))])),
            SubmitAction::ContinueWithDefaultBehavior,
            "{name} should not match `year`"
        );
    }
    let upper = "EXTENSION_9CE7F42908D14395AED7C48E9B6B957F_Year";
    assert!(errors(rules.evaluate(&request(&[(upper, text("abc"))]))).contains_key(upper));
}

#[test]
fn a_rule_naming_the_full_extension_name_matches_it() {
    let full = format!("{APP}graduationYear");
    let rules = rules(&format!(
        "[[rule]]\nkind = \"range\"\nattribute = \"{full}\"\nmax = 2000\n"
    ));
    assert!(errors(rules.evaluate(&request(&[(&full, AttributeValue::Int64(2010))]))).contains_key(&full));
}

// ------------------------------------------------------------------ required

#[test]
fn required_reports_missing_and_blank_values() {
    let rules = rules("[[rule]]\nkind = \"required\"\nattribute = \"inviteCode\"\nmessage = \"Enter your code.\"\n");
    // Missing: the only name there is is the rule's.
    assert_eq!(
        errors(rules.evaluate(&request(&[]))),
        error_map(&[("inviteCode", "Enter your code.")])
    );
    let full = format!("{APP}inviteCode");
    assert_eq!(
        errors(rules.evaluate(&request(&[(&full, text(" \t "))]))),
        error_map(&[(&full, "Enter your code.")])
    );
    assert_eq!(
        rules.evaluate(&request(&[(&full, text("X"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(
        rules.evaluate(&request(&[(&full, AttributeValue::Int64(0))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(
        rules.evaluate(&request(&[(&full, AttributeValue::Boolean(false))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
}

// ------------------------------------------------------------------ pattern

#[test]
fn pattern_is_used_as_written() {
    let unanchored = rules("[[rule]]\nkind = \"pattern\"\nattribute = \"postalCode\"\nregex = '[0-9]{5}'\n");
    let anchored = rules("[[rule]]\nkind = \"pattern\"\nattribute = \"postalCode\"\nregex = '^[0-9]{5}$'\n");
    let long = request(&[("postalCode", text("280131"))]);
    assert_eq!(unanchored.evaluate(&long), SubmitAction::ContinueWithDefaultBehavior);
    assert_eq!(
        errors(anchored.evaluate(&long)),
        error_map(&[("postalCode", "Please enter a value in the expected format.")])
    );
    assert_eq!(
        anchored.evaluate(&request(&[("postalCode", text("28013"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
}

#[test]
fn pattern_each_item_checks_every_item() {
    let rules =
        rules("[[rule]]\nkind = \"pattern\"\nattribute = \"groups\"\nregex = '^[A-Z][a-z]+$'\neach_item = true\n");
    assert_eq!(
        rules.evaluate(&request(&[("groups", text("Alumni, Faculty"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert!(errors(rules.evaluate(&request(&[("groups", text("Alumni,faculty"))]))).contains_key("groups"));
    assert!(errors(rules.evaluate(&request(&[("groups", text(","))]))).contains_key("groups"));
    // Without each_item the regex sees the whole string, comma included.
    let whole = rules_text_pattern("^[A-Z][a-z]+$");
    assert!(errors(whole.evaluate(&request(&[("groups", text("Alumni,Faculty"))]))).contains_key("groups"));
}

fn rules_text_pattern(regex: &str) -> RuleSet {
    rules(&format!(
        "[[rule]]\nkind = \"pattern\"\nattribute = \"groups\"\nregex = '{regex}'\n"
    ))
}

// ------------------------------------------------------------------ length

#[test]
fn length_counts_characters_not_bytes() {
    let rules = rules("[[rule]]\nkind = \"length\"\nattribute = \"givenName\"\nmin = 2\nmax = 3\n");
    assert_eq!(
        rules.evaluate(&request(&[("givenName", text("Zoë"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(
        errors(rules.evaluate(&request(&[("givenName", text("Zoëy"))]))),
        error_map(&[("givenName", "Please enter between 2 and 3 characters.")])
    );
    assert!(errors(rules.evaluate(&request(&[("givenName", text("Z"))]))).contains_key("givenName"));
}

#[test]
fn length_of_an_integer_is_its_digits_and_default_messages_follow_the_bounds() {
    let exact = rules("[[rule]]\nkind = \"length\"\nattribute = \"graduationYear\"\nmin = 4\nmax = 4\n");
    let full = format!("{APP}graduationYear");
    assert_eq!(
        exact.evaluate(&request(&[(&full, AttributeValue::Int64(2010))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(
        errors(exact.evaluate(&request(&[(&full, AttributeValue::Int64(210))]))),
        error_map(&[(&full, "Please enter exactly 4 characters.")])
    );
    let at_most = rules("[[rule]]\nkind = \"length\"\nattribute = \"city\"\nmax = 2\n");
    assert_eq!(
        errors(at_most.evaluate(&request(&[("city", text("abc"))]))),
        error_map(&[("city", "Please enter at most 2 characters.")])
    );
    let at_least = rules("[[rule]]\nkind = \"length\"\nattribute = \"city\"\nmin = 4\n");
    assert_eq!(
        errors(at_least.evaluate(&request(&[("city", text("abc"))]))),
        error_map(&[("city", "Please enter at least 4 characters.")])
    );
}

// ------------------------------------------------------------------ range

#[test]
fn range_accepts_integers_and_integer_text_only() {
    let rules =
        rules("[[rule]]\nkind = \"range\"\nattribute = \"year\"\nmin = 1940\nmax = 2035\nmessage = \"Year?\"\n");
    let verdict = |value: AttributeValue| rules.evaluate(&request(&[("year", value)]));
    assert_eq!(
        verdict(AttributeValue::Int64(1940)),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(
        verdict(AttributeValue::Int64(2035)),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(verdict(text(" 2010 ")), SubmitAction::ContinueWithDefaultBehavior);
    for failing in [
        AttributeValue::Int64(1939),
        AttributeValue::Int64(2036),
        text("2010.5"),
        text("twenty ten"),
        text("99999999999999999999"),
        AttributeValue::Boolean(true),
    ] {
        assert_eq!(
            errors(verdict(failing.clone())),
            error_map(&[("year", "Year?")]),
            "{failing:?}"
        );
    }
}

#[test]
fn range_default_messages_follow_the_bounds() {
    let both = rules("[[rule]]\nkind = \"range\"\nattribute = \"n\"\nmin = -5\nmax = 5\n");
    assert_eq!(
        errors(both.evaluate(&request(&[("n", AttributeValue::Int64(6))]))),
        error_map(&[("n", "Please enter a whole number from -5 to 5.")])
    );
    let at_most = rules("[[rule]]\nkind = \"range\"\nattribute = \"n\"\nmax = 5\n");
    assert_eq!(
        errors(at_most.evaluate(&request(&[("n", AttributeValue::Int64(6))]))),
        error_map(&[("n", "Please enter a whole number of at most 5.")])
    );
}

// ------------------------------------------------------------------ allowed_values

#[test]
fn allowed_values_ignore_case_unless_asked() {
    let loose = rules("[[rule]]\nkind = \"allowed_values\"\nattribute = \"country\"\nvalues = [\"ES\", \"PT\"]\n");
    assert_eq!(
        loose.evaluate(&request(&[("country", text("es"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(
        errors(loose.evaluate(&request(&[("country", text("FR"))]))),
        error_map(&[("country", "Please choose one of the allowed values.")])
    );
    let strict = rules(
        "[[rule]]\nkind = \"allowed_values\"\nattribute = \"country\"\nvalues = [\"ES\"]\ncase_sensitive = true\n",
    );
    assert_eq!(
        strict.evaluate(&request(&[("country", text("ES"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert!(errors(strict.evaluate(&request(&[("country", text("es"))]))).contains_key("country"));
}

#[test]
fn allowed_values_require_every_item_of_a_multi_value() {
    let rules = rules(
        "[[rule]]\nkind = \"allowed_values\"\nattribute = \"groups\"\nvalues = [\"Alumni\", \"Faculty\", \"Washington, D.C.\"]\n",
    );
    let full = format!("{APP}universityGroups");
    let rules_on = |value: &str| rules.evaluate(&request(&[("groups", text(value))]));
    assert_eq!(rules_on("Alumni,Faculty"), SubmitAction::ContinueWithDefaultBehavior);
    assert_eq!(rules_on("faculty , alumni"), SubmitAction::ContinueWithDefaultBehavior);
    assert!(errors(rules_on("Alumni,Hacker")).contains_key("groups"));
    // An allowed value may itself contain a comma.
    assert_eq!(rules_on("Washington, D.C."), SubmitAction::ContinueWithDefaultBehavior);
    assert!(errors(rules_on(",,")).contains_key("groups"));
    // Only `groups` is named: other attributes are not checked.
    assert_eq!(
        rules.evaluate(&request(&[(&full, text("Hacker"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
}

#[test]
fn allowed_values_compare_booleans_and_integers_by_text() {
    let accepted = rules("[[rule]]\nkind = \"allowed_values\"\nattribute = \"acceptTerms\"\nvalues = [true]\n");
    assert_eq!(
        accepted.evaluate(&request(&[("acceptTerms", AttributeValue::Boolean(true))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert!(
        errors(accepted.evaluate(&request(&[("acceptTerms", AttributeValue::Boolean(false))])))
            .contains_key("acceptTerms")
    );
    let years = rules("[[rule]]\nkind = \"allowed_values\"\nattribute = \"year\"\nvalues = [2024, \"2025\"]\n");
    assert_eq!(
        years.evaluate(&request(&[("year", AttributeValue::Int64(2025))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(
        years.evaluate(&request(&[("year", AttributeValue::Int64(2024))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert!(errors(years.evaluate(&request(&[("year", AttributeValue::Int64(2023))]))).contains_key("year"));
}

// ------------------------------------------------------------------ email_domain

#[test]
fn email_domain_exact_and_subdomain_entries() {
    let rules = rules("[[rule]]\nkind = \"email_domain\"\nallowed = [\"contoso.com\", \"*.fabrikam.com.\"]\n");
    let blocked = |email: &str| is_blocked(&rules, &with_email_identity(request(&[]), email));
    assert!(!blocked("ana@contoso.com"));
    assert!(!blocked("Ana@CONTOSO.COM."), "case and trailing dot are ignored");
    assert!(blocked("ana@eu.contoso.com"), "`contoso.com` does not take subdomains");
    assert!(!blocked("ana@eu.fabrikam.com"));
    assert!(!blocked("ana@a.b.fabrikam.com"));
    assert!(blocked("ana@fabrikam.com"), "`*.fabrikam.com` is not the apex");
    assert!(blocked("ana@notfabrikam.com"));
    assert!(blocked("ana@fabrikam.com.evil.example"));
    assert!(
        blocked("ana@contoso.com@evil.example"),
        "the domain is after the last @"
    );
    assert!(blocked("not-an-email"));
}

#[test]
fn email_domain_blocked_wins_over_allowed() {
    let rules = rules(
        "[[rule]]\nkind = \"email_domain\"\nallowed = [\"*.contoso.com\"]\nblocked = [\"guests.contoso.com\"]\n\
         title = \"Not here\"\nmessage = \"Use your staff address.\"\n",
    );
    let verdict = |email: &str| rules.evaluate(&with_email_identity(request(&[]), email));
    assert_eq!(verdict("ana@eu.contoso.com"), SubmitAction::ContinueWithDefaultBehavior);
    assert_eq!(
        verdict("ana@guests.contoso.com"),
        SubmitAction::ShowBlockPage {
            title: Some("Not here".to_string()),
            message: "Use your staff address.".to_string()
        }
    );
}

#[test]
fn email_domain_without_an_email() {
    let allow_list = rules("[[rule]]\nkind = \"email_domain\"\nallowed = [\"contoso.com\"]\n");
    assert_eq!(
        allow_list.evaluate(&request(&[])),
        SubmitAction::ShowBlockPage {
            title: None,
            message:
                "Sign-up is not available for this email address. Please start again with a different email address."
                    .to_string()
        }
    );
    let block_list = rules("[[rule]]\nkind = \"email_domain\"\nblocked = [\"mailinator.com\"]\n");
    assert_eq!(
        block_list.evaluate(&request(&[])),
        SubmitAction::ContinueWithDefaultBehavior
    );
}

#[test]
fn email_domain_takes_the_identity_before_the_email_attribute() {
    let rules = rules("[[rule]]\nkind = \"email_domain\"\nblocked = [\"mailinator.com\"]\n");
    let attribute_only = request(&[("email", text(" Ana@Mailinator.COM "))]);
    assert!(is_blocked(&rules, &attribute_only));
    assert!(!is_blocked(
        &rules,
        &with_email_identity(attribute_only, "ana@contoso.com")
    ));
    assert!(is_blocked(
        &rules,
        &with_email_identity(request(&[("email", text("ana@contoso.com"))]), "a@mailinator.com")
    ));
}

// ------------------------------------------------------------------ invite_code

fn invite_rules() -> RuleSet {
    // The second hash is given in upper case: either case is accepted.
    let welcome = hex::encode(Sha256::digest(b"WELCOME-2025")).to_uppercase();
    rules(&format!(
        "[[rule]]\nkind = \"invite_code\"\nattribute = \"inviteCode\"\nsha256 = [\"{OPEN_SESAME}\", \"{welcome}\"]\n"
    ))
}

#[test]
fn invite_code_accepts_every_listed_code_trimmed() {
    let rules = invite_rules();
    let full = format!("{APP}inviteCode");
    for code in ["OPEN-SESAME", "  WELCOME-2025\t"] {
        assert_eq!(
            rules.evaluate(&request(&[(&full, text(code))])),
            SubmitAction::ContinueWithDefaultBehavior,
            "{code}"
        );
    }
}

#[test]
fn invite_code_rejects_other_codes_and_skips_a_blank_one() {
    let rules = invite_rules();
    for code in ["open-sesame", "OPEN SESAME", "WELCOME-2026"] {
        assert_eq!(
            errors(rules.evaluate(&request(&[("inviteCode", text(code))]))),
            error_map(&[("inviteCode", "This invite code is not valid.")]),
            "{code}"
        );
    }
    assert_eq!(
        rules.evaluate(&request(&[("inviteCode", text("  "))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(rules.evaluate(&request(&[])), SubmitAction::ContinueWithDefaultBehavior);
}

// ------------------------------------------------------------------ normalize

#[test]
fn normalize_steps() {
    let cases = [
        (Step::Trim, "  a  b  ", "a  b"),
        (Step::CollapseSpaces, " a \t\n b ", " a b "),
        (Step::Lowercase, "ÁNA García", "ána garcía"),
        (Step::Uppercase, "straße", "STRASSE"),
        (
            Step::TitleCase,
            "ana garcía-lópez o'neill McDonald 3rd (jr)",
            "Ana García-López O'neill McDonald 3rd (Jr)",
        ),
        (Step::DigitsOnly, "+34 600-12-34-56", "34600123456"),
        (Step::RemoveSpaces, " 28 0\t13 ", "28013"),
    ];
    for (step, input, expected) in cases {
        assert_eq!(normalize::apply(&[step], false, input), expected, "{step:?}");
    }
    assert_eq!(
        normalize::apply(&[Step::Lowercase, Step::TitleCase], false, "ANA GARCIA"),
        "Ana Garcia"
    );
}

#[test]
fn normalize_each_item_rejoins_with_commas() {
    let rules = rules(
        "[[rule]]\nkind = \"normalize\"\nattribute = \"SpecialDiet\"\nsteps = [\"trim\", \"title_case\"]\neach_item = true\n",
    );
    let full = format!("{APP}SpecialDiet");
    assert_eq!(
        modified(rules.evaluate(&request(&[(&full, text(" vegan , gluten free,, "))]))),
        BTreeMap::from([(full.clone(), json!("Vegan,Gluten Free"))])
    );
    assert_eq!(normalize::apply(&[Step::Uppercase], false, "a, b"), "A, B");
}

#[test]
fn normalize_keeps_types_and_sends_back_only_changed_attributes() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "normalize"
        attribute = "graduationYear"
        steps = ["digits_only", "remove_spaces"]
        [[rule]]
        kind = "normalize"
        attribute = "onMailingList"
        steps = ["uppercase"]
        [[rule]]
        kind = "normalize"
        attribute = "postalCode"
        steps = ["trim"]
        [[rule]]
        kind = "normalize"
        attribute = "city"
        steps = ["trim"]
        "#,
    );
    let year = format!("{APP}graduationYear");
    let list = format!("{APP}onMailingList");
    let values = modified(rules.evaluate(&request(&[
        (&year, AttributeValue::Int64(2010)),
        (&list, AttributeValue::Boolean(false)),
        ("postalCode", text(" 28013 ")),
        ("city", text("Madrid")),
    ])));
    // The string holding digits stays a string; the int and the bool are not touched or echoed.
    assert_eq!(values, BTreeMap::from([("postalCode".to_string(), json!("28013"))]));
    // A string-declared year stays a string in the response.
    let values = modified(rules.evaluate(&request(&[(&year, text("20 10"))])));
    assert_eq!(values.get(&year), Some(&json!("2010")));
}

#[test]
fn normalize_rules_chain_in_file_order() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "normalize"
        attribute = "displayName"
        steps = ["lowercase"]
        [[rule]]
        kind = "normalize"
        attribute = "DISPLAYNAME"
        steps = ["collapse_spaces", "trim", "title_case"]
        "#,
    );
    let values = modified(rules.evaluate(&request(&[("displayName", text("  ANA   GARCIA "))])));
    assert_eq!(
        values,
        BTreeMap::from([("displayName".to_string(), json!("Ana Garcia"))])
    );
}

#[test]
fn normalize_that_changes_nothing_continues() {
    let rules = rules("[[rule]]\nkind = \"normalize\"\nattribute = \"city\"\nsteps = [\"trim\", \"title_case\"]\n");
    assert_eq!(
        rules.evaluate(&request(&[("city", text("Madrid"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert!(matches!(
        rules.evaluate(&request(&[("city", text("madrid"))])),
        SubmitAction::ModifyAttributeValues(_)
    ));
}

// ------------------------------------------------------------------ block

#[test]
fn block_equals_ignores_case_and_surrounding_spaces() {
    let rules = rules(
        "[[rule]]\nkind = \"block\"\nattribute = \"accountType\"\nequals = [\"Reseller\"]\ntitle = \"Partners\"\nmessage = \"Use the partner portal.\"\n",
    );
    assert_eq!(
        rules.evaluate(&request(&[("accountType", text(" RESELLER "))])),
        SubmitAction::ShowBlockPage {
            title: Some("Partners".to_string()),
            message: "Use the partner portal.".to_string()
        }
    );
    assert_eq!(
        rules.evaluate(&request(&[("accountType", text("Reseller,Customer"))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
}

#[test]
fn block_matches_a_regex() {
    let rules = rules(
        "[[rule]]\nkind = \"block\"\nattribute = \"companyName\"\nmatches = '(?i)\\bcompetitor\\b'\nmessage = \"No.\"\n",
    );
    assert_eq!(
        rules.evaluate(&request(&[("companyName", text("The Competitor Inc"))])),
        SubmitAction::ShowBlockPage {
            title: None,
            message: "No.".to_string()
        }
    );
    assert!(!is_blocked(
        &rules,
        &request(&[("companyName", text("Competitors United"))])
    ));
}

#[test]
fn block_contains_an_item() {
    let rules =
        rules("[[rule]]\nkind = \"block\"\nattribute = \"groups\"\ncontains = [\"Applicant\"]\nmessage = \"No.\"\n");
    let full = format!("{APP}groups");
    assert!(is_blocked(&rules, &request(&[(&full, text("Alumni, applicant"))])));
    assert!(!is_blocked(&rules, &request(&[(&full, text("Alumni,Applicants"))])));
}

#[test]
fn block_skips_blank_and_missing_values() {
    let rules = rules("[[rule]]\nkind = \"block\"\nattribute = \"code\"\nmatches = '^\\s*$'\nmessage = \"No.\"\n");
    assert!(!is_blocked(&rules, &request(&[("code", text("   "))])));
    assert!(!is_blocked(&rules, &request(&[])));
}

#[test]
fn the_first_block_in_file_order_wins() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "block"
        attribute = "city"
        equals = ["Atlantis"]
        message = "first"
        [[rule]]
        kind = "email_domain"
        blocked = ["contoso.com"]
        message = "second"
        [[rule]]
        kind = "block"
        attribute = "city"
        matches = "."
        message = "third"
        "#,
    );
    let message = |request: SubmitRequest| match rules.evaluate(&request) {
        SubmitAction::ShowBlockPage { message, .. } => message,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        message(with_email_identity(
            request(&[("city", text("Atlantis"))]),
            "a@contoso.com"
        )),
        "first"
    );
    assert_eq!(
        message(with_email_identity(
            request(&[("city", text("Madrid"))]),
            "a@contoso.com"
        )),
        "second"
    );
    assert_eq!(message(request(&[("city", text("Madrid"))])), "third");
}

// ------------------------------------------------------------------ evaluation order

#[test]
fn block_wins_over_validation_errors_and_changes() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "required"
        attribute = "givenName"
        [[rule]]
        kind = "normalize"
        attribute = "city"
        steps = ["trim"]
        [[rule]]
        kind = "block"
        attribute = "city"
        equals = ["Atlantis"]
        message = "Blocked."
        "#,
    );
    assert_eq!(
        rules.evaluate(&request(&[("city", text(" Atlantis "))])),
        SubmitAction::ShowBlockPage {
            title: None,
            message: "Blocked.".to_string()
        }
    );
    // Without the block, the validation error wins over the change.
    assert!(errors(rules.evaluate(&request(&[("city", text(" Madrid "))]))).contains_key("givenName"));
    // Without either, the change is sent back.
    assert_eq!(
        modified(rules.evaluate(&request(&[("city", text(" Madrid ")), ("givenName", text("Ana"))]))),
        BTreeMap::from([("city".to_string(), json!("Madrid"))])
    );
}

#[test]
fn every_failing_attribute_is_reported_with_its_first_message() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "pattern"
        attribute = "postalCode"
        regex = '^[0-9]+$'
        message = "Digits only."
        [[rule]]
        kind = "length"
        attribute = "postalCode"
        min = 5
        max = 5
        message = "Five digits."
        [[rule]]
        kind = "pattern"
        attribute = "city"
        regex = '^[^0-9]+$'
        message = "City cannot contain any numbers"
        [[rule]]
        kind = "range"
        attribute = "graduationYear"
        min = 1000
        message = "Graduation year must be at least 4 digits"
        "#,
    );
    let year = format!("{APP}graduationYear");
    let action = rules.evaluate(&request(&[
        ("postalCode", text("28O1")),
        ("city", text("Madrid 2")),
        (&year, AttributeValue::Int64(201)),
    ]));
    assert_eq!(
        errors(action),
        error_map(&[
            ("postalCode", "Digits only."),
            ("city", "City cannot contain any numbers"),
            (&year, "Graduation year must be at least 4 digits"),
        ])
    );
    let action = rules.evaluate(&request(&[("postalCode", text("2801"))]));
    assert_eq!(errors(action), error_map(&[("postalCode", "Five digits.")]));
}

#[test]
fn rules_see_normalized_values() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "normalize"
        attribute = "postalCode"
        steps = ["remove_spaces"]
        [[rule]]
        kind = "pattern"
        attribute = "postalCode"
        regex = '^[0-9]{5}$'
        [[rule]]
        kind = "normalize"
        attribute = "email"
        steps = ["remove_spaces"]
        [[rule]]
        kind = "email_domain"
        blocked = ["mailinator.com"]
        "#,
    );
    assert_eq!(
        modified(rules.evaluate(&request(&[("postalCode", text("28 013"))]))),
        BTreeMap::from([("postalCode".to_string(), json!("28013"))])
    );
    assert!(is_blocked(&rules, &request(&[("email", text("ana@ mailinator.com"))])));
    // A normalisation that empties a value makes it blank, which `required` catches.
    let digits = rules_with_required_digits();
    assert!(errors(digits.evaluate(&request(&[("phone", text("n/a"))]))).contains_key("phone"));
}

fn rules_with_required_digits() -> RuleSet {
    rules(
        "[[rule]]\nkind = \"normalize\"\nattribute = \"phone\"\nsteps = [\"digits_only\"]\n\
         [[rule]]\nkind = \"required\"\nattribute = \"phone\"\n",
    )
}

#[test]
fn blank_optional_values_skip_the_value_checks() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "pattern"
        attribute = "a"
        regex = '^x$'
        [[rule]]
        kind = "length"
        attribute = "a"
        min = 3
        [[rule]]
        kind = "range"
        attribute = "a"
        min = 1
        [[rule]]
        kind = "allowed_values"
        attribute = "a"
        values = ["x"]
        "#,
    );
    assert_eq!(
        rules.evaluate(&request(&[("a", text(""))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(
        rules.evaluate(&request(&[("a", text("  "))])),
        SubmitAction::ContinueWithDefaultBehavior
    );
    assert_eq!(rules.evaluate(&request(&[])), SubmitAction::ContinueWithDefaultBehavior);
    assert!(errors(rules.evaluate(&request(&[("a", text("y"))]))).contains_key("a"));
}

// ------------------------------------------------------------------ samples and the example file

#[test]
fn sample_with_identities_under_rules_written_for_it() {
    let rules = rules(
        r#"
        [[rule]]
        kind = "normalize"
        attribute = "universityGroups"
        steps = ["lowercase"]
        each_item = true
        [[rule]]
        kind = "normalize"
        attribute = "graduationYear"
        steps = ["digits_only"]
        [[rule]]
        kind = "email_domain"
        allowed = ["*.onmicrosoft.com"]
        [[rule]]
        kind = "length"
        attribute = "graduationYear"
        min = 4
        [[rule]]
        kind = "allowed_values"
        attribute = "onMailingList"
        values = [true, false]
        "#,
    );
    let sample = sample(SAMPLE_WITH_IDENTITIES);
    let action = rules.evaluate(&sample);
    assert_eq!(
        modified(action.clone()),
        BTreeMap::from([(format!("{APP}universityGroups"), json!("alumni,faculty"))])
    );
    assert_eq!(
        action.to_response_body()["data"]["actions"][0]["attributes"],
        json!({ format!("{APP}universityGroups"): "alumni,faculty" })
    );
}

#[test]
fn example_file_loads_with_every_kind() {
    let rules = RuleSet::load(std::path::Path::new(EXAMPLE_FILE)).unwrap_or_else(|error| panic!("{error}"));
    let source = std::fs::read_to_string(EXAMPLE_FILE).expect("example file");
    let document: toml::Table = toml::from_str(&source).expect("TOML");
    let listed = document["rule"].as_array().expect("rules");
    assert_eq!(rules.len(), listed.len());
    let kinds: std::collections::BTreeSet<&str> = listed.iter().filter_map(|rule| rule["kind"].as_str()).collect();
    let every_kind = [
        "allowed_values",
        "block",
        "email_domain",
        "invite_code",
        "length",
        "normalize",
        "pattern",
        "range",
        "required",
    ];
    assert_eq!(kinds, every_kind.into_iter().collect());
}

#[test]
fn example_file_lets_the_sample_with_identities_continue() {
    let rules = RuleSet::load(std::path::Path::new(EXAMPLE_FILE)).expect("example loads");
    assert_eq!(
        rules.evaluate(&sample(SAMPLE_WITH_IDENTITIES)),
        SubmitAction::ContinueWithDefaultBehavior
    );
}

#[test]
fn example_file_rejects_the_postal_code_of_the_sample_without_identities() {
    let rules = RuleSet::load(std::path::Path::new(EXAMPLE_FILE)).expect("example loads");
    let sample = sample(SAMPLE_NO_IDENTITIES);
    assert_eq!(
        rules.evaluate(&sample),
        SubmitAction::ShowValidationError {
            message: DEFAULT_VALIDATION_MESSAGE.to_string(),
            attribute_errors: error_map(&[
                ("postalCode", "Please enter a 5-digit postal code."),
                // This shop's form does not collect givenName, which the example requires.
                ("givenName", "Please enter your first name."),
            ]),
        }
    );
    // Once the postal code and name are fixed, the normalised values go back to Entra.
    let mut fixed = sample.clone();
    fixed.attributes.insert("postalCode".to_string(), text("28013"));
    fixed.attributes.insert("givenName".to_string(), text("Ana"));
    assert_eq!(
        modified(rules.evaluate(&fixed)),
        BTreeMap::from([
            ("email".to_string(), json!("ana.garcia@example.com")),
            ("displayName".to_string(), json!("Ana Garcia")),
            ("country".to_string(), json!("ES")),
        ])
    );
}

#[test]
fn example_file_invite_codes_and_blocks() {
    let rules = RuleSet::load(std::path::Path::new(EXAMPLE_FILE)).expect("example loads");
    let base = |extra: (&str, AttributeValue)| request(&[("givenName", text("Ana")), extra]);
    let code = format!("{APP}inviteCode");
    assert_eq!(
        rules.evaluate(&base((&code, text("EXAMPLE-INVITE-7Q4X")))),
        SubmitAction::ContinueWithDefaultBehavior
    );
    // Accepted however typed, because a normalize rule upper-cases it first (and sends that back).
    assert_eq!(
        modified(rules.evaluate(&base((&code, text(" example-invite-k2m9 "))))),
        BTreeMap::from([(code.clone(), json!("EXAMPLE-INVITE-K2M9"))])
    );
    assert_eq!(
        errors(rules.evaluate(&base((&code, text("EXAMPLE-INVITE-0000"))))),
        error_map(&[(&code, "This invite code is not valid.")])
    );
    let groups = format!("{APP}universityGroups");
    assert!(is_blocked(&rules, &base((&groups, text("Alumni,Applicant")))));
    assert!(is_blocked(
        &rules,
        &with_email_identity(base(("city", text("Madrid"))), "x@eu.mailinator.com")
    ));
}
