//! `Idempotency-Key` on commands, as the IETF draft (draft-ietf-httpapi-idempotency-key-header)
//! has it: a key is bound to its route and to the request it first came with (a SHA-256 of
//! the method, path and body). A retry of that request gets the first answer again and
//! publishes nothing; the key reused for another request is refused with 422; a retry while
//! the first is still being published, 409.
//!
//! Kept in the state store, a record per key: claimed (version 1) before the event is
//! published, answered (the next version) once it is, released when publishing failed so that
//! a retry may try again.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Gateway;
use crate::error::{ApiError, Detail, unavailable};

/// How long a command's answer is kept for retries with its key.
pub(crate) const ANSWER_KEPT: Duration = Duration::from_secs(24 * 3_600);

/// How long a claim on a key holds while its event is published (a gateway that dies
/// mid-publish does not hold the key for a day).
const CLAIM_HELD: Duration = Duration::from_secs(60);

/// A command's key, bound to its route and request.
pub(crate) struct Key {
    store_key: String,
    fingerprint: String,
}

/// What the store keeps under a key.
#[derive(Serialize, Deserialize)]
struct Kept {
    /// SHA-256 (hex) of the request the key came with first.
    fingerprint: String,
    /// The answer, once given.
    answer: Option<Value>,
    /// Publishing failed: the key is free for a retry.
    released: bool,
}

/// What a key says about a request.
pub(crate) enum Claim {
    /// A new request: the key is this request's now (at this version of the record).
    New(Key, u64),
    /// A retry of a request already answered: its answer.
    Answered(Value),
}

/// The `Idempotency-Key` header, validated, bound to `route` (its template) and the request
/// (`path` as sent, `body`); `None` without one.
pub(crate) fn key(headers: &HeaderMap, route: &str, path: &str, body: &[u8]) -> Result<Option<Key>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| crate::commands::valid_id(k))
        .ok_or_else(|| ApiError::invalid("Idempotency-Key", "must be 1 to 64 letters, digits, '-', '_' or '.'"))?;
    let mut hash = Sha256::new();
    hash.update(path.as_bytes());
    hash.update([0]);
    hash.update(body);
    let fingerprint = arus_schemas::json::hex(&hash.finalize());
    Ok(Some(Key { store_key: format!("idempotency:{route}:{key}"), fingerprint }))
}

/// Claims `key` for this request, or says why not: answered before (its answer), in flight
/// (409), or bound to another request (422).
pub(crate) async fn claim(gateway: &Gateway, key: Key) -> Result<Claim, ApiError> {
    let store = gateway.store.clone();
    let store_key = key.store_key.clone();
    let stored = tokio::task::spawn_blocking(move || store.get(&store_key))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    let version = match stored {
        None => 1,
        Some((version, bytes)) => {
            let kept: Kept = serde_json::from_slice(&bytes).map_err(|_| unavailable())?;
            if kept.fingerprint != key.fingerprint {
                return Err(reused());
            }
            match kept.answer {
                Some(answer) => return Ok(Claim::Answered(answer)),
                None if !kept.released => return Err(in_flight()),
                None => version + 1,
            }
        }
    };
    let kept = Kept { fingerprint: key.fingerprint.clone(), answer: None, released: false };
    if put(gateway, &key, version, &kept, CLAIM_HELD).await? {
        Ok(Claim::New(key, version))
    } else {
        // Another request took the key between the read and the write.
        Err(in_flight())
    }
}

/// The answer to the request that claimed `key` at `version`, kept for its retries.
pub(crate) async fn answered(gateway: &Gateway, key: &Key, version: u64, answer: Value) -> Result<(), ApiError> {
    let kept = Kept { fingerprint: key.fingerprint.clone(), answer: Some(answer), released: false };
    put(gateway, key, version + 1, &kept, ANSWER_KEPT).await.map(drop)
}

/// The request that claimed `key` at `version` failed: the key is free for a retry.
pub(crate) async fn release(gateway: &Gateway, key: &Key, version: u64) {
    let kept = Kept { fingerprint: key.fingerprint.clone(), answer: None, released: true };
    // At worst the claim stays until it expires, and a retry gets 409 until then.
    let _ = put(gateway, key, version + 1, &kept, CLAIM_HELD).await;
}

async fn put(gateway: &Gateway, key: &Key, version: u64, kept: &Kept, ttl: Duration) -> Result<bool, ApiError> {
    let store = gateway.store.clone();
    let store_key = key.store_key.clone();
    let bytes = serde_json::to_vec(kept).map_err(|_| unavailable())?;
    tokio::task::spawn_blocking(move || store.put_versioned_expiring(&store_key, version, &bytes, ttl))
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())
}

fn reused() -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "IDEMPOTENCY_KEY_REUSED",
        message: "this Idempotency-Key came with another request; use a new key for a new request".to_owned(),
        details: vec![Detail::field("Idempotency-Key", "bound to another request")],
    }
}

fn in_flight() -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "IDEMPOTENCY_KEY_IN_USE",
        message: "the first request with this Idempotency-Key is still being processed; retry shortly".to_owned(),
        details: vec![Detail::field("Idempotency-Key", "in use")],
    }
}
