-- Fraud alerts as analysts see them: one row per alert event (raised or withdrawn).
CREATE TABLE IF NOT EXISTS fraud_alerts (
    alert_id String,
    status String,
    event_id String,
    alert_date Date,
    subject_type String,
    subject_id String,
    severity String,
    pattern String,
    rules Array(String),
    model_version String,
    score Nullable(Float64),
    claim_ids Array(String),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (alert_id, status);
