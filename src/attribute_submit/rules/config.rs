//! The TOML rule file: parsed rule by rule so every error names the rule it is about.

use super::{
    AttributeRef, AttributeTest, BlockCondition, Blocker, Check, DEFAULT_VALIDATION_MESSAGE, DomainPattern, Normalizer,
    RuleSet, RulesError, Step, Validator,
};
use regex::Regex;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

const KINDS: &str =
    "`required`, `pattern`, `length`, `range`, `allowed_values`, `email_domain`, `invite_code`, `normalize`, `block`";

const DEFAULT_REQUIRED: &str = "This information is required.";
const DEFAULT_PATTERN: &str = "Please enter a value in the expected format.";
const DEFAULT_ALLOWED_VALUES: &str = "Please choose one of the allowed values.";
const DEFAULT_INVITE_CODE: &str = "This invite code is not valid.";
const DEFAULT_EMAIL_DOMAIN: &str =
    "Sign-up is not available for this email address. Please start again with a different email address.";

pub(super) fn parse(text: &str) -> Result<RuleSet, RulesError> {
    let document: Table =
        toml::from_str(text).map_err(|error| RulesError::Syntax(error.to_string().trim_end().to_string()))?;
    let mut rules = RuleSet::empty();
    let mut rule_values = Vec::new();
    for (key, value) in document {
        match key.as_str() {
            "messages" => rules.validation_message = messages(value).map_err(RulesError::Messages)?,
            "rule" => match value {
                Value::Array(list) => rule_values = list,
                _ => {
                    return Err(RulesError::Structure(
                        "`rule` must be an array of tables: write each rule under `[[rule]]`".to_string(),
                    ));
                }
            },
            other => {
                return Err(RulesError::Structure(format!(
                    "unknown top-level key `{other}`: a rules file has an optional `[messages]` table and `[[rule]]` tables"
                )));
            }
        }
    }
    for (position, value) in rule_values.into_iter().enumerate() {
        let index = position + 1;
        match value {
            Value::Table(table) => add_rule(&mut rules, index, table)?,
            _ => {
                return Err(RulesError::Rule {
                    index,
                    label: "not a table".to_string(),
                    problem: "write each rule under `[[rule]]`".to_string(),
                });
            }
        }
    }
    Ok(rules)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesConfig {
    validation_error: Option<String>,
}

fn messages(value: Value) -> Result<String, String> {
    let config: MessagesConfig = value.try_into().map_err(|error| describe(&error))?;
    match config.validation_error {
        None => Ok(DEFAULT_VALIDATION_MESSAGE.to_string()),
        Some(message) => non_blank("validation_error", message),
    }
}

fn add_rule(rules: &mut RuleSet, index: usize, mut table: Table) -> Result<(), RulesError> {
    let kind = table.remove("kind");
    let attribute = table.get("attribute").and_then(Value::as_str).map(str::to_string);
    let label = match (kind.as_ref().and_then(Value::as_str), &attribute) {
        (Some(kind), Some(attribute)) => format!("{kind} on `{attribute}`"),
        (Some(kind), None) => kind.to_string(),
        (None, Some(attribute)) => format!("no kind, on `{attribute}`"),
        (None, None) => "no kind".to_string(),
    };
    let error = |problem: String| RulesError::Rule {
        index,
        label: label.clone(),
        problem,
    };
    let Some(Value::String(kind)) = kind else {
        return Err(error(format!("every rule needs `kind = \"...\"`, one of {KINDS}")));
    };
    match kind.as_str() {
        "normalize" => rules.normalizers.push(normalizer(table).map_err(error)?),
        "block" | "email_domain" => rules.blockers.push(blocker(&kind, index, table).map_err(error)?),
        "required" | "pattern" | "length" | "range" | "allowed_values" | "invite_code" => {
            rules.validators.push(validator(&kind, table).map_err(error)?)
        }
        other => return Err(error(format!("unknown kind `{other}`; expected one of {KINDS}"))),
    }
    Ok(())
}

/// The kind's own options, unknown options refused.
fn options<T: DeserializeOwned>(table: Table) -> Result<T, String> {
    Value::Table(table).try_into().map_err(|error| describe(&error))
}

/// toml's message on one line, e.g. "unknown field `regx`, expected one of ...".
fn describe(error: &toml::de::Error) -> String {
    error.to_string().trim().replace('\n', " ")
}

fn non_blank(option: &str, text: String) -> Result<String, String> {
    if text.trim().is_empty() {
        Err(format!("`{option}` must not be empty"))
    } else {
        Ok(text)
    }
}

fn message_or(message: Option<String>, default: impl FnOnce() -> String) -> Result<String, String> {
    message.map_or_else(|| Ok(default()), |message| non_blank("message", message))
}

fn attribute(name: String) -> Result<AttributeRef, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(
            "`attribute` must be an attribute name such as `city` or `graduationYear` (letters, digits, `_`)"
                .to_string(),
        );
    }
    Ok(AttributeRef { name })
}

