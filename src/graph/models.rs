//! Graph resources, modelled tolerantly: unknown fields are ignored, nulls read as empty,
//! `targetResources[].type` may be spelled `Type`, and `modifiedProperties` values are JSON
//! encoded inside strings. `Debug` shows ids and activity, never names, UPNs or emails.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use uuid::Uuid;

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One entry of `GET /auditLogs/directoryAudits`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryAudit {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub category: String,
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// `success`, `failure`, `timeout`, `unknownFutureValue`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub result: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub result_reason: String,
    pub activity_display_name: String,
    pub activity_date_time: DateTime<Utc>,
    #[serde(default)]
    pub logged_by_service: Option<String>,
    #[serde(default)]
    pub operation_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub initiated_by: InitiatedBy,
    #[serde(default, deserialize_with = "null_as_default")]
    pub target_resources: Vec<TargetResource>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub additional_details: Vec<KeyValue>,
}

impl DirectoryAudit {
    pub fn is_success(&self) -> bool {
        self.result.eq_ignore_ascii_case("success")
    }

    /// The targets of type `User` (any casing of the type and of its field name).
    pub fn target_users(&self) -> impl Iterator<Item = &TargetResource> {
        self.target_resources
            .iter()
            .filter(|target| target.resource_type().is_some_and(|t| t.eq_ignore_ascii_case("user")))
    }
}

impl fmt::Debug for DirectoryAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryAudit")
            .field("id", &self.id)
            .field("activity_display_name", &self.activity_display_name)
            .field("activity_date_time", &self.activity_date_time)
            .field("result", &self.result)
            .field("target_resources", &self.target_resources)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Default, Deserialize)]
pub struct InitiatedBy {
    #[serde(default)]
    pub user: Option<UserIdentity>,
    #[serde(default)]
    pub app: Option<AppIdentity>,
}

impl fmt::Debug for InitiatedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatedBy")
            .field("user", &self.user.as_ref().map(|user| &user.id))
            .field("app", &self.app.as_ref().map(|app| &app.display_name))
            .finish()
    }
}

#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub ip_address: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppIdentity {
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub service_principal_id: Option<String>,
    #[serde(default)]
    pub service_principal_name: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetResource {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default, rename = "type")]
    type_lower: Option<String>,
    #[serde(default, rename = "Type")]
    type_upper: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub group_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub modified_properties: Vec<ModifiedProperty>,
}

impl TargetResource {
    /// `type` (as Graph sends it) or `Type` (as the v1.0 reference documents it).
    pub fn resource_type(&self) -> Option<&str> {
        self.type_lower.as_deref().or(self.type_upper.as_deref())
    }

    /// The target's object id, when it is a GUID.
    pub fn object_id(&self) -> Option<Uuid> {
        self.id.as_deref().and_then(|id| id.parse().ok())
    }

    pub fn modified_property(&self, display_name: &str) -> Option<&ModifiedProperty> {
        self.modified_properties.iter().find(|p| {
            p.display_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(display_name))
        })
    }
}

impl fmt::Debug for TargetResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetResource")
            .field("id", &self.id)
            .field("type", &self.resource_type())
            .field("modified_properties", &self.modified_properties)
            .finish_non_exhaustive()
    }
}

/// A changed property; `oldValue`/`newValue` are JSON documents encoded in strings
/// (`"[true]"`, `"[\"Member\"]"`).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModifiedProperty {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub old_value: Option<String>,
    #[serde(default)]
    pub new_value: Option<String>,
}

impl ModifiedProperty {
    /// `newValue` decoded (a plain string when it is not JSON).
    pub fn new_json(&self) -> Option<Value> {
        self.new_value.as_deref().map(decode_embedded_json)
    }

    pub fn old_json(&self) -> Option<Value> {
        self.old_value.as_deref().map(decode_embedded_json)
    }

    /// `newValue` as a list: the array's items, or the single value.
    pub fn new_values(&self) -> Vec<Value> {
        match self.new_json() {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => Vec::new(),
            Some(value) => vec![value],
        }
    }
}

impl fmt::Debug for ModifiedProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModifiedProperty")
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

fn decode_embedded_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

#[derive(Clone, Deserialize)]
pub struct KeyValue {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A user as `GET /users` returns it with `$select`: only the selected properties are
/// present; extension attributes (`extension_<app id without dashes>_<name>`) and any other
/// properties are kept in `other`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub surname: Option<String>,
    #[serde(default)]
    pub created_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub creation_type: Option<String>,
    #[serde(default)]
    pub account_enabled: Option<bool>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub other_mails: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub identities: Vec<ObjectIdentity>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl User {
    /// Extension attributes present on the user, by full name.
    pub fn extension_attributes(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.other
            .iter()
            .filter(|(name, _)| name.starts_with("extension_"))
            .map(|(name, value)| (name.as_str(), value))
    }

    /// An extension attribute by its short name (`extension_<app>_<name>` matched by suffix,
    /// ignoring case), when present and not null.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        let suffix = format!("_{}", name.to_ascii_lowercase());
        self.extension_attributes()
            .find(|(full, _)| full.to_ascii_lowercase().ends_with(&suffix))
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("created_date_time", &self.created_date_time)
            .field("creation_type", &self.creation_type)
            .field(
                "extension_attributes",
                &self.extension_attributes().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectIdentity {
    #[serde(default)]
    pub sign_in_type: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub issuer_assigned_id: Option<String>,
}

impl fmt::Debug for ObjectIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectIdentity")
            .field("sign_in_type", &self.sign_in_type)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A `PATCH /users/{id}` body: only the properties set here are sent.
#[derive(Clone, Default, PartialEq)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub user_principal_name: Option<String>,
    /// Full names (`extension_<app id without dashes>_<name>`) to values; `Value::Null` clears.
    pub extension_attributes: BTreeMap<String, Value>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none() && self.user_principal_name.is_none() && self.extension_attributes.is_empty()
    }

    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        if let Some(display_name) = &self.display_name {
            body.insert("displayName".into(), Value::String(display_name.clone()));
        }
        if let Some(upn) = &self.user_principal_name {
            body.insert("userPrincipalName".into(), Value::String(upn.clone()));
        }
        for (name, value) in &self.extension_attributes {
            body.insert(name.clone(), value.clone());
        }
        Value::Object(body)
    }
}

