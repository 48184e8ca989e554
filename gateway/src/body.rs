//! The success body every route answers with, in the seed's format — `{"data": …, "meta":
//! {"traceId": …}, "links": {"self": …}}` — typed, so that the OpenAPI document is generated
//! from what the handlers return rather than written beside them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::trace_id;

/// A route's answer: the data, about the answer, where it lives.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Body<T> {
    /// What was asked for.
    pub(crate) data: T,
    /// About this answer.
    pub(crate) meta: Meta,
    /// Where this answer (and the next page of a list) lives.
    pub(crate) links: Links,
}

impl<T> Body<T> {
    /// `data`, with a fresh trace id, served at `link`.
    pub(crate) fn new(data: T, link: String) -> Self {
        Body { data, meta: Meta::default(), links: Links { this: link, next: None } }
    }
}

impl<T: Serialize> IntoResponse for Body<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// A command's answer: `202 Accepted`, its event published.
pub(crate) struct Accepted<T>(pub(crate) Body<T>);

impl<T: Serialize> IntoResponse for Accepted<T> {
    fn into_response(self) -> Response {
        (StatusCode::ACCEPTED, Json(self.0)).into_response()
    }
}

/// About an answer: always its trace id; the other fields where the route has them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    /// This request's trace id, to quote when asking about it.
    pub(crate) trace_id: String,
    /// A list: how many items this page holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) count: Option<usize>,
    /// A list: the most a page holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit: Option<u32>,
    /// A range: its first day.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Date)]
    pub(crate) from: Option<String>,
    /// A range: its last day.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Date)]
    pub(crate) to: Option<String>,
    /// The grouping of the rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group_by: Option<String>,
    /// A command retried with its `Idempotency-Key`: this is the first answer again, and
    /// nothing was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replayed: Option<bool>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta { trace_id: trace_id(), count: None, limit: None, from: None, to: None, group_by: None, replayed: None }
    }
}

/// Links of an answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Links {
    /// This answer.
    #[serde(rename = "self")]
    pub(crate) this: String,
    /// The next page of a list, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<String>,
}