fn regex(option: &str, pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err(format!("`{option}` must not be empty"));
    }
    Regex::new(pattern).map_err(|error| format!("invalid regex: {error}"))
}

/// A value in `values`, `equals` or `contains`: TOML strings, integers and booleans all
/// compare by their text form, as attribute values do.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a string, integer or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Scalar, E> {
                Ok(Scalar(text.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<Scalar, E> {
                Ok(Scalar(number.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Scalar, E> {
                Ok(Scalar(number.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, flag: bool) -> Result<Scalar, E> {
                Ok(Scalar(flag.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn value_list(option: &str, values: Vec<Scalar>, lowercase: bool) -> Result<Vec<String>, String> {
    if values.is_empty() {
        return Err(format!("`{option}` must list at least one value"));
    }
    let values: Vec<String> = values.into_iter().map(|Scalar(text)| text.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        return Err(format!("`{option}` must not contain an empty value"));
    }
    Ok(if lowercase {
        values.iter().map(|value| value.to_lowercase()).collect()
    } else {
        values
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NormalizeConfig {
    attribute: String,
    steps: Vec<Step>,
    #[serde(default)]
    each_item: bool,
}

fn normalizer(table: Table) -> Result<Normalizer, String> {
    let config: NormalizeConfig = options(table)?;
    if config.steps.is_empty() {
        return Err("`steps` must list at least one step".to_string());
    }
    Ok(Normalizer {
        attribute: attribute(config.attribute)?,
        steps: config.steps,
        each_item: config.each_item,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockConfig {
    attribute: String,
    equals: Option<Vec<Scalar>>,
    matches: Option<String>,
    contains: Option<Vec<Scalar>>,
    title: Option<String>,
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailDomainConfig {
    #[serde(default)]
    allowed: Vec<String>,
    #[serde(default)]
    blocked: Vec<String>,
    title: Option<String>,
    message: Option<String>,
}

fn blocker(kind: &str, index: usize, table: Table) -> Result<Blocker, String> {
    let title = |title: Option<String>| title.map(|title| non_blank("title", title)).transpose();
    if kind == "email_domain" {
        let config: EmailDomainConfig = options(table)?;
        if config.allowed.is_empty() && config.blocked.is_empty() {
            return Err("give `allowed`, `blocked` or both".to_string());
        }
        let patterns = |option: &str, entries: &[String]| -> Result<Vec<DomainPattern>, String> {
            entries
                .iter()
                .map(|entry| DomainPattern::parse(entry).map_err(|problem| format!("`{option}`: {problem}")))
                .collect()
        };
        return Ok(Blocker {
            index,
            condition: BlockCondition::EmailDomain {
                allowed: patterns("allowed", &config.allowed)?,
                blocked: patterns("blocked", &config.blocked)?,
            },
            title: title(config.title)?,
            message: message_or(config.message, || DEFAULT_EMAIL_DOMAIN.to_string())?,
        });
    }
    let config: BlockConfig = options(table)?;
    let test = match (config.equals, config.matches, config.contains) {
        (Some(values), None, None) => AttributeTest::Equals(value_list("equals", values, true)?),
        (None, Some(pattern), None) => AttributeTest::Matches(regex("matches", &pattern)?),
        (None, None, Some(values)) => AttributeTest::Contains(value_list("contains", values, true)?),
        _ => return Err("give exactly one condition: `equals`, `matches` or `contains`".to_string()),
    };
    Ok(Blocker {
        index,
        condition: BlockCondition::Attribute {
            attribute: attribute(config.attribute)?,
            test,
        },
        title: title(config.title)?,
        message: non_blank("message", config.message)?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequiredConfig {
    attribute: String,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternConfig {
    attribute: String,
    regex: String,
    #[serde(default)]
    each_item: bool,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LengthConfig {
    attribute: String,
    min: Option<usize>,
    max: Option<usize>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeConfig {
    attribute: String,
    min: Option<i64>,
    max: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowedValuesConfig {
    attribute: String,
    values: Vec<Scalar>,
    #[serde(default)]
    case_sensitive: bool,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteCodeConfig {
    attribute: String,
    sha256: Vec<String>,
    message: Option<String>,
}

fn validator(kind: &str, table: Table) -> Result<Validator, String> {
    let (name, check, message) = match kind {
        "required" => {
            let config: RequiredConfig = options(table)?;
            (
                config.attribute,
                Check::Required,
                message_or(config.message, || DEFAULT_REQUIRED.to_string())?,
            )
        }
        "pattern" => {
            let config: PatternConfig = options(table)?;
            let check = Check::Pattern {
                regex: regex("regex", &config.regex)?,
                each_item: config.each_item,
            };
            (
                config.attribute,
                check,
                message_or(config.message, || DEFAULT_PATTERN.to_string())?,
            )
        }
        "length" => {
            let config: LengthConfig = options(table)?;
            let (min, max) = bounds(config.min, config.max)?;
            let message = message_or(config.message, || match (min, max) {
                (Some(min), Some(max)) if min == max => format!("Please enter exactly {min} characters."),
                (Some(min), Some(max)) => format!("Please enter between {min} and {max} characters."),
                (Some(min), None) => format!("Please enter at least {min} characters."),
                (None, _) => format!("Please enter at most {} characters.", max.unwrap_or_default()),
            })?;
            (config.attribute, Check::Length { min, max }, message)
        }
        "range" => {
            let config: RangeConfig = options(table)?;
            let (min, max) = bounds(config.min, config.max)?;
            let message = message_or(config.message, || match (min, max) {
                (Some(min), Some(max)) => format!("Please enter a whole number from {min} to {max}."),
                (Some(min), None) => format!("Please enter a whole number of at least {min}."),
                (None, _) => format!("Please enter a whole number of at most {}.", max.unwrap_or_default()),
            })?;
            (config.attribute, Check::Range { min, max }, message)
        }
        "allowed_values" => {
            let config: AllowedValuesConfig = options(table)?;
            let values = value_list("values", config.values, !config.case_sensitive)?;
            let check = Check::AllowedValues {
                values,
                case_sensitive: config.case_sensitive,
            };
            (
                config.attribute,
                check,
                message_or(config.message, || DEFAULT_ALLOWED_VALUES.to_string())?,
            )
        }
        "invite_code" => {
            let config: InviteCodeConfig = options(table)?;
            if config.sha256.is_empty() {
                return Err("`sha256` must list at least one hash".to_string());
            }
            let hashes = config
                .sha256
                .iter()
                .enumerate()
                .map(|(position, entry)| {
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(entry.trim(), &mut hash)
                        .map(|()| hash)
                        .map_err(|_| {
                            format!(
                                "`sha256` entry #{} is not a SHA-256 hash (64 hexadecimal digits)",
                                position + 1
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            (
                config.attribute,
                Check::InviteCode { hashes },
                message_or(config.message, || DEFAULT_INVITE_CODE.to_string())?,
            )
        }
        other => return Err(format!("unknown kind `{other}`; expected one of {KINDS}")),
    };
    Ok(Validator {
        attribute: attribute(name)?,
        check,
        message,
    })
}

fn bounds<T: PartialOrd + std::fmt::Display + Copy>(
    min: Option<T>,
    max: Option<T>,
) -> Result<(Option<T>, Option<T>), String> {
    match (min, max) {
        (None, None) => Err("give `min`, `max` or both".to_string()),
        (Some(min), Some(max)) if min > max => Err(format!("`min` ({min}) is greater than `max` ({max})")),
        bounds => Ok(bounds),
    }
}