impl fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPatch")
            .field("display_name", &self.display_name.as_ref().map(|_| "<set>"))
            .field(
                "user_principal_name",
                &self.user_principal_name.as_ref().map(|_| "<set>"),
            )
            .field(
                "extension_attributes",
                &self.extension_attributes.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The outcome of adding a group member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Added,
    /// Graph answered 400 "... already exist ...": the user was a member already.
    AlreadyMember,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = include_str!("../../tests/fixtures/samples/directory-audits-page.json");
    const DOCUMENTED: &str = include_str!("../../tests/fixtures/samples/directory-audit-documented-v1.json");

    #[derive(Deserialize)]
    struct Page<T> {
        value: Vec<T>,
    }

    #[test]
    fn the_sample_page_parses_with_both_spellings_of_type() {
        let page: Page<DirectoryAudit> = serde_json::from_str(PAGE).unwrap();
        assert_eq!(page.value.len(), 2);
        let first = &page.value[0];
        assert!(first.is_success());
        assert_eq!(first.activity_display_name, "Add user");
        let target = first.target_users().next().unwrap();
        assert_eq!(
            target.object_id(),
            Some("84360e8b-3321-4e37-b9ec-10fccd0263b8".parse().unwrap())
        );
        let enabled = target.modified_property("AccountEnabled").unwrap();
        assert_eq!(enabled.new_values(), vec![Value::Bool(true)]);
        assert_eq!(enabled.old_values_len(), 0);
        let included = target.modified_property("Included Updated Properties").unwrap();
        assert_eq!(
            included.new_json(),
            Some(Value::String("AccountEnabled, DisplayName, UserType".into()))
        );
        assert_eq!(included.old_json(), None);

        let second = &page.value[1];
        assert!(!second.is_success());
        assert_eq!(second.target_users().count(), 1, "capital-T Type is read");
        assert!(second.initiated_by.user.is_none());
    }

    #[test]
    fn the_documented_v1_sample_parses() {
        let page: Page<DirectoryAudit> = serde_json::from_str(DOCUMENTED).unwrap();
        let audit = &page.value[0];
        assert_eq!(audit.target_users().count(), 1);
        assert_eq!(
            audit.initiated_by.user.as_ref().unwrap().id.as_deref(),
            Some("728309ae-4a67-4219-83ea-8e7e1a1d7e50")
        );
        let debug = format!("{audit:?}");
        assert!(
            !debug.contains("bob@contoso.com") && !debug.contains("Audry"),
            "{debug}"
        );
    }

    #[test]
    fn nulls_and_unknown_fields_are_tolerated() {
        let audit: DirectoryAudit = serde_json::from_value(serde_json::json!({
            "id": "x", "activityDisplayName": "Add user", "activityDateTime": "2026-01-01T00:00:00Z",
            "category": null, "result": null, "initiatedBy": null, "targetResources": null,
            "additionalDetails": null, "someFutureField": {"a": 1}
        }))
        .unwrap();
        assert!(audit.target_resources.is_empty());
        assert!(!audit.is_success());
    }

    #[test]
    fn users_keep_extension_attributes_and_hide_personal_data_in_debug() {
        let user: User = serde_json::from_value(serde_json::json!({
            "id": "84360e8b-3321-4e37-b9ec-10fccd0263b8",
            "displayName": "Jane Doe",
            "mail": "jane@contoso.com",
            "createdDateTime": "2026-11-20T10:02:22Z",
            "identities": [{"signInType": "emailAddress", "issuer": "contoso.onmicrosoft.com", "issuerAssignedId": "jane@contoso.com"}],
            "extension_0a1b2c3d4e5f60718293a4b5c6d7e8f9_Newsletter": true,
            "extension_0a1b2c3d4e5f60718293a4b5c6d7e8f9_Plan": null,
            "otherMails": null
        }))
        .unwrap();
        assert_eq!(user.extension("newsletter"), Some(&Value::Bool(true)));
        assert_eq!(user.extension("Plan"), None);
        assert_eq!(user.extension_attributes().count(), 2);
        let debug = format!("{user:?}");
        assert!(!debug.contains("jane") && !debug.contains("Jane"), "{debug}");
    }

    #[test]
    fn a_patch_sends_only_what_is_set() {
        let mut patch = UserPatch {
            display_name: Some("Jane Doe".into()),
            ..UserPatch::default()
        };
        patch
            .extension_attributes
            .insert("extension_abc_Plan".into(), Value::String("pro".into()));
        assert_eq!(
            patch.to_json(),
            serde_json::json!({"displayName": "Jane Doe", "extension_abc_Plan": "pro"})
        );
        assert!(!format!("{patch:?}").contains("Jane"));
        assert!(UserPatch::default().is_empty());
    }

    impl ModifiedProperty {
        fn old_values_len(&self) -> usize {
            match self.old_json() {
                Some(Value::Array(items)) => items.len(),
                _ => usize::MAX,
            }
        }
    }
}
