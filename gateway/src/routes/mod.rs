//! The REST routes, a module per resource, and the parameter checks they share.

pub(crate) mod analytics;
pub(crate) mod authorizations;
pub(crate) mod claims;
pub(crate) mod commands;
pub(crate) mod eligibility;
pub(crate) mod health;
pub(crate) mod members;

use arus_schemas::Date;

use crate::Gateway;
use crate::error::{ApiError, unavailable};

/// A path parameter as text; one that is not (invalid UTF-8 in its percent-encoding) is a
/// 400 in the error format, not axum's plain-text rejection.
pub(crate) struct PathId(pub(crate) String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid("path", "a path parameter is not text (UTF-8)"))?;
        Ok(PathId(value))
    }
}

/// A query string that does not decode (a parameter twice, bytes that are not text): 400,
/// naming the query, never echoing it.
pub(crate) fn malformed_query() -> ApiError {
    ApiError::invalid("query", "is not a query string this route reads (a parameter twice, or not text)")
}

/// An identifier as arus writes them: letters, digits, `-`, `_` and `.`, at most 64.
pub(crate) fn identifier(field: &'static str, value: Option<String>) -> Result<String, ApiError> {
    let value = value.ok_or_else(|| crate::commands::invalid(field, "is required"))?;
    Ok(crate::commands::id(field, &value)?)
}

/// A date, `YYYY-MM-DD`.
pub(crate) fn date(field: &'static str, value: Option<String>) -> Result<Date, ApiError> {
    let value = value.ok_or_else(|| crate::commands::invalid(field, "is required"))?;
    Ok(crate::commands::date(field, &value)?)
}

/// A record the jobs keep in the store, read and decoded; `None` when there is none.
pub(crate) async fn stored<T: serde::de::DeserializeOwned + Send + 'static>(
    gateway: &Gateway,
    key: String,
) -> Result<Option<T>, ApiError> {
    let store = gateway.store.clone();
    tokio::task::spawn_blocking(move || arus_connectors::store::read::json::<T>(&*store, &key))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())
}

/// Now, for the checks that compare with today.
pub(crate) fn now() -> arus_schemas::Timestamp {
    arus_schemas::Timestamp(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
    )
}
