-- Payments: one row per payment event (initiated, completed, failed), keyed by the event.
CREATE TABLE IF NOT EXISTS payments (
    event_id String,
    payment_id String,
    claim_id String,
    kind String,
    event_date Date,
    amount_idr Int64,
    failure_code String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(event_date)
ORDER BY (payment_id, kind, event_id);
