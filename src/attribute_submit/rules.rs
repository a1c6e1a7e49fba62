//! Declarative sign-up rules for OnAttributeCollectionSubmit.
//!
//! A TOML file of `[[rule]]` tables (reference: README, "Sign-up rules") is compiled once at start
//! into a [`RuleSet`]; every submit is then evaluated without I/O:
//! `normalize` rules first, then block rules (`block`, `email_domain`), then validation
//! rules, giving one action with the precedence
//! block page > validation errors > modified values > continue.

mod config;
mod domain;
mod normalize;
#[cfg(test)]
mod tests;

use super::request::{AttributeValue, SubmitRequest};
use super::response::SubmitAction;
use domain::DomainPattern;
use normalize::Step;
use regex::Regex;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use subtle::{Choice, ConstantTimeEq};

/// Entra's own wording for the top message of showValidationError.
pub const DEFAULT_VALIDATION_MESSAGE: &str = "Please fix the below errors to proceed.";

/// A compiled rule file: immutable, `Send + Sync`, evaluated without I/O.
#[derive(Clone)]
pub struct RuleSet {
    validation_message: String,
    normalizers: Vec<Normalizer>,
    blockers: Vec<Blocker>,
    validators: Vec<Validator>,
}

/// Why a rule file cannot be used. Messages name the file and the rule, never a user's value.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read the rules file `{}`: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("rules file `{}`: {error}", path.display())]
    InFile { path: PathBuf, error: Box<RulesError> },
    #[error("the rules are not valid TOML: {0}")]
    Syntax(String),
    #[error("{0}")]
    Structure(String),
    #[error("[messages]: {0}")]
    Messages(String),
    /// `label` is the kind and attribute, e.g. "pattern on `postalCode`".
    #[error("rule #{index} ({label}): {problem}")]
    Rule {
        index: usize,
        label: String,
        problem: String,
    },
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::empty()
    }
}

// By hand: invite-code hashes and patterns are configuration detail, not log material.
impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("normalize", &self.normalizers.len())
            .field("block", &self.blockers.len())
            .field("validate", &self.validators.len())
            .finish()
    }
}

impl RuleSet {
    /// No rules: every submit continues with the default behaviour.
    pub fn empty() -> RuleSet {
        RuleSet {
            validation_message: DEFAULT_VALIDATION_MESSAGE.to_string(),
            normalizers: Vec::new(),
            blockers: Vec::new(),
            validators: Vec::new(),
        }
    }

