//! Generic JSON requests for administrative Graph calls (`signup-bridge setup`): the same
//! retries, token handling and error reporting as the typed operations, for resources that
//! are read and written as plain JSON (custom authentication extensions, user flows).

use reqwest::Method;
use serde_json::Value;

use super::{GraphClient, GraphError, Pager};

impl GraphClient {
    /// Every item of a collection (`GET /{path}`, following `@odata.nextLink` within the
    /// Graph origin). `path` is relative to the Graph root, e.g. `v1.0/identity/...`.
    pub async fn list_json(&self, operation: &'static str, path: &str) -> Result<Vec<Value>, GraphError> {
        let pager: Pager<Value> = self.pager(operation, path, &[]);
        pager.collect_all().await
    }

    /// `POST /{path}` with a JSON body; answers the created object.
    pub async fn post_json(&self, operation: &'static str, path: &str, body: &Value) -> Result<Value, GraphError> {
        let url = self.url(path, &[]);
        let answer = self.execute(operation, Method::POST, url, Some(body)).await?;
        if answer.status.is_success() {
            answer.json(operation)
        } else {
            Err(answer.into_error(operation))
        }
    }

    /// `PATCH /{path}` with a JSON body (Graph answers 204 No Content).
    pub async fn patch_json(&self, operation: &'static str, path: &str, body: &Value) -> Result<(), GraphError> {
        let url = self.url(path, &[]);
        let answer = self.execute(operation, Method::PATCH, url, Some(body)).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.into_error(operation))
        }
    }
}
