//! Loading the app registration's certificate: PKCS#12 (made by OpenSSL and by a pure-Rust
//! writer, modern and legacy 3DES, empty password) and PEM, from files and from Key Vault
//! secrets of both content types.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use signup_bridge::credentials::certificate::{CONTENT_TYPE_PEM, CONTENT_TYPE_PKCS12};
use signup_bridge::credentials::{
    self, CertificateError, CertificateLoadError, CertificateSource, ClientCertificate, CredentialError, KeyVaultError,
};
use support::app_certs::{AppCertificate, PfxFlavour};
use support::graph_fakes::{CERTIFICATE_NAME, GraphFakes};

fn assert_is(loaded: &ClientCertificate, expected: &AppCertificate) {
    assert_eq!(loaded.x5t_s256(), expected.x5t_s256());
    assert_eq!(loaded.certificate_der(), expected.der());
    assert_eq!(loaded.subject(), "CN=graph-test");
    assert!(loaded.not_after() > chrono::Utc::now());
}

#[test]
fn pfx_files_made_by_openssl_load_with_an_empty_password() {
    let certificate = AppCertificate::generate("graph-test");
    let dir = tempfile::tempdir().unwrap();
    for flavour in [PfxFlavour::Modern, PfxFlavour::Legacy3Des] {
        // Made by another tool when the machine has one; the crate's writer otherwise.
        let pfx = certificate
            .pfx_from_openssl(dir.path(), flavour)
            .unwrap_or_else(|| certificate.pfx_from_p12_keystore(flavour));
        let loaded = ClientCertificate::from_file_bytes(&pfx).unwrap_or_else(|e| panic!("{flavour:?}: {e}"));
        assert_is(&loaded, &certificate);
        let from_vault = ClientCertificate::from_key_vault_secret(&STANDARD.encode(&pfx), Some(CONTENT_TYPE_PKCS12))
            .unwrap_or_else(|e| panic!("{flavour:?}: {e}"));
        assert_is(&from_vault, &certificate);
    }
}

#[test]
fn pfx_files_written_by_p12_keystore_load_modern_and_legacy() {
    let certificate = AppCertificate::generate("graph-test");
    for flavour in [PfxFlavour::Modern, PfxFlavour::Legacy3Des] {
        let pfx = certificate.pfx_from_p12_keystore(flavour);
        assert_is(&ClientCertificate::from_file_bytes(&pfx).unwrap(), &certificate);
    }
}

#[test]
fn a_pfx_with_a_password_is_refused_with_a_readable_error() {
    let certificate = AppCertificate::generate("graph-test");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&key, certificate.key_pem()).unwrap();
    std::fs::write(&cert, certificate.certificate_pem()).unwrap();
    let out = dir.path().join("protected.pfx");
    let made = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:secret"])
        .arg("-inkey")
        .arg(&key)
        .arg("-in")
        .arg(&cert)
        .arg("-out")
        .arg(&out)
        .status();
    let pfx = match made {
        Ok(status) if status.success() => std::fs::read(&out).unwrap(),
        _ => {
            let mut store = p12_keystore::KeyStore::new();
            store.add_entry(
                "x",
                p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
                    vec![1],
                    p12_keystore::PrivateKey::from_der(&certificate.key_pkcs8_der()).unwrap(),
                    vec![p12_keystore::Certificate::from_der(certificate.der()).unwrap()],
                )),
            );
            store.writer("secret").write().unwrap()
        }
    };
    let error = ClientCertificate::from_file_bytes(&pfx).unwrap_err();
    assert!(matches!(error, CertificateError::Pkcs12(_)), "{error:?}");
    assert!(error.to_string().contains("empty password"), "{error}");
}

#[test]
fn pem_bundles_load_in_any_order_and_pick_the_certificate_matching_the_key() {
    let certificate = AppCertificate::generate("graph-test");
    let other = AppCertificate::generate("someone else");
    let key_first = certificate.pem_bundle();
    let chain_first = format!(
        "{}{}{}",
        other.certificate_pem(),
        certificate.certificate_pem(),
        certificate.key_pem()
    );
    for text in [key_first, chain_first] {
        assert_is(&ClientCertificate::from_pem(text.as_bytes()).unwrap(), &certificate);
        assert_is(
            &ClientCertificate::from_key_vault_secret(&text, Some(CONTENT_TYPE_PEM)).unwrap(),
            &certificate,
        );
        // No content type: sniffed.
        assert_is(
            &ClientCertificate::from_key_vault_secret(&text, None).unwrap(),
            &certificate,
        );
    }
}