    pub fn from_toml(text: &str) -> Result<RuleSet, RulesError> {
        config::parse(text)
    }

    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|error| RulesError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        RuleSet::from_toml(&text).map_err(|error| RulesError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        })
    }

    /// Number of `[[rule]]` tables.
    pub fn len(&self) -> usize {
        self.normalizers.len() + self.blockers.len() + self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The one action for this submit. Pure: no I/O, no panics.
    pub fn evaluate(&self, request: &SubmitRequest) -> SubmitAction {
        let normalized = self.normalize(request);

        if let Some(blocker) = self.blockers.iter().find(|blocker| blocker.blocks(&normalized)) {
            log::debug!("sign-up blocked by rule #{}", blocker.index);
            return SubmitAction::ShowBlockPage {
                title: blocker.title.clone(),
                message: blocker.message.clone(),
            };
        }

        let attribute_errors = self.validate(&normalized);
        if !attribute_errors.is_empty() {
            return SubmitAction::ShowValidationError {
                message: self.validation_message.clone(),
                attribute_errors,
            };
        }

        let changed: BTreeMap<String, serde_json::Value> = normalized
            .attributes
            .iter()
            .filter(|(name, value)| request.attributes.get(name.as_str()) != Some(*value))
            .map(|(name, value)| (name.clone(), value.to_json()))
            .collect();
        if changed.is_empty() {
            SubmitAction::ContinueWithDefaultBehavior
        } else {
            SubmitAction::ModifyAttributeValues(changed)
        }
    }

    /// The request with every `normalize` rule applied in file order; borrowed when nothing changed.
    fn normalize<'r>(&self, request: &'r SubmitRequest) -> Cow<'r, SubmitRequest> {
        let mut current: BTreeMap<&str, String> = BTreeMap::new();
        for rule in &self.normalizers {
            for (name, value) in matching(&request.attributes, &rule.attribute) {
                // Only strings: ints and booleans keep their type in the response.
                let AttributeValue::String(original) = value else {
                    continue;
                };
                let input = current.get(name.as_str()).map_or(original.as_str(), String::as_str);
                let output = normalize::apply(&rule.steps, rule.each_item, input);
                current.insert(name.as_str(), output);
            }
        }
        current.retain(|name, text| {
            !matches!(request.attributes.get(*name), Some(AttributeValue::String(original)) if original == text)
        });
        if current.is_empty() {
            return Cow::Borrowed(request);
        }
        let mut normalized = request.clone();
        for (name, text) in current {
            normalized
                .attributes
                .insert(name.to_string(), AttributeValue::String(text));
        }
        Cow::Owned(normalized)
    }

    /// Every failing attribute, with the message of the first rule it fails.
    fn validate(&self, request: &SubmitRequest) -> BTreeMap<String, String> {
        let mut errors = BTreeMap::new();
        for rule in &self.validators {
            let mut present = false;
            for (name, value) in matching(&request.attributes, &rule.attribute) {
                present = true;
                let passes = if is_blank(value) {
                    !matches!(rule.check, Check::Required)
                } else {
                    rule.check.passes(value)
                };
                if !passes {
                    errors.entry(name.clone()).or_insert_with(|| rule.message.clone());
                }
            }
            if !present && matches!(rule.check, Check::Required) {
                // Not in the request: the only name we have is the rule's.
                errors
                    .entry(rule.attribute.name.clone())
                    .or_insert_with(|| rule.message.clone());
            }
        }
        errors
    }
}

/// An attribute as a rule names it: the full name, or the part after `extension_<app id>_`.
#[derive(Debug, Clone)]
struct AttributeRef {
    name: String,
}

impl AttributeRef {
    fn matches(&self, request_name: &str) -> bool {
        request_name.eq_ignore_ascii_case(&self.name)
            || extension_suffix(request_name).is_some_and(|suffix| suffix.eq_ignore_ascii_case(&self.name))
    }
}

/// `graduationYear` from `extension_9ce7f42908d14395aed7c48e9b6b957f_graduationYear`.
fn extension_suffix(name: &str) -> Option<&str> {
    const PREFIX: &str = "extension_";
    if !name.get(..PREFIX.len())?.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = name.get(PREFIX.len()..)?;
    let app_id = rest.get(..32)?;
    let suffix = rest.get(32..)?.strip_prefix('_')?;
    (app_id.bytes().all(|byte| byte.is_ascii_hexdigit()) && !suffix.is_empty()).then_some(suffix)
}

fn matching<'a>(
    attributes: &'a BTreeMap<String, AttributeValue>,
    attribute: &'a AttributeRef,
) -> impl Iterator<Item = (&'a String, &'a AttributeValue)> {
    attributes.iter().filter(move |(name, _)| attribute.matches(name))
}

fn is_blank(value: &AttributeValue) -> bool {
    matches!(value, AttributeValue::String(text) if text.trim().is_empty())
}

/// True when the value has at least one comma-delimited item and every item passes.
fn every_item(value: &AttributeValue, mut passes: impl FnMut(&str) -> bool) -> bool {
    let items = value.items();
    !items.is_empty() && items.iter().all(|item| passes(item))
}

#[derive(Debug, Clone)]
struct Normalizer {
    attribute: AttributeRef,
    steps: Vec<Step>,
    each_item: bool,
}

#[derive(Debug, Clone)]
struct Blocker {
    /// 1-based position in the file, for the debug log.
    index: usize,
    condition: BlockCondition,
    title: Option<String>,
    message: String,
}

