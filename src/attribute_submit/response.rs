//! The four OnAttributeCollectionSubmit actions, serialised exactly as Entra expects:
//! `{"data": {"@odata.type": "...ResponseData", "actions": [ <one action> ]}}`.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const RESPONSE_DATA_TYPE: &str = "microsoft.graph.onAttributeCollectionSubmitResponseData";

/// Exactly one action per response.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitAction {
    ContinueWithDefaultBehavior,
    /// Full attribute name (as the request sent it) to the new value, in the request's type.
    ModifyAttributeValues(BTreeMap<String, Value>),
    ShowValidationError {
        message: String,
        /// Full attribute name to the message shown next to it.
        attribute_errors: BTreeMap<String, String>,
    },
    ShowBlockPage {
        title: Option<String>,
        message: String,
    },
}

impl SubmitAction {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            SubmitAction::ContinueWithDefaultBehavior => "continueWithDefaultBehavior",
            SubmitAction::ModifyAttributeValues(_) => "modifyAttributeValues",
            SubmitAction::ShowValidationError { .. } => "showValidationError",
            SubmitAction::ShowBlockPage { .. } => "showBlockPage",
        }
    }

    pub fn to_response_body(&self) -> Value {
        let odata_type = format!("microsoft.graph.attributeCollectionSubmit.{}", self.name());
        let mut action = Map::new();
        action.insert("@odata.type".to_string(), Value::String(odata_type));
        match self {
            SubmitAction::ContinueWithDefaultBehavior => {}
            SubmitAction::ModifyAttributeValues(attributes) => {
                action.insert("attributes".to_string(), json!(attributes));
            }
            SubmitAction::ShowValidationError {
                message,
                attribute_errors,
            } => {
                action.insert("message".to_string(), json!(message));
                action.insert("attributeErrors".to_string(), json!(attribute_errors));
            }
            SubmitAction::ShowBlockPage { title, message } => {
                if let Some(title) = title {
                    action.insert("title".to_string(), json!(title));
                }
                action.insert("message".to_string(), json!(message));
            }
        }
        json!({ "data": { "@odata.type": RESPONSE_DATA_TYPE, "actions": [Value::Object(action)] } })
    }
}
