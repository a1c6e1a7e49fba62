//! Birthright groups (Graph): static groups every new user joins, plus rules mapping an
//! attribute value to groups. Adding a member is idempotent: Graph's "already exist"
//! answer is success ([`crate::graph::Membership::AlreadyMember`]).

use serde_json::Value;
use uuid::Uuid;

use crate::graph::GraphClient;
use crate::settings::provisioning::GroupSettings;

use super::destinations::{DestinationError, NewUser, Outcome};
use super::graph_failure;

pub struct BirthrightGroups {
    settings: GroupSettings,
}

impl BirthrightGroups {
    pub fn new(settings: GroupSettings) -> BirthrightGroups {
        BirthrightGroups { settings }
    }

    /// The attributes the rules read.
    pub fn needed_properties(&self) -> Vec<String> {
        self.settings.rules.iter().map(|rule| rule.attribute.clone()).collect()
    }

    /// The groups this user belongs in, each once, static groups first.
    pub fn groups_for(&self, user: &NewUser) -> Vec<Uuid> {
        let mut groups = self.settings.static_groups.clone();
        for rule in &self.settings.rules {
            if has_value(user, &rule.attribute, &rule.value) {
                groups.extend(&rule.groups);
            }
        }
        let mut seen = std::collections::HashSet::new();
        groups.retain(|group| seen.insert(*group));
        groups
    }

    /// Adds the user to each group; stops at the first failure (the next attempt repeats
    /// the ones already done, which Graph answers with "already a member").
    pub async fn apply(&self, graph: &GraphClient, user: &NewUser) -> Result<Outcome, DestinationError> {
        let groups = self.groups_for(user);
        if groups.is_empty() {
            return Ok(Outcome::Skipped {
                reason: "no birthright group applies to the user",
            });
        }
        for group in groups {
            graph
                .add_group_member(group, user.object_id.as_uuid())
                .await
                .map_err(|error| graph_failure(&format!("add to group {group}"), &error))?;
        }
        Ok(Outcome::Done { external_id: None })
    }
}

/// The attribute equals `wanted`, or holds it as a list item or in a comma-delimited text
/// (Entra's multi-value form), ignoring case.
fn has_value(user: &NewUser, attribute: &str, wanted: &str) -> bool {
    let matches = |text: &str| text.split(',').any(|item| item.trim().eq_ignore_ascii_case(wanted));
    match user.attribute(attribute) {
        Some(Value::String(text)) => matches(text),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(matches),
        Some(other @ (Value::Bool(_) | Value::Number(_))) => other.to_string().eq_ignore_ascii_case(wanted),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::destinations::ObjectId;
    use crate::settings::provisioning::parse_rules;
    use serde_json::json;
    use std::collections::BTreeMap;

    const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    const C: &str = "cccccccc-0000-4000-8000-000000000003";

    #[test]
    fn rules_match_values_lists_and_comma_delimited_text() {
        let groups = BirthrightGroups::new(GroupSettings {
            static_groups: vec![A.parse().unwrap()],
            rules: parse_rules(&format!("universityGroups:Faculty={B};plan:gold={C},{A}")).unwrap(),
        });
        let user = |attributes: Value| NewUser {
            attributes: serde_json::from_value::<BTreeMap<String, Value>>(attributes).unwrap(),
            ..NewUser::new(ObjectId::parse("84360e8b-3321-4e37-b9ec-10fccd0263b8").unwrap())
        };
        let ids = |list: &[&str]| list.iter().map(|id| id.parse::<Uuid>().unwrap()).collect::<Vec<_>>();
        assert_eq!(groups.groups_for(&user(json!({}))), ids(&[A]));
        assert_eq!(
            groups.groups_for(&user(json!({"universityGroups": "Staff, faculty"}))),
            ids(&[A, B])
        );
        assert_eq!(
            groups.groups_for(&user(json!({"universityGroups": ["Faculty"]}))),
            ids(&[A, B])
        );
        assert_eq!(groups.groups_for(&user(json!({"plan": "Gold"}))), ids(&[A, C]));
        assert_eq!(groups.groups_for(&user(json!({"plan": "golden"}))), ids(&[A]));
    }
}