#[derive(Debug, Clone)]
enum BlockCondition {
    Attribute {
        attribute: AttributeRef,
        test: AttributeTest,
    },
    EmailDomain {
        allowed: Vec<DomainPattern>,
        blocked: Vec<DomainPattern>,
    },
}

#[derive(Debug, Clone)]
enum AttributeTest {
    /// Lowercased values; the whole trimmed value must equal one.
    Equals(Vec<String>),
    Matches(Regex),
    /// Lowercased values; any comma-delimited item equal to one matches.
    Contains(Vec<String>),
}

impl Blocker {
    fn blocks(&self, request: &SubmitRequest) -> bool {
        match &self.condition {
            BlockCondition::Attribute { attribute, test } => matching(&request.attributes, attribute)
                .filter(|(_, value)| !is_blank(value))
                .any(|(_, value)| test.matches(value)),
            BlockCondition::EmailDomain { allowed, blocked } => {
                match request.email().and_then(domain::of_email) {
                    // Blocked wins, so `*.contoso.com` can be allowed with one subdomain carved out.
                    Some(domain) => {
                        blocked.iter().any(|pattern| pattern.matches(&domain))
                            || (!allowed.is_empty() && !allowed.iter().any(|pattern| pattern.matches(&domain)))
                    }
                    None => !allowed.is_empty(),
                }
            }
        }
    }
}

impl AttributeTest {
    fn matches(&self, value: &AttributeValue) -> bool {
        match self {
            AttributeTest::Equals(values) => values.contains(&value.as_text().trim().to_lowercase()),
            AttributeTest::Matches(regex) => regex.is_match(&value.as_text()),
            AttributeTest::Contains(values) => value.items().iter().any(|item| values.contains(&item.to_lowercase())),
        }
    }
}

#[derive(Debug, Clone)]
struct Validator {
    attribute: AttributeRef,
    check: Check,
    message: String,
}

#[derive(Debug, Clone)]
enum Check {
    Required,
    Pattern {
        regex: Regex,
        each_item: bool,
    },
    Length {
        min: Option<usize>,
        max: Option<usize>,
    },
    Range {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// Lowercased unless `case_sensitive`.
    AllowedValues {
        values: Vec<String>,
        case_sensitive: bool,
    },
    InviteCode {
        hashes: Vec<[u8; 32]>,
    },
}

impl Check {
    /// Whether a present, non-blank value passes.
    fn passes(&self, value: &AttributeValue) -> bool {
        match self {
            Check::Required => true,
            Check::Pattern { regex, each_item: true } => every_item(value, |item| regex.is_match(item)),
            Check::Pattern {
                regex,
                each_item: false,
            } => regex.is_match(&value.as_text()),
            Check::Length { min, max } => {
                let length = value.as_text().chars().count();
                min.is_none_or(|min| length >= min) && max.is_none_or(|max| length <= max)
            }
            Check::Range { min, max } => {
                let number = match value {
                    AttributeValue::Int64(number) => Some(*number),
                    AttributeValue::String(text) => text.trim().parse::<i64>().ok(),
                    AttributeValue::Boolean(_) => None,
                };
                number.is_some_and(|number| min.is_none_or(|min| number >= min) && max.is_none_or(|max| number <= max))
            }
            Check::AllowedValues { values, case_sensitive } => {
                let allowed = |text: &str| {
                    if *case_sensitive {
                        values.iter().any(|allowed| allowed == text)
                    } else {
                        values.contains(&text.to_lowercase())
                    }
                };
                // The whole value may itself be an allowed value containing a comma.
                allowed(value.as_text().trim()) || every_item(value, allowed)
            }
            Check::InviteCode { hashes } => {
                let digest = Sha256::digest(value.as_text().trim().as_bytes());
                // Compare with every hash, no early exit, so timing says nothing about which matched.
                let mut found = Choice::from(0);
                for hash in hashes {
                    found |= hash[..].ct_eq(digest.as_slice());
                }
                bool::from(found)
            }
        }
    }
}
