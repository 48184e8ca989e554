-- Daily aggregates for the dashboards, recomputed from the deduplicated facts (claim_lines
-- FINAL) for the days a run of the analytics job touched, all rows of one recomputation sharing
-- a version. Exact under replays: queries read, for each day, only the rows of its latest
-- version (`(day, version) IN (SELECT day, max(version) … GROUP BY day)`), so a key an older
-- recomputation wrote and a newer one did not (a claim decided again) does not count.
CREATE TABLE IF NOT EXISTS claims_daily (
    decided_date Date,
    provider_id String,
    plan_id String,
    status String,
    claims UInt64,
    lines UInt64,
    denied_lines UInt64,
    billed_idr Int64,
    allowed_idr Int64,
    member_share_idr Int64,
    plan_paid_idr Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(decided_date)
ORDER BY (decided_date, provider_id, plan_id, status, version);

CREATE TABLE IF NOT EXISTS denials_daily (
    decided_date Date,
    carc String,
    lines UInt64,
    billed_idr Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(decided_date)
ORDER BY (decided_date, carc, version);
