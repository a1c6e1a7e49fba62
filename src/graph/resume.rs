//! Carrying a paged read over to a later run: a poll that stops at its time budget stores
//! the next page's link and the next run continues from it.

use super::{GraphClient, GraphError, Pager};
use std::marker::PhantomData;
use url::Url;

impl<T> Pager<T> {
    /// The link of the next page, if there is one (already checked against the Graph origin).
    pub fn next_link(&self) -> Option<&Url> {
        self.next.as_ref()
    }
}

impl GraphClient {
    /// A pager that starts at a stored `@odata.nextLink`. The link is checked against the
    /// Graph origin again: a tampered checkpoint cannot send the token elsewhere.
    pub fn resume_pager<T>(&self, operation: &'static str, next_link: &str) -> Result<Pager<T>, GraphError> {
        let next = self.checked_next_link(operation, next_link)?;
        Ok(Pager {
            client: self.clone(),
            operation,
            next: Some(next),
            refused: None,
            pages: 0,
            item: PhantomData,
        })
    }
}
