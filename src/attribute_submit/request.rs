//! Parsing of the OnAttributeCollectionSubmit request Entra sends.
//!
//! Tolerant of what Entra really sends (`@odata.Type` casing, missing `identities`,
//! unknown fields, values whose declared type and JSON type disagree), strict about
//! what matters: the event type and the attribute values.

use serde_json::Value;
use std::collections::BTreeMap;

pub const SUBMIT_EVENT_TYPE: &str = "microsoft.graph.authenticationEvent.attributeCollectionSubmit";
pub const SUBMIT_CALLOUT_DATA_TYPE: &str = "microsoft.graph.onAttributeCollectionSubmitCalloutData";

/// One collected attribute value, in the type Entra declared for it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    String(String),
    Int64(i64),
    Boolean(bool),
}

impl AttributeValue {
    /// The value as text, as rules compare it (`true`/`false`, decimal integers).
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            AttributeValue::String(text) => std::borrow::Cow::Borrowed(text),
            AttributeValue::Int64(number) => std::borrow::Cow::Owned(number.to_string()),
            AttributeValue::Boolean(flag) => std::borrow::Cow::Borrowed(if *flag { "true" } else { "false" }),
        }
    }

    /// The items of a multi-value attribute (Entra sends them comma-delimited).
    pub fn items(&self) -> Vec<String> {
        self.as_text()
            .split(',')
            .map(|item| item.trim().to_string())
            .filter(|item| !item.is_empty())
            .collect()
    }

    pub fn to_json(&self) -> Value {
        match self {
            AttributeValue::String(text) => Value::String(text.clone()),
            AttributeValue::Int64(number) => Value::from(*number),
            AttributeValue::Boolean(flag) => Value::Bool(*flag),
        }
    }
}

/// An identity the user signed up with (`identities[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub sign_in_type: String,
    pub issuer: Option<String>,
    pub issuer_assigned_id: Option<String>,
}

/// The parts of the request the extension acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitRequest {
    pub tenant_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Attribute name as Entra sent it (built-in name or `extension_<appid>_<name>`) to value.
    pub attributes: BTreeMap<String, AttributeValue>,
    pub identities: Vec<Identity>,
}

impl SubmitRequest {
    /// The user's email: the `email` identity first, else an `email` attribute.
    pub fn email(&self) -> Option<&str> {
        self.identities
            .iter()
            .find(|identity| identity.sign_in_type.eq_ignore_ascii_case("email"))
            .and_then(|identity| identity.issuer_assigned_id.as_deref())
            .or_else(|| match self.attributes.get("email") {
                Some(AttributeValue::String(email)) => Some(email.as_str()),
                _ => None,
            })
            .map(str::trim)
            .filter(|email| !email.is_empty())
    }
}

/// Why a request body is not a usable OnAttributeCollectionSubmit request.
/// Messages name the offending field and never echo values (they may be personal data).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("the request body is empty")]
    Empty,
    #[error("the request body is not valid JSON")]
    NotJson,
    #[error("the request body is not a JSON object")]
    NotAnObject,
    #[error("this endpoint handles {SUBMIT_EVENT_TYPE}; the request is of type {0}")]
    WrongEventType(String),
    #[error("the request has no `data.userSignUpInfo.attributes` object")]
    MissingAttributes,
    #[error("attribute `{attribute}`: {problem}")]
    BadAttribute { attribute: String, problem: &'static str },
}