#[test]
fn a_pkcs1_rsa_private_key_pem_loads() {
    let certificate = AppCertificate::generate("graph-test");
    // PKCS#8 PrivateKeyInfo → its inner RSAPrivateKey (PKCS#1), as `openssl rsa -traditional` writes.
    let pkcs8 = certificate.key_pkcs8_der();
    let (_, info) = x509_parser::der_parser::parse_der(&pkcs8).unwrap();
    let pkcs1 = info.as_sequence().unwrap()[2].as_slice().unwrap().to_vec();
    let pem = format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n{}",
        STANDARD.encode(pkcs1),
        certificate.certificate_pem()
    );
    assert_is(&ClientCertificate::from_pem(pem.as_bytes()).unwrap(), &certificate);
}

#[test]
fn a_key_without_its_certificate_is_refused() {
    let certificate = AppCertificate::generate("graph-test");
    let other = AppCertificate::generate("someone else");
    let mismatched = format!("{}{}", certificate.key_pem(), other.certificate_pem());
    assert_eq!(
        ClientCertificate::from_pem(mismatched.as_bytes()).unwrap_err(),
        CertificateError::NoMatchingCertificate
    );
    assert_eq!(
        ClientCertificate::from_pem(certificate.key_pem().as_bytes()).unwrap_err(),
        CertificateError::NoCertificate
    );
    assert_eq!(
        ClientCertificate::from_pem(certificate.certificate_pem().as_bytes()).unwrap_err(),
        CertificateError::NoPrivateKey
    );
}

#[test]
fn debug_output_shows_no_key_material() {
    let certificate = AppCertificate::generate("graph-test");
    let loaded = ClientCertificate::from_pem(certificate.pem_bundle().as_bytes()).unwrap();
    let debug = format!("{loaded:?}");
    assert!(debug.contains(loaded.sha1_thumbprint()));
    let key_base64 = STANDARD.encode(certificate.key_pkcs8_der());
    assert!(!debug.contains(&key_base64[40..80]), "{debug}");
    assert!(!debug.contains("PRIVATE"));
}

#[tokio::test]
async fn key_vault_secrets_of_both_content_types_load() {
    let fakes = GraphFakes::start();
    let source =
        credentials::certificate_source(&fakes.settings(), &fakes.http(), Some(fakes.key_vault_credential())).unwrap();
    assert!(matches!(source, CertificateSource::KeyVault(_)));
    assert_eq!(source.load().await.unwrap().x5t_s256(), fakes.certificate.x5t_s256());

    let pem_certificate = AppCertificate::generate("graph-test");
    fakes.vault.set_pem(CERTIFICATE_NAME, &pem_certificate.pem_bundle());
    assert_is(&source.load().await.unwrap(), &pem_certificate);

    assert_eq!(fakes.vault.secret_reads(), 2);
    // The SDK followed Key Vault's challenge once, then reused its token.
    assert_eq!(fakes.vault.challenges(), 1);
    let identity_requests = fakes.identity.requests();
    assert_eq!(identity_requests.len(), 1);
    assert_eq!(identity_requests[0].resource, "https://vault.azure.net");
}

#[tokio::test]
async fn a_missing_secret_and_a_refused_identity_are_told_apart() {
    let fakes = GraphFakes::start();
    let mut settings = fakes.settings();
    settings.certificate = signup_bridge::settings::graph::CertificateLocation::KeyVault {
        vault_url: fakes.vault.vault_url(),
        certificate_name: "no-such-certificate".into(),
    };
    let source = credentials::certificate_source(&settings, &fakes.http(), Some(fakes.key_vault_credential())).unwrap();
    match source.load().await.unwrap_err() {
        CertificateLoadError::KeyVault(KeyVaultError::Http { status: 404, code }) => {
            assert_eq!(code.as_deref(), Some("SecretNotFound"))
        }
        other => panic!("{other:?}"),
    }

    fakes.vault.set_forbidden(true);
    let credential = fakes.credential();
    match credential.certificate().await.unwrap_err() {
        CredentialError::Certificate(CertificateLoadError::KeyVault(KeyVaultError::Http { status: 403, code })) => {
            assert_eq!(code.as_deref(), Some("Forbidden"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_file_skips_key_vault() {
    let fakes = GraphFakes::start();
    for (name, bytes) in [
        ("app.pfx", fakes.certificate.pfx(fakes.dir.path())),
        ("app.pem", fakes.certificate.pem_bundle().into_bytes()),
    ] {
        let path = fakes.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let mut values = fakes.settings_map();
        values.insert("GRAPH_CERTIFICATE_PATH".into(), path.display().to_string());
        let settings = signup_bridge::settings::graph::GraphConfig::from_map(&values)
            .unwrap()
            .require()
            .unwrap()
            .clone();
        let credential = credentials::graph_credential(&settings, &fakes.http(), None).unwrap();
        assert!(matches!(credential.source(), CertificateSource::File(_)));
        credential.token(&fakes.graph.scope()).await.unwrap();
    }
    assert_eq!(fakes.vault.secret_reads(), 0);
    assert_eq!(fakes.identity.requests().len(), 0);
    assert_eq!(fakes.entra.accepted_thumbprints().len(), 2);
}
