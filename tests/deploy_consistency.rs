//! The deployment (infra/*.bicep, scripts/package, .funcignore) and the code cannot drift
//! apart silently:
//! - every setting the binary reads is an app setting in the Bicep, or is listed in
//!   [`NOT_IN_BICEP`] with the reason; and every Bicep app setting is read by the binary or the host;
//! - every function folder is packaged (not excluded by .funcignore) and its `%SETTING%`
//!   placeholders are app settings (routes: tests/function_app_layout.rs);
//! - the role assignments the code needs are in the Bicep, by role definition id.
//!
//! Pure file reading: no Bicep compiler exists on the build machines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// Settings the binary reads that the Bicep deliberately does not set, and why.
const NOT_IN_BICEP: &[(&str, &str)] = &[
    (
        "FUNCTIONS_CUSTOMHANDLER_PORT",
        "set by the Functions host when it starts the handler",
    ),
    (
        "WEBSITE_INSTANCE_ID",
        "set by the App Service platform (tells the binary it runs in Azure)",
    ),
    ("IDENTITY_ENDPOINT", "set by the platform when a managed identity is on"),
    (
        "AZURE_CLIENT_ID",
        "user-assigned identity only; the Bicep uses the system-assigned one",
    ),
    (
        "MANAGED_IDENTITY_CLIENT_ID",
        "user-assigned identity only; the Bicep uses the system-assigned one",
    ),
    (
        "AzureWebJobsStorage__clientId",
        "user-assigned identity only; the Bicep uses the system-assigned one",
    ),
    (
        "AzureWebJobsStorage__blobServiceUri",
        "alternative to __accountName (custom endpoints); the Bicep uses __accountName",
    ),
    (
        "AzureWebJobsStorage__queueServiceUri",
        "alternative to __accountName (custom endpoints); the Bicep uses __accountName",
    ),
    (
        "GRAPH_CERTIFICATE_PATH",
        "local development: a certificate file instead of Key Vault",
    ),
    (
        "EXTENSION_SKIP_TOKEN_VALIDATION",
        "local development only; the binary refuses it in Azure",
    ),
    (
        "SIGNUP_STATE_DIR",
        "the embedded store, used only when no storage account is configured",
    ),
    (
        "SIGNUP_STORAGE_NAME_PREFIX",
        "tests and shared accounts only; must be unset under the Functions host",
    ),
    (
        "MAILCHIMP_BASE_URL",
        "the default follows the API key's data center; set only for tests",
    ),
    (
        "RUN_POLL_INTERVAL_SECONDS",
        "`signup-bridge run` only (the timer's schedule under Functions)",
    ),
    (
        "RUN_PROVISION_CONCURRENCY",
        "`signup-bridge run` only (host.json `batchSize` under Functions)",
    ),
    (
        "SETUP_FUNCTION_URL",
        "`signup-bridge setup`, run by an operator, not by the app",
    ),
    (
        "SETUP_USER_FLOW",
        "`signup-bridge setup`, run by an operator, not by the app",
    ),
    (
        "SETUP_RESOURCE_ID",
        "`signup-bridge setup`, run by an operator, not by the app",
    ),
    (
        "SETUP_EXTENSION_NAME",
        "`signup-bridge setup`, run by an operator, not by the app",
    ),
    (
        "SETUP_EXTENSION_ID",
        "`signup-bridge setup`, run by an operator, not by the app",
    ),
    (
        "SETUP_TIMEOUT_MS",
        "`signup-bridge setup`, run by an operator, not by the app",
    ),
    (
        "SETUP_MAXIMUM_RETRIES",
        "`signup-bridge setup`, run by an operator, not by the app",
    ),
];

/// App settings in the Bicep that the Functions host or platform reads, not the binary.
const READ_BY_THE_HOST: &[(&str, &str)] = &[
    (
        "FUNCTIONS_WORKER_RUNTIME",
        "custom handler runtime (Linux Consumption; Flex sets it in functionAppConfig)",
    ),
    (
        "FUNCTIONS_EXTENSION_VERSION",
        "Functions runtime ~4 (Linux Consumption)",
    ),
    (
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "the Consumption plan's content share",
    ),
    ("WEBSITE_CONTENTSHARE", "the Consumption plan's content share"),
    (
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "the host's telemetry (stdout/stderr lines become traces)",
    ),
    (
        "POLL_SCHEDULE",
        "the timer binding's %POLL_SCHEDULE% in PollAuditLogs/function.json",
    ),
];

