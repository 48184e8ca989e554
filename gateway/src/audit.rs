//! The audit trail: every request to a route with a member's data (the routes `access::RULES`
//! marks) becomes an `AccessAudited` on `audit.events` — who (subject, client, role), what
//! (method, route template, the identifiers named), how it ended (status), the trace id the
//! caller was given, when — never the data itself.
//!
//! Records are handed to a thread of their own and published in batches, so that an answer
//! never waits for the bus. If the bus is away for long, the queue fills and records are
//! dropped — counted in `/metrics` (`arus_gateway_audit_records_total{outcome="dropped"}`), an
//! alert's business, rather than holding every answer back.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use arus_schemas::Event;
use arus_schemas::events::AccessAudited;

use crate::commands::Publisher;

/// Records waiting to be published, at most.
const QUEUE: usize = 65_536;

/// Records published in one batch, at most.
const BATCH: usize = 1_024;

/// Who asked, as far as the token says.
#[derive(Clone)]
pub(crate) enum Who {
    /// No token.
    Anonymous,
    /// A token that did not verify.
    Unverified,
    /// A verified token.
    Caller(Arc<crate::auth::Caller>),
}

/// Hands audit records to the publishing thread.
pub(crate) struct Auditor {
    queue: SyncSender<AccessAudited>,
    counts: prometheus::IntCounterVec,
}

impl Auditor {
    /// An auditor publishing through `publisher`, counting into `registry`.
    pub(crate) fn new(publisher: Arc<dyn Publisher>, registry: &prometheus::Registry) -> Self {
        let counts = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "arus_gateway_audit_records_total",
                "Audit records of accesses to members' data, by outcome (published, dropped).",
            ),
            &["outcome"],
        )
        .expect("a valid metric");
        registry.register(Box::new(counts.clone())).expect("unique names");
        let (queue, records) = std::sync::mpsc::sync_channel(QUEUE);
        let published = counts.clone();
        std::thread::Builder::new()
            .name("arus-audit".to_owned())
            .spawn(move || publish(records, &*publisher, &published))
            .expect("a thread for the audit trail");
        Auditor { queue, counts }
    }

    /// Records a request `who` made of `method` on `route` naming `resource_ids`, answered
    /// `status`, with the trace id of the request being answered.
    pub(crate) fn access(&self, who: &Who, method: &str, route: &str, resource_ids: Vec<String>, status: u16) {
        let (subject, client, role) = match who {
            Who::Anonymous => ("anonymous", "anonymous", "anonymous"),
            Who::Unverified => ("unverified", "unverified", "unverified"),
            Who::Caller(caller) => (caller.subject.as_str(), caller.client_id.as_str(), caller.role.name()),
        };
        let trace_id = crate::error::trace_id();
        self.record(AccessAudited {
            event_id: trace_id.clone(),
            event_time: crate::routes::now(),
            subject: subject.to_owned(),
            client_id: client.to_owned(),
            role: role.to_owned(),
            method: method.to_owned(),
            route: route.to_owned(),
            resource_ids,
            status: i32::from(status),
            trace_id,
        });
    }

    /// Queues `record`; counted as dropped when the queue is full.
    fn record(&self, record: AccessAudited) {
        match self.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counts.with_label_values(&["dropped"]).inc();
            }
        }
    }
}

/// Publishes what comes, a batch at a time; a batch the bus refuses is tried again (five
/// times, a second apart) before it is dropped.
fn publish(records: Receiver<AccessAudited>, publisher: &dyn Publisher, counts: &prometheus::IntCounterVec) {
    while let Ok(first) = records.recv() {
        let mut batch = vec![Event::AccessAudited(first)];
        while batch.len() < BATCH {
            match records.try_recv() {
                Ok(record) => batch.push(Event::AccessAudited(record)),
                Err(_) => break,
            }
        }
        let mut tries = 0;
        let outcome = loop {
            match publisher.publish_all(&batch) {
                Ok(()) => break "published",
                Err(_) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(_) => break "dropped",
            }
        };
        counts.with_label_values(&[outcome]).inc_by(batch.len() as u64);
    }
}

/// The identifiers a request names: the template's `{parameters}` matched against the path,
/// and a `memberId` in the query; `name=value`, each value at most 64 characters.
pub(crate) fn resource_ids(template: &str, uri: &axum::http::Uri) -> Vec<String> {
    let clip = |value: &str| value.chars().take(64).collect::<String>();
    let mut ids: Vec<String> = template
        .split('/')
        .zip(uri.path().split('/'))
        .filter_map(|(part, value)| {
            let name = part.strip_prefix('{')?.strip_suffix('}')?;
            Some(format!("{name}={}", clip(value)))
        })
        .collect();
    if let Some(query) = uri.query() {
        for pair in query.split('&') {
            if let Some(value) = pair.strip_prefix("memberId=") {
                ids.push(format!("memberId={}", clip(value)));
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ids_a_request_names() {
        let uri: axum::http::Uri = "/api/v1/members/M1/claims?status=paid&memberId=M9".parse().expect("a URI");
        assert_eq!(resource_ids("/api/v1/members/{memberId}/claims", &uri), ["memberId=M1", "memberId=M9"]);
        let long = format!("/api/v1/claims/{}", "C".repeat(200)).parse().expect("a URI");
        assert_eq!(resource_ids("/api/v1/claims/{claimId}", &long)[0].len(), "claimId=".len() + 64);
        assert!(resource_ids("/health", &"/health".parse().expect("a URI")).is_empty());
    }
}
