//! The binary cargo built runs on the Functions Linux image: scripts/check-portability (the
//! same check scripts/package runs on the release binary) on this build's binary. Dynamic
//! dependencies and GLIBC symbol versions do not depend on the profile, so the debug binary
//! stands for the release one.

use std::collections::HashMap;
use std::process::Command;

fn check(target_glibc: &str) -> (bool, HashMap<String, String>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(format!("{root}/scripts/check-portability"))
        .arg(env!("CARGO_BIN_EXE_signup-bridge"))
        .env("TARGET_GLIBC", target_glibc)
        .output()
        .expect("run scripts/check-portability (needs bash and binutils)");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let fields = stdout
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    (output.status.success(), fields)
}

fn version(text: &str) -> Vec<u32> {
    text.split('.')
        .map(|part| part.parse().expect("a version number"))
        .collect()
}

#[test]
fn the_binary_needs_only_glibc_no_openssl_and_no_newer_glibc_than_bookworm() {
    let (ok, fields) = check("2.36");
    assert!(ok, "portability check failed: {fields:?}");
    let dynamic = &fields["dynamic"];
    assert!(
        !dynamic.contains("libssl") && !dynamic.contains("libcrypto"),
        "{dynamic}"
    );
    assert!(dynamic.contains("libc.so.6"), "a glibc binary: {dynamic}");
    let max = &fields["max-glibc"];
    assert!(version(max) <= version("2.36"), "needs GLIBC_{max}");
    println!("dynamic: {dynamic}; max GLIBC: {max}");
}

#[test]
fn the_check_fails_for_an_image_with_an_older_glibc() {
    // Proves the comparison can fail: no Rust std binary runs on glibc 2.17.
    let (ok, fields) = check("2.17");
    assert!(!ok, "{fields:?}");
    assert!(
        fields["verdict"].contains("newer than the target image's glibc 2.17"),
        "{fields:?}"
    );
}
