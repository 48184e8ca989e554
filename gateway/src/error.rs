//! Errors in the seed's format (`{"error": {"code", "message", "details", "trace_id"}}`), the
//! trace id a caller quotes, and the errors every route shares.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::commands::Invalid;

/// The trace id of the request being answered, for the caller to quote (outside a request, a
/// fresh one): the process's start and a counter.
pub(crate) fn trace_id() -> String {
    TRACE.try_with(Clone::clone).unwrap_or_else(|_| fresh_trace_id())
}

tokio::task_local! {
    /// The trace id of the request being answered: every body, error and audit record of one
    /// request carries the same.
    static TRACE: String;
}

/// Runs `answer` with a fresh trace id of its own (see [`trace_id`]).
pub(crate) async fn traced<F: std::future::Future>(answer: F) -> F::Output {
    TRACE.scope(fresh_trace_id(), answer).await
}

fn fresh_trace_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    format!("{start:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An error in the seed's format.
pub(crate) struct ApiError {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The machine-readable code (`INVALID_PARAMETER`, `MEMBER_NOT_FOUND`, …).
    pub(crate) code: &'static str,
    /// In words, never echoing what was sent.
    pub(crate) message: String,
    /// Per field, what is wrong.
    pub(crate) details: Vec<Detail>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub(crate) error: ErrorDetail,
}

/// What went wrong, in the seed's field names.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Machine-readable: `INVALID_PARAMETER`, `MEMBER_NOT_FOUND`, `RATE_LIMITED`, …
    pub(crate) code: &'static str,
    /// In words; never echoes a submitted value.
    pub(crate) message: String,
    /// Per field, what is wrong.
    pub(crate) details: Vec<Detail>,
    /// The request's trace id, to quote.
    pub(crate) trace_id: String,
}

/// One thing wrong: a field and its issue, or when to come back.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Detail {
    /// The field (or parameter, or header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
    /// What is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) issue: Option<String>,
    /// Past a rate limit: milliseconds until a request is admitted again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_ms: Option<u64>,
}

impl Detail {
    /// `field` and what is wrong with it.
    pub(crate) fn field(field: &str, issue: impl Into<String>) -> Self {
        Detail { field: Some(field.to_owned()), issue: Some(issue.into()), retry_after_ms: None }
    }
}

impl ApiError {
    /// 400: `field` is missing or malformed.
    pub(crate) fn invalid(field: &str, issue: impl Into<String>) -> Self {
        let issue = issue.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER",
            message: format!("{field}: {issue}"),
            details: vec![Detail::field(field, issue)],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code, message: self.message, details: self.details, trace_id: trace_id() },
        };
        (self.status, Json(body)).into_response()
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "NOT_FOUND",
        message: "no such route".to_owned(),
        details: Vec::new(),
    }
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "METHOD_NOT_ALLOWED",
        message: "this route does not take that method (see /openapi.json)".to_owned(),
        details: Vec::new(),
    }
}

/// A body that could not be read: 413 past the size limit, 400 otherwise.
pub(crate) fn body_refused(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError {
            status,
            code: "BODY_TOO_LARGE",
            message: format!("the body is over {} bytes", crate::server::MAX_BODY),
            details: Vec::new(),
        }
    } else {
        ApiError::invalid("body", "could not be read")
    }
}

pub(crate) fn unavailable() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "STORE_UNAVAILABLE",
        message: "the state store does not answer; try again shortly".to_owned(),
        details: Vec::new(),
    }
}

pub(crate) fn member_not_found(member_id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "MEMBER_NOT_FOUND",
        message: format!("no member {member_id}"),
        details: vec![Detail::field("memberId", "unknown")],
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        let (status, code) = if invalid.semantic {
            (StatusCode::UNPROCESSABLE_ENTITY, "INCONSISTENT_VALUES")
        } else {
            (StatusCode::BAD_REQUEST, "INVALID_PARAMETER")
        };
        ApiError {
            status,
            code,
            message: format!("{}: {}", invalid.field, invalid.issue),
            details: vec![Detail::field(invalid.field, invalid.issue)],
        }
    }
}
