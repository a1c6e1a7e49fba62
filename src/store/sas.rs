//! Account SAS tokens minted from a shared key, because azure_storage_blob / _queue 1.x
//! accept a SAS in the URL or an Entra token, but no shared key.
//!
//! The token covers blobs and queues (`ss=bq`), service, container and object operations
//! (`srt=sco`), and read, write, delete, list, add, create, update and process (`sp=rwdlacup`,
//! in the order Microsoft's SDKs write it). It has no start time (so clock skew cannot make a
//! fresh token "not yet valid") and expires after [`SAS_LIFETIME`]; the store mints a new one
//! well before that. `spr=https`, or `https,http` when an endpoint is plain http, which
//! settings allow only on loopback (Azurite).
//!
//! Signature (version 2020-12-06 and later,
//! <https://learn.microsoft.com/rest/api/storageservices/create-account-sas>):
//! base64(HMAC-SHA256(key, account \n sp \n ss \n srt \n st \n se \n sip \n spr \n sv \n ses \n)).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::connection::AccountKey;

/// The SAS version: accepted by Azure Storage and Azurite 3.x; the string-to-sign below is
/// this version's (2020-12-06+: with the encryption-scope line).
pub const SAS_VERSION: &str = "2021-08-06";
pub const SAS_SERVICES: &str = "bq";
pub const SAS_RESOURCE_TYPES: &str = "sco";
pub const SAS_PERMISSIONS: &str = "rwdlacup";
/// How long a minted token is valid.
pub const SAS_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// How old a token may get before the store mints the next one: leaves hours of margin for
/// the longest operation and for clock skew.
pub const SAS_RENEW_AFTER: Duration = Duration::from_secs(60 * 60);

/// A minted token: the query string to append to container and queue URLs. Never printed.
#[derive(Clone)]
pub struct AccountSas {
    query: String,
    pub expires_at: DateTime<Utc>,
}

impl AccountSas {
    pub fn query(&self) -> &str {
        &self.query
    }
}

impl fmt::Debug for AccountSas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountSas")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Mints an account SAS valid until `expires_at`.
pub fn mint(account_name: &str, key: &AccountKey, expires_at: DateTime<Utc>, allow_http: bool) -> AccountSas {
    let expiry = expires_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let protocol = if allow_http { "https,http" } else { "https" };
    let signature = sign(key, &string_to_sign(account_name, &expiry, protocol));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", SAS_SERVICES)
        .append_pair("srt", SAS_RESOURCE_TYPES)
        .append_pair("sp", SAS_PERMISSIONS)
        .append_pair("se", &expiry)
        .append_pair("spr", protocol)
        .append_pair("sig", &signature)
        .finish();
    AccountSas { query, expires_at }
}

fn string_to_sign(account_name: &str, expiry: &str, protocol: &str) -> String {
    let start = "";
    let ip_range = "";
    let encryption_scope = "";
    [
        account_name,
        SAS_PERMISSIONS,
        SAS_SERVICES,
        SAS_RESOURCE_TYPES,
        start,
        expiry,
        ip_range,
        protocol,
        SAS_VERSION,
        encryption_scope,
        "", // the string ends with a newline
    ]
    .join("\n")
}

fn sign(key: &AccountKey, text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes keys of any length");
    mac.update(text.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const AZURITE_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn expiry() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
    }

    #[test]
    fn the_string_to_sign_has_every_field_on_its_own_line() {
        assert_eq!(
            string_to_sign("devstoreaccount1", "2030-01-02T03:04:05Z", "https,http"),
            "devstoreaccount1\nrwdlacup\nbq\nsco\n\n2030-01-02T03:04:05Z\n\nhttps,http\n2021-08-06\n\n"
        );
    }

    // Expected signatures computed by Azurite 3.37's own verifier
    // (`generateAccountSASSignature` in dist/src/common/authentication), an independent
    // implementation of the same documented algorithm.
    #[test]
    fn signatures_match_azurites_implementation() {
        let azurite = AccountKey::from_base64(AZURITE_KEY).unwrap();
        let sas = mint("devstoreaccount1", &azurite, expiry(), true);
        assert!(
            sas.query().ends_with(&format!(
                "&sig={}",
                url::form_urlencoded::byte_serialize(b"agmB4+03f7CA92Tkkim+bVQZtGfzKI5OUA3avtSZ8xk=")
                    .collect::<String>()
            )),
            "{}",
            sas.query()
        );

        let other = AccountKey::from_base64("c2VjcmV0LWtleS1mb3ItdGVzdHM=").unwrap();
        let sas = mint("myaccount", &other, expiry(), false);
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(sas.query().as_bytes())
            .into_owned()
            .collect();
        let sig = pairs.iter().find(|(k, _)| k == "sig").map(|(_, v)| v.as_str());
        assert_eq!(sig, Some("N04PkkpG061oJr78dbHfe+bJ5q2/nrytzRDuDbQFXEU="));
    }

    #[test]
    fn the_query_is_url_encoded_in_a_fixed_order() {
        let key = AccountKey::from_base64(AZURITE_KEY).unwrap();
        let sas = mint("devstoreaccount1", &key, expiry(), true);
        assert_eq!(
            sas.query(),
            "sv=2021-08-06&ss=bq&srt=sco&sp=rwdlacup&se=2030-01-02T03%3A04%3A05Z&spr=https%2Chttp\
             &sig=agmB4%2B03f7CA92Tkkim%2BbVQZtGfzKI5OUA3avtSZ8xk%3D"
        );
        assert_eq!(sas.expires_at, expiry());
        let https_only = mint("devstoreaccount1", &key, expiry(), false);
        assert!(https_only.query().contains("&spr=https&"));
    }

    #[test]
    fn debug_hides_the_signature() {
        let key = AccountKey::from_base64(AZURITE_KEY).unwrap();
        let sas = mint("devstoreaccount1", &key, expiry(), true);
        let text = format!("{sas:?}");
        assert!(!text.contains("sig") && !text.contains("agmB4"), "{text}");
    }
}
