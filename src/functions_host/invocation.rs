//! The JSON payload of a non-HTTP invocation and the response the host expects.
//!
//! Request: `{"Data": {<binding>: value}, "Metadata": {...}}`. Objects arrive as JSON
//! objects; strings arrive JSON-encoded a second time (`"\"text\""`); bytes arrive base64.
//! Response: always an object `{"Outputs": {}, "Logs": [], "ReturnValue": null}`; an
//! empty body would hang the invocation.

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InvocationRequest {
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvocationError {
    #[error("the invocation has no `{0}` binding in Data")]
    MissingBinding(String),
    #[error("binding `{binding}`: {problem}")]
    BadBinding { binding: String, problem: String },
}

impl InvocationRequest {
    pub fn parse(body: &[u8]) -> Result<InvocationRequest, serde_json::Error> {
        serde_json::from_slice(body)
    }

    fn binding(&self, name: &str) -> Result<&Value, InvocationError> {
        match self.data.get(name) {
            None | Some(Value::Null) => Err(InvocationError::MissingBinding(name.to_string())),
            Some(value) => Ok(value),
        }
    }

    /// A string binding, undoing the host's second JSON encoding when present.
    pub fn binding_text(&self, name: &str) -> Result<String, InvocationError> {
        match self.binding(name)? {
            Value::String(raw) => Ok(decode_twice_encoded(raw)),
            other => Ok(other.to_string()),
        }
    }

    /// A JSON binding: an object as sent, or a (twice-encoded) string holding JSON.
    pub fn binding_json<T: DeserializeOwned>(&self, name: &str) -> Result<T, InvocationError> {
        let bad = |error: serde_json::Error| InvocationError::BadBinding {
            binding: name.to_string(),
            // serde's message names the field and position, never the content.
            problem: format!("not the expected JSON: {}", error.classify_message()),
        };
        match self.binding(name)? {
            Value::String(raw) => serde_json::from_str(&decode_twice_encoded(raw)).map_err(bad),
            other => T::deserialize(other).map_err(bad),
        }
    }

    /// A bytes binding (base64 in the payload).
    pub fn binding_bytes(&self, name: &str) -> Result<Vec<u8>, InvocationError> {
        let text = self.binding_text(name)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| InvocationError::BadBinding {
                binding: name.to_string(),
                problem: "not base64".to_string(),
            })
    }

    /// A metadata value, decoded the same way as bindings (`DequeueCount`, `Id`, ...).
    pub fn metadata_value(&self, name: &str) -> Option<Value> {
        match self.metadata.get(name)? {
            Value::String(raw) => {
                let decoded = decode_twice_encoded(raw);
                Some(serde_json::from_str(&decoded).unwrap_or(Value::String(decoded)))
            }
            other => Some(other.clone()),
        }
    }
}

/// `"\"text\""` → `text`; anything that is not a JSON string literal is returned as is.
fn decode_twice_encoded(raw: &str) -> String {
    if raw.starts_with('"')
        && let Ok(inner) = serde_json::from_str::<String>(raw)
    {
        return inner;
    }
    raw.to_string()
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    /// serde_json's data errors may quote input ("invalid type: string \"jane@..\"");
    /// keep only the category and position.
    fn classify_message(&self) -> String {
        let category = match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated",
        };
        format!("{category} at line {} column {}", self.line(), self.column())
    }
}

/// The response the host expects for every invocation.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
    /// The invocation failed: answered with a 500 (and the same JSON object), so the host
    /// records a failed execution (alertable) and, for queues, retries the message.
    #[serde(skip)]
    pub failed: bool,
}

impl InvocationResponse {
    pub fn failed(logs: InvocationLog) -> InvocationResponse {
        InvocationResponse {
            failed: true,
            ..InvocationResponse::with_logs(logs)
        }
    }

    pub fn with_logs(logs: InvocationLog) -> InvocationResponse {
        InvocationResponse {
            logs: logs.into_lines(),
            ..InvocationResponse::default()
        }
    }
}

/// Log lines of one invocation: each goes to the process log and into `Logs`, where the
/// host records it correlated with the invocation id.
#[derive(Debug, Default)]
pub struct InvocationLog {
    function: String,
    lines: Vec<String>,
}

impl InvocationLog {
    pub fn new(function: &str) -> InvocationLog {
        InvocationLog {
            function: function.to_string(),
            lines: Vec::new(),
        }
    }

    pub fn info(&mut self, line: impl Into<String>) {
        let line = line.into();
        log::info!("{}: {line}", self.function);
        self.lines.push(line);
    }

    pub fn warn(&mut self, line: impl Into<String>) {
        let line = line.into();
        log::warn!("{}: {line}", self.function);
        self.lines.push(format!("warning: {line}"));
    }

    /// Errors go to stderr (logged by the host at Error) and into `Logs`.
    pub fn error(&mut self, line: impl Into<String>) {
        let line = line.into();
        log::error!("{}: {line}", self.function);
        self.lines.push(format!("error: {line}"));
    }

    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_twice_encoded_queue_message_decodes_to_its_json() {
        // The queue sample from functions-host-invocations.json.
        let body = br#"{"Data":{"message":"\"{\\\"userId\\\":\\\"84360e8b-3321-4e37-b9ec-10fccd0263b8\\\",\\\"detectedAt\\\":\\\"2026-11-20T10:20:01Z\\\"}\""},"Metadata":{"DequeueCount":1,"Id":"a7c4"}}"#;
        let request = InvocationRequest::parse(body).unwrap();
        let message: Value = request.binding_json("message").unwrap();
        assert_eq!(message["userId"], "84360e8b-3321-4e37-b9ec-10fccd0263b8");
        assert_eq!(request.metadata_value("DequeueCount"), Some(json!(1)));
    }

    #[test]
    fn an_object_binding_and_a_once_encoded_string_both_decode() {
        let request = InvocationRequest::parse(br#"{"Data":{"a":{"x":1},"b":"{\"x\":2}","c":"\"plain\""}}"#).unwrap();
        assert_eq!(request.binding_json::<Value>("a").unwrap()["x"], 1);
        assert_eq!(request.binding_json::<Value>("b").unwrap()["x"], 2);
        assert_eq!(request.binding_text("c").unwrap(), "plain");
    }

    #[test]
    fn bytes_arrive_base64() {
        let request = InvocationRequest::parse(br#"{"Data":{"blob":"aGVsbG8="}}"#).unwrap();
        assert_eq!(request.binding_bytes("blob").unwrap(), b"hello");
        assert!(request.binding_bytes("missing").is_err());
    }

    #[test]
    fn binding_errors_do_not_quote_the_input() {
        let request = InvocationRequest::parse(br#"{"Data":{"m":"\"jane@contoso.com\""}}"#).unwrap();
        let error = request.binding_json::<Vec<u8>>("m").unwrap_err().to_string();
        assert!(!error.contains("jane"), "{error}");
    }

    #[test]
    fn the_response_is_always_the_full_object() {
        let mut log = InvocationLog::new("Test");
        log.info("polled 0 new sign-ups");
        let body = serde_json::to_value(InvocationResponse::with_logs(log)).unwrap();
        assert_eq!(
            body,
            json!({"Outputs": {}, "Logs": ["polled 0 new sign-ups"], "ReturnValue": null})
        );
    }
}