/// Settings libraries inside the binary read by themselves (no name in our code).
const READ_BY_LIBRARIES: &[(&str, &str)] = &[("RUST_LOG", "env_logger::Env::default() in src/logging.rs")];

/// Built-in role definition ids the code needs on its identity.
const REQUIRED_ROLES: &[(&str, &str)] = &[
    (
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "Storage Blob Data Owner: host storage, checkpoint and ledger blobs",
    ),
    (
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "Storage Queue Data Contributor: signup-provision queue",
    ),
    (
        "4633458b-17de-408a-b874-0445c86b69e6",
        "Key Vault Secrets User: Graph certificate, Key Vault references",
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The code outside `#[cfg(test)]` modules (by convention at the end of each file).
fn non_test_code(path: &Path) -> String {
    let text = read(path);
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Every setting name the binary reads: setting-shaped string literals in src/settings/*.rs
/// (the constants and the `reader.raw/required/parsed/flag/list/endpoint_urls("NAME")` calls
/// alike), `std::env::var("NAME")` anywhere in src/, and clap `env = "NAME"` arguments.
fn settings_the_binary_reads() -> BTreeMap<String, String> {
    let literal = Regex::new(r#""([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|AzureWebJobsStorage(?:__[A-Za-z]+)?)""#).unwrap();
    let env_call = Regex::new(r#"env::var(?:_os)?\(\s*"([^"]+)"\s*\)"#).unwrap();
    let clap_env = Regex::new(r#"\benv\s*=\s*"([^"]+)""#).unwrap();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut found = BTreeMap::new();
    for file in files {
        let code = non_test_code(&file);
        let relative = file.strip_prefix(root()).unwrap().display().to_string();
        let in_settings = relative.starts_with("src/settings/");
        let mut add = |name: &str| {
            found.entry(name.to_string()).or_insert_with(|| relative.clone());
        };
        if in_settings {
            literal.captures_iter(&code).for_each(|c| add(&c[1]));
        }
        env_call.captures_iter(&code).for_each(|c| add(&c[1]));
        clap_env.captures_iter(&code).for_each(|c| add(&c[1]));
    }
    found
}

/// The app setting names between the `app-settings:begin` / `:end` markers of the Function
/// App module (object keys: `NAME: value`).
fn bicep_app_settings() -> BTreeSet<String> {
    let text = read(&root().join("infra/modules/functionapp.bicep"));
    let begin = text.find("// app-settings:begin").expect("app-settings:begin marker");
    let end = text.find("// app-settings:end").expect("app-settings:end marker");
    let key = Regex::new(r"(?m)^\s*([A-Za-z][A-Za-z0-9_]*)\s*:").unwrap();
    key.captures_iter(&text[begin..end]).map(|c| c[1].to_string()).collect()
}

fn bicep_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("infra/main.bicep")];
    for entry in std::fs::read_dir(root().join("infra/modules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bicep") {
            files.push(path);
        }
    }
    files
}

/// Function folders: directories at the root holding a function.json.
fn function_folders() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("function.json").is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// `*` and `?` globs, as in .funcignore.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pattern[1..], name) || (!name.is_empty() && glob(pattern, &name[1..])),
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Whether .funcignore excludes a top-level entry (the rules scripts/package applies).
fn funcignore_excludes(name: &str, is_dir: bool) -> bool {
    let mut ignored = false;
    for line in read(&root().join(".funcignore")).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negate, pattern) = match line.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        if pattern.ends_with('/') && !is_dir {
            continue;
        }
        if glob(pattern.trim_matches('/').as_bytes(), name.as_bytes()) {
            ignored = !negate;
        }
    }
    ignored
}

fn read_file_contains(path: &str, needle: &str) -> bool {
    read(&root().join(path)).contains(needle)
}

#[test]
fn every_setting_the_binary_reads_is_deployed_or_listed_with_a_reason() {
    let read = settings_the_binary_reads();
    // The scan must see the settings we know, or it proves nothing.
    for known in [
        "ENTRA_TENANT_ID",
        "GRAPH_CLIENT_ID",
        "AzureWebJobsStorage__accountName",
        "STRIPE_API_KEY",
    ] {
        assert!(read.contains_key(known), "the scan missed {known}: {read:?}");
    }
    let bicep = bicep_app_settings();
    let listed: BTreeMap<&str, &str> = NOT_IN_BICEP.iter().copied().collect();
    let missing: Vec<String> = read
        .iter()
        .filter(|(name, _)| !bicep.contains(*name) && !listed.contains_key(name.as_str()))
        .map(|(name, file)| format!("{name} (read in {file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "settings the binary reads that infra/modules/functionapp.bicep does not set: {missing:?}\n\
         add them to the app settings there, or to NOT_IN_BICEP in this test with the reason"
    );
    for (name, reason) in NOT_IN_BICEP {
        assert!(!reason.is_empty());
        assert!(
            read.contains_key(*name),
            "NOT_IN_BICEP lists {name}, which the binary no longer reads"
        );
        assert!(
            !bicep.contains(*name),
            "{name} is both set by the Bicep and listed in NOT_IN_BICEP"
        );
    }
}

#[test]
fn every_bicep_app_setting_is_read_by_the_binary_or_the_host() {
    let read = settings_the_binary_reads();
    let host: BTreeMap<&str, &str> = READ_BY_THE_HOST.iter().chain(READ_BY_LIBRARIES).copied().collect();
    assert!(
        read_file_contains("src/logging.rs", "env_logger::Env::default()"),
        "RUST_LOG is read through env_logger's default environment"
    );
    let unknown: Vec<String> = bicep_app_settings()
        .into_iter()
        .filter(|name| !read.contains_key(name) && !host.contains_key(name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "app settings nobody reads (a typo?): {unknown:?}; add them to READ_BY_THE_HOST if the host reads them"
    );
}

#[test]
fn secrets_are_key_vault_references_and_the_handler_settings_match_the_package() {
    let text = read(&root().join("infra/modules/functionapp.bicep"));
    for (setting, secret) in [
        ("STRIPE_API_KEY", "stripe-api-key"),
        ("MAILCHIMP_API_KEY", "mailchimp-api-key"),
        ("SALESFORCE_CLIENT_SECRET", "salesforce-client-secret"),
        ("SIGNUP_DATABASE_URL", "signup-database-url"),
    ] {
        let line = text
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{setting}:")))
            .unwrap_or_else(|| panic!("{setting} is not set in the Bicep"));
        assert!(
            line.contains(&format!("@Microsoft.KeyVault(SecretUri=${{secretUri}}{secret}/)")),
            "{setting} must be a Key Vault reference: {line}"
        );
    }
    // The names scripts/package writes are the names the settings and host.json use.
    assert!(text.contains("SIGNUP_RULES_PATH: 'signup-rules.toml'"));
    assert!(text.contains("FUNCTIONS_WORKER_RUNTIME: 'custom'"));
    let package = read(&root().join("scripts/package"));
    assert!(package.contains(r#""$package/signup-rules.toml""#));
    assert!(package.contains(r#""$package/signup-bridge""#));
    let host: serde_json::Value = serde_json::from_str(&read(&root().join("host.json"))).unwrap();
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "signup-bridge"
    );
}

#[test]
fn every_function_folder_is_packaged_and_its_settings_are_deployed() {
    let folders = function_folders();
    assert!(folders.contains(&"AttributeSubmit".to_string()) && folders.contains(&"PollAuditLogs".to_string()));
    assert!(
        !funcignore_excludes("host.json", false),
        ".funcignore excludes host.json"
    );
    for required in ["signup-bridge", "signup-rules.toml"] {
        assert!(!funcignore_excludes(required, false), ".funcignore excludes {required}");
    }
    // scripts/package copies every folder holding a function.json that .funcignore keeps.
    assert!(read(&root().join("scripts/package")).contains(r#"-f "$name/function.json""#));
    let placeholder = Regex::new(r"%([A-Za-z0-9_]+)%").unwrap();
    let bicep = bicep_app_settings();
    for folder in &folders {
        assert!(
            !funcignore_excludes(folder, true),
            ".funcignore excludes the function folder {folder}"
        );
        let definition = read(&root().join(folder).join("function.json"));
        for capture in placeholder.captures_iter(&definition) {
            assert!(
                bicep.contains(&capture[1]),
                "{folder}/function.json uses %{}% but the Bicep does not set it",
                &capture[1]
            );
        }
        // A binding's `connection` is a connection string setting or an identity-based prefix.
        let bindings: serde_json::Value = serde_json::from_str(&definition).unwrap();
        for binding in bindings["bindings"].as_array().into_iter().flatten() {
            if let Some(connection) = binding["connection"].as_str() {
                assert!(
                    bicep.contains(connection) && bicep.contains(&format!("{connection}__accountName")),
                    "{folder}: connection {connection} must be set for both plans (connection string on \
                     Consumption, {connection}__accountName on Flex)"
                );
            }
        }
    }
    // And what must not ship stays out.
    for private in [
        "src",
        "target",
        "local.settings.json",
        "infra",
        "package",
        "graph-client.pfx",
    ] {
        assert!(funcignore_excludes(private, false), ".funcignore lets {private} ship");
    }
}

/// scripts/package stops on any top-level entry .funcignore keeps that is not host.json,
/// the rules file or a function folder: every tracked entry must be one or the other.
#[test]
fn every_tracked_top_level_entry_is_packaged_or_ignored() {
    let listed = std::process::Command::new("git")
        .args(["ls-files"])
        .current_dir(root())
        .output()
        .expect("git runs");
    assert!(listed.status.success(), "git ls-files failed");
    let folders = function_folders();
    let mut entries: BTreeSet<(String, bool)> = BTreeSet::new();
    for path in String::from_utf8_lossy(&listed.stdout).lines() {
        match path.split_once('/') {
            Some((top, _)) => entries.insert((top.to_string(), true)),
            None => entries.insert((path.to_string(), false)),
        };
    }
    for (name, is_dir) in entries {
        let shipped = name == "host.json" || name == "signup-rules.toml" || folders.contains(&name);
        assert!(
            shipped || funcignore_excludes(&name, is_dir),
            "scripts/package would stop at '{name}': add it to .funcignore"
        );
    }
}

#[test]
fn the_roles_the_code_needs_are_assigned_by_id() {
    let role = Regex::new(
        r"subscriptionResourceId\(\s*'Microsoft.Authorization/roleDefinitions'\s*,\s*'([0-9a-f-]{36})'\s*\)",
    )
    .unwrap();
    let assigned: BTreeSet<String> = bicep_files()
        .iter()
        .flat_map(|file| {
            role.captures_iter(&read(file))
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for (id, meaning) in REQUIRED_ROLES {
        assert!(
            assigned.contains(*id),
            "no role assignment of {meaning} ({id}) in infra/"
        );
    }
    let roles = read(&root().join("infra/modules/roles.bicep"));
    assert!(
        roles.contains("principalId: principalId"),
        "the roles go to the app's identity"
    );
    let main = read(&root().join("infra/main.bicep"));
    assert!(main.contains("principalId: functionApp.outputs.principalId"));
}

#[test]
fn the_bicep_outputs_what_the_next_steps_need() {
    let main = read(&root().join("infra/main.bicep"));
    for output in [
        "output functionAppName ",
        "output attributeSubmitUrl ",
        "output principalId ",
    ] {
        assert!(main.contains(output), "infra/main.bicep lacks `{output}`");
    }
    assert!(main.contains("/api/AttributeSubmit'"));
    let parameters: serde_json::Value =
        serde_json::from_str(&read(&root().join("infra/main.parameters.json"))).expect("parameters JSON");
    // Every parameter in the file is declared in main.bicep.
    for name in parameters["parameters"].as_object().unwrap().keys() {
        assert!(
            main.contains(&format!("param {name} ")),
            "main.parameters.json sets unknown parameter {name}"
        );
    }
}

#[test]
fn the_funcignore_glob_matches_like_gitignore_for_top_level_names() {
    assert!(glob(b"*.pfx", b"graph-client.pfx"));
    assert!(glob(b".git*", b".gitignore"));
    assert!(!glob(b".git*", b"AttributeSubmit"));
    assert!(glob(b"__azurite_db_*", b"__azurite_db_queue__.json"));
}