impl SubmitRequest {
    pub fn parse(body: &[u8]) -> Result<SubmitRequest, RequestError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(RequestError::Empty);
        }
        let document: Value = serde_json::from_slice(body).map_err(|_| RequestError::NotJson)?;
        let root = document.as_object().ok_or(RequestError::NotAnObject)?;

        // `type` is always sent by Entra; `data.@odata.type` too. Either one naming
        // another event is a misrouted call (for example the OnAttributeCollectionStart
        // extension pointed at this URL).
        if let Some(event_type) = root.get("type").and_then(Value::as_str)
            && !event_type.eq_ignore_ascii_case(SUBMIT_EVENT_TYPE)
        {
            return Err(RequestError::WrongEventType(printable(event_type)));
        }
        let data = root
            .get("data")
            .and_then(Value::as_object)
            .ok_or(RequestError::MissingAttributes)?;
        if let Some(data_type) = odata_type(data)
            && !data_type.eq_ignore_ascii_case(SUBMIT_CALLOUT_DATA_TYPE)
        {
            return Err(RequestError::WrongEventType(printable(data_type)));
        }
        if root.get("type").is_none() && odata_type(data).is_none() {
            return Err(RequestError::WrongEventType("(none)".to_string()));
        }

        let sign_up_info = data.get("userSignUpInfo").and_then(Value::as_object);
        let raw_attributes = sign_up_info
            .and_then(|info| info.get("attributes"))
            .and_then(Value::as_object)
            .ok_or(RequestError::MissingAttributes)?;
        let mut attributes = BTreeMap::new();
        for (name, raw) in raw_attributes {
            if let Some(value) = parse_attribute(name, raw)? {
                attributes.insert(name.clone(), value);
            }
        }

        let identities = sign_up_info
            .and_then(|info| info.get("identities"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(parse_identity).collect())
            .unwrap_or_default();

        let authentication_context = data.get("authenticationContext").and_then(Value::as_object);
        Ok(SubmitRequest {
            tenant_id: data.get("tenantId").and_then(Value::as_str).map(str::to_string),
            correlation_id: authentication_context
                .and_then(|context| context.get("correlationId"))
                .and_then(Value::as_str)
                .map(str::to_string),
            attributes,
            identities,
        })
    }
}

/// `@odata.type`, whatever the casing of the key (Entra's reference shows `@odata.Type`).
fn odata_type(object: &serde_json::Map<String, Value>) -> Option<&str> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("@odata.type"))
        .and_then(|(_, value)| value.as_str())
}

/// A type name is echoed in an error only if it looks like one (never arbitrary input).
fn printable(type_name: &str) -> String {
    let looks_like_a_type = type_name.len() <= 120
        && type_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
    if looks_like_a_type {
        type_name.to_string()
    } else {
        "(unrecognised)".to_string()
    }
}

/// One attribute: `{"@odata.type": "...DirectoryAttributeValue", "value": ..., "attributeType": ...}`.
/// An attribute without a value (not filled in) is skipped, as Entra treats it.
fn parse_attribute(name: &str, raw: &Value) -> Result<Option<AttributeValue>, RequestError> {
    let bad = |problem| RequestError::BadAttribute {
        attribute: printable_name(name),
        problem,
    };
    let object = raw.as_object().ok_or_else(|| bad("is not an object"))?;
    let value = match object.get("value") {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let declared = odata_type(object).map(|t| t.rsplit('.').next().unwrap_or(t).to_ascii_lowercase());
    let parsed = match declared.as_deref() {
        Some("stringdirectoryattributevalue") => match value {
            Value::String(text) => AttributeValue::String(text.clone()),
            Value::Number(number) => AttributeValue::String(number.to_string()),
            Value::Bool(flag) => AttributeValue::String(flag.to_string()),
            _ => return Err(bad("declared a string but the value is not one")),
        },
        Some("int64directoryattributevalue") => match value {
            Value::Number(number) => {
                AttributeValue::Int64(number.as_i64().ok_or_else(|| bad("is not a 64-bit integer"))?)
            }
            Value::String(text) => {
                AttributeValue::Int64(text.trim().parse().map_err(|_| bad("is not a 64-bit integer"))?)
            }
            _ => return Err(bad("declared an integer but the value is not one")),
        },
        Some("booleandirectoryattributevalue") => match value {
            Value::Bool(flag) => AttributeValue::Boolean(*flag),
            Value::String(text) if text.eq_ignore_ascii_case("true") => AttributeValue::Boolean(true),
            Value::String(text) if text.eq_ignore_ascii_case("false") => AttributeValue::Boolean(false),
            _ => return Err(bad("declared a boolean but the value is not one")),
        },
        // Undeclared or unknown type: take the JSON type.
        _ => match value {
            Value::String(text) => AttributeValue::String(text.clone()),
            Value::Bool(flag) => AttributeValue::Boolean(*flag),
            Value::Number(number) => match number.as_i64() {
                Some(integer) => AttributeValue::Int64(integer),
                None => return Err(bad("is a number that is not a 64-bit integer")),
            },
            _ => return Err(bad("has a value that is not a string, integer or boolean")),
        },
    };
    Ok(Some(parsed))
}

fn printable_name(name: &str) -> String {
    if name.len() <= 120 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_string()
    } else {
        "(unrecognised name)".to_string()
    }
}

fn parse_identity(raw: &Value) -> Option<Identity> {
    let object = raw.as_object()?;
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
    Some(Identity {
        sign_in_type: text("signInType")?,
        issuer: text("issuer"),
        issuer_assigned_id: text("issuerAssignedId"),
    })
}
